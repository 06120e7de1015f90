import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeFrames } from '../../src/media/frames.js';
import { TfjsEngine, toIbug68 } from '../../src/face/landmarks/index.js';
import { jawPolygon, maskRows, rasterizeMask, rowMask } from '../../src/face/masks.js';
import { DifftalkError } from '../../src/util/errors.js';
import { AOC_CLIP } from '../helpers.js';

function lmWith(points: Record<number, [number, number]>): Float32Array {
  const lm = new Float32Array(136);
  for (const [k, [x, y]] of Object.entries(points)) {
    lm[Number(k) * 2] = x;
    lm[Number(k) * 2 + 1] = y;
  }
  return lm;
}

test('maskRows: floor of pt30.y (train) and pt33.y (test) — DiffTalk §1.2 / §3; null without a face', () => {
  assert.deepEqual(maskRows(lmWith({ 30: [128, 150.9], 33: [128, 161.2] })), { train: 150, test: 161 });
  assert.equal(maskRows(new Float32Array(136).fill(Number.NaN)), null);
  assert.throws(() => maskRows(new Float32Array(10)), DifftalkError);
});

test('jawPolygon: points 2..14 then 33', () => {
  const lm = new Float32Array(136).map((_, i) => i);
  const poly = jawPolygon(lm);
  assert.equal(poly.length, 28);
  assert.deepEqual(Array.from(poly.subarray(0, 2)), [4, 5]);
  assert.deepEqual(Array.from(poly.subarray(24, 26)), [28, 29]);
  assert.deepEqual(Array.from(poly.subarray(26, 28)), [66, 67]);
});

test('rasterizeMask: exact pixel counts on a rectangle and a triangle (reference: closed pixel-centre rule, exact)', () => {
  const rect = Float32Array.from([10, 10, 20, 10, 20, 30, 10, 30]);
  const m = rasterizeMask(rect, 64);
  assert.equal(m.length, 64 * 64);
  assert.equal(m.filter((v) => v === 0).length, 10 * 20);
  assert.equal(m[10 * 64 + 10], 0);
  assert.equal(m[9 * 64 + 10], 1);
  assert.equal(m[29 * 64 + 19], 0);
  assert.equal(m[30 * 64 + 19], 1);
  // triangle (0,0)-(64,0)-(0,64): centres on or inside the hypotenuse, x + y ≤ 63 → Σ_{y=0}^{63} (64 − y) = 2080
  const tri = rasterizeMask(Float32Array.from([0, 0, 64, 0, 0, 64]), 64);
  assert.equal(tri.filter((v) => v === 0).length, 2080);
  // scale: the same rectangle at 1/2 scale in a 32² mask → 5 × 10 pixels
  assert.equal(rasterizeMask(rect, 32, { scale: 0.5 }).filter((v) => v === 0).length, 50);
  assert.throws(() => rasterizeMask(Float32Array.from([0, 0, Number.NaN, 1, 3, 3]), 8), DifftalkError);
});

test('rowMask: ones above the row, zeros from it down', () => {
  const m = rowMask(3, 4);
  assert.deepEqual(Array.from(m), [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]);
  assert.equal(rowMask(-5, 4).filter((v) => v === 0).length, 16);
  assert.equal(rowMask(99, 4).filter((v) => v === 0).length, 0);
});

test('on a real AOC frame the jaw mask covers the whole mouth and no eye; the train row is under the eyes', async () => {
  const frames = await decodeFrames(AOC_CLIP, { width: 256, height: 256, count: 1 });
  const engine = await TfjsEngine.create();
  try {
    const [r] = await engine.detect(frames);
    assert.equal(r!.status, 'ok');
    const lm = toIbug68(r!.points);
    const mask = rasterizeMask(jawPolygon(lm), 256);
    for (let k = 48; k < 68; k++) {
      const x = Math.floor(lm[k * 2]!);
      const y = Math.floor(lm[k * 2 + 1]!);
      assert.equal(mask[y * 256 + x], 0, `mouth point ${k} inside the inpainting region`);
    }
    for (let k = 36; k < 48; k++) assert.equal(mask[Math.floor(lm[k * 2 + 1]!) * 256 + Math.floor(lm[k * 2]!)], 1, `eye point ${k} outside`);
    const rows = maskRows(lm)!;
    assert.ok(rows.train > Math.max(...[36, 39, 42, 45].map((k) => lm[k * 2 + 1]!)));
    assert.ok(rows.test >= rows.train && rows.test < Math.min(...[48, 51, 54].map((k) => lm[k * 2 + 1]!)));
    const zeros = mask.filter((v) => v === 0).length;
    assert.ok(zeros > 0.1 * 256 * 256 && zeros < 0.4 * 256 * 256, `jaw region ${zeros} px`);
  } finally {
    await engine.close();
  }
});
