import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { type DifftalkError } from '../../src/util/errors.js';
import { VERSION } from '../../src/util/version.js';
import {
  buildDatasetManifest,
  mergeManifests,
  readDatasetManifest,
  summarizeClips,
  validateDatasetManifest,
  writeDatasetManifest,
  type DatasetClip,
  type DatasetManifest,
} from '../../src/dataset/manifest.js';
import { difftalkReferenceSampler } from '../../src/dataset/reference.js';
import { encodeFrames, writeClipShards, type ClipShardInput, type ShardMetadata } from '../../src/dataset/shard-writer.js';
import { iterateRows } from '../../src/dataset/shard-reader.js';
import type { Split } from '../../src/dataset/split.js';
import { ROOT, tmpDir } from '../helpers.js';

const ROOT_TMP = tmpDir();
/** A fresh directory under one temp root (one exit hook for the whole file). */
const freshDir = (): string => mkdtempSync(path.join(ROOT_TMP, 'd-'));

const META: ShardMetadata = {
  fps: 25,
  size: 32,
  imageFormat: 'png',
  landmarker: { engine: 'test-formula', model: 'none', sha256: '0'.repeat(64), smoothing: null },
  audioFeatures: [{ name: 'mfcc', column: 'audio_mfcc', window: 2, dim: 3, rate: 100, params: {} }],
  reference: difftalkReferenceSampler({ policy: 'farthest' }).params,
};
const CONFIG = { fps: 25, size: 32, image_format: 'png', shard_rows: 4, seed: 23, landmarker: { engine: 'test-formula' } };

async function makeClip(clipId: string, split: Split, n: number): Promise<ClipShardInput> {
  const size = 32;
  const data = Uint8Array.from({ length: n * size * size * 3 }, (_, k) => (k * 7 + clipId.length) & 255);
  const refs = difftalkReferenceSampler({ policy: 'farthest' }).sample(clipId, n);
  assert.ok(refs.ok);
  return {
    clipId,
    split,
    fps: 25,
    images: await encodeFrames({ width: size, height: size, count: n, data }, { format: 'png' }),
    faceStatus: new Array(n).fill('ok'),
    faceScore: new Float32Array(n).fill(0.9),
    landmarks478: new Float32Array(n * 1434).fill(5),
    landmarks478Raw: new Float32Array(n * 1434).fill(6),
    landmarks68: new Float32Array(n * 136).fill(7),
    maskRowTrain: new Int32Array(n).fill(7),
    maskRowTest: new Int32Array(n).fill(7),
    audio: [{ name: 'mfcc', windows: { data: new Float32Array(n * 6).fill(1), frames: n, window: 2, dim: 3 } }],
    refFrameIndex: refs.value,
  };
}

async function prepDir(
  clips: { id: string; identity: string; split: Split; frames: number }[],
  dropped: DatasetClip[] = [],
  config: Record<string, unknown> = CONFIG,
  job: Record<string, unknown> = { workers: 2, shard_index: clips.length },
) {
  const dir = freshDir();
  const entries: DatasetClip[] = [...dropped];
  for (const c of clips) {
    const res = await writeClipShards(dir, await makeClip(c.id, c.split, c.frames), { maxRows: 4, metadata: META });
    entries.push({ id: c.id, identity: c.identity, split: c.split, status: 'done', frames: res.rows, shards: res.files, notes: [] });
  }
  const m = buildDatasetManifest({ config, clips: entries, job });
  await writeDatasetManifest(dir, m);
  return { dir, m };
}

const dropped = (id: string, identity: string, reason: DatasetClip['drop_reason']): DatasetClip => ({
  id,
  identity,
  split: 'train',
  status: 'dropped',
  frames: 0,
  shards: [],
  drop_reason: reason,
  drop_message: 'why',
  notes: [],
});

test('summary counts come from the clips', () => {
  const s = summarizeClips([
    { id: 'a', identity: 'A', split: 'train', status: 'done', frames: 10, shards: ['shards/a-0000.arrow'], notes: [] },
    { id: 'b', identity: 'A', split: 'train', status: 'done', frames: 5, shards: ['shards/b-0000.arrow'], notes: [] },
    { id: 'c', identity: 'C', split: 'test', status: 'done', frames: 7, shards: ['shards/c-0000.arrow'], notes: ['crop clamped'] },
    dropped('d', 'D', 'too-short'),
    dropped('e', 'E', 'download-failed'),
    dropped('f', 'F', 'too-short'),
  ]);
  assert.deepEqual(s.splits, { train: { clips: 2, frames: 15, identities: 1 }, test: { clips: 1, frames: 7, identities: 1 } });
  assert.deepEqual(s.drop_reasons, { 'download-failed': 1, 'too-short': 2 });
  assert.deepEqual(Object.keys(s.drop_reasons), ['download-failed', 'too-short']);
  assert.deepEqual(s.totals, { clips: 6, done: 3, dropped: 3, frames: 22, identities: 2 });
});

test('write/read round trip (atomic, validated) and iterateRows follows dataset.json', async () => {
  const { dir, m } = await prepDir(
    [
      { id: 'WDA_B_000', identity: 'B', split: 'test', frames: 6 },
      { id: 'WDA_A_000', identity: 'A', split: 'train', frames: 9 },
    ],
    [dropped('WDA_C_000', 'C', 'no-face')],
  );
  assert.deepEqual(
    m.clips.map((c) => c.id),
    ['WDA_A_000', 'WDA_B_000', 'WDA_C_000'],
  );
  assert.equal(m.tool_version, VERSION);
  assert.equal(m.schema_version, '1');
  assert.ok(!Number.isNaN(Date.parse(m.created)));
  const back = await readDatasetManifest(dir);
  assert.deepEqual(back, m);
  assert.deepEqual(readdirSync(dir).sort(), ['dataset.json', 'shards']); // no temp files left
  const seen: string[] = [];
  for await (const rb of iterateRows(dir, { columns: ['clip_id'] })) seen.push(`${rb.clipId}:${rb.batch.numRows}`);
  assert.deepEqual(seen, ['WDA_A_000:4', 'WDA_A_000:4', 'WDA_A_000:1', 'WDA_B_000:4', 'WDA_B_000:2']);
  const test_: string[] = [];
  for await (const rb of iterateRows(dir, { split: 'test' })) test_.push(rb.shard);
  assert.deepEqual(test_, ['shards/WDA_B_000-0000.arrow', 'shards/WDA_B_000-0001.arrow']);

  writeFileSync(path.join(dir, 'dataset.json'), JSON.stringify({ ...m, schema_version: '2' }));
  await assert.rejects(readDatasetManifest(dir), (e: DifftalkError) => e.code === 'shard-schema-mismatch');
  writeFileSync(path.join(dir, 'dataset.json'), '{oops');
  await assert.rejects(readDatasetManifest(dir), (e: DifftalkError) => e.code === 'dataset-manifest-invalid');
  const noReason = { ...m, clips: [{ ...dropped('x', 'X', 'no-face'), drop_reason: undefined }] } as DatasetManifest;
  assert.throws(() => validateDatasetManifest(noReason, 'm'), /without a drop_reason/);
});

test('merge: disjoint array-job outputs become one dataset; shards are placed in the output', async () => {
  const a = await prepDir([{ id: 'RD_Radio1_000', identity: 'Radio1', split: 'train', frames: 5 }], [dropped('RD_Radio9_000', 'Radio9', 'too-short')]);
  const b = await prepDir([
    { id: 'WDA_X_000', identity: 'X', split: 'test', frames: 3 },
    { id: 'WDA_Y_001', identity: 'Y', split: 'train', frames: 4 },
  ]);
  const out = freshDir();
  const merged = await mergeManifests([a.dir, b.dir], out);
  assert.deepEqual(
    merged.clips.map((c) => c.id),
    ['RD_Radio1_000', 'RD_Radio9_000', 'WDA_X_000', 'WDA_Y_001'],
  );
  assert.deepEqual(merged.totals, { clips: 4, done: 3, dropped: 1, frames: 12, identities: 3 });
  assert.deepEqual(merged.drop_reasons, { 'too-short': 1 });
  assert.deepEqual(merged.config, CONFIG);
  assert.deepEqual(merged.merged_from, [path.resolve(a.dir), path.resolve(b.dir)]);
  assert.equal(merged.job, undefined, 'per-job settings (which differed: shard_index 1 vs 2) are not merged');
  assert.deepEqual(await readDatasetManifest(out), merged);
  for (const c of merged.clips) for (const s of c.shards) assert.ok(existsSync(path.join(out, s)), s);
  let rows = 0;
  for await (const rb of iterateRows(out)) rows += rb.batch.numRows;
  assert.equal(rows, 12);
  // merging into one of the inputs works too, and an identical duplicate is kept once
  const again = await mergeManifests([a.dir, b.dir, a.dir], a.dir);
  assert.equal(again.clips.length, 4);
});

test('merge: conflicting config, conflicting duplicates, missing shards and identity leaks are errors', async () => {
  const a = await prepDir([{ id: 'WDA_A_000', identity: 'A', split: 'train', frames: 2 }]);
  const other = await prepDir([{ id: 'WDA_B_000', identity: 'B', split: 'test', frames: 2 }], [], { ...CONFIG, size: 64, seed: 1 });
  await assert.rejects(
    mergeManifests([a.dir, other.dir], freshDir()),
    (e: DifftalkError) => e.code === 'dataset-merge-conflict' && /differing keys: seed, size/.test(e.message),
  );
  const dup = await prepDir([{ id: 'WDA_A_000', identity: 'A', split: 'train', frames: 3 }]);
  await assert.rejects(mergeManifests([a.dir, dup.dir], freshDir()), /clip WDA_A_000 differs/);
  const leak = await prepDir([{ id: 'WDA_A_001', identity: 'A', split: 'test', frames: 2 }]);
  await assert.rejects(mergeManifests([a.dir, leak.dir], freshDir()), (e: DifftalkError) => e.code === 'split-identity-leak');
  const gone = await prepDir([{ id: 'WDA_G_000', identity: 'G', split: 'train', frames: 2 }]);
  rmSync(path.join(gone.dir, 'shards', 'WDA_G_000-0000.arrow'));
  await assert.rejects(mergeManifests([a.dir, gone.dir], freshDir()), /shard .* is missing/);
  await assert.rejects(mergeManifests([], freshDir()), /nothing to merge/);
});

test('the example manifest validates and the JSON schema names every field', () => {
  const example = JSON.parse(readFileSync(path.join(ROOT, 'manifests/examples/dataset.example.json'), 'utf8')) as DatasetManifest;
  validateDatasetManifest(example, 'dataset.example.json');
  assert.deepEqual(example.totals, summarizeClips(example.clips).totals);
  assert.deepEqual(example.splits, summarizeClips(example.clips).splits);
  assert.deepEqual(example.drop_reasons, summarizeClips(example.clips).drop_reasons);
  const schema = JSON.parse(readFileSync(path.join(ROOT, 'manifests/dataset.schema.json'), 'utf8')) as {
    required: string[];
    properties: Record<string, unknown>;
    $defs: { clip: { required: string[]; properties: Record<string, unknown> } };
  };
  for (const k of Object.keys(example)) assert.ok(k in schema.properties, `schema lacks ${k}`);
  for (const k of schema.required) assert.ok(k in example, `example lacks ${k}`);
  for (const c of example.clips) {
    for (const k of Object.keys(c)) assert.ok(k in schema.$defs.clip.properties, `clip schema lacks ${k}`);
    for (const k of schema.$defs.clip.required) assert.ok(k in c, `example clip lacks ${k}`);
  }
});
