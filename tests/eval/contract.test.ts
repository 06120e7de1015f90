/**
 * The eval metric contract (issue 11 point 5, issue 12 points 2 and 7):
 * - every metric declares its direction (higher / lower / nearer zero) and the summary takes it from the metric;
 * - merge() of two halves equals one pass (PSNR, SSIM on the real astronaut image; FID on deterministic features,
 *   reference: fidFromFeatures on all features at once; LSE on per-video scores, reference: lseMean);
 * - a single image, or a non-empty --out without --force, is an error with the fix;
 * - the report records the tool version, the command line; notes reach the console (log events); the eval stage has a bar.
 * Tolerances: exact equality for the frame-metric and LSE means up to float summation order (1e-12 relative), FID 1e-9.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { runEval } from '../../src/eval/pipeline.js';
import { svgLines } from '../../src/eval/report.js';
import { FidMetric, fidFromFeatures } from '../../src/metrics/fid.js';
import { LmdMetric } from '../../src/metrics/lmd.js';
import { LpipsMetric } from '../../src/metrics/lpips.js';
import { LseMetric, lseMean, syncScoresFromEmbeddings } from '../../src/metrics/lse.js';
import { worseFirst } from '../../src/metrics/metric.js';
import { PsnrMetric } from '../../src/metrics/psnr.js';
import { SsimMetric } from '../../src/metrics/ssim.js';
import type { ProgressEvent } from '../../src/util/events.js';
import { runTool } from '../../src/util/exec.js';
import { VERSION } from '../../src/util/version.js';
import { det } from '../../src/weights/det.js';
import { AOC_CLIP, MEDIA, tmpDir } from '../helpers.js';
import { crop, frames, loadAstronaut, quantise, type Image } from '../metrics/astronaut.js';

const close = (a: number, b: number, rel: number) => Math.abs(a - b) <= rel * Math.max(1, Math.abs(a), Math.abs(b));

describe('metric contract: direction from the metric', () => {
  it('each metric class declares its direction; worst-first ordering follows it', () => {
    assert.equal(PsnrMetric.direction, 'higher');
    assert.equal(SsimMetric.direction, 'higher');
    assert.equal(LpipsMetric.direction, 'lower');
    assert.equal(LmdMetric.direction, 'lower');
    assert.equal(FidMetric.direction, 'lower');
    assert.deepEqual(LseMetric.direction, { 'lse-d': 'lower', 'lse-c': 'higher', 'av-offset': 'zero' });
    assert.deepEqual([3, 1, 2].sort(worseFirst('higher')), [1, 2, 3]);
    assert.deepEqual([3, 1, 2].sort(worseFirst('lower')), [3, 2, 1]);
    assert.deepEqual([0, -4, 2].sort(worseFirst('zero')), [-4, 2, 0]);
  });
});

describe('metric contract: merge of two halves equals one pass', () => {
  let a: Image;
  let b: Image;
  before(async () => {
    const img = await loadAstronaut();
    a = crop(img, 0, 0, 64, 64);
    b = crop(img, 100, 100, 64, 64);
  });

  for (const make of [() => new PsnrMetric(), () => new SsimMetric('gaussian'), () => new SsimMetric('skimage')]) {
    it(`${make().name}`, async () => {
      const pred = [quantise(a), quantise(b), b, a];
      const gt = [a, b, quantise(b), quantise(a)];
      const whole = make();
      await whole.update(frames(...pred), frames(...gt));
      const h1 = make();
      const h2 = make();
      await h1.update(frames(...pred.slice(0, 2)), frames(...gt.slice(0, 2)));
      await h2.update(frames(...pred.slice(2)), frames(...gt.slice(2)));
      h1.merge(h2);
      const w = whole.compute();
      const m = h1.compute();
      assert.equal(m.frames, 4);
      assert.ok(close(m.value, w.value, 1e-12), `${m.value} vs ${w.value}`);
      assert.equal(m.direction, w.direction);
      h1.reset();
      assert.equal(h1.compute().frames, 0);
    });
  }

  it('fid (features: deterministic, 40 + 40 samples of 16 dims)', () => {
    const dim = 16;
    const p = det('fid-pred', [40, dim]);
    const g = det('fid-gt', [40, dim]).map((x) => x * 1.3 + 0.1);
    const whole = new FidMetric('test', dim);
    whole.update(p, g);
    const h1 = new FidMetric('test', dim);
    const h2 = new FidMetric('test', dim);
    h1.update(p.subarray(0, 20 * dim), g.subarray(0, 20 * dim));
    h2.update(p.subarray(20 * dim), g.subarray(20 * dim));
    h1.merge(h2);
    const ref = fidFromFeatures(p, 40, g, 40, dim);
    assert.ok(close(whole.compute().value, ref, 1e-9));
    assert.ok(close(h1.compute().value, ref, 1e-9), `${h1.compute().value} vs ${ref}`);
    assert.ok(h1.compute().value > 0);
    assert.ok(Math.abs(h1.compute(true).value) < 1e-6);
    assert.throws(() => h1.merge(new FidMetric('other', dim)), /cannot merge/);
  });

  it('lse (per-video scores from deterministic embeddings; reference: lseMean over all videos)', () => {
    const dim = 8;
    const videos = [0, 1, 2, 3].map((v) => syncScoresFromEmbeddings({ lip: det(`lip${v}`, [40, dim]), aud: det(`aud${v}`, [40, dim]), windows: 40, dim }));
    const h1 = new LseMetric();
    const h2 = new LseMetric();
    videos.slice(0, 1).forEach((s, i) => h1.update(`v${i}`, s));
    videos.slice(1).forEach((s, i) => h2.update(`v${i + 1}`, s));
    h1.merge(h2);
    const ref = lseMean(videos);
    const got = h1.compute();
    assert.equal(got.videos, 4);
    assert.ok(close(got.lseD, ref.lseD, 1e-12) && close(got.lseC, ref.lseC, 1e-12));
  });
});

describe('eval refuses silent cases and records provenance (real AOC clip)', () => {
  const dir = tmpDir('difftalk-eval-contract-');
  const pred = path.join(dir, 'pred.mp4');
  before(async () => {
    // 12 frames, lossless RGB: PSNR against the GT's first 12 frames is high but the counts differ (12 vs 200).
    await runTool('ffmpeg', ['-v', 'error', '-i', AOC_CLIP, '-frames:v', '12', '-c:v', 'libx264rgb', '-qp', '0', '-an', pred]);
  });

  it('a single image is an error with the fix', async () => {
    await assert.rejects(
      runEval({ pred: path.join(MEDIA, 'astronaut.png'), gt: AOC_CLIP, out: path.join(dir, 'o1'), metrics: ['psnr'], crop: 'none' }),
      (e: Error & { code?: string; suggestion?: string }) => e.code === 'single-image' && /ffmpeg/.test(String(e.suggestion)),
    );
  });

  it('a non-empty --out is refused without force, written with it; version, command line, directions, notes on the console', async () => {
    const out = path.join(dir, 'used');
    mkdirSync(out);
    writeFileSync(path.join(out, 'mine.txt'), 'the user’s file');
    await assert.rejects(
      runEval({ pred, gt: AOC_CLIP, out, metrics: ['psnr'], crop: 'none', maxLengthDiff: 188 }),
      (e: Error & { code?: string; suggestion?: string }) => e.code === 'out-not-empty' && /--force/.test(String(e.suggestion)),
    );
    const events: ProgressEvent[] = [];
    const r = await runEval({
      pred,
      gt: AOC_CLIP,
      out,
      metrics: ['psnr', 'ssim'],
      crop: 'none',
      maxLengthDiff: 188, // the prediction is the GT's first 12 of 200 frames
      force: true,
      commandLine: ['difftalk', 'eval', '--pred', pred],
      onEvent: (e) => events.push(e),
    });
    assert.equal(r.protocol.tool.version, VERSION);
    assert.deepEqual(r.protocol.commandLine, ['difftalk', 'eval', '--pred', pred]);
    assert.deepEqual(
      r.summary.pred!.map((m) => [m.name, m.direction]),
      [
        ['psnr(rgb-255-cap100)', 'higher'],
        ['ssim(gaussian-11-1.5)', 'higher'],
      ],
    );
    assert.ok(events.some((e) => e.type === 'stage-start' && e.stage === 'eval' && e.total === 1));
    assert.ok(events.some((e) => e.type === 'log' && e.level === 'warn' && /frame counts differ \(prediction 12, GT 200\)/.test(e.message)));
  });
});

describe('report plots', () => {
  it('the prediction sets the vertical scale; the GT cap line is clipped and labelled so', () => {
    const svg = svgLines(
      'psnr',
      [
        { label: 'pred', values: [30, 32, 31], color: '#000' },
        { label: 'gt', values: [100, 100, 100], color: '#f00' },
      ],
      640,
      180,
      0,
    );
    assert.match(svg, />32\.0000</); // top of the axis is the prediction's maximum, not 100
    assert.doesNotMatch(svg, />100\.00</);
    assert.match(svg, /gt \(clipped\)/);
  });
});
