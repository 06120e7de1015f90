/**
 * The GPU tests' one comparison (`maxRelDiff`: max over outputs of max |a−b| / max(1, max |b|), the reference `b`
 * computed on cpu), the runner of most of them (`compare`) and the composite reference they share (`attentionRef`).
 */
import assert from 'node:assert/strict';
import { customKernelsActive } from '../../src/models/kernels/index.js';
import { tf } from '../../src/util/tf.js';

export function maxRelDiff(gpu: ArrayLike<number>[], cpu: ArrayLike<number>[]): number {
  assert.equal(gpu.length, cpu.length);
  let worst = 0;
  for (let i = 0; i < cpu.length; i++) {
    const a = gpu[i]!;
    const b = cpu[i]!;
    assert.equal(a.length, b.length);
    let maxB = 1;
    for (let j = 0; j < b.length; j++) maxB = Math.max(maxB, Math.abs(b[j]!));
    for (let j = 0; j < b.length; j++) worst = Math.max(worst, Math.abs(a[j]! - b[j]!) / maxB);
  }
  return worst;
}

/** Deterministic values in [-1, 1) (LCG), the same on both backends. */
export function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** LDM's VQ-f4 Downsample padding, (0, 1, 0, 1) before a stride-2 3×3 conv, as tfjs explicit NHWC padding. */
export const VQ_DOWN_PAD: [[0, 0], [0, 1], [0, 1], [0, 0]] = [
  [0, 0],
  [0, 1],
  [0, 1],
  [0, 0],
];

export const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * Run fn on webgpu (our kernels) and cpuFn (default: fn) on cpu with the same inputs; worst |a−b| / max(1, max |b|)
 * over the outputs.
 */
export async function compare(shapes: number[][], fn: (...xs: tf.Tensor[]) => tf.Tensor[], cpuFn = fn): Promise<number> {
  const data = shapes.map((s, i) => values(size(s), 17 + 31 * i));
  const run = async (backend: string) => {
    await tf.setBackend(backend);
    const f = backend === 'cpu' ? cpuFn : fn;
    const outs = tf.tidy(() => f(...shapes.map((s, i) => tf.tensor(data[i]!, s))));
    const res = await Promise.all(outs.map((t) => t.data()));
    tf.dispose(outs);
    return res;
  };
  assert.ok(customKernelsActive(), 'our kernels are the registered ones');
  const gpu = await run('webgpu');
  const cpu = await run('cpu');
  await tf.setBackend('webgpu');
  return maxRelDiff(gpu, cpu);
}

/** The attention reference: blocks.ts's composite attention (head split, QKᵀ/√d, softmax, ·V), for tf.grads on cpu. */
export function attentionRef(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, heads: number): tf.Tensor {
  const [b, n, inner] = q.shape as [number, number, number];
  const m = k.shape[1]!;
  const d = inner / heads;
  const split = (x: tf.Tensor, len: number) => x.reshape([b, len, heads, d]).transpose([0, 2, 1, 3]) as tf.Tensor4D;
  const sim = tf.mul(tf.matMul(split(q, n), split(k, m), false, true), 1 / Math.sqrt(d));
  return tf.matMul(tf.softmax(sim, -1), split(v, m)).transpose([0, 2, 1, 3]).reshape([b, n, inner]);
}
