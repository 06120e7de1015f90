/**
 * PSNR and SSIM on worker threads (src/metrics/frame-pool.ts) against scikit-image 0.19 run by Debian's python3
 * (tests/reference/frame_metrics_reference.py) on real image data: 256×256 crops of astronaut.png (6 frames: shifted,
 * quantised, identical pairs) and odd-sized 37×23 crops (5 frames, so runs of unequal length).
 * Asserted: pool values equal the single-thread kernels bit for bit (same function on every thread); both equal
 * skimage to 1e-9 (SSIM, float64 round-off; measured ≈1e-15) and 1e-9 dB (PSNR); the metric classes with a pool give
 * the same compute() (mean, per-channel means, identical-frame count) as without; a worker's DifftalkError (frames
 * smaller than the window) reaches the caller with its code.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { FramePool } from '../../src/metrics/frame-pool.js';
import { psnr, PsnrMetric, PSNR_CAP_DB } from '../../src/metrics/psnr.js';
import { ssim, SsimMetric } from '../../src/metrics/ssim.js';
import type { RgbFrames } from '../../src/media/types.js';
import { DifftalkError } from '../../src/util/errors.js';
import { runProcess } from '../../src/util/exec.js';
import { ROOT, tmpDir } from '../helpers.js';
import { crop, frames, loadAstronaut, quantise, type Image } from './astronaut.js';

const pool = new FramePool({ size: 2 });
after(() => pool.close());

async function pairs(): Promise<Array<{ pred: RgbFrames; target: RgbFrames }>> {
  const a = await loadAstronaut();
  const big = (i: number): [Image, Image] => {
    const p = crop(a, 40 * i, 30 * i, 256, 256);
    if (i % 3 === 0) return [p, quantise(p)];
    if (i % 3 === 1) return [p, crop(a, 40 * i + 1, 30 * i + 2, 256, 256)];
    return [p, p];
  };
  const small = (i: number): [Image, Image] => [crop(a, 100 + 7 * i, 200, 37, 23), crop(a, 101 + 7 * i, 199, 37, 23)];
  const mk = (xs: Array<[Image, Image]>) => ({ pred: frames(...xs.map((x) => x[0])), target: frames(...xs.map((x) => x[1])) });
  return [mk([0, 1, 2, 3, 4, 5].map(big)), mk([0, 1, 2, 3, 4].map(small))];
}

async function reference(p: RgbFrames, t: RgbFrames): Promise<{ psnr: Array<number | null>; ssim_skimage: number[]; ssim_gaussian: number[] }> {
  const dir = tmpDir();
  writeFileSync(path.join(dir, 'p.raw'), p.data);
  writeFileSync(path.join(dir, 't.raw'), t.data);
  const args = [path.join(ROOT, 'tests', 'reference', 'frame_metrics_reference.py'), path.join(dir, 'p.raw'), path.join(dir, 't.raw')];
  const r = await runProcess('/usr/bin/python3', [...args, String(p.count), String(p.height), String(p.width)]);
  return JSON.parse(r.stdout.toString());
}

test('FramePool PSNR/SSIM = single-thread kernels bit for bit = scikit-image to 1e-9', { timeout: 120_000 }, async () => {
  for (const { pred, target } of await pairs()) {
    const ref = await reference(pred, target);
    const p = await pool.psnr(pred, target);
    assert.deepEqual(Array.from(p.values), psnr(pred, target));
    p.values.forEach((v, i) => {
      const r = ref.psnr[i];
      if (r === null || r === undefined) assert.ok(v === PSNR_CAP_DB && p.identical[i] === 1, `frame ${i} identical`);
      else assert.ok(Math.abs(v - r) <= 1e-9 && p.identical[i] === 0, `psnr frame ${i}: ${v} vs ${r}`);
    });
    for (const variant of ['gaussian', 'skimage'] as const) {
      const s = await pool.ssim(pred, target, variant);
      assert.deepEqual(Array.from(s.values), ssim(pred, target, variant), `${variant}: pool = single thread`);
      const want = variant === 'gaussian' ? ref.ssim_gaussian : ref.ssim_skimage;
      s.values.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) <= 1e-9, `${variant} ${pred.width}² frame ${i}: ${v} vs ${want[i]}`));
    }
  }
});

test('PsnrMetric and SsimMetric with a pool compute() the same as without', { timeout: 60_000 }, async () => {
  const [big] = await pairs();
  for (const mk of [(o: { pool?: FramePool }) => new PsnrMetric(o), (o: { pool?: FramePool }) => new SsimMetric('gaussian', o)]) {
    const single = mk({});
    const pooled = mk({ pool });
    await single.update(big!.pred, big!.target);
    await pooled.update(big!.pred, big!.target);
    assert.deepEqual(pooled.compute(), single.compute());
    assert.deepEqual(pooled.takeFrames(), single.takeFrames());
  }
  // an error on a worker thread reaches the caller as the same DifftalkError
  const a = await loadAstronaut();
  const tiny = frames(crop(a, 0, 0, 8, 8), crop(a, 8, 8, 8, 8));
  await assert.rejects(new SsimMetric('gaussian', { pool }).update(tiny, tiny), (e: unknown) => e instanceof DifftalkError && e.code === 'frame-too-small');
});
