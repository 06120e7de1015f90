/**
 * The FID InceptionV3 of mseitzer/pytorch-fid (`InceptionV3(output_blocks=[3])` with `use_fid_inception=True`, i.e.
 * `fid_inception_v3()` and the weights file pt_inception-2015-12-05-6726825d.pth) on TensorFlow.js, NHWC float32,
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
import { tf } from '../util/tf.js';
import { readSafetensors } from '../weights/safetensors.js';
import { loadWeights, registerWeightConverter, requireWeights } from './weights-store.js';
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

interface FoldedConv {
  spec: ConvSpec;
  filter: tf.Tensor4D;
  bias: tf.Tensor1D;
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
 * Returns the filter in tf layout [kh, kw, in, out] and the bias.
 */
export function foldBasicConv(spec: ConvSpec, weights: ReadonlyMap<string, NamedWeight>): { filter: Float32Array; bias: Float32Array } {
  const w = weights.get(`${spec.name}.conv.weight`)!.data;
  const gamma = weights.get(`${spec.name}.bn.weight`)!.data;
  const beta = weights.get(`${spec.name}.bn.bias`)!.data;
  const mean = weights.get(`${spec.name}.bn.running_mean`)!.data;
  const variance = weights.get(`${spec.name}.bn.running_var`)!.data;
  const { cout, cin, kh, kw } = spec;
  const filter = new Float32Array(w.length);
  const bias = new Float32Array(cout);
  for (let o = 0; o < cout; o++) {
    const scale = gamma[o]! / Math.sqrt(variance[o]! + BN_EPS);
    bias[o] = beta[o]! - mean[o]! * scale;
    for (let i = 0; i < cin; i++) {
      for (let y = 0; y < kh; y++) {
        for (let x = 0; x < kw; x++) {
          // PyTorch [o, i, y, x] → tf [y, x, i, o]
          filter[((y * kw + x) * cin + i) * cout + o] = w[((o * cin + i) * kh + y) * kw + x]! * scale;
        }
      }
    }
  }
  return { filter, bias };
}

/** pytorch-fid input transform: RGB [0,1] NHWC of any size → bilinear 299² (align_corners=False, no antialias) → 2x − 1. */
export function fidPreprocess(x: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const resized =
      x.shape[1] === INCEPTION_SIZE && x.shape[2] === INCEPTION_SIZE ? x : tf.image.resizeBilinear(x, [INCEPTION_SIZE, INCEPTION_SIZE], false, true);
    return tf.sub(tf.mul(resized, 2), 1) as tf.Tensor4D;
  });
}

/** avg_pool2d(3, stride 1, padding 1, count_include_pad=False) — the FID blocks' pool branch. */
export function avgPool3ExcludePad(x: tf.Tensor4D): tf.Tensor4D {
  return tf.avgPool(x, 3, 1, 'same');
}

/** max_pool2d(3, stride 1, padding 1) — FIDInceptionE_2's pool branch (padding never wins a max). */
export function maxPool3Same(x: tf.Tensor4D): tf.Tensor4D {
  return tf.maxPool(x, 3, 1, 'same');
}

/** The FID InceptionV3 holding its folded weights as tf tensors; call `dispose()` when done. */
export class FidInception {
  private readonly convs = new Map<string, FoldedConv>();

  private constructor(weights: ReadonlyMap<string, NamedWeight>) {
    for (const spec of fidInceptionConvs()) {
      const { filter, bias } = foldBasicConv(spec, weights);
      this.convs.set(spec.name, { spec, filter: tf.tensor4d(filter, [spec.kh, spec.kw, spec.cin, spec.cout]), bias: tf.tensor1d(bias) });
    }
  }

  /** Build from PyTorch state_dict names and shapes (see `fidInceptionParams`); throws DifftalkError('bad-weights'). */
  static fromTensors(weights: ReadonlyMap<string, { shape: readonly number[]; data: unknown }>, source = 'FID Inception weights'): FidInception {
    checkWeights(weights, source);
    return new FidInception(weights as ReadonlyMap<string, NamedWeight>);
  }

  private conv(name: string, x: tf.Tensor4D): tf.Tensor4D {
    const c = this.convs.get(name);
    if (!c) throw new DifftalkError('internal', `FID Inception: no layer ${name}`);
    return tf.fused.conv2d({ x, filter: c.filter, strides: c.spec.stride, pad: c.spec.pad, bias: c.bias, activation: 'relu' });
  }

  private block(b: Block, x: tf.Tensor4D): tf.Tensor4D {
    const c = (suffix: string, t: tf.Tensor4D): tf.Tensor4D => this.conv(`${'name' in b ? b.name : ''}.${suffix}`, t);
    switch (b.kind) {
      case 'conv':
        return this.conv(b.conv.name, x);
      case 'maxpool-3-2':
        return tf.maxPool(x, 3, 2, 'valid');
      case 'A': {
        const b1 = c('branch1x1', x);
        const b5 = c('branch5x5_2', c('branch5x5_1', x));
        const b3 = c('branch3x3dbl_3', c('branch3x3dbl_2', c('branch3x3dbl_1', x)));
        const bp = c('branch_pool', avgPool3ExcludePad(x));
        return tf.concat([b1, b5, b3, bp], 3);
      }
      case 'B': {
        const b3 = c('branch3x3', x);
        const bd = c('branch3x3dbl_3', c('branch3x3dbl_2', c('branch3x3dbl_1', x)));
        const bp = tf.maxPool(x, 3, 2, 'valid');
        return tf.concat([b3, bd, bp], 3);
      }
      case 'C': {
        const b1 = c('branch1x1', x);
        const b7 = c('branch7x7_3', c('branch7x7_2', c('branch7x7_1', x)));
        let bd = c('branch7x7dbl_1', x);
        for (const k of [2, 3, 4, 5]) bd = c(`branch7x7dbl_${k}`, bd);
        const bp = c('branch_pool', avgPool3ExcludePad(x));
        return tf.concat([b1, b7, bd, bp], 3);
      }
      case 'D': {
        const b3 = c('branch3x3_2', c('branch3x3_1', x));
        const b7 = c('branch7x7x3_4', c('branch7x7x3_3', c('branch7x7x3_2', c('branch7x7x3_1', x))));
        const bp = tf.maxPool(x, 3, 2, 'valid');
        return tf.concat([b3, b7, bp], 3);
      }
      case 'E': {
        const b1 = c('branch1x1', x);
        const t3 = c('branch3x3_1', x);
        const b3 = tf.concat([c('branch3x3_2a', t3), c('branch3x3_2b', t3)], 3);
        const td = c('branch3x3dbl_2', c('branch3x3dbl_1', x));
        const bd = tf.concat([c('branch3x3dbl_3a', td), c('branch3x3dbl_3b', td)], 3);
        const bp = c('branch_pool', b.pool === 'max' ? maxPool3Same(x) : avgPool3ExcludePad(x));
        return tf.concat([b1, b3, bd, bp], 3);
      }
    }
  }

  /**
   * pool3 features [N, 2048] of an NHWC batch of RGB images in [0,1] (any size): the pytorch-fid resize and 2x − 1,
   * the network, and the adaptive average pool. Caller disposes the result.
   */
  features(images01: tf.Tensor4D): tf.Tensor2D {
    if (images01.shape[3] !== 3) throw new DifftalkError('bad-input', `FID Inception: expected 3 channels, got ${images01.shape[3]}`);
    return tf.tidy(() => {
      let h = fidPreprocess(images01);
      for (const b of FID_INCEPTION_BLOCKS) h = this.block(b, h);
      return tf.mean(h, [1, 2]) as tf.Tensor2D;
    });
  }

  dispose(): void {
    for (const c of this.convs.values()) {
      c.filter.dispose();
      c.bias.dispose();
    }
    this.convs.clear();
  }
}

/** Check and keep the pool3 tensors of a pytorch-fid state_dict (as float32, PyTorch names and layout). */
function pickFidTensors(sd: Map<string, TensorData>, file: string): Map<string, TensorData> {
  const out = new Map<string, TensorData>();
  for (const [name, shape] of [...fidInceptionParams(), ...FID_INCEPTION_FC]) {
    const t = sd.get(name);
    if (!t) throw new DifftalkError('bad-weights', `${file}: tensor ${name} is missing (is this pt_inception-2015-12-05-6726825d.pth?)`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new DifftalkError('bad-weights', `${file}: ${name} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
    }
    if (!(t.data instanceof Float32Array)) throw new DifftalkError('bad-weights', `${file}: ${name} is ${t.dtype}, expected a float tensor`);
    if (name.startsWith('fc.')) continue; // checked (right file), not stored: pool3 does not use the classifier
    out.set(name, { dtype: 'float32', shape: [...shape], data: t.data });
  }
  return out;
}

/** Converter for `difftalk weights import --kind fid-inception --model pt_inception-2015-12-05-6726825d.pth`. */
registerWeightConverter('fid-inception', async ({ inputs }) => {
  const file = inputs.model!;
  const tensors = pickFidTensors(stateDict(await readTorchFile(file), { stripPrefix: 'module.' }), file);
  return { tensors, metadata: { format: 'difftalk-fid-inception', source: 'pytorch-fid pt_inception-2015-12-05', layout: 'pytorch-state-dict' } };
});

/**
 * Load the FID Inception: from `weights` when given (a .safetensors in the converted layout, or the PyTorch .pth
 * itself), else the imported `fid-inception` kind of the weights cache (DifftalkError('weights-missing') naming
 * pt_inception-2015-12-05-6726825d.pth and the import command when it was never imported).
 */
export async function loadFidInception(options: { weights?: string; cacheDir?: string } = {}): Promise<{ net: FidInception; file: string }> {
  if (!options.weights) {
    const file = await requireWeights('fid-inception', { cacheDir: options.cacheDir });
    const tensors = await loadWeights('fid-inception', { cacheDir: options.cacheDir, verify: false });
    return { net: FidInception.fromTensors(tensors, file), file };
  }
  const file = path.resolve(options.weights);
  let tensors: Map<string, TensorData>;
  try {
    tensors = file.endsWith('.safetensors') ? (await readSafetensors(file)).tensors : stateDict(await readTorchFile(file), { stripPrefix: 'module.' });
  } catch (e) {
    if (e instanceof DifftalkError) throw e;
    throw new DifftalkError('file-missing', `FID Inception weights ${file} do not exist or cannot be read`);
  }
  return { net: FidInception.fromTensors(tensors, file), file };
}
