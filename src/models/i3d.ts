/**
 * The I3D of FVD (Inception-v1 inflated to 3D, trained on Kinetics-400: the TF-Hub module deepmind/i3d-kinetics-400
 * that google-research's frechet_video_distance.py embeds videos with, and the TorchScript port `i3d_torchscript.pt`
 * that StyleGAN-V's src/metrics/frechet_video_distance.py and LatentSync's eval/fvd.py load) as one network description
 * (./netgraph.ts, `i3dGraph`) run by the tfjs executor (any backend) or onnxruntime on the CPU (./net-runner.ts).
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
 * Executors: onnxruntime runs native 3-D Conv / MaxPool / AveragePool on all cores; the tfjs executor runs each 3-D
 * convolution as a sum over its temporal taps of 2-D convolutions (./netgraph-tf.ts).
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
import { readSafetensors } from '../weights/safetensors.js';
import { readTorchFile, type TensorData } from '../weights/torch.js';
import { loadWeights, registerWeightConverter, requireWeights } from './weights-store.js';
import { createNetRunner, type NetExecutor, type NetRunner } from './net-runner.js';
import { foldBatchNorm, samePad6, type NetGraph, type NetOp, type NetParam, type Triple } from './netgraph.js';

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

/**
 * The network's weights as description parameters: per unit `<name>.w` (Conv3d weight [out, in, k, k, k], PyTorch
 * layout, BatchNorm folded in at float64) and `<name>.b` (the folded shift, or the logits' own bias).
 */
export function i3dNetParams(weights: ReadonlyMap<string, { data: Float32Array }>): Map<string, NetParam> {
  const params = new Map<string, NetParam>();
  for (const { name, cin, cout, k, bn } of i3dUnits()) {
    const get = (p: string) => weights.get(`${name}.${p}`)!.data;
    const folded = bn
      ? foldBatchNorm(
          get('conv3d.weight'),
          { gamma: get('bn.weight'), beta: get('bn.bias'), mean: get('bn.running_mean'), variance: get('bn.running_var') },
          I3D_BN_EPS,
        )
      : { filter: get('conv3d.weight'), bias: get('conv3d.bias') };
    params.set(`${name}.w`, { shape: [cout, cin, k, k, k], data: folded.filter });
    params.set(`${name}.b`, { shape: [cout], data: folded.bias });
  }
  return params;
}

/**
 * The I3D as ONE network description (./netgraph.ts) for clips of `frames` frames: input `frames` (NHWC RGB in
 * [0, 255], any size, clip after clip: [N·frames, H, W, 3]), output `features` [N, 400]. Every padding is TF 'SAME'
 * spelled out for the sizes this clip length gives (224² after the resize).
 */
export function i3dGraph(params: ReadonlyMap<string, NetParam>, frames: number = I3D_CLIP_FRAMES): NetGraph {
  if (!Number.isInteger(frames) || frames < 9)
    throw new DifftalkError('bad-input', `I3D: clips of ${frames} frames are too short (at least 9; FVD uses ${I3D_CLIP_FRAMES})`);
  const ops: NetOp[] = [
    { op: 'resize', x: 'frames', y: 'resized', size: [I3D_SIZE, I3D_SIZE] },
    { op: 'affine', x: 'resized', y: 'scaled', sub: [127.5, 127.5, 127.5], div: [127.5, 127.5, 127.5] }, // x/127.5 − 1
    { op: 'clips', x: 'scaled', y: 'x', frames },
  ];
  let size: Triple = [frames, I3D_SIZE, I3D_SIZE];
  let n = 0;
  const units = new Map(i3dUnits().map((u) => [u.name, u]));
  const conv = (name: string, x: string, at: Triple = size): { y: string; size: Triple } => {
    const u = units.get(name)!;
    const { pad, out } = samePad6(at, [u.k, u.k, u.k], [u.stride, u.stride, u.stride]);
    ops.push({ op: 'conv3d', x, y: name, weight: `${name}.w`, bias: `${name}.b`, stride: [u.stride, u.stride, u.stride], pad, relu: u.bn });
    return { y: name, size: out };
  };
  const maxPool = (x: string, k: Triple, stride: Triple, at: Triple = size): { y: string; size: Triple } => {
    const { pad, out } = samePad6(at, k, stride);
    const y = `maxpool#${n++}`;
    ops.push({ op: 'maxpool3d', x, y, k, stride, pad });
    return { y, size: out };
  };
  const step = (r: { y: string; size: Triple }): string => {
    size = r.size;
    return r.y;
  };
  let h = step(conv('Conv3d_1a_7x7', 'x'));
  h = step(maxPool(h, [1, 3, 3], [1, 2, 2]));
  h = step(conv('Conv3d_2c_3x3', step(conv('Conv3d_2b_1x1', h))));
  h = step(maxPool(h, [1, 3, 3], [1, 2, 2]));
  const mixed = (name: string, x: string): string => {
    const b = (s: string, t: string) => conv(`${name}.${s}`, t).y;
    ops.push({ op: 'concat', xs: [b('b0', x), b('b1b', b('b1a', x)), b('b2b', b('b2a', x)), b('b3b', maxPool(x, [3, 3, 3], [1, 1, 1]).y)], y: name });
    return name;
  };
  for (const [name] of I3D_MIXED.slice(0, 2)) h = mixed(name, h);
  h = step(maxPool(h, [3, 3, 3], [2, 2, 2]));
  for (const [name] of I3D_MIXED.slice(2, 7)) h = mixed(name, h);
  h = step(maxPool(h, [2, 2, 2], [2, 2, 2]));
  for (const [name] of I3D_MIXED.slice(7)) h = mixed(name, h);
  if (size[1] !== 7 || size[2] !== 7) throw new DifftalkError('internal', `I3D: final map is ${size[1]}×${size[2]}, expected 7×7`);
  // AvgPool 2×7×7 stride 1 VALID, the logits (1×1×1 conv with bias, no BN/ReLU), the mean over the remaining time steps.
  ops.push({ op: 'avgpool3d', x: h, y: 'pooled', k: [2, 7, 7], stride: [1, 1, 1] });
  size = [size[0] - 1, 1, 1];
  ops.push({ op: 'mean-dhw', x: step(conv('logits', 'pooled')), y: 'features' });
  return { name: 'i3d', inputs: [{ name: 'frames', channels: 3 }], outputs: ['features'], ops, params };
}

/** The I3D on one executor (tfjs or onnxruntime), for clips of a fixed length; call `dispose()` when done. */
export class I3d {
  private constructor(
    private readonly runner: NetRunner,
    /** Frames per clip this instance takes. */
    readonly clipFrames: number,
  ) {}

  /**
   * Build from canonical names (as `i3dTensorsFrom` returns or the `i3d` cache kind holds) on `executor` (default
   * tfjs; 'auto': onnxruntime on the CPU when it loads); throws DifftalkError('bad-weights').
   */
  static async create(weights: ReadonlyMap<string, TensorData>, options: { executor?: NetExecutor; source?: string; clipFrames?: number } = {}): Promise<I3d> {
    const canonical = i3dTensorsFrom(weights, options.source ?? 'I3D weights') as ReadonlyMap<string, { data: Float32Array }>;
    const frames = options.clipFrames ?? I3D_CLIP_FRAMES;
    return new I3d(await createNetRunner(i3dGraph(i3dNetParams(canonical), frames), options.executor), frames);
  }

  /** What runs the network (`tfjs-wasm`, `onnxruntime-cpu (2 threads)` …). */
  get executor(): string {
    return this.runner.executor;
  }

  /**
   * FVD features (clips × 400, row-major) of `clips` clips given as frames [clips·clipFrames, height, width, 3]
   * (float32 RGB in [0, 255], clip after clip, any size): resize to 224², x/127.5 − 1, the network, the mean of
   * the logits over time.
   */
  async featuresOf(frames255: Float32Array, clips: number, height: number, width: number): Promise<Float32Array> {
    if (!(Number.isInteger(clips) && clips >= 1) || frames255.length !== clips * this.clipFrames * height * width * 3)
      throw new DifftalkError('bad-input', `I3D: ${frames255.length} values are not ${clips} clip(s) of ${this.clipFrames} frames of ${width}×${height}×3`);
    const [out] = await this.runner.run({ frames: { data: frames255, shape: [clips * this.clipFrames, height, width, 3] } });
    return out!.data;
  }

  dispose(): void {
    this.runner.dispose();
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
export async function loadI3d(
  options: { weights?: string; cacheDir?: string; fetch?: boolean; onEvent?: OnEvent; executor?: NetExecutor } = {},
): Promise<{ net: I3d; file: string }> {
  if (!options.weights) {
    const file = await requireWeights('i3d', { cacheDir: options.cacheDir, fetch: options.fetch, onEvent: options.onEvent });
    const tensors = await loadWeights('i3d', { cacheDir: options.cacheDir, verify: false });
    return { net: await I3d.create(tensors, { executor: options.executor, source: file }), file };
  }
  const file = path.resolve(options.weights);
  const tensors = file.endsWith('.safetensors') ? (await readSafetensors(file)).tensors : (await readTorchFile(file)).tensors;
  return { net: await I3d.create(tensors, { executor: options.executor, source: file }), file };
}
