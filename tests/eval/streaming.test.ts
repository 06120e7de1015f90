/**
 * Streamed eval decoding (issue 11 point 5) on the real AOC clip (512², 25 fps, 200 frames):
 * - streamFrames (one ffmpeg run, chunks with back-pressure) yields exactly the bytes decodeFrames gives for the whole
 *   range (reference: the whole-video decode; exact equality), with skip/count and with fps resampling;
 * - runEval in chunks of 7 frames gives the same per-frame values, clip scores, summary and worst frames as one chunk
 *   (exact equality: every metric's update() sees the same frames, LSE windows are batched the same way);
 * - memory is bounded: a 2000² prediction of 60 frames against the 200-frame GT decoded at 2000² (before: the whole GT,
 *   2.4 GB, and the whole prediction, 0.7 GB, in memory: 5.7 GB peak RSS measured on main a367ff9; 0.56 GB streamed, same
 *   PSNR 37.5506 dB) runs in a child process whose peak RSS is measured; bound 1.2 GB.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chunkFrames } from '../../src/eval/clip-reader.js';
import { runEval, type EvalResult } from '../../src/eval/pipeline.js';
import { decodeFrames, streamFrames } from '../../src/media/frames.js';
import { SyncStream, syncScores } from '../../src/metrics/lse.js';
import { SyncNet, syncnetParamShapes } from '../../src/models/syncnet.js';
import { runProcess, runTool } from '../../src/util/exec.js';
import { initBackend } from '../../src/util/tf.js';
import { det } from '../../src/weights/det.js';
import { writeSafetensors } from '../../src/weights/safetensors.js';
import { AOC_CLIP, tmpDir } from '../helpers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

async function collect(it: AsyncIterable<{ count: number; data: Uint8Array }>, max: number): Promise<{ data: Buffer; count: number }> {
  const parts: Buffer[] = [];
  let count = 0;
  for await (const c of it) {
    assert.ok(c.count <= max, `chunk of ${c.count} > ${max}`);
    parts.push(Buffer.from(c.data));
    count += c.count;
  }
  return { data: Buffer.concat(parts), count };
}

describe('streamFrames: chunks equal the whole decode', () => {
  it('whole clip, a range, and resampled to 30 fps', async () => {
    const whole = await decodeFrames(AOC_CLIP, { width: 128, height: 128 });
    const s = await collect(streamFrames(AOC_CLIP, { chunk: 7, width: 128, height: 128 }), 7);
    assert.equal(s.count, 200);
    assert.ok(Buffer.from(whole.data).equals(s.data));
    const range = await collect(streamFrames(AOC_CLIP, { chunk: 7, width: 128, height: 128, skip: 13, count: 30 }), 7);
    assert.equal(range.count, 30);
    assert.ok(Buffer.from(whole.data.subarray(13 * 128 * 128 * 3, 43 * 128 * 128 * 3)).equals(range.data));
    const r30 = await decodeFrames(AOC_CLIP, { width: 64, height: 64, fps: 30 });
    const s30 = await collect(streamFrames(AOC_CLIP, { chunk: 16, width: 64, height: 64, fps: 30 }), 16);
    assert.equal(s30.count, r30.count);
    assert.ok(Buffer.from(r30.data).equals(s30.data));
  });

  it('chunk size bounds the bytes per side (64 MiB, 1..64 frames)', () => {
    assert.equal(chunkFrames(512, 512), 64);
    assert.equal(chunkFrames(2000, 2000), 5);
    assert.equal(chunkFrames(10000, 10000), 1);
  });
});

describe('runEval streamed in small chunks equals one chunk (real AOC clip, 24-frame recompressed prediction)', () => {
  const dir = tmpDir('difftalk-eval-stream-');
  const pred = path.join(dir, 'pred', 'WDA_AlexandriaOcasioCortez_000.mp4');
  let weights: string;
  before(async () => {
    await initBackend('wasm');
    mkdirSync(path.dirname(pred), { recursive: true });
    await runTool('ffmpeg', ['-v', 'error', '-i', AOC_CLIP, '-frames:v', '24', '-c:v', 'mpeg4', '-q:v', '20', '-c:a', 'aac', pred]);
    weights = path.join(dir, 'det-syncnet.safetensors');
    const shapes = syncnetParamShapes().filter(([n]) => !n.endsWith('num_batches_tracked'));
    await writeSafetensors(weights, new Map(shapes.map(([n, s]) => [n, { dtype: 'float32' as const, shape: s, data: det(n, s) }])));
  });

  it('PSNR, SSIM, LMD, LSE with baselines: identical values, chunk sizes recorded', async () => {
    const run = (chunk: number | undefined, out: string): Promise<EvalResult> =>
      runEval({
        pred,
        gt: AOC_CLIP,
        out: path.join(dir, out),
        metrics: ['psnr', 'ssim', 'lmd', 'lse'],
        baseline: true,
        baselineShift: 3,
        syncnetWeights: weights,
        maxLengthDiff: 176,
        chunkFrames: chunk,
      });
    const one = await run(undefined, 'one');
    const small = await run(7, 'small');
    assert.deepEqual(one.protocol.chunkFrames, [64]);
    assert.deepEqual(small.protocol.chunkFrames, [7]);
    assert.deepEqual(small.frames, one.frames);
    assert.deepEqual(small.clips, one.clips);
    assert.deepEqual(small.summary, one.summary);
    assert.deepEqual(
      small.worst.map((w) => [w.frame, w.value, Buffer.from(w.jpeg).toString('base64')]),
      one.worst.map((w) => [w.frame, w.value, Buffer.from(w.jpeg).toString('base64')]),
    );
    assert.equal(one.clips[0]!.frames, 24);
    assert.equal(one.clips[0]!.lse!.windows, 19);
  });

  it('SyncStream fed in chunks equals syncScores on all crops, holding at most one batch + 5 + a chunk', async () => {
    const net = SyncNet.fromTensors(new Map(syncnetParamShapes().map(([n, s]) => [n, { shape: s, data: det(n, s) }])));
    const crops = Array.from({ length: 30 }, (_, i) => Uint8Array.from(det(`crop${i}`, [224 * 224 * 3]), (x) => Math.floor((x + 1) * 127)));
    const samples = Float32Array.from(det('audio', [30 * 640]), (x) => x * 3000);
    const want = await syncScores(net, { frames: crops, samples, sampleRate: 16000 });
    const s = new SyncStream(net, { samples, sampleRate: 16000 });
    for (let i = 0; i < crops.length; i += 4) await s.push(crops.slice(i, i + 4));
    assert.deepEqual(await s.finish(), want);
    assert.ok(s.maxHeld <= 8 + 5 + 4, `held ${s.maxHeld}`);
    net.dispose();
  });
});

describe('bounded memory on a 2000² prediction (child process, peak RSS)', () => {
  const dir = tmpDir('difftalk-eval-mem-');
  const pred = path.join(dir, 'big.mp4');
  before(async () => {
    await runTool('ffmpeg', ['-v', 'error', '-i', AOC_CLIP, '-frames:v', '60', '-vf', 'scale=2000:2000', '-c:v', 'mpeg4', '-q:v', '10', '-an', pred]);
  });

  it('PSNR over 60 frames at 2000² stays under 1.2 GB peak RSS (whole-clip decoding: 5.7 GB)', async (t) => {
    const script = [
      `import { runEval } from ${JSON.stringify(path.join(ROOT, 'src/eval/pipeline.ts'))};`,
      `const r = await runEval({ pred: ${JSON.stringify(pred)}, gt: ${JSON.stringify(AOC_CLIP)}, out: ${JSON.stringify(path.join(dir, 'out'))},`,
      `  metrics: ['psnr'], crop: 'none', resize: true, maxLengthDiff: 140 });`,
      `console.log(JSON.stringify({ rss: process.resourceUsage().maxRSS * 1024, chunk: r.protocol.chunkFrames, frames: r.clips[0].frames, psnr: r.summary.pred[0].value }));`,
    ].join('\n');
    const { stdout } = await runProcess(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT });
    const m = JSON.parse(stdout.toString().trim().split('\n').at(-1)!) as { rss: number; chunk: number[]; frames: number; psnr: number };
    assert.deepEqual(m.chunk, [5]);
    assert.equal(m.frames, 60);
    assert.ok(m.psnr > 20 && m.psnr < 60, `psnr ${m.psnr}`);
    t.diagnostic(`peak RSS ${(m.rss / 1024 ** 2).toFixed(0)} MiB, PSNR ${m.psnr}`);
    assert.ok(m.rss < 1.2 * 1024 ** 3, `peak RSS ${(m.rss / 1024 ** 2).toFixed(0)} MiB`);
  });
});
