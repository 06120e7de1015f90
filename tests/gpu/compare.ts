/** The GPU tests' one comparison (`maxRelDiff`) and the composite reference they share (`attentionRef`). */
import assert from 'node:assert/strict';
import { tf } from '../../src/util/tf.js';

/** Max over outputs of max |a−b| / max(1, max |b|), the reference `b` computed on cpu. */

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

/** The attention reference: blocks.ts's composite attention (head split, QKᵀ/√d, softmax, ·V), for tf.grads on cpu. */
export function attentionRef(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, heads: number): tf.Tensor {
  const [b, n, inner] = q.shape as [number, number, number];
  const m = k.shape[1]!;
  const d = inner / heads;
  const split = (x: tf.Tensor, len: number) => x.reshape([b, len, heads, d]).transpose([0, 2, 1, 3]) as tf.Tensor4D;
  const sim = tf.mul(tf.matMul(split(q, n), split(k, m), false, true), 1 / Math.sqrt(d));
  return tf.matMul(tf.softmax(sim, -1), split(v, m)).transpose([0, 2, 1, 3]).reshape([b, n, inner]);
}
