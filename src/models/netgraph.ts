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
 */
import { DifftalkError } from '../util/errors.js';

/** A PyTorch-layout float32 parameter. */
export interface NetParam {
  shape: readonly number[];
  data: Float32Array;
}

export type Pad4 = readonly [number, number, number, number];
export type Pair = readonly [number, number];

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
  | { op: 'linear'; x: string; y: string; weight: string; bias?: string; relu?: boolean };

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
    if (op.op === 'conv' || op.op === 'linear') {
      const w = convWeight(g, op.weight);
      const rank = op.op === 'conv' ? 4 : 2;
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
