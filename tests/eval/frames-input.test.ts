/**
 * Frame folders as eval input (issue 12 point 1) on the real AOC clip: the first 12 frames written as PNGs named
 * 1.png … 12.png (natural order differs from lexicographic: 10.png must come after 9.png), and the same PNGs encoded
 * losslessly (libx264rgb -qp 0). Reference: the lossless video through the existing video path; the frames folder must
 * score identically, frame by frame (exact equality: both decode to the same RGB bytes).
 */
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { listFrameFiles, naturalCompare } from '../../src/eval/frames-input.js';
import { runEval } from '../../src/eval/pipeline.js';
import { runTool } from '../../src/util/exec.js';
import { AOC_CLIP, tmpDir } from '../helpers.js';

describe('eval: folders of frames', () => {
  const dir = tmpDir('difftalk-eval-frames-');
  const framesDir = path.join(dir, 'clips', 'WDA_AlexandriaOcasioCortez_000');
  const video = path.join(dir, 'lossless.mkv');
  before(async () => {
    mkdirSync(framesDir, { recursive: true });
    await runTool('ffmpeg', [
      '-v',
      'error',
      '-i',
      AOC_CLIP,
      '-frames:v',
      '12',
      '-vf',
      'crop=256:256:128:64',
      '-start_number',
      '1',
      path.join(framesDir, '%d.png'),
    ]);
    await runTool('ffmpeg', [
      '-v',
      'error',
      '-framerate',
      '25',
      '-start_number',
      '1',
      '-i',
      path.join(framesDir, '%d.png'),
      '-c:v',
      'libx264rgb',
      '-qp',
      '0',
      video,
    ]);
  });

  it('orders frames naturally', async () => {
    const names = (await listFrameFiles(framesDir)).map((f) => path.basename(f));
    assert.deepEqual(names.slice(8, 11), ['9.png', '10.png', '11.png']);
    assert.ok(naturalCompare('frame2.png', 'frame10.png') < 0);
  });

  it('a frames folder scores identically to the same frames as a lossless video', async () => {
    const opts = { gt: AOC_CLIP, metrics: ['psnr', 'ssim'] as const, crop: 'none' as const, resize: true, maxLengthDiff: 188 }; // 12 of the GT's 200 frames
    // 256² frames against the 512² GT: an error unless --resize is given.
    await assert.rejects(
      runEval({ ...opts, resize: false, pred: framesDir, out: path.join(dir, 'o0') }),
      (e: Error & { code?: string; suggestion?: string }) => e.code === 'size-mismatch' && /--resize/.test(String(e.suggestion)),
    );
    const fromFrames = await runEval({ ...opts, pred: framesDir, out: path.join(dir, 'o1') });
    const fromVideo = await runEval({ ...opts, pred: video, out: path.join(dir, 'o2') });
    assert.equal(fromFrames.frames.length, 12);
    assert.deepEqual(
      fromFrames.frames.map((f) => f.values),
      fromVideo.frames.map((f) => f.values),
    );
    assert.equal(fromFrames.protocol.framesFps, 25);
    assert.ok(fromFrames.clips[0]!.notes.some((n) => /frame counts differ \(prediction 12, GT 200\)/.test(n)));
  });

  it('a folder of frame folders pairs each by name with the GT videos', async () => {
    const gtDir = path.join(dir, 'gt');
    mkdirSync(gtDir);
    symlinkSync(AOC_CLIP, path.join(gtDir, 'WDA_AlexandriaOcasioCortez_000.mp4'));
    symlinkSync(AOC_CLIP, path.join(gtDir, 'other.mp4'));
    const r = await runEval({
      pred: path.join(dir, 'clips'),
      gt: gtDir,
      out: path.join(dir, 'o3'),
      metrics: ['psnr'],
      crop: 'none',
      resize: true,
      maxLengthDiff: 188,
    });
    assert.deepEqual(
      r.clips.map((c) => c.clip),
      ['WDA_AlexandriaOcasioCortez_000'],
    );
    assert.deepEqual(r.unmatched.gt, ['other']);
  });

  it('frames at another rate than the GT are an error with the fix', async () => {
    await assert.rejects(
      runEval({ pred: framesDir, gt: AOC_CLIP, out: path.join(dir, 'o4'), metrics: ['psnr'], crop: 'none', fps: 30, resize: true }),
      (e: Error & { code?: string; suggestion?: string }) => e.code === 'fps-mismatch' && /--fps 25/.test(String(e.suggestion)),
    );
  });
});
