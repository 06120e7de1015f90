import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { openDataset, readClipFrames } from '../../src/dataset/dataset.js';
import { buildDatasetManifest, writeDatasetManifest, type DatasetClip } from '../../src/dataset/manifest.js';
import { encodeFrames, writeClipShards, type ClipShardInput, type ShardMetadata } from '../../src/dataset/shard-writer.js';
import { DifftalkError } from '../../src/util/errors.js';
import { runProcess } from '../../src/util/exec.js';
import { ROOT, tmpDir } from '../helpers.js';
import { aocFrames, testClipInput, testShardMetadata } from './fixture.js';

const SIZE = 128;
const N = 6;
const MFCC = { window: 16, dim: 13 };
const META: ShardMetadata = testShardMetadata(SIZE, [{ name: 'mfcc', column: 'audio_mfcc', window: MFCC.window, dim: MFCC.dim, rate: 100, params: {} }]);
let images: Uint8Array[];

const clipInput = (clipId: string, imgs: Uint8Array[]): ClipShardInput => testClipInput(clipId, imgs, SIZE, { name: 'mfcc', ...MFCC });

async function makeDataset(
  opts: { clips?: [string, Uint8Array[]][]; frames?: (id: string) => number; shards?: (id: string, files: string[]) => string[] } = {},
): Promise<string> {
  const dir = tmpDir();
  const clips: DatasetClip[] = [];
  for (const [id, imgs] of opts.clips ?? [
    ['clipA', images],
    ['clipB', images],
  ]) {
    const res = await writeClipShards(dir, clipInput(id, imgs), { maxRows: 4, metadata: META });
    clips.push({
      id,
      identity: id,
      split: 'train',
      status: 'done',
      frames: opts.frames?.(id) ?? N,
      shards: opts.shards?.(id, res.files) ?? res.files,
      notes: [],
    });
  }
  await writeDatasetManifest(dir, buildDatasetManifest({ config: {}, clips }));
  return dir;
}

async function rejects(p: Promise<unknown>, code: string, text: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof DifftalkError && e.code === code && text.test(e.message));
}

before(async () => {
  // Real frames: the first N frames of the HDTF sample clip at 128² (ffmpeg area scaling), stored as JPEG q95.
  images = await encodeFrames(await aocFrames(N, SIZE), { format: 'jpeg', quality: 95 });
});

test('openDataset: frames() at the stored size equal PIL decoding (±1) and at another size PIL bicubic (mean |Δ| < 0.5, measured 0.22)', async () => {
  const dir = await makeDataset();
  const ds = await openDataset(dir);
  assert.deepEqual(
    ds.clips.map((c) => [c.id, c.frames]),
    [
      ['clipA', N],
      ['clipB', N],
    ],
  );
  assert.equal(ds.metadata.size, SIZE);
  // Reference: PIL 9 (libjpeg-turbo decode; Image.BICUBIC resize as in DiffTalk's loader), tests/reference/gt_frames_reference.py.
  const ref = tmpDir();
  const files = images.map((b, i) => {
    const f = path.join(ref, `${i}.jpg`);
    writeFileSync(f, b);
    return f;
  });
  const OUT = 96;
  for (const size of [0, OUT]) await runProcess('/usr/bin/python3', [path.join(ROOT, 'tests/reference/gt_frames_reference.py'), String(size), ...files]);
  const stored = await readClipFrames(ds, 'clipB');
  const resized = await readClipFrames(ds, 'clipB', { size: OUT });
  assert.equal(stored.count, N);
  assert.equal(resized.count, N);
  let maxStored = 0;
  let sumResized = 0;
  for (let i = 0; i < N; i++) {
    const a = readFileSync(`${files[i]}.0.rgb`);
    const b = readFileSync(`${files[i]}.${OUT}.rgb`);
    const s = stored.data.subarray(i * SIZE * SIZE * 3, (i + 1) * SIZE * SIZE * 3);
    const r = resized.data.subarray(i * OUT * OUT * 3, (i + 1) * OUT * OUT * 3);
    for (let k = 0; k < a.length; k++) maxStored = Math.max(maxStored, Math.abs(a[k]! - s[k]!));
    for (let k = 0; k < b.length; k++) sumResized += Math.abs(b[k]! - r[k]!);
  }
  const meanResized = sumResized / (N * OUT * OUT * 3);
  console.log(`stored-size max |Δ| vs PIL ${maxStored}; ${SIZE}→${OUT} cubic mean |Δ| vs PIL bicubic ${meanResized.toFixed(3)}`);
  assert.ok(maxStored <= 1, `stored max |Δ| ${maxStored}`);
  assert.ok(meanResized < 0.5, `resized mean |Δ| ${meanResized}`);
  // a range
  const some = [];
  for await (const f of ds.frames('clipA', { from: 2, count: 3 })) some.push(f.index);
  assert.deepEqual(some, [2, 3, 4]);
});

test('openDataset: manifest and shards must agree (frame counts, ids), else dataset-corrupt before any work', async () => {
  // Before: training read the manifest and the shards separately and ran on all-zero latents for missing rows (exit 0).
  await rejects(
    openDataset(await makeDataset({ frames: (id) => (id === 'clipB' ? N + 1 : N) })),
    'dataset-corrupt',
    /clip clipB: dataset\.json says 7 frames, its shards hold 6/,
  );
  // clipB's manifest entry points at clipA's shards
  let filesA: string[] = [];
  const dir = await makeDataset({
    shards: (id, files) => {
      if (id === 'clipA') filesA = files;
      return id === 'clipB' ? filesA : files;
    },
  });
  await rejects(openDataset(dir), 'dataset-corrupt', /listed for clip clipB but holds rows of clip "clipA"/);
  // a missing shard
  const gone = await makeDataset({ shards: (id, files) => (id === 'clipB' ? [...files, 'shards/clipB-0009.arrow'] : files) });
  await rejects(openDataset(gone), 'dataset-corrupt', /clipB-0009\.arrow of clip clipB is missing/);
  // an id that would be a path
  const m = JSON.parse(readFileSync(path.join(dir, 'dataset.json'), 'utf8')) as { clips: { id: string }[] };
  m.clips[0]!.id = '../../evil';
  writeFileSync(path.join(dir, 'dataset.json'), JSON.stringify(m));
  await assert.rejects(openDataset(dir), (e: unknown) => e instanceof DifftalkError && /\.\.\/\.\.\/evil/.test(e.message));
});

test('a corrupt JPEG in a shard is one error naming the clip and the frame', async () => {
  // Before: sharp's raw "VipsJpeg: Premature end of JPEG file" Error reached the user from whichever caller decoded it.
  const bad = [...images];
  bad[3] = images[3]!.subarray(0, 200);
  const ds = await openDataset(await makeDataset({ clips: [['clipC', bad]] }));
  const seen: number[] = [];
  await assert.rejects(
    (async () => {
      for await (const f of ds.frames('clipC', { size: 64 })) seen.push(f.index);
    })(),
    (e: unknown) => e instanceof DifftalkError && e.code === 'dataset-corrupt' && /clip clipC, frame 3/.test(e.message),
  );
  assert.deepEqual(seen, [0, 1, 2]);
});
