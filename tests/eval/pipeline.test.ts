/**
 * `difftalk eval` pipeline on the real AOC clip (../shared/data/media, 512², 25 fps, 200 frames) against a degraded copy
 * (ffmpeg mpeg4 -q:v 20, first 60 frames). References: GT-vs-GT PSNR = 100 dB cap and SSIM = 1 exactly (identical
 * frames); the degraded copy must score strictly worse (no numeric golden value: the degradation is what is tested).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { runEval, type EvalResult } from '../../src/eval/pipeline.js';
import { writeEvalReport } from '../../src/eval/report.js';
import { SyncNet, syncnetParamShapes } from '../../src/models/syncnet.js';
import { runTool } from '../../src/util/exec.js';
import { initBackend } from '../../src/util/tf.js';
import { det } from '../../src/weights/det.js';
import { writeSafetensors } from '../../src/weights/safetensors.js';
import { AOC_CLIP, tmpDir } from '../helpers.js';

describe('difftalk eval pipeline (AOC clip vs a JPEG-like recompressed copy)', () => {
  const dir = tmpDir('difftalk-eval-');
  const pred = path.join(dir, 'pred', 'WDA_AlexandriaOcasioCortez_000.mp4');
  let result: EvalResult;

  before(async () => {
    await initBackend('wasm');
    await runTool('ffmpeg', ['-v', 'error', '-y', '-i', AOC_CLIP, '-frames:v', '60', '-c:v', 'mpeg4', '-q:v', '20', '-c:a', 'aac', path.join(dir, 'tmp.mp4')]);
    const { mkdir, rename } = await import('node:fs/promises');
    await mkdir(path.dirname(pred), { recursive: true });
    await rename(path.join(dir, 'tmp.mp4'), pred);
    result = await writeEvalReport(
      await runEval({ pred, gt: AOC_CLIP, out: path.join(dir, 'out'), metrics: ['psnr', 'ssim', 'lmd'], crop: 'face', baseline: true, maxLengthDiff: 140 }),
    );
  });

  it('aligns frame counts and records the mismatch', () => {
    const row = result.clips.find((c) => c.system === 'pred')!;
    assert.equal(row.frames, 60);
    assert.ok(
      row.notes.some((n) => n.includes('prediction 60, GT 200')),
      row.notes.join('; '),
    );
  });

  it('resamples a prediction at another frame rate to the GT rate and notes it', async () => {
    // The same 2 s at 30 fps (frames repeated by timestamp, lossless): resampled back to 25 fps it is the original.
    const p30 = path.join(dir, 'p30', 'clip.mp4');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(path.dirname(p30), { recursive: true });
    await runTool('ffmpeg', ['-v', 'error', '-i', AOC_CLIP, '-t', '2', '-r', '30', '-c:v', 'libx264', '-qp', '0', '-pix_fmt', 'yuv444p', '-an', p30]);
    const r = await runEval({ pred: p30, gt: AOC_CLIP, out: path.join(dir, 'out30'), metrics: ['psnr'], crop: 'none', maxLengthDiff: 150 });
    const row = r.clips.find((c) => c.system === 'pred')!;
    assert.ok(
      row.notes.some((n) => /30 fps, GT 25 fps: prediction resampled to 25 fps/.test(n)),
      row.notes.join('; '),
    );
    assert.equal(row.frames, 50);
    // Reference: the GT frames themselves; lossless yuv444p round trip → only RGB↔YUV rounding (> 40 dB).
    assert.ok(row.scores['psnr(rgb-255-cap100)']! > 40, JSON.stringify(row.scores));
  });

  it('scores the degraded copy below GT-vs-GT, with variant names', (t) => {
    t.diagnostic(JSON.stringify(result.summary));
    const get = (sys: string, name: string) => result.summary[sys]!.find((m) => m.name.startsWith(name))!;
    const psnrPred = get('pred', 'psnr(rgb-255-cap100)');
    const psnrGt = get('gt', 'psnr(rgb-255-cap100)');
    assert.equal(psnrGt.value, 100); // identical frames hit the documented 100 dB cap
    assert.ok(psnrPred.value > 15 && psnrPred.value < 45, `psnr ${psnrPred.value}`);
    const ssimPred = get('pred', 'ssim(gaussian-11-1.5)');
    assert.equal(get('gt', 'ssim(gaussian-11-1.5)').value, 1);
    assert.ok(ssimPred.value < 0.99 && ssimPred.value > 0.3, `ssim ${ssimPred.value}`);
    const lmdPred = get('pred', 'lmd(mouth-48-67,tfjs)');
    assert.equal(get('gt', 'lmd(mouth-48-67,tfjs)').value, 0);
    assert.ok(lmdPred.value > 0 && lmdPred.value < 5, `lmd ${lmdPred.value} px`);
    assert.equal(psnrPred.count, 60);
  });

  it('writes frames.csv, clips.csv, summary.json and an HTML report with SVG plots and JPEGs', () => {
    const frames = readFileSync(result.files.framesCsv, 'utf8').trim().split('\n');
    assert.equal(frames[0], 'clip,system,frame,psnr(rgb-255-cap100),ssim(gaussian-11-1.5),"lmd(mouth-48-67,tfjs)"'); // RFC 4180 quoting of the comma
    assert.equal(frames.length, 1 + 120); // pred + gt rows
    const clips = readFileSync(result.files.clipsCsv, 'utf8');
    assert.match(clips, /^clip,system,frames,/);
    const summary = JSON.parse(readFileSync(result.files.summary, 'utf8'));
    assert.equal(summary.protocol.crop, 'face');
    assert.equal(summary.protocol.landmarkEngine.engine, 'tfjs');
    const html = readFileSync(result.files.report, 'utf8');
    assert.match(html, /<svg/);
    assert.match(html, /data:image\/jpeg;base64,/);
  });

  it('computes LSE with the given weights and labels them', async (t) => {
    // det() weights written as a plain safetensors file: exercises the path, labelled as user weights (not syncnet-v2).
    const file = path.join(dir, 'det-syncnet.safetensors');
    const shapes = syncnetParamShapes().filter(([n]) => !n.endsWith('num_batches_tracked'));
    await writeSafetensors(file, new Map(shapes.map(([n, s]) => [n, { dtype: 'float32' as const, shape: s, data: det(n, s) }])));
    // 'auto' (eval without --backend: onnxruntime when it loads) and 'tfjs' (--backend given): the same network
    // description on two executors; LSE-D / LSE-C agree to float32 round-off (1e-5 relative; measured embeddings ≤ 2e-6).
    const r = await runEval({
      pred,
      gt: AOC_CLIP,
      out: path.join(dir, 'out2'),
      metrics: ['lse'],
      syncnetWeights: file,
      maxLengthDiff: 140,
      netExecutor: 'auto',
    });
    const rt = await runEval({
      pred,
      gt: AOC_CLIP,
      out: path.join(dir, 'out3'),
      metrics: ['lse'],
      syncnetWeights: file,
      maxLengthDiff: 140,
      netExecutor: 'tfjs',
    });
    assert.match(r.protocol.networks.syncnet!, /^onnxruntime-cpu \(\d+ threads\)$/);
    assert.equal(rt.protocol.networks.syncnet, 'tfjs-wasm');
    for (const k of ['lseD', 'lseC'] as const) {
      const [a, b] = [r.clips[0]!.lse![k], rt.clips[0]!.lse![k]];
      assert.ok(Math.abs(a - b) <= 1e-5 * Math.max(1, Math.abs(b)), `${k}: auto ${a} vs tfjs ${b}`);
    }
    assert.equal(r.clips[0]!.lse!.offset, rt.clips[0]!.lse!.offset);
    const row = r.clips[0]!;
    const names = Object.keys(row.scores);
    assert.ok(
      names.some((n) => /^lse-d\(syncnet-user:[0-9a-f]{12}\)$/.test(n)),
      names.join(),
    );
    assert.equal(row.lse!.windows, 55); // min(60 frames, floor(samples/640)) − 5
    assert.equal(row.lse!.mdist.length, 31);
    assert.ok(r.lseWindowsPerSecond! > 0);
    t.diagnostic(`LSE ${r.lseWindowsPerSecond!.toFixed(2)} windows/s; ${JSON.stringify(row.scores)}`);
    void SyncNet;
  });

  it('gives clear errors: missing file, missing weights, FID', async () => {
    await assert.rejects(runEval({ pred: path.join(dir, 'nope.mp4'), gt: AOC_CLIP, out: path.join(dir, 'fresh') }), /--pred .*nope\.mp4 does not exist/);
    const empty = tmpDir('difftalk-weights-');
    // LPIPS weights are fetched on first use; a mirror on a closed local port makes the download fail the same way
    // with or without internet: the error names the URL and the manual import command.
    const mirror = process.env.DIFFTALK_WEIGHTS_MIRROR;
    process.env.DIFFTALK_WEIGHTS_MIRROR = 'http://127.0.0.1:9';
    try {
      await assert.rejects(
        runEval({ pred, gt: AOC_CLIP, out: path.join(dir, 'fresh'), metrics: ['lpips'], weightsCacheDir: empty }),
        (e: Error & { code?: string }) =>
          e.code === 'download-failed' &&
          /127\.0\.0\.1:9\/alexnet-owt-7be5be79\.pth/.test(e.message) &&
          /difftalk weights import --kind lpips-alex/.test(String((e as { suggestion?: string }).suggestion)),
      );
    } finally {
      if (mirror === undefined) delete process.env.DIFFTALK_WEIGHTS_MIRROR;
      else process.env.DIFFTALK_WEIGHTS_MIRROR = mirror;
    }
    await assert.rejects(
      runEval({ pred, gt: AOC_CLIP, out: path.join(dir, 'fresh'), metrics: ['lse'], weightsCacheDir: empty }),
      (e: Error & { code?: string }) => e.code === 'weights-missing',
    );
    await assert.rejects(
      runEval({ pred, gt: AOC_CLIP, out: path.join(dir, 'fresh'), metrics: ['fid'], weightsCacheDir: empty }),
      (e: Error & { code?: string }) => e.code === 'weights-missing' && /pt_inception-2015-12-05-6726825d\.pth/.test(e.message),
    );
  });
});
