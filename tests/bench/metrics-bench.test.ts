/**
 * The metric section of `npm run bench` (bench/metrics.ts + bench/torch/metrics_bench.py) in its quick mode (one timed
 * run per item, small batches): every eval metric has a row with a positive difftalk rate, a positive reference rate
 * from Debian's python3 (numpy, scikit-image, PyTorch 1.13 CPU) and a finite ratio, and the printed table carries them.
 * Timings are not asserted (a shared machine; quick mode times single runs).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { benchMetrics, METRIC_BENCH_METRICS, renderMetricBench } from '../../bench/metrics.js';

test('metric bench, quick: every metric beside its Python reference with a finite ratio', { timeout: 300_000 }, async () => {
  const r = await benchMetrics({ quick: true, backend: 'auto', python: '/usr/bin/python3' });
  assert.deepEqual(
    r.rows.map((x) => x.metric),
    ['psnr', 'ssim-gaussian', 'ssim-skimage', 'lpips-alex', 'lpips-vgg', 'fid', 'fvd', 'lse', 'lmd'],
  );
  assert.deepEqual(METRIC_BENCH_METRICS, ['psnr', 'ssim-gaussian', 'ssim-skimage', 'lpips-alex', 'lpips-vgg', 'fid', 'fvd', 'lse', 'lmd']);
  for (const x of r.rows) {
    assert.equal(x.referenceError, undefined, `${x.metric}: ${x.referenceError}`);
    assert.ok(x.difftalk > 0 && Number.isFinite(x.difftalk), `${x.metric} difftalk ${x.difftalk}`);
    assert.ok(x.reference > 0 && Number.isFinite(x.reference), `${x.metric} reference ${x.reference}`);
    assert.ok(x.referenceImpl.length > 0);
  }
  const md = renderMetricBench(r);
  for (const x of r.rows) {
    const row = md.split('\n').find((l) => l.startsWith(`| ${x.metric} |`));
    assert.ok(row, `table row for ${x.metric}`);
    const ratio = Number(row.split(' | ')[3]);
    assert.ok(Number.isFinite(ratio) && ratio > 0, `${x.metric} ratio ${ratio}`);
  }
});
