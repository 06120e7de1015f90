import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { decodeFrames, decodeFramesScaled, iterateFrames, iterateFramesScaled, outputSize } from '../../src/media/frames.js';
import { DifftalkError } from '../../src/util/errors.js';
import { runTool } from '../../src/util/exec.js';
import { AOC_CLIP, MEDIA, tmpDir } from '../helpers.js';

const LATENTSYNC = path.join(MEDIA, 'latentsync_demo1_video.mp4');
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));

test('outputSize keeps the aspect ratio when one side is given', () => {
  assert.deepEqual(outputSize(1080, 1920, 144), { width: 144, height: 256 });
  assert.deepEqual(outputSize(1080, 1920, undefined, 256), { width: 144, height: 256 });
  assert.deepEqual(outputSize(512, 512), { width: 512, height: 512 });
});

test('decodeFrames: PNG pixels equal sharp’s decode (reference: sharp/libspng, lossless, exact)', async () => {
  const file = path.join(MEDIA, 'astronaut.png');
  const ours = await decodeFrames(file);
  const ref = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([ours.width, ours.height, ours.count], [ref.info.width, ref.info.height, 1]);
  assert.ok(same(ours.data, ref.data));
});

test('decodeFrames: start/count seek to exact frames (reference: the full decode, exact)', async () => {
  const all = await decodeFrames(AOC_CLIP, { width: 128 });
  assert.deepEqual([all.width, all.height, all.count], [128, 128, 200]);
  const fb = 128 * 128 * 3;
  for (const start of [1, 37, 150]) {
    const part = await decodeFrames(AOC_CLIP, { width: 128, start, count: 5 });
    assert.equal(part.count, 5);
    assert.ok(same(part.data, all.data.subarray(start * fb, (start + 5) * fb)), `frames ${start}…${start + 4}`);
  }
  const tail = await decodeFrames(AOC_CLIP, { width: 128, start: 197, count: 10 });
  assert.equal(tail.count, 3); // only 3 frames left
  assert.equal((await decodeFrames(AOC_CLIP, { count: 0 })).count, 0);
});

test('iterateFrames: chunks in order, together equal to one decode', async () => {
  const all = await decodeFrames(AOC_CLIP, { width: 96 });
  const fb = 96 * 96 * 3;
  const counts: number[] = [];
  for await (const c of iterateFrames(AOC_CLIP, { chunk: 64, width: 96 })) {
    assert.ok(same(c.data, all.data.subarray(c.start * fb, (c.start + c.count) * fb)), `chunk at ${c.start}`);
    counts.push(c.count);
  }
  assert.deepEqual(counts, [64, 64, 64, 8]);
});

test('decodeFramesScaled: HEVC portrait reduced to 144×256, every 5th frame; chunked version agrees', async () => {
  const s = await decodeFramesScaled(LATENTSYNC, 256, { sampleEvery: 5 });
  assert.deepEqual([s.width, s.height, s.count, s.sourceWidth, s.sourceHeight, s.scale], [144, 256, 50, 1080, 1920, 7.5]);
  assert.deepEqual(s.frameIndices.slice(0, 3), [0, 5, 10]);
  const fb = 144 * 256 * 3;
  let n = 0;
  for await (const c of iterateFramesScaled(LATENTSYNC, 256, { sampleEvery: 5, chunk: 16 })) {
    assert.deepEqual(c.frameIndices, s.frameIndices.slice(n, n + c.count));
    assert.ok(same(c.data, s.data.subarray(n * fb, (n + c.count) * fb)), `chunk at ${n}`);
    n += c.count;
  }
  assert.equal(n, 50);
});

test('decodeFrames: a rotated video decodes in display orientation; junk is video-corrupt', async () => {
  const dir = tmpDir();
  const rotated = path.join(dir, 'rotated.mp4');
  await runTool('ffmpeg', ['-v', 'error', '-i', LATENTSYNC, '-t', '0.12', '-c', 'copy', '-metadata:s:v', 'rotate=90', rotated]);
  const f = await decodeFrames(rotated, { width: 192, count: 1 });
  assert.deepEqual([f.width, f.height, f.count], [192, 108, 1]);
  await assert.rejects(decodeFrames(path.join(MEDIA, 'jfk.wav')), (e: unknown) => e instanceof DifftalkError && e.code === 'video-corrupt');
});
