/**
 * The network-description layer: an eval network is ONE typed list of operations on named values, with its weights in
 * PyTorch layout, and two executors run that same description —
 * - ./netgraph-tf.ts on TensorFlow.js (every tfjs backend: cpu, wasm, webgpu), NHWC;
 * - ./onnx-emit.ts builds an ONNX ModelProto from it in memory and runs it with onnxruntime-node on all CPU cores.
 *
 * Semantics are PyTorch's (NCHW, weights [out, in, kh, kw] / [out, in]); graph inputs and 4-D outputs cross the
 * executor boundary as NHWC float32 (the executors transpose). Values are single-assignment: every op writes a new name.
 * Padding is explicit [top, left, bottom, right]; max pooling pads with −∞ and average pooling excludes the padding
 * from the count (count_include_pad=False), both with floor output sizes.
 *
 * 3-D (video) values are NCDHW inside (D = time): `clips` groups consecutive frames of a 4-D value into clips, and the
 * 3-D ops (`conv3d`, `maxpool3d`, `avgpool3d`, `mean-dhw`) work on them; padding is explicit
 * [front, top, left, back, bottom, right] (ONNX `pads` order), so TensorFlow's asymmetric 'SAME' padding is spelled
 * out per layer by the builder (`samePadding`) for the sizes the network sees. 5-D outputs come back NDHWC.
 */
import { DifftalkError } from '../util/errors.js';

/** A PyTorch-layout float32 parameter. */
export interface NetParam {
  shape: readonly number[];
  data: Float32Array;
}

export type Pad4 = readonly [number, number, number, number];
export type Pair = readonly [number, number];
export type Triple = readonly [number, number, number];
/** 3-D padding [front, top, left, back, bottom, right] (time, height, width; before, then after). */
export type Pad6 = readonly [number, number, number, number, number, number];

export type NetOp =
  /** Conv2d, weight [out, in, kh, kw], optional bias [out], optional fused ReLU. */
  | { op: 'conv'; x: string; y: string; weight: string; bias?: string; stride: Pair; pad: Pad4; relu?: boolean }
  | { op: 'relu'; x: string; y: string }
  | { op: 'maxpool'; x: string; y: string; k: Pair; stride: Pair; pad: Pad4 }
  | { op: 'avgpool'; x: string; y: string; k: Pair; stride: Pair; pad: Pad4 }
  /** Concatenate along channels. */
  | { op: 'concat'; xs: readonly string[]; y: string }
  /** Per-channel y = (x − sub) / div. */
  | { op: 'affine'; x: string; y: string; sub: readonly number[]; div: readonly number[] }
  /** y = x / (sqrt(Σ_c x²) + eps), over channels. */
  | { op: 'l2norm'; x: string; y: string; eps: number }
  /** y = (a − b)². */
  | { op: 'sqdiff'; a: string; b: string; y: string }
  /** Global average over H and W: [N, C, H, W] → [N, C]. */
  | { op: 'mean-hw'; x: string; y: string }
  /** Bilinear resize to `size` (align_corners=False: half-pixel centres, source clamped at 0, no antialias). */
  | { op: 'resize'; x: string; y: string; size: Pair }
  /** Flatten [N, C, H, W] → [N, C·H·W] in PyTorch's (NCHW) element order (torch.flatten / `x.view(N, -1)`). */
  | { op: 'flatten'; x: string; y: string }
  /** Linear on [N, in]: y = x·Wᵀ (+ bias), weight [out, in], optional bias [out], optional fused ReLU → [N, out]. */
  | { op: 'linear'; x: string; y: string; weight: string; bias?: string; relu?: boolean }
  /** Consecutive frames into clips of `frames`: [N·frames, C, H, W] → [N, C, frames, H, W]. */
  | { op: 'clips'; x: string; y: string; frames: number }
  /** Conv3d, weight [out, in, kt, kh, kw], optional bias [out], optional fused ReLU. */
  | { op: 'conv3d'; x: string; y: string; weight: string; bias?: string; stride: Triple; pad: Pad6; relu?: boolean }
  /** 3-D max pool, padding never wins (−∞). */
  | { op: 'maxpool3d'; x: string; y: string; k: Triple; stride: Triple; pad: Pad6 }
  /** 3-D average pool without padding (VALID). */
  | { op: 'avgpool3d'; x: string; y: string; k: Triple; stride: Triple }
  /** Global average over D, H and W: [N, C, D, H, W] → [N, C]. */
  | { op: 'mean-dhw'; x: string; y: string };

export interface NetGraph {
  /** A label for messages (e.g. 'lpips-alex'). */
  name: string;
  /** Graph inputs, NHWC float32 with `channels` channels; batch, height and width are free. */
  inputs: readonly { name: string; channels: number }[];
  /** Values returned, in order (4-D values come back NHWC, 2-D as [N, C]). */
  outputs: readonly string[];
  ops: readonly NetOp[];
  params: ReadonlyMap<string, NetParam>;
}

/** Conv weights [out, in, kh, kw] (or linear weights [out, in]) of an op, checked present. */
export function convWeight(g: NetGraph, name: string): NetParam {
  const p = g.params.get(name);
  if (!p) throw new DifftalkError('internal', `${g.name}: parameter ${name} missing from the network description`);
  return p;
}

/** TensorFlow 'SAME' padding along one axis of `size`: [before, after], the smaller half before. */
export function samePadding(size: number, k: number, stride: number): [number, number] {
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + k - size, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

/** TensorFlow 'SAME' 3-D padding of a [D, H, W] input as Pad6, and the output size. */
export function samePad6(size: Triple, k: Triple, stride: Triple): { pad: Pad6; out: [number, number, number] } {
  const p = [0, 1, 2].map((a) => samePadding(size[a]!, k[a]!, stride[a]!));
  return {
    pad: [p[0]![0], p[1]![0], p[2]![0], p[0]![1], p[1]![1], p[2]![1]],
    out: [0, 1, 2].map((a) => Math.ceil(size[a]! / stride[a]!)) as [number, number, number],
  };
}

/**
 * Fold an eval-mode BatchNorm into the conv before it (any rank, PyTorch layout with `out` first): w' = w·γ/√(var+eps),
 * b' = β − mean·γ/√(var+eps), in float64, stored float32.
 */
export function foldBatchNorm(
  w: Float32Array,
  bn: { gamma: Float32Array; beta: Float32Array; mean: Float32Array; variance: Float32Array },
  eps: number,
): { filter: Float32Array; bias: Float32Array } {
  const cout = bn.gamma.length;
  const per = w.length / cout;
  const filter = new Float32Array(w.length);
  const bias = new Float32Array(cout);
  for (let o = 0; o < cout; o++) {
    const scale = bn.gamma[o]! / Math.sqrt(bn.variance[o]! + eps);
    bias[o] = bn.beta[o]! - bn.mean[o]! * scale;
    for (let k = o * per; k < (o + 1) * per; k++) filter[k] = w[k]! * scale;
  }
  return { filter, bias };
}

/** Symmetric padding (ph, pw) as Pad4. */
export function pad2(ph: number, pw = ph): Pad4 {
  return [ph, pw, ph, pw];
}

/** Check that every op reads defined values and every parameter exists with a consistent shape. */
export function validateGraph(g: NetGraph): void {
  const defined = new Set(g.inputs.map((i) => i.name));
  const need = (v: string) => {
    if (!defined.has(v)) throw new DifftalkError('internal', `${g.name}: value ${v} used before it is defined`);
  };
  for (const op of g.ops) {
    if (op.op === 'concat') op.xs.forEach(need);
    else if (op.op === 'sqdiff') [op.a, op.b].forEach(need);
    else need(op.x);
    if (op.op === 'conv' || op.op === 'linear' || op.op === 'conv3d') {
      const w = convWeight(g, op.weight);
      const rank = op.op === 'conv' ? 4 : op.op === 'linear' ? 2 : 5;
      if (w.shape.length !== rank) throw new DifftalkError('internal', `${g.name}: ${op.weight} is not a ${rank}-D ${op.op} weight`);
      if (op.bias) {
        const b = convWeight(g, op.bias);
        if (b.shape.length !== 1 || b.shape[0] !== w.shape[0]) throw new DifftalkError('internal', `${g.name}: ${op.bias} does not match ${op.weight}`);
      }
    }
    if (defined.has(op.y)) throw new DifftalkError('internal', `${g.name}: value ${op.y} assigned twice`);
    defined.add(op.y);
  }
  g.outputs.forEach(need);
}
