/**
 * Prepared-dataset inputs of the eval side: `syncClipsFromDataset` (train syncnet --data) and `runEval --gt <dataset>`.
 * A one-clip dataset is written with the team's shard writer from 30 real AOC frames (256², PNG, lossless) and the
 * PSF MFCC windows of the clip audio (frameWindows, window 20). References: the stored window of frame i+2 must equal
 * SyncNet's MFCC window 4i…4i+19 exactly (windows.ts convention); PNG frames vs the same decoded frames give the
 * 100 dB PSNR cap exactly.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { runEval } from '../../src/eval/pipeline.js';
import { audioWindowsFromMfcc, syncClipsFromDataset } from '../../src/train/syncnet.js';
import { mfcc } from '../../src/audio/mfcc.js';
import { loadAudio16k } from '../../src/audio/wav.js';
import { frameWindows } from '../../src/audio/windows.js';
import { decodeFrames } from '../../src/media/frames.js';
import { encodeFrames, writeClipShards, type ShardMetadata } from '../../src/dataset/shard-writer.js';
import { runTool } from '../../src/util/exec.js';
import { initBackend } from '../../src/util/tf.js';
import { AOC_CLIP, tmpDir } from '../helpers.js';

const N = 30;
const SIZE = 256;

describe('eval and SyncNet training on a prepared dataset', () => {
  const dir = tmpDir('difftalk-ds-');
  const ds = path.join(dir, 'dataset');
  let mf: { data: Float64Array; frames: number };

  before(async () => {
    await initBackend('wasm');
    const frames = await decodeFrames(AOC_CLIP, { width: SIZE, height: SIZE, count: N });
    const audio = await loadAudio16k(AOC_CLIP);
    const m = mfcc(audio.samples, audio.sampleRate);
    mf = { data: m.data, frames: m.frames };
    const windows = frameWindows({ data: Float32Array.from(m.data), frames: m.frames, dim: m.dim, rate: m.rate }, N, 25, 20);
    const metadata: ShardMetadata = {
      fps: 25,
      size: SIZE,
      imageFormat: 'png',
      landmarker: { engine: 'none', model: 'none', sha256: '', smoothing: null },
      audioFeatures: [{ name: 'mfcc', column: 'audio_mfcc', window: 20, dim: 13, rate: 100, params: {} }],
      reference: { sampler: 'test', seed: 0, min_gap: { before: 0, after: 0 }, last_frame_allowed: true, policy: 'farthest' },
    };
    await writeClipShards(
      ds,
      {
        clipId: 'aoc',
        split: 'train',
        fps: 25,
        images: await encodeFrames(frames, { format: 'png' }),
        faceStatus: new Array(N).fill('ok'),
        faceScore: new Float32Array(N).fill(1),
        landmarks478: new Float32Array(N * 1434).fill(Number.NaN),
        landmarks478Raw: new Float32Array(N * 1434).fill(Number.NaN),
        landmarks68: new Float32Array(N * 136).fill(Number.NaN),
        maskRowTrain: new Int32Array(N).fill(-1),
        maskRowTest: new Int32Array(N).fill(-1),
        audio: [{ name: 'mfcc', windows }],
        refFrameIndex: new Int32Array(N),
      },
      { maxRows: 16, metadata },
    );
    // The prediction: the very same 30 RGB frames, losslessly encoded (FFV1 planar RGB), named like the clip id.
    await mkdir(path.join(dir, 'pred'), { recursive: true });
    const raw = path.join(dir, 'frames.rgb');
    await writeFile(raw, frames.data);
    await runTool('ffmpeg', [
      '-v',
      'error',
      '-y',
      '-f',
      'rawvideo',
      '-pix_fmt',
      'rgb24',
      '-s',
      `${SIZE}x${SIZE}`,
      '-r',
      '25',
      '-i',
      raw,
      '-c:v',
      'ffv1',
      '-pix_fmt',
      'gbrp',
      path.join(dir, 'pred', 'aoc.mkv'),
    ]);
  });

  it('reads SyncNet clips whose audio windows are MFCC frames 4i…4i+19 (exact)', async () => {
    const clips = await syncClipsFromDataset(ds);
    assert.equal(clips.length, 1);
    const c = clips[0]!;
    assert.equal(c.windows, N - 4);
    assert.equal(c.frames.length, N);
    assert.equal(c.frames[0]!.length, 224 * 224 * 3);
    const want = audioWindowsFromMfcc(mf.data, mf.frames, c.windows);
    assert.deepEqual(Array.from(c.audio), Array.from(want));
  });

  it('pairs a video with its clip_id and compares against the stored frames', async () => {
    const r = await runEval({ pred: path.join(dir, 'pred'), gt: ds, out: path.join(dir, 'out'), metrics: ['psnr'], crop: 'none' });
    assert.equal(r.clips.length, 1);
    assert.equal(r.clips[0]!.clip, 'aoc');
    assert.equal(r.clips[0]!.frames, N);
    // The same RGB frames through lossless FFV1 and lossless PNG: identical → the documented 100 dB cap, exactly.
    const psnr = r.summary.pred!.find((m) => m.name === 'psnr(rgb-255-cap100)')!;
    assert.equal(psnr.value, 100);
  });

  it('a prediction at another size than the dataset is an error unless --resize (then noted)', async () => {
    const big = path.join(dir, 'pred-512');
    await mkdir(big, { recursive: true });
    await runTool('ffmpeg', ['-v', 'error', '-i', AOC_CLIP, '-frames:v', String(N), '-c:v', 'ffv1', path.join(big, 'aoc.mkv')]);
    await assert.rejects(
      runEval({ pred: big, gt: ds, out: path.join(dir, 'out-512'), metrics: ['psnr'], crop: 'none' }),
      (e: Error & { code?: string; suggestion?: string }) => e.code === 'size-mismatch' && /256×256/.test(e.message) && /--resize/.test(String(e.suggestion)),
    );
    const r = await runEval({ pred: big, gt: ds, out: path.join(dir, 'out-512r'), metrics: ['psnr'], crop: 'none', resize: true });
    assert.ok(r.clips[0]!.notes.some((n) => /GT is 256×256, prediction 512×512: GT resized/.test(n)));
  });
});
