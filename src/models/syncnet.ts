/**
 * SyncNet v2 (joonson/syncnet_python `SyncNetModel.S(1024)`, the network behind LSE-D / LSE-C;
 * ../shared/docs/eval-metrics.md §4) on TensorFlow.js, NHWC.
 *
 * Video branch: PyTorch feeds (B, 3, 5, 224, 224) BGR 0–255 into Conv3d(3→96, k=(5,7,7), s=(1,2,2)). Every later
 * Conv3d/MaxPool3d has a temporal kernel of 1 and the first one collapses the 5 frames to 1, so the whole branch is
 * exactly a 2-D network on a (B, 224, 224, 15) input whose channel t·3+c holds frame t, BGR channel c; the first kernel
 * (96, 3, 5, 7, 7) becomes a (7, 7, 15, 96) conv2d filter. No conv3d kernel is needed (tfjs-wasm has none).
 * Audio branch: Conv2d stack on 1×13×20 MFCC windows (H = 13 coefficients, W = 20 frames of 10 ms).
 * BatchNorm runs in eval mode (running statistics, eps 1e-5) unless `training` is passed (batch statistics, running
 * statistics updated with momentum 0.1, as PyTorch does) — the training path is used by ../sync-train.ts.
 *
 * `width` scales every channel count (1 = the published architecture); anything else is a different network and
 * is labelled as such by whoever reports its scores.
 *
 * One architecture (the Layer lists below), two uses: the `SyncNet` class runs it on tfjs with trainable variables
 * (training, ../train/syncnet.ts); `syncnetGraphs` turns the same lists into network descriptions (./netgraph.ts, BatchNorm
 * folded into the preceding conv/linear in eval mode) that `SyncNetRunner` runs on either executor (tfjs or onnxruntime
 * on all CPU cores, ./net-runner.ts) — what eval scores LSE with.
 */
import { DifftalkError } from '../util/errors.js';
import { tf } from '../util/tf.js';
import { mulberry32 } from '../util/random.js';
import { pad2, type NetGraph, type NetOp, type NetParam } from './netgraph.js';
import { TfNet } from './netgraph-tf.js';
import { createNetRunner, type HostTensor, type NetExecutor, type NetRunner } from './net-runner.js';

/** A PyTorch-layout tensor: row-major float32 data and its shape (as a state_dict entry). */
export interface NamedTensor {
  shape: readonly number[];
  data: Float32Array;
}
export type NamedTensors = ReadonlyMap<string, NamedTensor>;

export interface SyncNetConfig {
  /** Channel multiplier; 1 = syncnet_v2. */
  width: number;
  /** Embedding size of both branches (1024 in syncnet_v2). */
  embedDim: number;
}

export const SYNCNET_V2_CONFIG: SyncNetConfig = { width: 1, embedDim: 1024 };

/** Frames per video window and the face-crop size the network expects. */
export const SYNCNET_FRAMES = 5;
export const SYNCNET_SIZE = 224;
/** MFCC window: 13 coefficients × 20 frames at 100 Hz (0.2 s = 5 video frames at 25 fps). */
export const SYNCNET_MFCC_DIM = 13;
export const SYNCNET_MFCC_WINDOW = 20;

const BN_EPS = 1e-5;
const BN_MOMENTUM = 0.1;

type Layer =
  | { kind: 'conv'; name: string; out: number; k: [number, number]; t?: number; stride: [number, number]; pad: number }
  | { kind: 'bn'; name: string; ch: number }
  | { kind: 'relu' }
  | { kind: 'pool'; k: [number, number]; stride: [number, number]; pad: number }
  | { kind: 'fc'; name: string; out: number };

function ch(c: number, width: number): number {
  return width === 1 ? c : Math.max(4, Math.round(c * width));
}

function audioLayers(w: number): Layer[] {
  return [
    { kind: 'conv', name: 'netcnnaud.0', out: ch(64, w), k: [3, 3], stride: [1, 1], pad: 1 },
    { kind: 'bn', name: 'netcnnaud.1', ch: ch(64, w) },
    { kind: 'relu' },
    // MaxPool2d(1, 1) is the identity.
    { kind: 'conv', name: 'netcnnaud.4', out: ch(192, w), k: [3, 3], stride: [1, 1], pad: 1 },
    { kind: 'bn', name: 'netcnnaud.5', ch: ch(192, w) },
    { kind: 'relu' },
    { kind: 'pool', k: [3, 3], stride: [1, 2], pad: 0 },
    { kind: 'conv', name: 'netcnnaud.8', out: ch(384, w), k: [3, 3], stride: [1, 1], pad: 1 },
    { kind: 'bn', name: 'netcnnaud.9', ch: ch(384, w) },
    { kind: 'relu' },
    { kind: 'conv', name: 'netcnnaud.11', out: ch(256, w), k: [3, 3], stride: [1, 1], pad: 1 },
    { kind: 'bn', name: 'netcnnaud.12', ch: ch(256, w) },
    { kind: 'relu' },
    { kind: 'conv', name: 'netcnnaud.14', out: ch(256, w), k: [3, 3], stride: [1, 1], pad: 1 },
    { kind: 'bn', name: 'netcnnaud.15', ch: ch(256, w) },
    { kind: 'relu' },
    { kind: 'pool', k: [3, 3], stride: [2, 2], pad: 0 },
    { kind: 'conv', name: 'netcnnaud.18', out: ch(512, w), k: [5, 4], stride: [1, 1], pad: 0 },
    { kind: 'bn', name: 'netcnnaud.19', ch: ch(512, w) },
    { kind: 'relu' },
  ];
}

function lipLayers(w: number): Layer[] {
  return [
    { kind: 'conv', name: 'netcnnlip.0', out: ch(96, w), k: [7, 7], t: SYNCNET_FRAMES, stride: [2, 2], pad: 0 },
    { kind: 'bn', name: 'netcnnlip.1', ch: ch(96, w) },
    { kind: 'relu' },
    { kind: 'pool', k: [3, 3], stride: [2, 2], pad: 0 },
    { kind: 'conv', name: 'netcnnlip.4', out: ch(256, w), k: [5, 5], t: 1, stride: [2, 2], pad: 1 },
    { kind: 'bn', name: 'netcnnlip.5', ch: ch(256, w) },
    { kind: 'relu' },
    { kind: 'pool', k: [3, 3], stride: [2, 2], pad: 1 },
    { kind: 'conv', name: 'netcnnlip.8', out: ch(256, w), k: [3, 3], t: 1, stride: [1, 1], pad: 1 },
    { kind: 'bn', name: 'netcnnlip.9', ch: ch(256, w) },
    { kind: 'relu' },
    { kind: 'conv', name: 'netcnnlip.11', out: ch(256, w), k: [3, 3], t: 1, stride: [1, 1], pad: 1 },
    { kind: 'bn', name: 'netcnnlip.12', ch: ch(256, w) },
    { kind: 'relu' },
    { kind: 'conv', name: 'netcnnlip.14', out: ch(256, w), k: [3, 3], t: 1, stride: [1, 1], pad: 1 },
    { kind: 'bn', name: 'netcnnlip.15', ch: ch(256, w) },
    { kind: 'relu' },
    { kind: 'pool', k: [3, 3], stride: [2, 2], pad: 0 },
    { kind: 'conv', name: 'netcnnlip.18', out: ch(512, w), k: [6, 6], t: 1, stride: [1, 1], pad: 0 },
    { kind: 'bn', name: 'netcnnlip.19', ch: ch(512, w) },
    { kind: 'relu' },
  ];
}

function fcLayers(prefix: 'netfcaud' | 'netfclip', cfg: SyncNetConfig): Layer[] {
  const hidden = ch(512, cfg.width);
  return [
    { kind: 'fc', name: `${prefix}.0`, out: hidden },
    { kind: 'bn', name: `${prefix}.1`, ch: hidden },
    { kind: 'relu' },
    { kind: 'fc', name: `${prefix}.3`, out: cfg.embedDim },
  ];
}

/** Every state_dict key and PyTorch shape of `SyncNetModel.S` at this config, in the original module order. */
export function syncnetParamShapes(cfg: SyncNetConfig = SYNCNET_V2_CONFIG): Array<[string, number[]]> {
  const out: Array<[string, number[]]> = [];
  const walk = (layers: Layer[], inCh: number): number => {
    let c = inCh;
    for (const l of layers) {
      if (l.kind === 'conv') {
        const shape = l.t === undefined ? [l.out, c, l.k[0], l.k[1]] : [l.out, c, l.t, l.k[0], l.k[1]];
        out.push([`${l.name}.weight`, shape], [`${l.name}.bias`, [l.out]]);
        c = l.out;
      } else if (l.kind === 'fc') {
        out.push([`${l.name}.weight`, [l.out, c]], [`${l.name}.bias`, [l.out]]);
        c = l.out;
      } else if (l.kind === 'bn') {
        for (const p of ['weight', 'bias', 'running_mean', 'running_var']) out.push([`${l.name}.${p}`, [l.ch]]);
        out.push([`${l.name}.num_batches_tracked`, []]);
      }
    }
    return c;
  };
  const audC = walk(audioLayers(cfg.width), 1);
  walk(fcLayers('netfcaud', cfg), audC);
  walk(fcLayers('netfclip', cfg), ch(512, cfg.width));
  walk(lipLayers(cfg.width), 3);
  return out;
}

/** PyTorch layout → TF layout for one parameter. */
function toTf(name: string, shape: readonly number[], data: Float32Array): tf.Tensor {
  const t = tf.tensor(data, shape as number[], 'float32');
  if (shape.length === 4 && name.includes('netcnn')) {
    // Conv2d (O, I, kh, kw) → (kh, kw, I, O)
    return tf.tidy(() => t.transpose([2, 3, 1, 0]));
  }
  if (shape.length === 5) {
    // Conv3d (O, C, T, kh, kw) → (kh, kw, T, C, O) → (kh, kw, T·C, O): channel t·C + c, matching the input packing.
    const [o, c, tt, kh, kw] = shape as [number, number, number, number, number];
    return tf.tidy(() => t.transpose([3, 4, 2, 1, 0]).reshape([kh, kw, tt * c, o]));
  }
  if (shape.length === 2) {
    // Linear (out, in) → (in, out)
    return tf.tidy(() => t.transpose([1, 0]));
  }
  return t;
}

/** TF layout → PyTorch layout (for saving); an async read, so a GPU backend never blocks on it. */
async function toTorch(name: string, torchShape: readonly number[], t: tf.Tensor): Promise<Float32Array> {
  const x = tf.tidy(() => {
    if (torchShape.length === 4 && name.includes('netcnn')) return t.transpose([3, 2, 0, 1]);
    if (torchShape.length === 5) {
      const [o, c, tt, kh, kw] = torchShape as [number, number, number, number, number];
      return t.reshape([kh, kw, tt, c, o]).transpose([4, 3, 2, 0, 1]);
    }
    if (torchShape.length === 2) return t.transpose([1, 0]);
    return t.clone();
  });
  try {
    return new Float32Array(await x.data<'float32'>());
  } finally {
    x.dispose();
  }
}

/**
 * conv2d with a hand-written gradient, so training runs on backends without a Conv2DBackpropFilter kernel
 * (tfjs-wasm has Conv2D and Conv2DBackpropInput but not the filter gradient): the filter gradient is itself a
 * (dilated) conv2d, as TensorFlow's reference kernels compute it. `inputGrad = false` skips dx (the network input needs none).
 */
export function trainableConv2d(x: tf.Tensor4D, w: tf.Tensor4D, stride: [number, number], pad: number, inputGrad: boolean): tf.Tensor4D {
  const body = (xi: tf.Tensor, wi: tf.Tensor, save: tf.GradSaveFunc) => {
    const x4 = xi as tf.Tensor4D;
    const w4 = wi as tf.Tensor4D;
    save([x4, w4]);
    const value = tf.conv2d(x4, w4, stride, pad === 0 ? 'valid' : pad);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[] => {
      const [xs, ws] = saved as [tf.Tensor4D, tf.Tensor4D];
      const [kh, kw, ci, co] = ws.shape;
      const xp =
        pad > 0
          ? tf.pad(xs, [
              [0, 0],
              [pad, pad],
              [pad, pad],
              [0, 0],
            ])
          : xs;
      // dW[kh, kw, ci, co] = Σ_{b,oh,ow} xp[b, s·oh + kh, s·ow + kw, ci] · dy[b, oh, ow, co]: a stride-1 convolution of
      // xp (ci as batch, b as channels) with dy as the filter, dilated by the stride; keep the first kh × kw outputs.
      const r = tf.conv2d(xp.transpose([3, 1, 2, 0]) as tf.Tensor4D, dy.transpose([1, 2, 0, 3]) as tf.Tensor4D, 1, 'valid', 'NHWC', stride);
      const dw = r.slice([0, 0, 0, 0], [ci, kh, kw, co]).transpose([1, 2, 0, 3]);
      const dx = inputGrad ? tf.conv2dTranspose(dy as tf.Tensor4D, ws, xs.shape, stride, pad === 0 ? 'valid' : pad) : tf.zerosLike(xs);
      return [dx, dw];
    };
    return { value, gradFunc };
  };
  const f = tf.customGrad(body as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(x, w) as tf.Tensor4D;
}

/** Every parameter of `SyncNetModel.S` at `config` present in `map` with its exact shape (num_batches_tracked aside). */
export function checkSyncNetWeights(map: NamedTensors, config: SyncNetConfig): void {
  for (const [name, shape] of syncnetParamShapes(config)) {
    if (name.endsWith('num_batches_tracked')) continue;
    const t = map.get(name);
    if (!t) {
      throw new DifftalkError('weights-mismatch', `SyncNet weights lack '${name}' (expected shape [${shape.join(', ')}])`, {
        suggestion: 'pass a syncnet_v2 state_dict (joonson/syncnet_python data/syncnet_v2.model) or a checkpoint from `difftalk train syncnet`',
      });
    }
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new DifftalkError(
        'weights-mismatch',
        `SyncNet weight '${name}' has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}] (width ${config.width}, embed ${config.embedDim})`,
      );
    }
  }
}

/**
 * What LSE scoring needs from a SyncNet: embeddings of packed windows (`lipWindowsHost` / `audioWindowsHost` layout),
 * on whichever executor runs it. `batch` is the number of windows per call the scorer should use.
 */
export interface SyncEmbedder {
  readonly config: SyncNetConfig;
  /** What runs it, for reports (`tfjs-<backend>` or `onnxruntime-cpu (<n> threads)`). */
  readonly executor: string;
  readonly batch: number;
  /** lip (B, 224, 224, 15) and aud (B, 13, 20, 1), NHWC host arrays → B × embedDim embeddings each. */
  embed(lip: HostTensor, aud: HostTensor): Promise<{ lip: Float32Array; aud: Float32Array }>;
  dispose(): void;
}

export class SyncNet implements SyncEmbedder {
  readonly config: SyncNetConfig;
  /** Windows per embed() call when LSE scores with this (training) network. */
  readonly batch = 8;
  /** TF-layout tensors by PyTorch name (Variables when built for training). */
  private readonly params = new Map<string, tf.Tensor>();
  private readonly shapes: Array<[string, number[]]>;

  private constructor(config: SyncNetConfig) {
    this.config = config;
    this.shapes = syncnetParamShapes(config);
  }

  /**
   * Build from a PyTorch state_dict-like map (e.g. syncnet_v2.model read by the torch reader, or det() weights).
   * Every key must be present with its exact shape; `module.` prefixes are not accepted silently.
   */
  static fromTensors(map: NamedTensors, config: SyncNetConfig = SYNCNET_V2_CONFIG, opts: { trainable?: boolean } = {}): SyncNet {
    checkSyncNetWeights(map, config);
    const net = new SyncNet(config);
    for (const [name, shape] of net.shapes) {
      if (name.endsWith('num_batches_tracked')) continue;
      const t = map.get(name)!;
      const tt = toTf(name, shape, t.data);
      const trainable = opts.trainable === true && !name.includes('running_');
      if (opts.trainable) {
        net.params.set(name, tf.variable(tt, trainable));
        tt.dispose();
      } else net.params.set(name, tt);
    }
    return net;
  }

  /** A freshly initialised network for training: He-uniform conv/linear weights, zero biases, BN at identity. */
  static init(config: SyncNetConfig, seed: number): SyncNet {
    const rand = mulberry32(seed);
    const map = new Map<string, NamedTensor>();
    for (const [name, shape] of syncnetParamShapes(config)) {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      if (name.endsWith('running_var') || (shape.length === 1 && name.endsWith('.weight'))) data.fill(1);
      else if (shape.length >= 2) {
        const fanIn = n / shape[0]!;
        const bound = Math.sqrt(6 / fanIn);
        for (let i = 0; i < n; i++) data[i] = (rand() * 2 - 1) * bound;
      }
      map.set(name, { shape, data });
    }
    return SyncNet.fromTensors(map, config, { trainable: true });
  }

  /** The trainable variables (conv/linear weights and biases, BN affine). */
  trainableVariables(): tf.Variable[] {
    return [...this.params.values()].filter((t): t is tf.Variable => t instanceof tf.Variable && t.trainable);
  }

  /** The state_dict in PyTorch layout and names (num_batches_tracked omitted). */
  async stateDict(): Promise<Map<string, NamedTensor>> {
    const out = new Map<string, NamedTensor>();
    for (const [name, shape] of this.shapes) {
      const t = this.params.get(name);
      if (!t) continue;
      out.set(name, { shape, data: await toTorch(name, shape, t) });
    }
    return out;
  }

  private p(name: string): tf.Tensor {
    const t = this.params.get(name);
    if (!t) throw new DifftalkError('internal', `SyncNet parameter ${name} missing`);
    return t;
  }

  private run(layers: Layer[], x: tf.Tensor, training: boolean): tf.Tensor {
    let h = x;
    for (const l of layers) {
      switch (l.kind) {
        case 'conv': {
          const w = this.p(`${l.name}.weight`) as tf.Tensor4D;
          const y = training
            ? trainableConv2d(h as tf.Tensor4D, w, l.stride, l.pad, h !== x)
            : tf.conv2d(h as tf.Tensor4D, w, l.stride, l.pad === 0 ? 'valid' : l.pad);
          h = tf.add(y, this.p(`${l.name}.bias`));
          break;
        }
        case 'fc':
          h = tf.add(tf.matMul(h as tf.Tensor2D, this.p(`${l.name}.weight`) as tf.Tensor2D), this.p(`${l.name}.bias`));
          break;
        case 'bn': {
          const gamma = this.p(`${l.name}.weight`);
          const beta = this.p(`${l.name}.bias`);
          const rm = this.p(`${l.name}.running_mean`);
          const rv = this.p(`${l.name}.running_var`);
          if (training) {
            const axes = h.rank === 4 ? [0, 1, 2] : [0];
            const { mean, variance } = tf.moments(h, axes);
            const n = h.size / l.ch;
            if (rm instanceof tf.Variable && rv instanceof tf.Variable) {
              // Running statistics (unbiased variance, as PyTorch); they do not feed the loss, so no gradient flows.
              const unbiased = variance.mul(n / Math.max(1, n - 1));
              rm.assign(rm.mul(1 - BN_MOMENTUM).add(mean.mul(BN_MOMENTUM)));
              rv.assign(rv.mul(1 - BN_MOMENTUM).add(unbiased.mul(BN_MOMENTUM)));
            }
            h = tf.batchNorm(h, mean, variance, beta, gamma, BN_EPS);
          } else {
            h = tf.batchNorm(h, rm, rv, beta, gamma, BN_EPS);
          }
          break;
        }
        case 'relu':
          h = tf.relu(h);
          break;
        case 'pool': {
          // PyTorch pads max-pool windows with −inf; inputs here are post-ReLU (≥ 0), so zero padding is equivalent.
          const xin =
            l.pad > 0
              ? tf.pad(h, [
                  [0, 0],
                  [l.pad, l.pad],
                  [l.pad, l.pad],
                  [0, 0],
                ])
              : h;
          h = tf.maxPool(xin as tf.Tensor4D, l.k, l.stride, 'valid');
          break;
        }
      }
    }
    return h;
  }

  /** Video embeddings: x is (B, 224, 224, 15), BGR 0–255, channel t·3+c. Returns (B, embedDim). */
  forwardLip(x: tf.Tensor4D, training = false): tf.Tensor2D {
    return tf.tidy(() => {
      const mid = this.run(lipLayers(this.config.width), x, training);
      const flat = mid.reshape([mid.shape[0]!, -1]);
      return this.run(fcLayers('netfclip', this.config), flat, training) as tf.Tensor2D;
    });
  }

  /** Audio embeddings: x is (B, 13, 20, 1) MFCC windows (coefficient rows, time columns). Returns (B, embedDim). */
  forwardAud(x: tf.Tensor4D, training = false): tf.Tensor2D {
    return tf.tidy(() => {
      const mid = this.run(audioLayers(this.config.width), x, training);
      const flat = mid.reshape([mid.shape[0]!, -1]);
      return this.run(fcLayers('netfcaud', this.config), flat, training) as tf.Tensor2D;
    });
  }

  get executor(): string {
    return `tfjs-${tf.getBackend()}`;
  }

  /** SyncEmbedder on this network's tf tensors (eval-mode BatchNorm): what a training run scores its validation with. */
  async embed(lip: HostTensor, aud: HostTensor): Promise<{ lip: Float32Array; aud: Float32Array }> {
    const xv = tf.tensor4d(lip.data, lip.shape as [number, number, number, number]);
    const xa = tf.tensor4d(aud.data, aud.shape as [number, number, number, number]);
    const ev = this.forwardLip(xv);
    const ea = this.forwardAud(xa);
    try {
      return { lip: (await ev.data()) as Float32Array, aud: (await ea.data()) as Float32Array };
    } finally {
      tf.dispose([xv, xa, ev, ea]);
    }
  }

  dispose(): void {
    for (const t of this.params.values()) t.dispose();
    this.params.clear();
  }
}

/**
 * The two branches of SyncNet as network descriptions (./netgraph.ts), built from the same Layer lists as the `SyncNet`
 * class: `video` takes `lip` (B, 224, 224, 15) — the 5-frame Conv3d as a 2-D conv over channel t·3+c — and `audio`
 * takes `aud` (B, 13, 20, 1); each returns its embedding (B, embedDim), the last fc layer's output. BatchNorm in eval mode is folded into the conv or
 * linear before it (W·γ/√(σ²+ε), (b − μ)·γ/√(σ²+ε) + β, in float64 then rounded to float32) and the ReLU after it
 * fused; max pools pad with −∞ (PyTorch's MaxPool2d); the conv stack's [N, C, 1, 1] output is flattened as PyTorch's
 * `view(N, -1)`.
 */
export function syncnetGraphs(weights: NamedTensors, config: SyncNetConfig = SYNCNET_V2_CONFIG): { video: NetGraph; audio: NetGraph } {
  checkSyncNetWeights(weights, config);
  const branch = (name: string, input: string, channels: number, conv: Layer[], fc: Layer[]): NetGraph => {
    const params = new Map<string, NetParam>();
    const ops: NetOp[] = [];
    let x = input;
    /** The conv/linear whose output is `x` while BatchNorm and ReLU may still fold into it. */
    let open: Extract<NetOp, { op: 'conv' | 'linear' }> | undefined;
    const push = (op: NetOp) => {
      ops.push(op);
      x = op.y;
      open = op.op === 'conv' || op.op === 'linear' ? op : undefined;
    };
    const layer = (l: Layer) => {
      switch (l.kind) {
        case 'conv': {
          const w = weights.get(`${l.name}.weight`)!;
          let data = w.data;
          let shape = [...w.shape];
          if (shape.length === 5) {
            // Conv3d (O, C, T, kh, kw) → conv2d (O, T·C, kh, kw), input channel t·C + c (the lip input packing).
            const [o, c, t, kh, kw] = shape as [number, number, number, number, number];
            data = new Float32Array(data.length);
            const k2 = kh * kw;
            for (let oi = 0; oi < o; oi++)
              for (let ci = 0; ci < c; ci++)
                for (let ti = 0; ti < t; ti++)
                  data.set(w.data.subarray(((oi * c + ci) * t + ti) * k2, ((oi * c + ci) * t + ti + 1) * k2), ((oi * t + ti) * c + ci) * k2);
            shape = [o, t * c, kh, kw];
          }
          params.set(`${l.name}.weight`, { shape, data });
          params.set(`${l.name}.bias`, weights.get(`${l.name}.bias`)!);
          push({ op: 'conv', x, y: l.name, weight: `${l.name}.weight`, bias: `${l.name}.bias`, stride: l.stride, pad: pad2(l.pad) });
          break;
        }
        case 'fc':
          params.set(`${l.name}.weight`, weights.get(`${l.name}.weight`)!);
          params.set(`${l.name}.bias`, weights.get(`${l.name}.bias`)!);
          push({ op: 'linear', x, y: l.name, weight: `${l.name}.weight`, bias: `${l.name}.bias` });
          break;
        case 'bn': {
          if (!open || open.relu || !open.bias) throw new DifftalkError('internal', `${name}: BatchNorm ${l.name} does not follow a conv or linear layer`);
          const [w, b] = [params.get(open.weight)!, params.get(open.bias)!];
          const [gamma, beta, mean, variance] = ['weight', 'bias', 'running_mean', 'running_var'].map((p) => weights.get(`${l.name}.${p}`)!.data);
          const per = w.data.length / l.ch;
          const fw = new Float32Array(w.data.length);
          const fb = new Float32Array(l.ch);
          for (let o = 0; o < l.ch; o++) {
            const scale = gamma![o]! / Math.sqrt(variance![o]! + BN_EPS);
            for (let k = 0; k < per; k++) fw[o * per + k] = w.data[o * per + k]! * scale;
            fb[o] = (b.data[o]! - mean![o]!) * scale + beta![o]!;
          }
          params.set(open.weight, { shape: w.shape, data: fw });
          params.set(open.bias, { shape: b.shape, data: fb });
          break;
        }
        case 'relu':
          if (open && !open.relu) open.relu = true;
          else push({ op: 'relu', x, y: `${x}.relu` });
          break;
        case 'pool':
          push({ op: 'maxpool', x, y: `${x}.pool`, k: l.k, stride: l.stride, pad: pad2(l.pad) });
          break;
      }
    };
    conv.forEach(layer);
    push({ op: 'flatten', x, y: 'flat' });
    fc.forEach(layer);
    return { name, inputs: [{ name: input, channels }], outputs: [x], ops, params };
  };
  return {
    video: branch('syncnet-lip', 'lip', SYNCNET_FRAMES * 3, lipLayers(config.width), fcLayers('netfclip', config)),
    audio: branch('syncnet-aud', 'aud', 1, audioLayers(config.width), fcLayers('netfcaud', config)),
  };
}

/**
 * SyncNet for scoring: both branches' network descriptions (`syncnetGraphs`) on one executor — 'tfjs' (the active
 * backend), 'onnx' (onnxruntime-node, all CPU cores) or 'auto' (onnx when it loads, else tfjs; both branches on the
 * same one). Batches of 32 windows on onnxruntime (it gains from larger batches), 8 on tfjs.
 */
export class SyncNetRunner implements SyncEmbedder {
  private constructor(
    readonly config: SyncNetConfig,
    private readonly lip: NetRunner,
    private readonly aud: NetRunner,
  ) {}

  static async create(weights: NamedTensors, config: SyncNetConfig = SYNCNET_V2_CONFIG, executor: NetExecutor = 'tfjs'): Promise<SyncNetRunner> {
    const g = syncnetGraphs(weights, config);
    const lip = await createNetRunner(g.video, executor);
    try {
      const aud = await createNetRunner(g.audio, executor === 'auto' ? (lip instanceof TfNet ? 'tfjs' : 'onnx') : executor);
      return new SyncNetRunner(config, lip, aud);
    } catch (e) {
      lip.dispose();
      throw e;
    }
  }

  get executor(): string {
    return this.lip.executor;
  }

  get batch(): number {
    return this.lip instanceof TfNet ? 8 : 32;
  }

  async embed(lip: HostTensor, aud: HostTensor): Promise<{ lip: Float32Array; aud: Float32Array }> {
    const [ev] = await this.lip.run({ lip });
    const [ea] = await this.aud.run({ aud });
    return { lip: ev!.data, aud: ea!.data };
  }

  dispose(): void {
    this.lip.dispose();
    this.aud.dispose();
  }
}

/**
 * Pack video windows: frames are RGB uint8 224×224 (interleaved); window i covers frames starts[i] … starts[i]+4.
 * Output (B, 224, 224, 15) float32, channel t·3+c with c in BGR order (SyncNet was trained on cv2 BGR frames).
 */
export function packLipWindows(frames: readonly Uint8Array[], starts: readonly number[], size = SYNCNET_SIZE): tf.Tensor4D {
  const h = lipWindowsHost(frames, starts, size);
  return tf.tensor4d(h.data, h.shape as [number, number, number, number]);
}

/** packLipWindows as a host array (for any executor). */
export function lipWindowsHost(frames: readonly Uint8Array[], starts: readonly number[], size = SYNCNET_SIZE): HostTensor {
  const px = size * size;
  const C = SYNCNET_FRAMES * 3;
  const out = new Float32Array(starts.length * px * C);
  starts.forEach((s, b) => {
    const base = b * px * C;
    for (let t = 0; t < SYNCNET_FRAMES; t++) {
      const f = frames[s + t];
      if (!f || f.length !== px * 3) throw new DifftalkError('bad-input', `SyncNet window ${s}: frame ${s + t} missing or not ${size}×${size} RGB`);
      for (let p = 0; p < px; p++) {
        const o = base + p * C + t * 3;
        out[o] = f[p * 3 + 2]!; // B
        out[o + 1] = f[p * 3 + 1]!; // G
        out[o + 2] = f[p * 3]!; // R
      }
    }
  });
  return { data: out, shape: [starts.length, size, size, C] };
}

/**
 * Pack MFCC windows: mfcc is frames × 13 row-major (100 Hz); window i = MFCC frames 4·starts[i] … +19.
 * Output (B, 13, 20, 1): row = coefficient, column = time (SyncNetInstance's `cct[:, :, :, 4i:4i+20]`).
 */
export function packAudioWindows(mfcc: ArrayLike<number>, mfccFrames: number, starts: readonly number[], dim = SYNCNET_MFCC_DIM): tf.Tensor4D {
  const h = audioWindowsHost(mfcc, mfccFrames, starts, dim);
  return tf.tensor4d(h.data, h.shape as [number, number, number, number]);
}

/** packAudioWindows as a host array (for any executor). */
export function audioWindowsHost(mfcc: ArrayLike<number>, mfccFrames: number, starts: readonly number[], dim = SYNCNET_MFCC_DIM): HostTensor {
  const W = SYNCNET_MFCC_WINDOW;
  const out = new Float32Array(starts.length * dim * W);
  starts.forEach((s, b) => {
    const f0 = 4 * s;
    if (f0 + W > mfccFrames) throw new DifftalkError('bad-input', `SyncNet audio window ${s} needs MFCC frames ${f0}..${f0 + W - 1}, have ${mfccFrames}`);
    for (let c = 0; c < dim; c++) for (let t = 0; t < W; t++) out[b * dim * W + c * W + t] = mfcc[(f0 + t) * dim + c]!;
  });
  return { data: out, shape: [starts.length, dim, W, 1] };
}
