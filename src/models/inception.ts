/**
 * The FID InceptionV3 of mseitzer/pytorch-fid (`InceptionV3(output_blocks=[3])` with `use_fid_inception=True`, i.e.
 * `fid_inception_v3()` and the weights file pt_inception-2015-12-05-6726825d.pth) as one network description
 * (./netgraph.ts) run by the tfjs executor (any backend) or onnxruntime on the CPU, float32,
 * returning the 2048-d pool3 features (../shared/docs/eval-metrics.md §5).
 *
 * Layer list (torchvision `Inception3` with pytorch-fid's patched blocks):
 * - every conv is torchvision `BasicConv2d`: Conv2d(bias=False) → BatchNorm2d(eps=0.001, eval statistics) → ReLU.
 *   The batch norm is folded into the conv's filter and bias at load time (float64 arithmetic, stored as float32).
 * - stem: Conv2d_1a_3x3 (3→32, s2), Conv2d_2a_3x3 (32→32), Conv2d_2b_3x3 (32→64, pad 1), MaxPool 3/2,
 *   Conv2d_3b_1x1 (64→80), Conv2d_4a_3x3 (80→192), MaxPool 3/2.
 * - Mixed_5b/5c/5d: FIDInceptionA (pool_features 32/64/64); Mixed_6a: InceptionB; Mixed_6b..6e: FIDInceptionC
 *   (channels_7x7 128/160/160/192); Mixed_7a: InceptionD; Mixed_7b: FIDInceptionE_1; Mixed_7c: FIDInceptionE_2;
 *   then adaptive average pooling to 1×1.
 * - FID-specific: the pool branches of A, C and E_1 use avg_pool2d(3, stride 1, pad 1, count_include_pad=False)
 *   (= TensorFlow 'same' average pooling, padding excluded from the count); E_2's pool branch is max_pool2d(3, 1, 1).
 * - input: RGB in [0,1] (PIL → ToTensor), `F.interpolate(size=(299,299), mode='bilinear', align_corners=False)` —
 *   half-pixel centres, source coordinate clamped at 0, NO antialiasing when downsampling (tf.image.resizeBilinear
 *   with halfPixelCenters=true follows the same rule) — then 2x − 1.
 * - padding: every padded conv has stride 1 and a symmetric k//2 padding, which is tf 'same'; every stride-2 conv and
 *   pool is unpadded ('valid', floor mode).
 * The state_dict also holds `fc.weight` [1008, 2048] / `fc.bias` [1008] (the 1008-class logits, unused by pool3);
 * the converter checks them and does not store them.
 *
 * Numerical parity with pytorch-fid on the real weights is UNVERIFIED: no PyTorch and no Inception reference run
 * exist here. What the tests check is listed in tests/eval/fid.test.ts.
 */
import path from 'node:path';
import { DifftalkError } from '../util/errors.js';
import type { tf } from '../util/tf.js';
import { readSafetensors } from '../weights/safetensors.js';
import { loadWeights, pickFloat32Tensors, registerWeightConverter, requireWeights } from './weights-store.js';
import { foldBatchNorm, pad2, type NetGraph, type NetOp, type NetParam, type Pad4, type Pair } from './netgraph.js';
import { TfNet } from './netgraph-tf.js';
import { createNetRunner, type NetExecutor, type NetRunner } from './net-runner.js';
import { readTorchFile, stateDict, type TensorData } from '../weights/torch.js';

/** Input side of the network. */
export const INCEPTION_SIZE = 299;
/** Feature size of pool3. */
export const FID_FEATURE_DIM = 2048;
/** BatchNorm eps of torchvision BasicConv2d. */
export const BN_EPS = 0.001;

interface ConvSpec {
  /** state_dict prefix, e.g. `Mixed_5b.branch1x1`. */
  name: string;
  cin: number;
  cout: number;
  kh: number;
  kw: number;
  stride: 1 | 2;
  /** 'same' = symmetric (kh//2, kw//2) zero padding at stride 1; 'valid' = no padding. */
  pad: 'same' | 'valid';
}

type PoolKind = 'avg-exclude-pad' | 'max';

/** The network as a list of blocks; each block is evaluated by `forward`. */
type Block =
  | { kind: 'conv'; conv: ConvSpec }
  | { kind: 'maxpool-3-2' }
  | { kind: 'A'; name: string; cin: number; poolFeatures: number }
  | { kind: 'B'; name: string; cin: number }
  | { kind: 'C'; name: string; cin: number; c7: number }
  | { kind: 'D'; name: string; cin: number }
  | { kind: 'E'; name: string; cin: number; pool: PoolKind };

function conv(name: string, cin: number, cout: number, k: number | [number, number], opts: { stride?: 1 | 2; padded?: boolean } = {}): ConvSpec {
  const [kh, kw] = typeof k === 'number' ? [k, k] : k;
  const padded = opts.padded ?? (kh > 1 || kw > 1);
  return { name, cin, cout, kh, kw, stride: opts.stride ?? 1, pad: padded ? 'same' : 'valid' };
}

/** The blocks of pytorch-fid's FID InceptionV3 up to pool3, in state_dict order. */
export const FID_INCEPTION_BLOCKS: readonly Block[] = [
  { kind: 'conv', conv: conv('Conv2d_1a_3x3', 3, 32, 3, { stride: 2, padded: false }) },
  { kind: 'conv', conv: conv('Conv2d_2a_3x3', 32, 32, 3, { padded: false }) },
  { kind: 'conv', conv: conv('Conv2d_2b_3x3', 32, 64, 3) },
  { kind: 'maxpool-3-2' },
  { kind: 'conv', conv: conv('Conv2d_3b_1x1', 64, 80, 1) },
  { kind: 'conv', conv: conv('Conv2d_4a_3x3', 80, 192, 3, { padded: false }) },
  { kind: 'maxpool-3-2' },
  { kind: 'A', name: 'Mixed_5b', cin: 192, poolFeatures: 32 },
  { kind: 'A', name: 'Mixed_5c', cin: 256, poolFeatures: 64 },
  { kind: 'A', name: 'Mixed_5d', cin: 288, poolFeatures: 64 },
  { kind: 'B', name: 'Mixed_6a', cin: 288 },
  { kind: 'C', name: 'Mixed_6b', cin: 768, c7: 128 },
  { kind: 'C', name: 'Mixed_6c', cin: 768, c7: 160 },
  { kind: 'C', name: 'Mixed_6d', cin: 768, c7: 160 },
  { kind: 'C', name: 'Mixed_6e', cin: 768, c7: 192 },
  { kind: 'D', name: 'Mixed_7a', cin: 768 },
  { kind: 'E', name: 'Mixed_7b', cin: 1280, pool: 'avg-exclude-pad' },
  { kind: 'E', name: 'Mixed_7c', cin: 2048, pool: 'max' },
];

/** The BasicConv2d layers of one block, in registration (= state_dict) order. */
function blockConvs(b: Block): ConvSpec[] {
  const n = 'name' in b ? b.name : '';
  switch (b.kind) {
    case 'conv':
      return [b.conv];
    case 'maxpool-3-2':
      return [];
    case 'A':
      return [
        conv(`${n}.branch1x1`, b.cin, 64, 1),
        conv(`${n}.branch5x5_1`, b.cin, 48, 1),
        conv(`${n}.branch5x5_2`, 48, 64, 5),
        conv(`${n}.branch3x3dbl_1`, b.cin, 64, 1),
        conv(`${n}.branch3x3dbl_2`, 64, 96, 3),
        conv(`${n}.branch3x3dbl_3`, 96, 96, 3),
        conv(`${n}.branch_pool`, b.cin, b.poolFeatures, 1),
      ];
    case 'B':
      return [
        conv(`${n}.branch3x3`, b.cin, 384, 3, { stride: 2, padded: false }),
        conv(`${n}.branch3x3dbl_1`, b.cin, 64, 1),
        conv(`${n}.branch3x3dbl_2`, 64, 96, 3),
        conv(`${n}.branch3x3dbl_3`, 96, 96, 3, { stride: 2, padded: false }),
      ];
    case 'C':
      return [
        conv(`${n}.branch1x1`, b.cin, 192, 1),
        conv(`${n}.branch7x7_1`, b.cin, b.c7, 1),
        conv(`${n}.branch7x7_2`, b.c7, b.c7, [1, 7]),
        conv(`${n}.branch7x7_3`, b.c7, 192, [7, 1]),
        conv(`${n}.branch7x7dbl_1`, b.cin, b.c7, 1),
        conv(`${n}.branch7x7dbl_2`, b.c7, b.c7, [7, 1]),
        conv(`${n}.branch7x7dbl_3`, b.c7, b.c7, [1, 7]),
        conv(`${n}.branch7x7dbl_4`, b.c7, b.c7, [7, 1]),
        conv(`${n}.branch7x7dbl_5`, b.c7, 192, [1, 7]),
        conv(`${n}.branch_pool`, b.cin, 192, 1),
      ];
    case 'D':
      return [
        conv(`${n}.branch3x3_1`, b.cin, 192, 1),
        conv(`${n}.branch3x3_2`, 192, 320, 3, { stride: 2, padded: false }),
        conv(`${n}.branch7x7x3_1`, b.cin, 192, 1),
        conv(`${n}.branch7x7x3_2`, 192, 192, [1, 7]),
        conv(`${n}.branch7x7x3_3`, 192, 192, [7, 1]),
        conv(`${n}.branch7x7x3_4`, 192, 192, 3, { stride: 2, padded: false }),
      ];
    case 'E':
      return [
        conv(`${n}.branch1x1`, b.cin, 320, 1),
        conv(`${n}.branch3x3_1`, b.cin, 384, 1),
        conv(`${n}.branch3x3_2a`, 384, 384, [1, 3]),
        conv(`${n}.branch3x3_2b`, 384, 384, [3, 1]),
        conv(`${n}.branch3x3dbl_1`, b.cin, 448, 1),
        conv(`${n}.branch3x3dbl_2`, 448, 384, 3),
        conv(`${n}.branch3x3dbl_3a`, 384, 384, [1, 3]),
        conv(`${n}.branch3x3dbl_3b`, 384, 384, [3, 1]),
        conv(`${n}.branch_pool`, b.cin, 192, 1),
      ];
  }
}

/** All BasicConv2d layers of the network, in state_dict order. */
export function fidInceptionConvs(): ConvSpec[] {
  return FID_INCEPTION_BLOCKS.flatMap(blockConvs);
}

/**
 * The state_dict entries the pool3 network needs, [name, shape], in state_dict order: per BasicConv2d
 * `conv.weight` [out, in, kh, kw], `bn.weight`, `bn.bias`, `bn.running_mean`, `bn.running_var` [out]
 * (`bn.num_batches_tracked` and `fc.*` are not needed).
 */
export function fidInceptionParams(): [string, number[]][] {
  const out: [string, number[]][] = [];
  for (const c of fidInceptionConvs()) {
    out.push([`${c.name}.conv.weight`, [c.cout, c.cin, c.kh, c.kw]]);
    for (const s of ['weight', 'bias', 'running_mean', 'running_var']) out.push([`${c.name}.bn.${s}`, [c.cout]]);
  }
  return out;
}

/** The classifier entries of the weights file (present in it, unused for pool3). */
export const FID_INCEPTION_FC: readonly [string, number[]][] = [
  ['fc.weight', [1008, 2048]],
  ['fc.bias', [1008]],
];

export interface NamedWeight {
  shape: readonly number[];
  data: Float32Array;
}

function checkWeights(weights: ReadonlyMap<string, { shape: readonly number[]; data: unknown }>, source: string): void {
  for (const [name, shape] of fidInceptionParams()) {
    const t = weights.get(name);
    if (!t) throw new DifftalkError('bad-weights', `${source}: tensor ${name} is missing (is this pt_inception-2015-12-05-6726825d.pth?)`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new DifftalkError('bad-weights', `${source}: ${name} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
    }
    if (!(t.data instanceof Float32Array)) throw new DifftalkError('bad-weights', `${source}: ${name} is not float32 data`);
  }
}

/**
 * Fold BatchNorm (eval) into the conv: w' = w·γ/√(var+eps), b' = β − mean·γ/√(var+eps), computed in float64.
 * Returns the filter in PyTorch layout [out, in, kh, kw] and the bias.
 */
export function foldBasicConv(spec: ConvSpec, weights: ReadonlyMap<string, NamedWeight>): { filter: Float32Array; bias: Float32Array } {
  const get = (p: string) => weights.get(`${spec.name}.${p}`)!.data;
  return foldBatchNorm(
    get('conv.weight'),
    { gamma: get('bn.weight'), beta: get('bn.bias'), mean: get('bn.running_mean'), variance: get('bn.running_var') },
    BN_EPS,
  );
}

/** The pytorch-fid input transform as description ops: bilinear 299² (align_corners=False, no antialias), then 2x − 1. */
function preprocessOps(input: string, y: string): NetOp[] {
  return [
    { op: 'resize', x: input, y: `${y}.resized`, size: [INCEPTION_SIZE, INCEPTION_SIZE] },
    { op: 'affine', x: `${y}.resized`, y, sub: [0.5, 0.5, 0.5], div: [0.5, 0.5, 0.5] },
  ];
}

/** Run a weightless description on tf tensors (the single-op helpers below). */
function tfOps(name: string, channels: number, ops: NetOp[], x: tf.Tensor4D): tf.Tensor4D {
  const net = new TfNet({ name, inputs: [{ name: 'x', channels }], outputs: [ops[ops.length - 1]!.y], ops, params: new Map() });
  return net.forward({ x })[0] as tf.Tensor4D;
}

/** pytorch-fid input transform (the network's own first ops) on tf: RGB [0,1] NHWC of any size → 299², 2x − 1. */
export function fidPreprocess(x: tf.Tensor4D): tf.Tensor4D {
  return tfOps('fid-preprocess', 3, preprocessOps('x', 'pre'), x);
}

const POOL3: { k: Pair; stride: Pair; pad: Pad4 } = { k: [3, 3], stride: [1, 1], pad: pad2(1) };

/** avg_pool2d(3, stride 1, padding 1, count_include_pad=False) — the FID blocks' pool branch — on tf. */
export function avgPool3ExcludePad(x: tf.Tensor4D): tf.Tensor4D {
  return tfOps('avgpool3', x.shape[3], [{ op: 'avgpool', x: 'x', y: 'y', ...POOL3 }], x);
}

/** max_pool2d(3, stride 1, padding 1) — FIDInceptionE_2's pool branch — on tf. */
export function maxPool3Same(x: tf.Tensor4D): tf.Tensor4D {
  return tfOps('maxpool3', x.shape[3], [{ op: 'maxpool', x: 'x', y: 'y', ...POOL3 }], x);
}

/**
 * pytorch-fid's FID InceptionV3 as ONE network description (src/models/netgraph.ts): input `images` (NHWC RGB in
 * [0, 1], any size), output `pool3` [N, 2048]. BasicConv2d = conv with the folded BatchNorm and a fused ReLU
 * (parameters `<name>.w` [out, in, kh, kw], `<name>.b`).
 */
export function fidInceptionGraph(weights: ReadonlyMap<string, { shape: readonly number[]; data: unknown }>, source = 'FID Inception weights'): NetGraph {
  checkWeights(weights, source);
  const named = weights as ReadonlyMap<string, NamedWeight>;
  const params = new Map<string, NetParam>();
  for (const spec of fidInceptionConvs()) {
    const { filter, bias } = foldBasicConv(spec, named);
    params.set(`${spec.name}.w`, { shape: [spec.cout, spec.cin, spec.kh, spec.kw], data: filter });
    params.set(`${spec.name}.b`, { shape: [spec.cout], data: bias });
  }
  const ops: NetOp[] = preprocessOps('images', 'x');
  let n = 0;
  const fresh = (hint: string) => `${hint}#${n++}`;
  const convOp = (spec: ConvSpec, x: string): string => {
    const pad = spec.pad === 'same' ? ([spec.kh >> 1, spec.kw >> 1, spec.kh >> 1, spec.kw >> 1] as const) : pad2(0);
    ops.push({ op: 'conv', x, y: spec.name, weight: `${spec.name}.w`, bias: `${spec.name}.b`, stride: [spec.stride, spec.stride], pad, relu: true });
    return spec.name;
  };
  const pool = (kind: 'avgpool' | 'maxpool', x: string): string => {
    const y = fresh(kind);
    ops.push({ op: kind, x, y, ...POOL3 });
    return y;
  };
  const maxPool32 = (x: string): string => {
    const y = fresh('maxpool-3-2');
    ops.push({ op: 'maxpool', x, y, k: [3, 3], stride: [2, 2], pad: pad2(0) });
    return y;
  };
  const concat = (xs: string[], name: string): string => {
    ops.push({ op: 'concat', xs, y: name });
    return name;
  };
  let h = 'x';
  for (const b of FID_INCEPTION_BLOCKS) {
    if (b.kind === 'conv') {
      h = convOp(b.conv, h);
      continue;
    }
    if (b.kind === 'maxpool-3-2') {
      h = maxPool32(h);
      continue;
    }
    const convs = new Map(blockConvs(b).map((c) => [c.name.slice(b.name.length + 1), c]));
    const x = h;
    const c = (suffix: string, t: string): string => convOp(convs.get(suffix)!, t);
    switch (b.kind) {
      case 'A':
        h = concat(
          [
            c('branch1x1', x),
            c('branch5x5_2', c('branch5x5_1', x)),
            c('branch3x3dbl_3', c('branch3x3dbl_2', c('branch3x3dbl_1', x))),
            c('branch_pool', pool('avgpool', x)),
          ],
          b.name,
        );
        break;
      case 'B':
        h = concat([c('branch3x3', x), c('branch3x3dbl_3', c('branch3x3dbl_2', c('branch3x3dbl_1', x))), maxPool32(x)], b.name);
        break;
      case 'C': {
        const b1 = c('branch1x1', x);
        const b7 = c('branch7x7_3', c('branch7x7_2', c('branch7x7_1', x)));
        let bd = c('branch7x7dbl_1', x);
        for (const k of [2, 3, 4, 5]) bd = c(`branch7x7dbl_${k}`, bd);
        h = concat([b1, b7, bd, c('branch_pool', pool('avgpool', x))], b.name);
        break;
      }
      case 'D':
        h = concat(
          [c('branch3x3_2', c('branch3x3_1', x)), c('branch7x7x3_4', c('branch7x7x3_3', c('branch7x7x3_2', c('branch7x7x3_1', x)))), maxPool32(x)],
          b.name,
        );
        break;
      case 'E': {
        const b1 = c('branch1x1', x);
        const t3 = c('branch3x3_1', x);
        const b3 = concat([c('branch3x3_2a', t3), c('branch3x3_2b', t3)], `${b.name}.b3`);
        const td = c('branch3x3dbl_2', c('branch3x3dbl_1', x));
        const bd = concat([c('branch3x3dbl_3a', td), c('branch3x3dbl_3b', td)], `${b.name}.bd`);
        const bp = c('branch_pool', pool(b.pool === 'max' ? 'maxpool' : 'avgpool', x));
        h = concat([b1, b3, bd, bp], b.name);
        break;
      }
    }
  }
  ops.push({ op: 'mean-hw', x: h, y: 'pool3' });
  return { name: 'fid-inception', inputs: [{ name: 'images', channels: 3 }], outputs: ['pool3'], ops, params };
}

/** The FID InceptionV3 on one executor (tfjs or onnxruntime); call `dispose()` when done. */
export class FidInception {
  private constructor(private readonly runner: NetRunner) {}

  /** Build from PyTorch state_dict names and shapes (see `fidInceptionParams`) on tfjs; throws DifftalkError('bad-weights'). */
  static fromTensors(weights: ReadonlyMap<string, { shape: readonly number[]; data: unknown }>, source = 'FID Inception weights'): FidInception {
    return new FidInception(new TfNet(fidInceptionGraph(weights, source)));
  }

  /** The same on `executor` ('auto': onnxruntime on the CPU when it loads, else tfjs). */
  static async create(
    weights: ReadonlyMap<string, { shape: readonly number[]; data: unknown }>,
    executor: NetExecutor = 'tfjs',
    source = 'FID Inception weights',
  ): Promise<FidInception> {
    return new FidInception(await createNetRunner(fidInceptionGraph(weights, source), executor));
  }

  /** What runs the network (`tfjs-wasm`, `onnxruntime-cpu (2 threads)` …). */
  get executor(): string {
    return this.runner.executor;
  }

  /**
   * pool3 features [N, 2048] of an NHWC tf batch of RGB images in [0,1] (any size), on the tfjs executor only:
   * the pytorch-fid resize and 2x − 1, the network, and the adaptive average pool. Caller disposes the result.
   */
  features(images01: tf.Tensor4D): tf.Tensor2D {
    if (images01.shape[3] !== 3) throw new DifftalkError('bad-input', `FID Inception: expected 3 channels, got ${images01.shape[3]}`);
    if (!(this.runner instanceof TfNet)) throw new DifftalkError('internal', `FID Inception: features() takes tf tensors; ${this.executor} runs featuresOf()`);
    return this.runner.forward({ images: images01 })[0] as tf.Tensor2D;
  }

  /** pool3 features (n × 2048, row-major) of `n` NHWC RGB images in [0,1] of height×width, on any executor. */
  async featuresOf(images01: Float32Array, n: number, height: number, width: number): Promise<Float32Array> {
    const [out] = await this.runner.run({ images: { data: images01, shape: [n, height, width, 3] } });
    return out!.data;
  }

  dispose(): void {
    this.runner.dispose();
  }
}

/** Converter for `difftalk weights import --kind fid-inception --model pt_inception-2015-12-05-6726825d.pth`. */
registerWeightConverter('fid-inception', async ({ inputs }) => {
  const file = inputs.model!;
  const tensors = pickFloat32Tensors(
    stateDict(await readTorchFile(file), { stripPrefix: 'module.' }),
    [...fidInceptionParams(), ...FID_INCEPTION_FC],
    file,
    'pt_inception-2015-12-05-6726825d.pth',
    (name) => !name.startsWith('fc.'), // checked (right file), not stored: pool3 does not use the classifier
  );
  return { tensors, metadata: { format: 'difftalk-fid-inception', source: 'pytorch-fid pt_inception-2015-12-05', layout: 'pytorch-state-dict' } };
});

/**
 * Load the FID Inception: from `weights` when given (a .safetensors in the converted layout, or the PyTorch .pth
 * itself), else the imported `fid-inception` kind of the weights cache (DifftalkError('weights-missing') naming
 * pt_inception-2015-12-05-6726825d.pth and the import command when it was never imported).
 */
export async function loadFidInception(
  options: { weights?: string; cacheDir?: string; executor?: NetExecutor } = {},
): Promise<{ net: FidInception; file: string }> {
  if (!options.weights) {
    const file = await requireWeights('fid-inception', { cacheDir: options.cacheDir });
    const tensors = await loadWeights('fid-inception', { cacheDir: options.cacheDir, verify: false });
    return { net: await FidInception.create(tensors, options.executor, file), file };
  }
  const file = path.resolve(options.weights);
  let tensors: Map<string, TensorData>;
  try {
    tensors = file.endsWith('.safetensors') ? (await readSafetensors(file)).tensors : stateDict(await readTorchFile(file), { stripPrefix: 'module.' });
  } catch (e) {
    if (e instanceof DifftalkError) throw e;
    throw new DifftalkError('file-missing', `FID Inception weights ${file} do not exist or cannot be read`);
  }
  return { net: await FidInception.create(tensors, options.executor, file), file };
}
