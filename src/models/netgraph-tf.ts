/**
 * The TensorFlow.js executor of a network description (./netgraph.ts): NHWC tensors on whatever tfjs backend is
 * active (cpu, wasm, webgpu). Weights are converted once from PyTorch layout ([out, in, kh, kw] → [kh, kw, in, out]).
 * Convolutions run as tf.fused.conv2d with explicit padding (bias and ReLU fused), linear layers as tf.fused.matMul
 * ([out, in] → [in, out]), flatten transposes to NCHW first (PyTorch's element order); 'same'-shaped pools map to tf
 * 'same' pooling (tf excludes padding from the average count and never lets it win a max, as PyTorch with
 * count_include_pad=False / −∞ padding); other padded max pools pad with −∞ first.
 *
 * 3-D values are NDHWC tensors. A conv3d runs as a sum over its temporal taps of 2-D convolutions (tf.conv2d with
 * the explicit spatial padding) on the time-padded frame stack: the same arithmetic as Conv3d through the backends'
 * fast conv2d kernels (measured on tfjs-wasm: its own conv3d took 34–60 s for I3D's 16.6 GFLOP Conv3d_2c_3x3 layer,
 * the tap sum 0.6 s; one conv2d over the taps stacked on the channel axis was 1.5–1.8× slower for the whole I3D).
 * Weights [out, in, kt, kh, kw] are split once into kt filters [kh, kw, in, out]. 3-D max pools run the same way: a
 * 2-D max pool per frame, then the maximum over the temporal taps (−∞ padding on all three axes).
 */
import { DifftalkError } from '../util/errors.js';
import { tf } from '../util/tf.js';
import { validateGraph, type NetGraph, type NetOp, type Pad4, type Pad6, type Pair, type Triple } from './netgraph.js';
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

const zero = (pad: Pad4 | Pad6) => pad.every((p) => p === 0);

/** PyTorch Conv3d weight [out, in, kt, kh, kw] → one tf conv2d filter [kh, kw, in, out] per temporal tap (kept). */
function conv3dTaps(shape: readonly number[], data: Float32Array): tf.Tensor4D[] {
  return tf.tidy(() => tf.unstack(tf.transpose(tf.tensor(data, [...shape]), [2, 3, 4, 1, 0])).map((t) => tf.keep(t as tf.Tensor4D)));
}

/**
 * The temporal taps of a 3-D window op on an NDHWC tensor: the time axis padded with `fill` ([front, back]), then for
 * each tap dt the frames it reads at every output step (t = j·stride + dt) as one frame stack [n·tOut, h, w, c].
 */
function temporalTaps(x: tf.Tensor5D, kt: number, stride: number, front: number, back: number, fill: number): { taps: tf.Tensor4D[]; tOut: number } {
  const [n, t, h, w, c] = x.shape;
  const tPadded = t + front + back;
  const tOut = Math.floor((tPadded - kt) / stride) + 1;
  if (tOut < 1) throw new DifftalkError('bad-input', `3-D window of ${kt} steps over ${t} time steps: no output`);
  const xp =
    front || back
      ? tf.pad(
          x,
          [
            [0, 0],
            [front, back],
            [0, 0],
            [0, 0],
            [0, 0],
          ],
          fill,
        )
      : x;
  const taps: tf.Tensor4D[] = [];
  for (let dt = 0; dt < kt; dt++) {
    const picked =
      stride === 1
        ? tOut === tPadded
          ? xp
          : tf.slice(xp, [0, dt, 0, 0, 0], [n, tOut, h, w, c])
        : tf.gather(
            xp,
            tf.tensor1d(
              Array.from({ length: tOut }, (_, j) => j * stride + dt),
              'int32',
            ),
            1,
          );
    taps.push(tf.reshape(picked, [n * tOut, h, w, c]));
  }
  return { taps, tOut };
}

/** Explicit NHWC conv / pool padding from the spatial part of a Pad6 ('valid' when it is all zero). */
function spatialPad(pad: Pad6): 'valid' | [[number, number], [number, number], [number, number], [number, number]] {
  const [, top, left, , bottom, right] = pad;
  return top === 0 && left === 0 && bottom === 0 && right === 0
    ? 'valid'
    : [
        [0, 0],
        [top, bottom],
        [left, right],
        [0, 0],
      ];
}

/** Conv3d (+ bias, + ReLU) of an NDHWC tensor as a sum over the temporal taps of conv2d on frame stacks. */
function conv3dByTaps(x: tf.Tensor5D, filters: readonly tf.Tensor4D[], bias: tf.Tensor1D | undefined, stride: Triple, pad: Pad6, relu: boolean): tf.Tensor5D {
  const kt = filters.length;
  const { taps, tOut } = temporalTaps(x, kt, stride[0], pad[0], pad[3], 0);
  let sum: tf.Tensor4D | undefined;
  taps.forEach((frames, dt) => {
    const y = tf.fused.conv2d({
      x: frames,
      filter: filters[dt]!,
      strides: [stride[1], stride[2]],
      pad: spatialPad(pad),
      bias: dt === 0 ? bias : undefined,
      activation: kt === 1 && relu ? 'relu' : 'linear',
    });
    sum = sum ? (tf.add(sum, y) as tf.Tensor4D) : y;
  });
  const out = kt > 1 && relu ? tf.relu(sum!) : sum!;
  return tf.reshape(out, [x.shape[0], tOut, out.shape[1], out.shape[2], out.shape[3]]);
}

/**
 * 3-D max pool (−∞ padding) of an NDHWC tensor: a 2-D max pool of every frame, then the maximum over the temporal
 * taps (separable, exact). Not tf.maxPool3d: tfjs-wasm's starts its maximum at FLT_MIN (a tiny positive number), so
 * a window of negative values came out as 1.2e-38 (measured with tfjs-backend-wasm 4.22.0).
 */
function maxPool3dByTaps(x: tf.Tensor5D, k: Triple, stride: Triple, pad: Pad6): tf.Tensor5D {
  const [n, t, h, w, c] = x.shape;
  const frames = tf.reshape(x, [n * t, h, w, c]) as tf.Tensor4D;
  const sp = spatialPad(pad);
  const padded = sp === 'valid' ? frames : tf.pad(frames, sp, -Infinity);
  const pooled = tf.maxPool(padded, [k[1], k[2]], [stride[1], stride[2]], 'valid');
  const [, ho, wo] = pooled.shape;
  const { taps, tOut } = temporalTaps(tf.reshape(pooled, [n, t, ho, wo, c]), k[0], stride[0], pad[0], pad[3], -Infinity);
  const m = taps.reduce((a, b) => tf.maximum(a, b));
  return tf.reshape(m, [n, tOut, ho, wo, c]);
}

/** A network description bound to tf tensors; `dispose()` frees its weights. */
export class TfNet implements NetRunner {
  private readonly weights = new Map<string, tf.Tensor>();
  /** conv3d weights as per-tap conv2d filters. */
  private readonly taps = new Map<string, tf.Tensor4D[]>();
  readonly executor: string;

  constructor(readonly graph: NetGraph) {
    validateGraph(graph);
    this.executor = `tfjs-${tf.getBackend()}`;
    tf.tidy(() => {
      for (const op of graph.ops) {
        if (op.op === 'conv3d') {
          if (!this.taps.has(op.weight)) {
            const w = graph.params.get(op.weight)!;
            this.taps.set(op.weight, conv3dTaps(w.shape, w.data));
          }
          if (op.bias && !this.weights.has(op.bias)) this.weights.set(op.bias, tf.keep(tf.tensor1d(graph.params.get(op.bias)!.data)));
          continue;
        }
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
    const get5 = (name: string) => v.get(name)! as tf.Tensor5D;
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
          -1,
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
      case 'clips': {
        const x = get(op.x);
        const [count, h, w, c] = x.shape;
        if (count % op.frames !== 0) throw new DifftalkError('bad-input', `${this.graph.name}: ${count} frames do not split into clips of ${op.frames}`);
        return tf.reshape(x, [count / op.frames, op.frames, h, w, c]);
      }
      case 'conv3d':
        return conv3dByTaps(
          get5(op.x),
          this.taps.get(op.weight)!,
          op.bias ? (this.weights.get(op.bias) as tf.Tensor1D) : undefined,
          op.stride,
          op.pad,
          op.relu ?? false,
        );
      case 'maxpool3d':
        return maxPool3dByTaps(get5(op.x), op.k, op.stride, op.pad);
      case 'avgpool3d':
        return tf.avgPool3d(get5(op.x), op.k as [number, number, number], op.stride as [number, number, number], 'valid');
      case 'mean-dhw':
        return tf.mean(get5(op.x), [1, 2, 3]);
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
    for (const ts of this.taps.values()) tf.dispose(ts);
    this.weights.clear();
    this.taps.clear();
  }
}
