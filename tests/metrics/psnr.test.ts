import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createFrameMetric } from '../../src/metrics/create.js';
import { DifftalkError } from '../../src/util/errors.js';
import { PSNR_CAP_DB, psnr, PsnrMetric } from '../../src/metrics/psnr.js';
import { crop, frames, loadAstronaut, quantise } from './astronaut.js';

test('PSNR on astronaut.png matches eval-metrics.md §2 golden values', async () => {
  // Reference: ../shared/docs/eval-metrics.md §2 table (skimage 0.19.3, R=255); tolerance 1e-6 dB (table has 6 d.p.).
  const a = await loadAstronaut();
  const shiftA = crop(a, 0, 0, 512, 511);
  const shiftB = crop(a, 0, 1, 512, 511);
  const [p1] = psnr(frames(shiftA), frames(shiftB));
  assert.ok(Math.abs(p1! - 24.223272) < 1e-6, `shift: ${p1}`);
  const [p2] = psnr(frames(a), frames(quantise(a)));
  assert.ok(Math.abs(p2! - 33.903999) < 1e-6, `quantised: ${p2}`);
});

test('PsnrMetric: mean of per-frame values, identical frames capped at 100 dB and counted, merge = one pass', async () => {
  const a = await loadAstronaut();
  const q = quantise(a);
  const m = new PsnrMetric();
  await m.update(frames(a, a), frames(q, a));
  const r = m.compute();
  assert.equal(r.name, 'psnr');
  assert.equal(r.frames, 2);
  assert.equal(r.extra.identicalFrames, 1);
  // reference: (33.903999 + 100) / 2, tolerance 1e-6
  assert.ok(Math.abs(r.value - (33.903999 + PSNR_CAP_DB) / 2) < 1e-6);
  const m1 = new PsnrMetric();
  const m2 = new PsnrMetric();
  await m1.update(frames(a), frames(q));
  await m2.update(frames(a), frames(a));
  m1.merge(m2);
  assert.deepEqual(m1.compute(), r);
  m1.reset();
  assert.equal(m1.compute().frames, 0);
  await assert.rejects(m.update(frames(a), frames(a, a)), (e: unknown) => e instanceof DifftalkError && e.code === 'frame-mismatch');
});

test('createFrameMetric maps ids to variants and rejects unknown ids', async () => {
  assert.equal((await createFrameMetric('psnr')).name, 'psnr');
  assert.equal((await createFrameMetric('ssim')).name, 'ssim(gaussian-11-1.5)');
  assert.equal((await createFrameMetric('ssim-skimage')).name, 'ssim(skimage-7)');
  await assert.rejects(createFrameMetric('fid'), (e: unknown) => e instanceof DifftalkError && e.code === 'unknown-metric');
});
