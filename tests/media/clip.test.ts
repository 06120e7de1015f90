import assert from 'node:assert/strict';
import { readFile, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { fitSquareBox, prepareClip, scaleHdtfBox } from '../../src/media/clip.js';
import { decodeFrames } from '../../src/media/frames.js';
import type { ClipSpec, PreparedClip } from '../../src/media/types.js';
import type { StageResult } from '../../src/util/result.js';
import { DifftalkError } from '../../src/util/errors.js';
import type { ProgressEvent } from '../../src/util/events.js';
import { runTool } from '../../src/util/exec.js';
import { AOC_CLIP, MEDIA, tmpDir } from '../helpers.js';

const LATENTSYNC = path.join(MEDIA, 'latentsync_demo1_video.mp4');
const spec = (id: string, startS?: number, endS?: number): ClipSpec => ({ id, identity: 'x', video: 'x', clipIndex: 0, startS, endS });

function value(r: StageResult<PreparedClip>): PreparedClip {
  assert.ok(r.ok, r.ok ? '' : `${r.reason}: ${r.message}`);
  return r.value;
}

/** ffprobe as an independent reader of what prepareClip wrote. */
async function ffprobeStream(file: string, entries: string): Promise<Record<string, string>> {
  const res = await runTool('ffprobe', ['-v', 'error', '-count_frames', '-show_entries', `stream=${entries}`, '-of', 'json', file]);
  return (JSON.parse(res.stdout.toString()) as { streams: Record<string, string>[] }).streams[0]!;
}

/** Samples of a 16-bit PCM WAV, reading the RIFF chunks by hand (no ffmpeg involved). */
async function wavSamples(file: string): Promise<{ rate: number; channels: number; samples: Int16Array }> {
  const b = await readFile(file);
  assert.equal(b.toString('ascii', 0, 4), 'RIFF');
  let off = 12;
  let rate = 0;
  let channels = 0;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4);
    const size = b.readUInt32LE(off + 4);
    if (id === 'fmt ') {
      assert.equal(b.readUInt16LE(off + 8), 1, 'PCM');
      channels = b.readUInt16LE(off + 10);
      rate = b.readUInt32LE(off + 12);
      assert.equal(b.readUInt16LE(off + 22), 16, 'bits per sample');
    }
    if (id === 'data') {
      const data = b.subarray(off + 8, off + 8 + size);
      return { rate, channels, samples: new Int16Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length)) };
    }
    off += 8 + size + (size % 2);
  }
  throw new Error(`no data chunk in ${file}`);
}

test('scaleHdtfBox on real HDTF rows (reference: hand arithmetic from WDA_crop_wh.txt / *_resolution.txt, exact)', () => {
  // AlexandriaOcasioCortez_0.mp4 342 591 0 591 at 720p, downloaded at 720p: side 591 → 592 (even), centre kept.
  assert.deepEqual(scaleHdtfBox({ x: 342, y: 0, w: 591, h: 591, refHeight: 720 }, 1280, 720).box, { x: 342, y: 0, w: 592, h: 592 });
  // Same row, downloaded at 1080p: ×1.5 → x 513, side 886.5 → 886, centre 956.25 → x = 513.25 → 512 (even).
  const hd = scaleHdtfBox({ x: 342, y: 0, w: 591, h: 591, refHeight: 720 }, 1920, 1080);
  assert.deepEqual(hd.box, { x: 512, y: 0, w: 886, h: 886 });
  assert.equal(hd.clamped, false);
  assert.match(hd.notes[0]!, /scaled x1\.5000 from 720p to 1080p/);
  // MazieHirono1_0.mp4 83 1134 0 1134 at 720p: side 1134 > 720 → 720 about centre (650, 567), then shifted up to y 0.
  const mh = scaleHdtfBox({ x: 83, y: 0, w: 1134, h: 1134, refHeight: 720 }, 1280, 720);
  assert.deepEqual(mh.box, { x: 290, y: 0, w: 720, h: 720 });
  assert.equal(mh.clamped, true);
  // MaggieHassan_0.mp4 389 776 0 776 at 720p: side → 720 about (777, 388): x 417 → 416, y 28 → 0.
  assert.deepEqual(scaleHdtfBox({ x: 389, y: 0, w: 776, h: 776, refHeight: 720 }, 1280, 720).box, { x: 416, y: 0, w: 720, h: 720 });
  // KevinMcCarthy1: resolution 0 → unusable.
  assert.throws(
    () => scaleHdtfBox({ x: 10, y: 10, w: 100, h: 100, refHeight: 0 }, 1280, 720),
    (e: unknown) => e instanceof DifftalkError && e.code === 'annotation-invalid',
  );
  // A non-square box is made square about its centre; a box hanging off the left edge is shifted in.
  assert.deepEqual(fitSquareBox({ x: -50, y: 100, w: 200, h: 100 }, 640, 480), {
    box: { x: 0, y: 50, w: 200, h: 200 },
    clamped: true,
    notes: ['crop box 200x100 made square (200)', 'crop box shifted by (50, 0) px to fit the 640x480 frame'],
  });
});

test('prepareClip: AOC clip, HDTF-style box → 256², 200 frames at 25 fps, 16 kHz mono 8 s', async () => {
  const dir = tmpDir();
  const events: ProgressEvent[] = [];
  // Box annotated for a 1024-tall frame; the file is 512 tall → scaled ×0.5 to {64, 0, 384, 384}.
  const { box, notes } = scaleHdtfBox({ x: 128, y: 0, w: 768, h: 768, refHeight: 1024 }, 512, 512);
  assert.deepEqual(box, { x: 64, y: 0, w: 384, h: 384 });
  const clip = value(await prepareClip(spec('aoc'), AOC_CLIP, dir, { size: 256, crop: box, notes, onEvent: (e) => events.push(e) }));
  assert.equal(clip.frameCount, 200);
  assert.equal(clip.size, 256);
  assert.equal(clip.fps, 25);
  assert.deepEqual(clip.crop, box);
  assert.equal(clip.clamped, false);
  assert.equal(path.basename(clip.video), 'aoc.mkv');
  assert.ok(
    events.some((e) => e.type === 'progress' && e.stage === 'clip' && e.done > 0),
    'progress from ffmpeg',
  );
  assert.ok(events.some((e) => e.type === 'stage-done' && e.stage === 'clip'));

  // Independent reader: ffprobe (exact: 256x256, 25/1, 200 decoded frames; audio 16000 Hz mono, 8.000 s).
  const v = await ffprobeStream(clip.video, 'width,height,r_frame_rate,nb_read_frames,codec_name,pix_fmt');
  assert.deepEqual([v.width, v.height, v.r_frame_rate, v.nb_read_frames, v.codec_name, v.pix_fmt], [256, 256, '25/1', '200', 'ffvhuff', 'yuv444p']);
  const a = await ffprobeStream(clip.audio, 'sample_rate,channels,codec_name,duration');
  assert.deepEqual([a.sample_rate, a.channels, a.codec_name], ['16000', 1, 'pcm_s16le']);
  assert.equal(Number(a.duration), 8);
  const wav = await wavSamples(clip.audio);
  assert.equal(wav.samples.length, 200 * 640); // exactly frames × 16000/25

  // The crop shows the right region: 16×16 block means of frame 0 against the same blocks of the source region
  // (decoded at full size). Measured mean |diff| 1.16 levels for the right box; tolerance 2. A box 8 px to the
  // right gives 11.1, so the check can tell.
  const src = await decodeFrames(AOC_CLIP, { count: 1 });
  const out = await decodeFrames(clip.video, { count: 1 });
  const right = blockMeanDiff(src.data, 512, box.x, box.y, 384, out.data, 256);
  const shifted = blockMeanDiff(src.data, 512, box.x + 8, box.y, 384, out.data, 256);
  assert.ok(right < 2, `right box: ${right}`);
  assert.ok(shifted > 8, `shifted box: ${shifted}`);

  // Resumable: a second call finds the complete outputs and does not run ffmpeg again.
  const before = (await stat(clip.video)).mtimeMs;
  const again: ProgressEvent[] = [];
  const second = value(await prepareClip(spec('aoc'), AOC_CLIP, dir, { size: 256, crop: box, onEvent: (e) => again.push(e) }));
  assert.deepEqual(second, clip);
  assert.equal((await stat(clip.video)).mtimeMs, before);
  assert.ok(!again.some((e) => e.type === 'stage-start'));
});

test('prepareClip: a time range is frame- and sample-exact (reference: the whole clip, bit-identical)', async () => {
  const dir = tmpDir();
  const crop = { x: 64, y: 0, w: 384, h: 384 };
  const whole = value(await prepareClip(spec('whole', 0, 8), AOC_CLIP, dir, { size: 256, crop }));
  const cut = value(await prepareClip(spec('cut', 1.6, 5.2), AOC_CLIP, dir, { size: 256, crop }));
  assert.equal(cut.frameCount, 90); // (5.2 − 1.6) × 25
  const W = await decodeFrames(whole.video, { start: 40, count: 90 });
  const C = await decodeFrames(cut.video);
  assert.equal(C.count, 90);
  // FFVHuff is lossless and the seek is accurate: cut frame k == whole frame 40 + k, byte for byte.
  assert.ok(Buffer.from(C.data).equals(Buffer.from(W.data)));
  const wa = (await wavSamples(whole.audio)).samples;
  const ca = (await wavSamples(cut.audio)).samples;
  assert.equal(ca.length, 90 * 640);
  assert.ok(Buffer.from(ca.buffer).equals(Buffer.from(wa.buffer, 25600 * 2, 90 * 640 * 2)), 'audio = whole[1.6 s …5.2 s]');
});

test('prepareClip: HEVC portrait 1080x1920 with 44.1 kHz stereo → 256², 16 kHz mono', async () => {
  const dir = tmpDir();
  const clip = value(await prepareClip(spec('latentsync', 2, 6), LATENTSYNC, dir, { size: 256, crop: { x: 0, y: 420, w: 1080, h: 1080 } }));
  assert.equal(clip.sourceWidth, 1080);
  assert.equal(clip.sourceHeight, 1920);
  assert.equal(clip.frameCount, 100);
  const v = await ffprobeStream(clip.video, 'width,height,r_frame_rate,nb_read_frames');
  assert.deepEqual([v.width, v.height, v.r_frame_rate, v.nb_read_frames], [256, 256, '25/1', '100']);
  const wav = await wavSamples(clip.audio);
  assert.deepEqual([wav.rate, wav.channels, wav.samples.length], [16000, 1, 64000]);
  // Speech is present (PROVENANCE: silent only in the first ~1 s; mean volume −30 dB): RMS well above silence.
  let s2 = 0;
  for (const x of wav.samples) s2 += x * x;
  const rmsDb = 20 * Math.log10(Math.sqrt(s2 / wav.samples.length) / 32768);
  assert.ok(rmsDb > -45 && rmsDb < -10, `rms ${rmsDb.toFixed(1)} dB`);
});

test('prepareClip: corrupt and truncated files → video-corrupt; no audio → no-audio', async () => {
  const dir = tmpDir();
  const crop = { x: 0, y: 0, w: 256, h: 256 };
  const random = path.join(dir, 'random.mp4');
  const junk = new Uint8Array(65536);
  let s = 7;
  for (let i = 0; i < junk.length; i++) junk[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
  await writeFile(random, junk);
  const truncated = path.join(dir, 'truncated.mp4');
  await writeFile(truncated, (await readFile(AOC_CLIP)).subarray(0, 1_500_000));
  // A truncated copy whose index (moov) is at the front: ffprobe still reads it, but only ~105 of 200 frames decode.
  const faststart = path.join(dir, 'faststart.mp4');
  await runTool('ffmpeg', ['-v', 'error', '-i', AOC_CLIP, '-c', 'copy', '-movflags', '+faststart', faststart]);
  const truncatedIndexed = path.join(dir, 'truncated-indexed.mp4');
  await writeFile(truncatedIndexed, (await readFile(faststart)).subarray(0, 1_200_000));
  for (const f of [random, truncated, truncatedIndexed]) {
    const r = await prepareClip(spec('bad'), f, dir, { size: 256, crop });
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.equal(r.reason, 'video-corrupt');
      assert.match(r.message, new RegExp(path.basename(f).replace('.', '\\.')));
    }
  }
  const silentVideo = path.join(dir, 'silent.mp4');
  await runTool('ffmpeg', ['-v', 'error', '-i', AOC_CLIP, '-t', '1', '-an', '-c', 'copy', silentVideo]);
  const r = await prepareClip(spec('silent'), silentVideo, dir, { size: 256, crop });
  assert.deepEqual(r.ok ? 'ok' : [r.reason], ['no-audio']);
});

test('prepareClip: a source named like an option, with spaces and shell characters', async () => {
  const dir = tmpDir();
  const odd = path.join(dir, '-i my clip; $(echo x) & more.mp4');
  await symlink(AOC_CLIP, odd);
  const clip = value(await prepareClip(spec('odd', 0, 1), odd, dir, { size: 256, crop: { x: 0, y: 0, w: 512, h: 512 } }));
  assert.equal(clip.frameCount, 25);
  // A relative path that starts with '-' works too (prepareClip resolves it to an absolute one).
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    const rel = path.basename(odd);
    assert.ok(rel.startsWith('-i '));
    const again = await prepareClip(spec('odd2', 0, 0.4), rel, '.', { size: 256, crop: { x: 0, y: 0, w: 512, h: 512 } });
    assert.equal(value(again).frameCount, 10);
  } finally {
    process.chdir(cwd);
  }
});

/** Mean |difference| of n×n block means: source region (x0, y0, side) in a frame fw wide vs a whole outW² frame. */
function blockMeanDiff(src: Uint8Array, fw: number, x0: number, y0: number, side: number, out: Uint8Array, outW: number): number {
  const n = 16;
  const mean = (d: Uint8Array, w: number, bx0: number, by0: number, bs: number, c: number): number => {
    let s = 0;
    for (let y = 0; y < bs; y++) for (let x = 0; x < bs; x++) s += d[((by0 + y) * w + bx0 + x) * 3 + c]!;
    return s / (bs * bs);
  };
  const bs = side / n;
  const bo = outW / n;
  let total = 0;
  for (let by = 0; by < n; by++) {
    for (let bx = 0; bx < n; bx++) {
      for (let c = 0; c < 3; c++) {
        total += Math.abs(mean(src, fw, x0 + bx * bs, y0 + by * bs, bs, c) - mean(out, outW, bx * bo, by * bo, bo, c));
      }
    }
  }
  return total / (n * n * 3);
}

test('prepareClip: an interlaced source is deinterlaced (combing measured before/after)', async () => {
  const dir = tmpDir();
  // Real interlaced video: consecutive AOC frames woven into the top/bottom fields of one frame (12.5 fps, tff).
  const il = path.join(dir, 'interlaced.mp4');
  await runTool('ffmpeg', [
    '-v',
    'error',
    '-i',
    AOC_CLIP,
    '-t',
    '2',
    '-vf',
    'tinterlace=interleave_top,fieldorder=tff',
    '-c:v',
    'libx264',
    '-crf',
    '12',
    '-flags',
    '+ildct+ilme',
    '-x264opts',
    'tff=1',
    '-c:a',
    'copy',
    il,
  ]);
  const clip = value(await prepareClip(spec('il'), il, dir, { size: 512, crop: { x: 0, y: 0, w: 512, h: 512 } }));
  assert.equal(clip.frameCount, 50);
  assert.ok(clip.notes.some((n) => /interlaced source/.test(n)));
  const out = await decodeFrames(clip.video, { start: 20, count: 1 });
  const src = await decodeFrames(il, { start: 10, count: 1 });
  // Comb energy = mean |2·row(y) − row(y−1) − row(y+1)|. Measured: source 10.4, prepared 3.1 (1:1 scale, same
  // picture). Tolerance: the prepared frame must have less than half the source's combing.
  const comb = (f: Uint8Array): number => {
    const w = 512 * 3;
    let s = 0;
    for (let y = 1; y < 511; y++) for (let x = 0; x < w; x++) s += Math.abs(2 * f[y * w + x]! - f[(y - 1) * w + x]! - f[(y + 1) * w + x]!);
    return s / (510 * w);
  };
  assert.ok(comb(out.data) < comb(src.data) / 2, `comb ${comb(out.data)} vs source ${comb(src.data)}`);
});

test('prepareClip: an annotated range past the end of the video is cut at the end; one starting after it is invalid', async () => {
  const dir = tmpDir();
  const crop = { x: 0, y: 0, w: 512, h: 512 };
  const clip = value(await prepareClip(spec('late', 7, 12), AOC_CLIP, dir, { size: 256, crop }));
  assert.equal(clip.frameCount, 25); // 7 s … 8 s (end of the 8.000 s video)
  assert.ok(
    clip.notes.some((n) => /past the video end/.test(n)),
    clip.notes.join('; '),
  );
  const r = await prepareClip(spec('after', 9, 12), AOC_CLIP, dir, { size: 256, crop });
  assert.deepEqual(r.ok ? 'ok' : r.reason, 'annotation-invalid');
  const unsafe = await prepareClip(spec('../escape'), AOC_CLIP, dir, { size: 256, crop });
  assert.deepEqual(unsafe.ok ? 'ok' : unsafe.reason, 'unsafe-name');
});
