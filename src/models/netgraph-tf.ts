/**
 * The TensorFlow.js executor of a network description (./netgraph.ts): NHWC tensors on whatever tfjs backend is
 * active (cpu, wasm, webgpu). Weights are converted once from PyTorch layout ([out, in, kh, kw] → [kh, kw, in, out]).
 * Convolutions run as tf.fused.conv2d with explicit padding (bias and ReLU fused), linear layers as tf.fused.matMul
 * ([out, in] → [in, out]), flatten transposes to NCHW first (PyTorch's element order); 'same'-shaped pools map to tf
 * 'same' pooling (tf excludes padding from the average count and never lets it win a max, as PyTorch with
 * count_include_pad=False / −∞ padding); other padded max pools pad with −∞ first.
 */
import { DifftalkError } from '../util/errors.js';
import { tf } from '../util/tf.js';
import { validateGraph, type NetGraph, type NetOp, type Pad4, type Pair } from './netgraph.js';
import type { HostTensor, NetRunner } from './net-runner.js';

function isSame(k: Pair, stride: Pair, pad: Pad4): boolean {
  return (
    stride[0] === 1 &&
    stride[1] === 1 &&
    k[0] % 2 === 1 &&
    k[1] % 2 === 1 &&
    pad[0] === pad[2] &&
    pad[1] === pad[3] &&
    pad[0] === (k[0] - 1) / 2 &&
    pad[1] === (k[1] - 1) / 2
  );
}

const zero = (pad: Pad4) => pad.every((p) => p === 0);

/** A network description bound to tf tensors; `dispose()` frees its weights. */
export class TfNet implements NetRunner {
  private readonly weights = new Map<string, tf.Tensor>();
  readonly executor: string;

  constructor(readonly graph: NetGraph) {
    validateGraph(graph);
    this.executor = `tfjs-${tf.getBackend()}`;
    tf.tidy(() => {
      for (const op of graph.ops) {
        if (op.op !== 'conv' && op.op !== 'linear') continue;
        if (!this.weights.has(op.weight)) {
          const w = graph.params.get(op.weight)!;
          // conv [out, in, kh, kw] → [kh, kw, in, out]; linear [out, in] → [in, out]
          const perm = op.op === 'conv' ? [2, 3, 1, 0] : [1, 0];
          this.weights.set(op.weight, tf.keep(tf.transpose(tf.tensor(w.data, w.shape as number[], 'float32'), perm)));
        }
        if (op.bias && !this.weights.has(op.bias)) this.weights.set(op.bias, tf.keep(tf.tensor1d(graph.params.get(op.bias)!.data)));
      }
    });
  }

  private step(op: NetOp, v: Map<string, tf.Tensor>): tf.Tensor {
    const get = (name: string) => v.get(name)! as tf.Tensor4D;
    switch (op.op) {
      case 'conv': {
        const [t, l, b, r] = op.pad;
        return tf.fused.conv2d({
          x: get(op.x),
          filter: this.weights.get(op.weight) as tf.Tensor4D,
          strides: op.stride as [number, number],
          pad: zero(op.pad)
            ? 'valid'
            : [
                [0, 0],
                [t, b],
                [l, r],
                [0, 0],
              ],
          bias: op.bias ? this.weights.get(op.bias) : undefined,
          activation: op.relu ? 'relu' : 'linear',
        });
      }
      case 'relu':
        return tf.relu(get(op.x));
      case 'maxpool': {
        const x = get(op.x);
        if (zero(op.pad)) return tf.maxPool(x, op.k as [number, number], op.stride as [number, number], 'valid');
        if (isSame(op.k, op.stride, op.pad)) return tf.maxPool(x, op.k as [number, number], 1, 'same');
        const [t, l, b, r] = op.pad;
        const padded = tf.pad(
          x,
          [
            [0, 0],
            [t, b],
            [l, r],
            [0, 0],
          ],
          -Infinity,
        );
        return tf.maxPool(padded, op.k as [number, number], op.stride as [number, number], 'valid');
      }
      case 'avgpool': {
        const x = get(op.x);
        if (zero(op.pad)) return tf.avgPool(x, op.k as [number, number], op.stride as [number, number], 'valid');
        if (isSame(op.k, op.stride, op.pad)) return tf.avgPool(x, op.k as [number, number], 1, 'same');
        throw new DifftalkError('internal', `${this.graph.name}: the tfjs executor has no padded average pool other than 'same' (k ${op.k}, pad ${op.pad})`);
      }
      case 'concat':
        return tf.concat(
          op.xs.map((n) => get(n)),
          3,
        );
      case 'affine':
        return tf.div(tf.sub(get(op.x), tf.tensor1d(op.sub as number[])), tf.tensor1d(op.div as number[]));
      case 'l2norm': {
        const f = get(op.x);
        return tf.div(f, tf.add(tf.sqrt(tf.sum(tf.square(f), -1, true)), op.eps));
      }
      case 'sqdiff':
        return tf.square(tf.sub(get(op.a), get(op.b)));
      case 'mean-hw':
        return tf.mean(get(op.x), [1, 2]);
      case 'resize': {
        const x = get(op.x);
        return x.shape[1] === op.size[0] && x.shape[2] === op.size[1] ? x : tf.image.resizeBilinear(x, op.size as [number, number], false, true);
      }
      case 'flatten': {
        // NHWC → NCHW first, so the element order is PyTorch's.
        const x = get(op.x);
        return tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [x.shape[0], -1]);
      }
      case 'linear':
        return tf.fused.matMul({
          a: v.get(op.x)! as tf.Tensor2D,
          b: this.weights.get(op.weight) as tf.Tensor2D,
          bias: op.bias ? this.weights.get(op.bias) : undefined,
          activation: op.relu ? 'relu' : 'linear',
        });
    }
  }

  /** Run on tf tensors (NHWC); returns the outputs in graph order (caller disposes them). */
  forward(inputs: Readonly<Record<string, tf.Tensor4D>>): tf.Tensor[] {
    return tf.tidy(() => {
      const v = new Map<string, tf.Tensor>();
      for (const i of this.graph.inputs) {
        const t = inputs[i.name];
        if (!t || t.rank !== 4 || t.shape[3] !== i.channels)
          throw new DifftalkError('bad-input', `${this.graph.name}: input ${i.name} must be NHWC with ${i.channels} channels`);
        v.set(i.name, t);
      }
      for (const op of this.graph.ops) v.set(op.y, this.step(op, v));
      return this.graph.outputs.map((o) => v.get(o)!);
    });
  }

  async run(inputs: Readonly<Record<string, HostTensor>>): Promise<HostTensor[]> {
    const ts: Record<string, tf.Tensor4D> = {};
    for (const [k, t] of Object.entries(inputs)) ts[k] = tf.tensor4d(t.data, t.shape as [number, number, number, number]);
    try {
      const outs = this.forward(ts);
      try {
        return await Promise.all(outs.map(async (o) => ({ data: new Float32Array(await o.data<'float32'>()), shape: [...o.shape] })));
      } finally {
        tf.dispose(outs);
      }
    } finally {
      tf.dispose(Object.values(ts));
    }
  }

  dispose(): void {
    for (const t of this.weights.values()) t.dispose();
    this.weights.clear();
  }
}
