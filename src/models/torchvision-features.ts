/**
 * torchvision `alexnet().features` and `vgg16().features` as network-description ops (./netgraph.ts), with the feature taps
 * LPIPS uses (../shared/docs/eval-metrics.md §3). Layers follow torchvision exactly: Conv2d (zero padding, bias),
 * ReLU, MaxPool2d (no padding, floor mode — identical to tf 'valid' pooling). Weights use torchvision state_dict
 * names and PyTorch layout (`features.{i}.weight` [out, in, kh, kw], `features.{i}.bias` [out]).
 */
import { DifftalkError } from '../util/errors.js';
import { pad2, type NetOp } from './netgraph.js';

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

/** Check a state_dict holds every backbone weight with its torchvision shape, float32; throws DifftalkError('bad-weights'). */
export function checkFeatureWeights(net: FeatureNet, weights: ReadonlyMap<string, NamedWeight>): void {
  for (const [name, shape] of featureParams(net)) {
    const t = weights.get(name);
    if (!t) throw new DifftalkError('bad-weights', `${net} backbone: weight ${name} is missing`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new DifftalkError('bad-weights', `${net} backbone: ${name} has shape [${t.shape}], expected [${shape}]`);
    }
    if (!(t.data instanceof Float32Array)) throw new DifftalkError('bad-weights', `${net} backbone: ${name} is not float32`);
  }
}

/**
 * The backbone as network-description ops (./netgraph.ts) reading value `input` (NCHW semantics), naming its values
 * `${prefix}…`: each Conv2d with the following ReLU fused (every LPIPS tap follows a ReLU). Returns the ops and the
 * names of the tapped values. The weights are the torchvision names `features.{i}.weight|bias`, so two calls with
 * different prefixes share them.
 */
export function featureOps(net: FeatureNet, input: string, prefix: string): { ops: NetOp[]; taps: string[] } {
  const spec = FEATURE_NETS[net];
  const ops: NetOp[] = [];
  const taps: string[] = [];
  let h = input;
  let next = 0;
  for (let i = 0; i < spec.ops.length; i++) {
    const op = spec.ops[i]!;
    const y = `${prefix}${i}`;
    if (op.kind === 'conv') {
      const relu = spec.ops[i + 1]?.kind === 'relu';
      ops.push({
        op: 'conv',
        x: h,
        y,
        weight: `features.${op.index}.weight`,
        bias: `features.${op.index}.bias`,
        stride: [op.stride, op.stride],
        pad: pad2(op.pad),
        relu,
      });
      h = y;
      if (relu) i++;
    } else if (op.kind === 'relu') {
      ops.push({ op: 'relu', x: h, y });
      h = y;
    } else {
      ops.push({ op: 'maxpool', x: h, y, k: [op.k, op.k], stride: [op.stride, op.stride], pad: pad2(0) });
      h = y;
    }
    if (i + 1 === spec.taps[next]) {
      taps.push(h);
      next++;
    }
  }
  return { ops, taps };
}
