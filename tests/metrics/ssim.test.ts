import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DifftalkError } from '../../src/util/errors.js';
import { SsimMetric, ssimFrame } from '../../src/metrics/ssim.js';
import { crop, frames, loadAstronaut, quantise } from './astronaut.js';

test('SSIM variants on astronaut.png match eval-metrics.md §2 golden values (incl. per channel)', async () => {
  // Reference: ../shared/docs/eval-metrics.md §2 table (skimage 0.19.3); tolerance 1e-6 (table rounded to 6 d.p.).
  const a = await loadAstronaut();
  const pairs = [
    { name: 'shift', x: crop(a, 0, 0, 512, 511), y: crop(a, 0, 1, 512, 511), sk: 0.841861, g: 0.83057, ch: [0.849929, 0.843336, 0.798445] },
    { name: 'quantised', x: a, y: quantise(a), sk: 0.824705, g: 0.821123, ch: [0.829547, 0.821969, 0.811852] },
  ];
  const close = (v: number, ref: number, what: string) => assert.ok(Math.abs(v - ref) <= 1e-6, `${what}: ${v} vs ${ref}`);
  for (const p of pairs) {
    const g = ssimFrame(p.x.data, p.y.data, p.x.width, p.x.height, 'gaussian');
    close(g.ssim, p.g, `${p.name} gaussian`);
    g.perChannel.forEach((v, c) => close(v, p.ch[c]!, `${p.name} gaussian channel ${c}`));
    close(ssimFrame(p.x.data, p.y.data, p.x.width, p.x.height, 'skimage').ssim, p.sk, `${p.name} skimage`);
  }
});

test('SsimMetric averages frames, names its variant, rejects tiny frames', async () => {
  const a = await loadAstronaut();
  const small = crop(a, 100, 100, 64, 64);
  const sq = quantise(small);
  const m = new SsimMetric('skimage');
  assert.equal(m.name, 'ssim(skimage-7)');
  assert.equal(new SsimMetric().name, 'ssim(gaussian-11-1.5)');
  await m.update(frames(small, small), frames(sq, small));
  const r = m.compute();
  const single = ssimFrame(small.data, sq.data, 64, 64, 'skimage').ssim;
  // identical frames give exactly 1; tolerance 1e-12 (float64 rounding)
  assert.ok(Math.abs(r.value - (single + 1) / 2) < 1e-12);
  assert.equal((r.extra.perChannel as number[]).length, 3);
  const tiny = crop(a, 0, 0, 8, 8);
  await assert.rejects(
    new SsimMetric('gaussian').update(frames(tiny), frames(tiny)),
    (e: unknown) => e instanceof DifftalkError && e.code === 'frame-too-small',
  );
});
