import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { parseRate, probeMedia } from '../../src/media/probe.js';
import { DifftalkError } from '../../src/util/errors.js';
import { runTool } from '../../src/util/exec.js';
import { AOC_CLIP, MEDIA, tmpDir } from '../helpers.js';

const LATENTSYNC = path.join(MEDIA, 'latentsync_demo1_video.mp4');

test('parseRate reads ffprobe rationals', () => {
  assert.equal(parseRate('25/1'), 25);
  assert.equal(Math.round(parseRate('30000/1001') * 1000) / 1000, 29.97);
  assert.equal(parseRate('0/0'), 0);
  assert.equal(parseRate(undefined), 0);
});

test('probeMedia: the AOC clip (reference: media/PROVENANCE.md, exact)', async () => {
  const info = await probeMedia(AOC_CLIP);
  assert.equal(info.width, 512);
  assert.equal(info.height, 512);
  assert.equal(info.rotation, 0);
  assert.equal(info.fps, 25);
  assert.equal(info.duration, 8);
  assert.equal(info.frameCount, 200);
  assert.equal(info.videoCodec, 'mpeg4');
  assert.equal(info.hasAudio, true);
  assert.deepEqual(info.audio, { codec: 'aac', sampleRate: 16000, channels: 2, duration: 8 });
});

test('probeMedia: latentsync demo, HEVC portrait 44.1 kHz stereo (reference: media/PROVENANCE.md, exact)', async () => {
  const info = await probeMedia(LATENTSYNC);
  assert.equal(info.videoCodec, 'hevc');
  assert.equal(info.width, 1080);
  assert.equal(info.height, 1920);
  assert.equal(info.fps, 25);
  assert.equal(info.frameCount, 250);
  assert.equal(info.duration, 10);
  assert.equal(info.audio?.sampleRate, 44100);
  assert.equal(info.audio?.channels, 2);
  assert.equal(info.audio?.codec, 'aac');
});

test('probeMedia: a 90° display matrix swaps the display size', async () => {
  const dir = tmpDir();
  const rotated = path.join(dir, 'rotated.mp4');
  await runTool('ffmpeg', ['-v', 'error', '-i', LATENTSYNC, '-t', '0.2', '-c', 'copy', '-metadata:s:v', 'rotate=90', rotated]);
  const info = await probeMedia(rotated);
  assert.equal(info.rotation, 90);
  assert.equal(info.codedWidth, 1080);
  assert.equal(info.codedHeight, 1920);
  assert.equal(info.width, 1920);
  assert.equal(info.height, 1080);
});

test('probeMedia: random bytes, a truncated mp4 and an audio-only file are video-corrupt', async () => {
  const dir = tmpDir();
  const random = path.join(dir, 'random.mp4');
  // Deterministic junk bytes (LCG), 64 KiB.
  const junk = new Uint8Array(65536);
  let s = 12345;
  for (let i = 0; i < junk.length; i++) junk[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
  await writeFile(random, junk);
  const truncated = path.join(dir, 'truncated.mp4');
  const { readFile } = await import('node:fs/promises');
  // The AOC file keeps its moov atom at the end (offset 2,252,724): the first 1 MB has no index.
  await writeFile(truncated, (await readFile(AOC_CLIP)).subarray(0, 1_000_000));
  for (const f of [random, truncated, path.join(MEDIA, 'jfk.wav')]) {
    await assert.rejects(probeMedia(f), (e: unknown) => {
      assert.ok(e instanceof DifftalkError, String(e));
      assert.equal(e.code, 'video-corrupt');
      assert.match(e.message, new RegExp(path.basename(f).replace('.', '\\.')));
      return true;
    });
  }
});
