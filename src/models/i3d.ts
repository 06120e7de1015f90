/**
 * The I3D of FVD (Inception-v1 inflated to 3D, trained on Kinetics-400: the TF-Hub module deepmind/i3d-kinetics-400
 * that google-research's frechet_video_distance.py embeds videos with, and the TorchScript port `i3d_torchscript.pt`
 * that StyleGAN-V's src/metrics/frechet_video_distance.py and LatentSync's eval/fvd.py load) on TensorFlow.js, NHWC.
 *
 * - Unit3D = Conv3d (no bias) with TensorFlow "SAME" padding (per axis total max((⌈n/s⌉ − 1)·s + k − n, 0), the
 *   smaller half first) → BatchNorm (eps 1e-3, eval statistics, folded into the conv at load time in float64) → ReLU.
 * - Conv3d_1a_7x7 (3→64, k 7, s 2) · MaxPool 1×3×3 s 1×2×2 · Conv3d_2b_1x1 (64) · Conv3d_2c_3x3 (192) · MaxPool
 *   1×3×3 s 1×2×2 · Mixed_3b, 3c · MaxPool 3×3×3 s 2 · Mixed_4b..4f · MaxPool 2×2×2 s 2 · Mixed_5b, 5c · AvgPool
 *   2×7×7 s 1 VALID · logits (1×1×1 conv → 400, bias, no BN/ReLU) · mean over the remaining time steps: the
 *   400-d pre-softmax logits the TF graph calls `RGB/inception_i3d/Mean` and the TorchScript returns with
 *   `return_features=True` (that is the FVD feature).
 * - Mixed block: b0 1×1×1 · b1a 1×1×1 → b1b 3×3×3 · b2a 1×1×1 → b2b 3×3×3 · MaxPool 3×3×3 s 1 SAME → b3b 1×1×1,
 *   concatenated in that order. SAME max pools ignore the padding (TF semantics, tfjs's own).
 * - Input: RGB frames resized to 224×224 (bilinear, half-pixel centres, no antialias: F.interpolate
 *   align_corners=False / tf.image.resize_bilinear with half-pixel centres) and scaled to [-1, 1] as x/127.5 − 1
 *   (TF-Hub's range; the TorchScript's `rescale=False, resize=False` call expects the caller to have done both).
 *
 * Each 3-D convolution runs as a sum over its temporal taps of 2-D convolutions (tfjs conv2d with TF 'same' spatial
 * padding) on the time-padded frame stack: the same arithmetic as Conv3d, through the backends' fast conv2d kernels
 * (measured on tfjs-wasm: its own conv3d took 34–60 s for the 16.6 GFLOP Conv3d_2c_3x3 layer, the tap sum 0.6 s;
 * one conv2d over the taps stacked on the channel axis was 1.5–1.8× slower than the tap sum for the whole network).
 *
 * Weights: the `i3d` kind, imported from i3d_torchscript.pt (a TorchScript archive: readTorchFile walks its module
 * tree; `i3dTensorsFrom` maps the names). Parameter names are those of the common PyTorch I3D layout
 * (`Conv3d_1a_7x7.conv3d.weight`, `Mixed_3b.b1b.bn.running_mean`, `logits.conv3d.bias`); the TF-Hub variable names
 * (`Mixed_3b/Branch_1/Conv3d_0b_3x3/conv_3d/w`, `batch_norm/moving_mean`, `Logits/Conv3d_0c_1x1`) are accepted too. The
 * real file's names could not be inspected here (no network): see docs/commands/eval.md.
 */
import path from 'node:path';
import { DifftalkError } from '../util/errors.js';
import type { OnEvent } from '../util/events.js';
import { tf } from '../util/tf.js';
import { readSafetensors } from '../weights/safetensors.js';
import { readTorchFile, type TensorData } from '../weights/torch.js';
import { loadWeights, registerWeightConverter, requireWeights } from './weights-store.js';

/** Frames per FVD clip (StyleGAN-V's and LatentSync's clip length). */
export const I3D_CLIP_FRAMES = 16;
/** Frame side the network takes. */
export const I3D_SIZE = 224;
/** Feature size (the Kinetics-400 logits). */
export const I3D_FEATURE_DIM = 400;
/** BatchNorm eps of the TF I3D (Sonnet BatchNorm default). */
export const I3D_BN_EPS = 1e-3;

export interface I3dUnit {
  /** Canonical prefix, e.g. `Mixed_4c.b1b`. */
  name: string;
  cin: number;
  cout: number;
  k: number;
  stride: number;
  /** false only for the logits (bias, no BN, no ReLU). */
  bn: boolean;
}

/** Mixed blocks: name, input channels, [b0, b1a, b1b, b2a, b2b, b3b] output channels. */
export const I3D_MIXED: readonly (readonly [string, number, readonly number[]])[] = [
  ['Mixed_3b', 192, [64, 96, 128, 16, 32, 32]],
  ['Mixed_3c', 256, [128, 128, 192, 32, 96, 64]],
  ['Mixed_4b', 480, [192, 96, 208, 16, 48, 64]],
  ['Mixed_4c', 512, [160, 112, 224, 24, 64, 64]],
  ['Mixed_4d', 512, [128, 128, 256, 24, 64, 64]],
  ['Mixed_4e', 512, [112, 144, 288, 32, 64, 64]],
  ['Mixed_4f', 528, [256, 160, 320, 32, 128, 128]],
  ['Mixed_5b', 832, [256, 160, 320, 32, 128, 128]],
  ['Mixed_5c', 832, [384, 192, 384, 48, 128, 128]],
];

function unit(name: string, cin: number, cout: number, k: number, stride = 1, bn = true): I3dUnit {
  return { name, cin, cout, k, stride, bn };
}

function mixedUnits(name: string, cin: number, c: readonly number[]): I3dUnit[] {
  return [
    unit(`${name}.b0`, cin, c[0]!, 1),
    unit(`${name}.b1a`, cin, c[1]!, 1),
    unit(`${name}.b1b`, c[1]!, c[2]!, 3),
    unit(`${name}.b2a`, cin, c[3]!, 1),
    unit(`${name}.b2b`, c[3]!, c[4]!, 3),
    unit(`${name}.b3b`, cin, c[5]!, 1),
  ];
}

/** Every unit of the network, in order. */
export function i3dUnits(): I3dUnit[] {
  return [
    unit('Conv3d_1a_7x7', 3, 64, 7, 2),
    unit('Conv3d_2b_1x1', 64, 64, 1),
    unit('Conv3d_2c_3x3', 64, 192, 3),
    ...I3D_MIXED.flatMap(([n, cin, c]) => mixedUnits(n, cin, c)),
    unit('logits', 1024, I3D_FEATURE_DIM, 1, 1, false),
  ];
}

const BN_STATS = ['weight', 'bias', 'running_mean', 'running_var'] as const;

/** The tensors the network needs, [canonical name, PyTorch shape], in order. */
export function i3dParams(): [string, number[]][] {
  const out: [string, number[]][] = [];
  for (const u of i3dUnits()) {
    out.push([`${u.name}.conv3d.weight`, [u.cout, u.cin, u.k, u.k, u.k]]);
    if (u.bn) for (const s of BN_STATS) out.push([`${u.name}.bn.${s}`, [u.cout]]);
    else out.push([`${u.name}.conv3d.bias`, [u.cout]]);
  }
  return out;
}

/** Other spellings of a canonical unit prefix (TF-Hub variable scopes). */
function unitAliases(name: string): string[] {
  if (name === 'logits') return ['logits', 'Logits.Conv3d_0c_1x1'];
  const m = /^(Mixed_\w+)\.(b0|b1a|b1b|b2a|b2b|b3b)$/.exec(name);
  if (!m) return [name];
  const tf: Record<string, string[]> = {
    b0: ['Branch_0.Conv3d_0a_1x1'],
    b1a: ['Branch_1.Conv3d_0a_1x1'],
    b1b: ['Branch_1.Conv3d_0b_3x3'],
    b2a: ['Branch_2.Conv3d_0a_1x1'],
    // the DeepMind code names Mixed_5b's one Conv3d_0a_3x3
    b2b: ['Branch_2.Conv3d_0b_3x3', 'Branch_2.Conv3d_0a_3x3'],
    b3b: ['Branch_3.Conv3d_0b_1x1'],
  };
  return [name, ...tf[m[2]!]!.map((s) => `${m[1]}.${s}`)];
}

/** Other spellings of a parameter suffix. */
const PARAM_ALIASES: Record<string, string[]> = {
  'conv3d.weight': ['conv3d.weight', 'conv3d.w', 'conv_3d.w', 'conv.weight'],
  'conv3d.bias': ['conv3d.bias', 'conv3d.b', 'conv_3d.b', 'conv.bias'],
  'bn.weight': ['bn.weight', 'bn.gamma', 'batch_norm.gamma'],
  'bn.bias': ['bn.bias', 'bn.beta', 'batch_norm.beta'],
  'bn.running_mean': ['bn.running_mean', 'bn.moving_mean', 'batch_norm.moving_mean'],
  'bn.running_var': ['bn.running_var', 'bn.moving_variance', 'batch_norm.moving_variance'],
};

function splitCanonical(name: string): [string, string] {
  const m = /^(.*)\.(conv3d\.weight|conv3d\.bias|bn\.\w+)$/.exec(name)!;
  return [m[1]!, m[2]!];
}

/**
 * The network's tensors out of a flat name → tensor map of any I3D file (TorchScript module tree or state_dict):
 * canonical names, float32, PyTorch layout. Names match when they equal a known spelling or end with `.` + it (any
 * outer prefix such as `module.` or `RGB.inception_i3d.`; `/` counts as `.`). A BatchNorm without a scale (TF-Hub's
 * has none) gets γ = 1. Missing, ambiguous or wrongly shaped tensors: one DifftalkError('bad-weights') listing them.
 */
export function i3dTensorsFrom(source: ReadonlyMap<string, TensorData>, file: string): Map<string, TensorData> {
  const names = [...source.keys()].map((k) => [k.replaceAll('/', '.').replace(/:0$/, ''), k] as const);
  const out = new Map<string, TensorData>();
  const missing: string[] = [];
  const wrong: string[] = [];
  const ambiguous: string[] = [];
  for (const [name, shape] of i3dParams()) {
    const [prefix, param] = splitCanonical(name);
    const spellings = unitAliases(prefix).flatMap((u) => PARAM_ALIASES[param]!.map((p) => `${u}.${p}`));
    const hits = names.filter(([n]) => spellings.some((s) => n === s || n.endsWith(`.${s}`)));
    if (hits.length > 1) {
      ambiguous.push(`${name} (${hits.map(([, k]) => k).join(', ')})`);
      continue;
    }
    const t = hits.length ? source.get(hits[0]![1]) : undefined;
    if (!t) {
      if (param === 'bn.weight') out.set(name, { dtype: 'float32', shape: [...shape], data: new Float32Array(shape[0]!).fill(1) });
      else missing.push(name);
      continue;
    }
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      wrong.push(`${hits[0]![1]} is [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
      continue;
    }
    if (!(t.data instanceof Float32Array)) {
      wrong.push(`${hits[0]![1]} is ${t.dtype}, expected float32`);
      continue;
    }
    out.set(name, { dtype: 'float32', shape: [...shape], data: t.data });
  }
  const problems = [
    ...(wrong.length ? [`${wrong.length} tensor(s) have the wrong shape or type: ${wrong.slice(0, 4).join('; ')}${wrong.length > 4 ? '; …' : ''}`] : []),
    ...(missing.length ? [`${missing.length} tensor(s) are missing: ${missing.slice(0, 4).join(', ')}${missing.length > 4 ? ', …' : ''}`] : []),
    ...(ambiguous.length ? [`${ambiguous.length} name(s) match several tensors: ${ambiguous.slice(0, 2).join('; ')}`] : []),
  ];
  if (problems.length) {
    throw new DifftalkError('bad-weights', `${file} is not the Kinetics-400 I3D of FVD (i3d_torchscript.pt): ${problems.join('. ')}`, {
      suggestion: 'Pass the unmodified i3d_torchscript.pt that StyleGAN-V downloads (https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt).',
    });
  }
  return out;
}

/** TF "SAME" padding along one axis: [before, after]. */
export function samePadding(size: number, k: number, stride: number): [number, number] {
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + k - size, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

interface FoldedUnit {
  spec: I3dUnit;
  /** One conv2d filter [k, k, cin, cout] per temporal tap. */
  taps: tf.Tensor4D[];
  bias: tf.Tensor1D;
}

/** A clip batch as a frame stack: x is [n·t, h, w, c]. */
interface Clips {
  x: tf.Tensor4D;
  n: number;
  t: number;
}

/** Fold BN into the conv (float64): per temporal tap dt a tf filter [kh, kw, cin, cout]; PyTorch weight [o, i, t, y, x]. */
export function foldUnit(spec: I3dUnit, weights: ReadonlyMap<string, { data: Float32Array }>): { taps: Float32Array[]; bias: Float32Array } {
  const { name, cin, cout, k, bn } = spec;
  const w = weights.get(`${name}.conv3d.weight`)!.data;
  const scale = new Float64Array(cout).fill(1);
  const bias = new Float32Array(cout);
  if (bn) {
    const gamma = weights.get(`${name}.bn.weight`)!.data;
    const beta = weights.get(`${name}.bn.bias`)!.data;
    const mean = weights.get(`${name}.bn.running_mean`)!.data;
    const variance = weights.get(`${name}.bn.running_var`)!.data;
    for (let o = 0; o < cout; o++) {
      scale[o] = gamma[o]! / Math.sqrt(variance[o]! + I3D_BN_EPS);
      bias[o] = beta[o]! - mean[o]! * scale[o]!;
    }
  } else bias.set(weights.get(`${name}.conv3d.bias`)!.data);
  const taps: Float32Array[] = [];
  for (let dt = 0; dt < k; dt++) {
    const f = new Float32Array(k * k * cin * cout);
    for (let o = 0; o < cout; o++)
      for (let i = 0; i < cin; i++)
        for (let y = 0; y < k; y++)
          for (let x = 0; x < k; x++) f[((y * k + x) * cin + i) * cout + o] = w[(((o * cin + i) * k + dt) * k + y) * k + x]! * scale[o]!;
    taps.push(f);
  }
  return { taps, bias };
}

/** The I3D holding its folded weights as tf tensors; call `dispose()` when done. */
export class I3d {
  private readonly units = new Map<string, FoldedUnit>();

  private constructor(weights: ReadonlyMap<string, { data: Float32Array }>) {
    for (const spec of i3dUnits()) {
      const { taps, bias } = foldUnit(spec, weights);
      this.units.set(spec.name, { spec, taps: taps.map((t) => tf.tensor4d(t, [spec.k, spec.k, spec.cin, spec.cout])), bias: tf.tensor1d(bias) });
    }
  }

  /** Build from canonical names (as `i3dTensorsFrom` returns or the `i3d` cache kind holds); throws DifftalkError('bad-weights'). */
  static fromTensors(weights: ReadonlyMap<string, TensorData>, source = 'I3D weights'): I3d {
    return new I3d(i3dTensorsFrom(weights, source) as ReadonlyMap<string, { data: Float32Array }>);
  }

  /** Conv3d (TF SAME) + folded BN (+ ReLU) as a sum of conv2d over temporal taps. */
  private unit(name: string, c: Clips): Clips {
    const u = this.units.get(name);
    if (!u) throw new DifftalkError('internal', `I3D: no unit ${name}`);
    const { k, stride } = u.spec;
    const activation = u.spec.bn ? 'relu' : 'linear';
    if (k === 1) return { x: tf.fused.conv2d({ x: c.x, filter: u.taps[0]!, strides: 1, pad: 'same', bias: u.bias, activation }), n: c.n, t: c.t };
    const [h, w, ch] = [c.x.shape[1], c.x.shape[2], c.x.shape[3]];
    const [before, after] = samePadding(c.t, k, stride);
    const tOut = Math.ceil(c.t / stride);
    const x5 = tf.pad(c.x.reshape([c.n, c.t, h, w, ch]), [
      [0, 0],
      [before, after],
      [0, 0],
      [0, 0],
      [0, 0],
    ]);
    let sum: tf.Tensor4D | undefined;
    for (let dt = 0; dt < k; dt++) {
      const picked =
        stride === 1
          ? tf.slice(x5, [0, dt, 0, 0, 0], [c.n, tOut, h, w, ch])
          : tf.gather(
              x5,
              tf.tensor1d(
                Array.from({ length: tOut }, (_, j) => j * stride + dt),
                'int32',
              ),
              1,
            );
      const frames = picked.reshape([c.n * tOut, h, w, ch]) as tf.Tensor4D;
      const y = tf.conv2d(frames, u.taps[dt]!, stride, 'same');
      sum = sum ? (tf.add(sum, y) as tf.Tensor4D) : y;
    }
    const out = tf.add(sum!, u.bias) as tf.Tensor4D;
    return { x: activation === 'relu' ? tf.relu(out) : out, n: c.n, t: tOut };
  }

  /** Max pool with TF SAME padding, kernel [kt, k, k], stride [st, s, s]. */
  private static maxPool(c: Clips, kt: number, k: number, st: number, s: number): Clips {
    const [h, w, ch] = [c.x.shape[1], c.x.shape[2], c.x.shape[3]];
    if (kt === 1 && st === 1) return { x: tf.maxPool(c.x, k, s, 'same'), n: c.n, t: c.t };
    const y = tf.maxPool3d(c.x.reshape([c.n, c.t, h, w, ch]) as tf.Tensor5D, [kt, k, k], [st, s, s], 'same');
    return { x: y.reshape([c.n * y.shape[1], y.shape[2], y.shape[3], ch]) as tf.Tensor4D, n: c.n, t: y.shape[1] };
  }

  private mixed(name: string, c: Clips): Clips {
    const u = (s: string, x: Clips) => this.unit(`${name}.${s}`, x);
    const b0 = u('b0', c);
    const b1 = u('b1b', u('b1a', c));
    const b2 = u('b2b', u('b2a', c));
    const b3 = u('b3b', I3d.maxPool(c, 3, 3, 1, 1));
    return { x: tf.concat([b0.x, b1.x, b2.x, b3.x], 3), n: c.n, t: c.t };
  }

  /**
   * FVD features [N, 400] of N clips given as frames [N·T, H, W, 3] (clip after clip, RGB in [0, 255], any size; T
   * ≥ 9 frames so that the 2×7×7 average pool has a window — FVD uses 16): resize to 224², x/127.5 − 1, the network,
   * the mean of the logits over time. Caller disposes the result.
   */
  features(frames255: tf.Tensor4D, clips: number): tf.Tensor2D {
    const [count, , , channels] = frames255.shape;
    if (channels !== 3) throw new DifftalkError('bad-input', `I3D: expected 3 channels, got ${channels}`);
    if (clips < 1 || count % clips !== 0) throw new DifftalkError('bad-input', `I3D: ${count} frames do not split into ${clips} clips`);
    const t = count / clips;
    if (t < 9) throw new DifftalkError('bad-input', `I3D: clips of ${t} frames are too short (at least 9; FVD uses ${I3D_CLIP_FRAMES})`);
    return tf.tidy(() => {
      const resized =
        frames255.shape[1] === I3D_SIZE && frames255.shape[2] === I3D_SIZE ? frames255 : tf.image.resizeBilinear(frames255, [I3D_SIZE, I3D_SIZE], false, true);
      let c: Clips = { x: tf.sub(tf.div(resized, 127.5), 1) as tf.Tensor4D, n: clips, t };
      c = this.unit('Conv3d_1a_7x7', c);
      c = I3d.maxPool(c, 1, 3, 1, 2);
      c = this.unit('Conv3d_2c_3x3', this.unit('Conv3d_2b_1x1', c));
      c = I3d.maxPool(c, 1, 3, 1, 2);
      for (const m of ['Mixed_3b', 'Mixed_3c']) c = this.mixed(m, c);
      c = I3d.maxPool(c, 3, 3, 2, 2);
      for (const m of ['Mixed_4b', 'Mixed_4c', 'Mixed_4d', 'Mixed_4e', 'Mixed_4f']) c = this.mixed(m, c);
      c = I3d.maxPool(c, 2, 2, 2, 2);
      for (const m of ['Mixed_5b', 'Mixed_5c']) c = this.mixed(m, c);
      // AvgPool 2×7×7 stride 1 VALID on a 7×7 map: the spatial mean, then the mean of each pair of neighbouring steps.
      const [h, w, ch] = [c.x.shape[1], c.x.shape[2], c.x.shape[3]];
      if (h !== 7 || w !== 7) throw new DifftalkError('internal', `I3D: final map is ${h}×${w}, expected 7×7`);
      const s = tf.mean(c.x, [1, 2]).reshape([c.n, c.t, ch]);
      const pooled = tf.div(tf.add(s.slice([0, 0, 0], [c.n, c.t - 1, ch]), s.slice([0, 1, 0], [c.n, c.t - 1, ch])), 2) as tf.Tensor3D;
      const logits = this.unit('logits', { x: pooled.reshape([c.n * (c.t - 1), 1, 1, ch]) as tf.Tensor4D, n: c.n, t: c.t - 1 });
      return tf.mean(logits.x.reshape([c.n, c.t - 1, I3D_FEATURE_DIM]), 1) as tf.Tensor2D;
    });
  }

  dispose(): void {
    for (const u of this.units.values()) {
      for (const t of u.taps) t.dispose();
      u.bias.dispose();
    }
    this.units.clear();
  }
}

/** Converter for `difftalk weights import --kind i3d --model i3d_torchscript.pt` (and `weights fetch i3d`). */
registerWeightConverter('i3d', async ({ inputs }) => {
  const file = inputs.model!;
  const tensors = i3dTensorsFrom((await readTorchFile(file)).tensors, file);
  return { tensors, metadata: { format: 'difftalk-i3d', source: 'i3d_torchscript.pt (StyleGAN-V FVD)', layout: 'pytorch-state-dict' } };
});

/**
 * Load the I3D: from `weights` when given (a .safetensors in the converted layout, or i3d_torchscript.pt itself),
 * else the imported `i3d` kind of the weights cache (fetched on first use with `fetch`; otherwise
 * DifftalkError('weights-missing') naming the file and the import command).
 */
export async function loadI3d(options: { weights?: string; cacheDir?: string; fetch?: boolean; onEvent?: OnEvent } = {}): Promise<{ net: I3d; file: string }> {
  if (!options.weights) {
    const file = await requireWeights('i3d', { cacheDir: options.cacheDir, fetch: options.fetch, onEvent: options.onEvent });
    const tensors = await loadWeights('i3d', { cacheDir: options.cacheDir, verify: false });
    return { net: I3d.fromTensors(tensors, file), file };
  }
  const file = path.resolve(options.weights);
  const tensors = file.endsWith('.safetensors') ? (await readSafetensors(file)).tensors : (await readTorchFile(file)).tensors;
  return { net: I3d.fromTensors(tensors, file), file };
}
