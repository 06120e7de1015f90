/** The GPU tests' one comparison: max over outputs of max |a−b| / max(1, max |b|), the reference `b` computed on cpu. */
import assert from 'node:assert/strict';

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
