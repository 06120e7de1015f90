/**
 * torchvision `alexnet().features` and `vgg16().features` on TensorFlow.js (NHWC, float32), with the feature taps
 * LPIPS uses (../shared/docs/eval-metrics.md §3). Layers follow torchvision exactly: Conv2d (zero padding, bias),
 * ReLU, MaxPool2d (no padding, floor mode — identical to tf 'valid' pooling). Weights use torchvision state_dict
 * names and PyTorch layout (`features.{i}.weight` [out, in, kh, kw], `features.{i}.bias` [out]).
 */
import { DifftalkError } from '../util/errors.js';
import { tf } from '../util/tf.js';

export type FeatureNet = 'alex' | 'vgg';

type Op =
  | { kind: 'conv'; index: number; in: number; out: number; k: number; stride: number; pad: number }
  | { kind: 'relu' }
  | { kind: 'pool'; k: number; stride: number };

interface NetSpec {
  ops: Op[];
  /** LPIPS taps: the feature after op index `taps[k]` (exclusive end of torchvision slice k). */
  taps: number[];
  channels: number[];
}

function alexnet(): NetSpec {
  const conv = (index: number, i: number, o: number, k: number, stride: number, pad: number): Op => ({ kind: 'conv', index, in: i, out: o, k, stride, pad });
  const ops: Op[] = [
    conv(0, 3, 64, 11, 4, 2),
    { kind: 'relu' },
    { kind: 'pool', k: 3, stride: 2 },
    conv(3, 64, 192, 5, 1, 2),
    { kind: 'relu' },
    { kind: 'pool', k: 3, stride: 2 },
    conv(6, 192, 384, 3, 1, 1),
    { kind: 'relu' },
    conv(8, 384, 256, 3, 1, 1),
    { kind: 'relu' },
    conv(10, 256, 256, 3, 1, 1),
    { kind: 'relu' },
  ];
  return { ops, taps: [2, 5, 8, 10, 12], channels: [64, 192, 384, 256, 256] };
}

function vgg16(): NetSpec {
  const cfg: (number | 'M')[] = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512];
  const ops: Op[] = [];
  let cin = 3;
  for (const c of cfg) {
    if (c === 'M') ops.push({ kind: 'pool', k: 2, stride: 2 });
    else {
      ops.push({ kind: 'conv', index: ops.length, in: cin, out: c, k: 3, stride: 1, pad: 1 });
      ops.push({ kind: 'relu' });
      cin = c;
    }
  }
  return { ops, taps: [4, 9, 16, 23, 30], channels: [64, 128, 256, 512, 512] };
}

export const FEATURE_NETS: Record<FeatureNet, NetSpec> = { alex: alexnet(), vgg: vgg16() };

/** The state_dict entries a feature net needs: [name, shape] in torchvision naming. */
export function featureParams(net: FeatureNet): [string, number[]][] {
  const out: [string, number[]][] = [];
  for (const op of FEATURE_NETS[net].ops) {
    if (op.kind !== 'conv') continue;
    out.push([`features.${op.index}.weight`, [op.out, op.in, op.k, op.k]]);
    out.push([`features.${op.index}.bias`, [op.out]]);
  }
  return out;
}

export interface NamedWeight {
  shape: readonly number[];
  data: Float32Array;
}

/** A feature extractor holding its weights as tf tensors; call `dispose()` when done. */
export class FeatureExtractor {
  private readonly filters = new Map<number, { w: tf.Tensor4D; b: tf.Tensor1D }>();
  readonly spec: NetSpec;

  constructor(
    readonly net: FeatureNet,
    weights: ReadonlyMap<string, NamedWeight>,
  ) {
    this.spec = FEATURE_NETS[net];
    for (const [name, shape] of featureParams(net)) {
      const t = weights.get(name);
      if (!t) throw new DifftalkError('bad-weights', `${net} backbone: weight ${name} is missing`);
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw new DifftalkError('bad-weights', `${net} backbone: ${name} has shape [${t.shape}], expected [${shape}]`);
      }
      if (!(t.data instanceof Float32Array)) throw new DifftalkError('bad-weights', `${net} backbone: ${name} is not float32`);
    }
    tf.tidy(() => {
      for (const op of this.spec.ops) {
        if (op.kind !== 'conv') continue;
        const w = weights.get(`features.${op.index}.weight`)!;
        const b = weights.get(`features.${op.index}.bias`)!;
        // PyTorch [out, in, kh, kw] → tf [kh, kw, in, out]
        const filter = tf.keep(tf.transpose(tf.tensor4d(w.data, [op.out, op.in, op.k, op.k]), [2, 3, 1, 0]) as tf.Tensor4D);
        this.filters.set(op.index, { w: filter, b: tf.keep(tf.tensor1d(b.data)) });
      }
    });
  }

  /** The tapped features (NHWC) of an NHWC float32 batch. Caller disposes the returned tensors. */
  features(x: tf.Tensor4D): tf.Tensor4D[] {
    return tf.tidy(() => {
      const taps: tf.Tensor4D[] = [];
      let h = x;
      let next = 0;
      for (let i = 0; i < this.spec.ops.length; i++) {
        const op = this.spec.ops[i]!;
        if (op.kind === 'conv') {
          const { w, b } = this.filters.get(op.index)!;
          const padded = op.pad
            ? tf.pad(h, [
                [0, 0],
                [op.pad, op.pad],
                [op.pad, op.pad],
                [0, 0],
              ])
            : h;
          h = tf.add(tf.conv2d(padded, w, op.stride, 'valid'), b);
        } else if (op.kind === 'relu') h = tf.relu(h);
        else h = tf.maxPool(h, op.k, op.stride, 'valid');
        if (i + 1 === this.spec.taps[next]) {
          taps.push(h);
          next++;
        }
      }
      return taps;
    });
  }

  dispose(): void {
    for (const { w, b } of this.filters.values()) {
      w.dispose();
      b.dispose();
    }
    this.filters.clear();
  }
}
