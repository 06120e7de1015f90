import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import sharp from 'sharp';
import { Schema, Table, tableFromIPC, tableToIPC } from 'apache-arrow';
import { runProcess } from '../../src/util/exec.js';
import { sha256 } from '../../src/util/fs.js';
import { DifftalkError } from '../../src/util/errors.js';
import { difftalkReferenceSampler } from '../../src/dataset/reference.js';
import {
  encodeFrames,
  maskRowsFromLandmarks68,
  shardRelPath,
  writeClipShards,
  type ClipShardInput,
  type ShardMetadata,
} from '../../src/dataset/shard-writer.js';
import { iterateRows, openShard } from '../../src/dataset/shard-reader.js';
import type { RgbFrames } from '../../src/media/types.js';
import { ROOT, tmpDir } from '../helpers.js';
import { aocFrames, testShardMetadata } from './fixture.js';

const SIZE = 256;
const N = 10;
let frames: RgbFrames;
let clip: ClipShardInput;

const META: ShardMetadata = testShardMetadata(SIZE, [
  { name: 'mfcc', column: 'audio_mfcc', window: 16, dim: 13, rate: 100, params: { numcep: 13, winlen: 0.025 } },
  { name: 'mel', column: 'audio_mel', window: 8, dim: 80, rate: 100, params: { nMels: 80 } },
]);

/** Deterministic stand-in values (the writer stores numbers verbatim, so any values test the layout). */
function formula(len: number, seed: number, scale: number): Float32Array {
  return Float32Array.from({ length: len }, (_, k) => scale * (0.5 + 0.5 * Math.sin(0.37 * k + seed)));
}

before(async () => {
  // Real frames: the first 10 frames of the HDTF sample clip, 512² → 256² (ffmpeg area scaling), rgb24.
  frames = await aocFrames(N, SIZE);
  const images = await encodeFrames(frames, { format: 'jpeg', quality: 95 });
  const lm478 = formula(N * 1434, 1, SIZE);
  const lm478raw = formula(N * 1434, 2, SIZE);
  const lm68 = formula(N * 136, 3, SIZE);
  // frame 7 has no face: NaN landmarks, score 0
  lm478.fill(NaN, 7 * 1434, 8 * 1434);
  lm478raw.fill(NaN, 7 * 1434, 8 * 1434);
  lm68.fill(NaN, 7 * 136, 8 * 136);
  const masks = maskRowsFromLandmarks68(lm68, SIZE);
  const refs = difftalkReferenceSampler({ seed: 23, policy: 'farthest' }).sample('WDA_AlexandriaOcasioCortez_000', N);
  assert.ok(refs.ok);
  clip = {
    clipId: 'WDA_AlexandriaOcasioCortez_000',
    split: 'test',
    fps: 25,
    images,
    faceStatus: Array.from({ length: N }, (_, i) => (i === 7 ? 'no-face' : i === 8 ? 'multi-face' : 'ok')),
    faceScore: Float32Array.from({ length: N }, (_, i) => (i === 7 ? 0 : 0.9 + i / 100)),
    landmarks478: lm478,
    landmarks478Raw: lm478raw,
    landmarks68: lm68,
    maskRowTrain: masks.train,
    maskRowTest: masks.test,
    audio: [
      { name: 'mfcc', windows: { data: formula(N * 16 * 13, 4, 10), frames: N, window: 16, dim: 13 } },
      { name: 'mel', windows: { data: formula(N * 8 * 80, 5, -3), frames: N, window: 8, dim: 80 } },
    ],
    refFrameIndex: refs.value,
  };
});

/** Read shards in a fresh node process with apache-arrow's tableFromIPC; report schema and values as JSON. */
const READER = `
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tableFromIPC, Type } from 'apache-arrow';
const out = [];
for (const file of process.argv.slice(1)) {
  const t = tableFromIPC(readFileSync(file));
  const b64 = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
  const fields = t.schema.fields.map((f) => ({ name: f.name, type: Type[f.type.typeId], nullable: f.nullable,
    bitWidth: f.type.bitWidth, precision: f.type.precision, listSize: f.type.listSize,
    child: f.type.children?.[0] ? Type[f.type.children[0].type.typeId] : undefined, childPrecision: f.type.children?.[0]?.type.precision }));
  const cols = {};
  for (const f of t.schema.fields) {
    const v = t.getChild(f.name);
    const rows = [];
    for (let i = 0; i < t.numRows; i++) rows.push(v.get(i));
    if (f.type.typeId === Type.FixedSizeList) {
      const flat = new Float32Array(t.numRows * f.type.listSize);
      rows.forEach((r, i) => flat.set(r.toArray(), i * f.type.listSize));
      cols[f.name] = b64(flat);
    } else if (f.type.typeId === Type.Binary) cols[f.name] = rows.map((r) => createHash('sha256').update(r).digest('hex'));
    else if (f.type.typeId === Type.Float && f.type.precision === 1) cols[f.name] = b64(Float32Array.from(rows));
    else cols[f.name] = rows;
  }
  out.push({ numRows: t.numRows, batches: t.batches.length, metadata: Object.fromEntries(t.schema.metadata), fields, cols });
}
process.stdout.write(JSON.stringify(out));
`;

interface ReadBack {
  numRows: number;
  batches: number;
  metadata: Record<string, string>;
  fields: {
    name: string;
    type: string;
    nullable: boolean;
    bitWidth?: number;
    precision?: number;
    listSize?: number;
    child?: string;
    childPrecision?: number;
  }[];
  cols: Record<string, unknown>;
}

async function readInFreshProcess(files: string[]): Promise<ReadBack[]> {
  const { stdout } = await runProcess(process.execPath, ['--input-type=module', '-e', READER, '--', ...files], { cwd: ROOT });
  return JSON.parse(stdout.toString('utf8')) as ReadBack[];
}

const b64 = (a: Float32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');

test('a clip written with maxRows=4 reads back exactly in a fresh process (schema v1: columns, types, sizes, metadata)', async () => {
  const dir = tmpDir();
  const res = await writeClipShards(dir, clip, { maxRows: 4, metadata: META });
  assert.deepEqual(
    res.files,
    [0, 1, 2].map((k) => shardRelPath(clip.clipId, k)),
  );
  assert.equal(res.files[0], 'shards/WDA_AlexandriaOcasioCortez_000-0000.arrow');
  assert.equal(res.rows, N);
  const back = await readInFreshProcess(res.files.map((f) => path.join(dir, f)));
  assert.equal(
    res.bytes,
    res.files.reduce((s, f) => s + readFileSync(path.join(dir, f)).length, 0),
  );
  assert.deepEqual(
    back.map((b) => b.numRows),
    [4, 4, 2],
  );
  const expectFields = [
    ['clip_id', 'Utf8'],
    ['frame_index', 'Int', 32],
    ['time_s', 'Float', undefined, 2],
    ['image', 'Binary'],
    ['face_status', 'Utf8'],
    ['face_score', 'Float', undefined, 1],
    ['landmarks_478', 'FixedSizeList', undefined, undefined, 1434],
    ['landmarks_478_raw', 'FixedSizeList', undefined, undefined, 1434],
    ['landmarks_68', 'FixedSizeList', undefined, undefined, 136],
    ['mask_row_train', 'Int', 32],
    ['mask_row_test', 'Int', 32],
    ['audio_mfcc', 'FixedSizeList', undefined, undefined, 208],
    ['audio_mel', 'FixedSizeList', undefined, undefined, 640],
    ['ref_frame_index', 'Int', 32],
    ['split', 'Utf8'],
  ] as const;
  for (const b of back) {
    assert.deepEqual(
      b.fields.map((f) => f.name),
      expectFields.map((e) => e[0]),
    );
    b.fields.forEach((f, i) => {
      const [, type, bits, precision, listSize] = expectFields[i]!;
      assert.equal(f.type, type, f.name);
      assert.equal(f.nullable, false, f.name);
      if (bits) assert.equal(f.bitWidth, bits, f.name);
      if (precision) assert.equal(f.precision, precision, `${f.name} precision (1 = single, 2 = double)`);
      if (listSize) {
        assert.equal(f.listSize, listSize, f.name);
        assert.equal(f.child, 'Float', f.name);
        assert.equal(f.childPrecision, 1, `${f.name} items are Float32`);
      }
    });
    assert.deepEqual(Object.keys(b.metadata), [
      'difftalk.schema_version',
      'difftalk.fps',
      'difftalk.size',
      'difftalk.image_format',
      'difftalk.jpeg_quality',
      'difftalk.landmarker',
      'difftalk.audio_features',
      'difftalk.reference',
      'difftalk.tool_version',
    ]);
    assert.equal(b.metadata['difftalk.schema_version'], '1');
    assert.equal(b.metadata['difftalk.fps'], '25');
    assert.equal(b.metadata['difftalk.size'], '256');
    assert.equal(b.metadata['difftalk.image_format'], 'jpeg');
    assert.equal(b.metadata['difftalk.jpeg_quality'], '95');
    assert.equal(b.metadata['difftalk.tool_version'], '0.0.0-test');
    assert.deepEqual(JSON.parse(b.metadata['difftalk.landmarker']!), META.landmarker);
    assert.deepEqual(JSON.parse(b.metadata['difftalk.audio_features']!), META.audioFeatures);
    assert.deepEqual(JSON.parse(b.metadata['difftalk.reference']!), {
      sampler: 'difftalk',
      seed: 23,
      min_gap: { before: 61, after: 60 },
      last_frame_allowed: false,
      policy: 'farthest',
    });
  }
  // values, concatenated over the three shards, equal the input exactly
  const cat = <T>(name: string): T[] => back.flatMap((b) => b.cols[name] as T[]);
  const catF32 = (name: string): string => Buffer.concat(back.map((b) => Buffer.from(b.cols[name] as string, 'base64'))).toString('base64');
  assert.deepEqual(cat('clip_id'), new Array(N).fill(clip.clipId));
  assert.deepEqual(cat('frame_index'), [...Array(N).keys()]);
  assert.deepEqual(
    cat('time_s'),
    [...Array(N).keys()].map((f) => f / 25),
  );
  assert.deepEqual(
    cat('image'),
    clip.images.map((im) => sha256(im)),
  );
  assert.deepEqual(cat('face_status'), clip.faceStatus);
  assert.equal(catF32('face_score'), b64(clip.faceScore));
  assert.equal(catF32('landmarks_478'), b64(clip.landmarks478));
  assert.equal(catF32('landmarks_478_raw'), b64(clip.landmarks478Raw));
  assert.equal(catF32('landmarks_68'), b64(clip.landmarks68));
  assert.equal(catF32('audio_mfcc'), b64(clip.audio[0]!.windows.data));
  assert.equal(catF32('audio_mel'), b64(clip.audio[1]!.windows.data));
  assert.deepEqual(cat('mask_row_train'), [...clip.maskRowTrain]);
  assert.deepEqual(cat('mask_row_test'), [...clip.maskRowTest]);
  assert.deepEqual(cat('ref_frame_index'), [...clip.refFrameIndex]);
  assert.deepEqual(cat('split'), new Array(N).fill('test'));
  // the no-face frame: NaN landmarks survive, mask rows are -1
  const lm = new Float32Array(Buffer.from(catF32('landmarks_478'), 'base64').buffer.slice(0));
  assert.ok(Number.isNaN(lm[7 * 1434]) && !Number.isNaN(lm[6 * 1434]));
  assert.equal(clip.maskRowTrain[7], -1);
  // mask rows: floor(y) of iBUG points 30 / 33 (reference: the formula values, computed directly here)
  assert.equal(clip.maskRowTrain[0], Math.floor(clip.landmarks68[30 * 2 + 1]!));
  assert.equal(clip.maskRowTest[0], Math.floor(clip.landmarks68[33 * 2 + 1]!));
  // the images are real JPEGs of the frames
  const meta = await sharp(Buffer.from(clip.images[0]!)).metadata();
  assert.equal(meta.format, 'jpeg');
  assert.equal(meta.width, SIZE);
});

test('identical input gives identical bytes; rewriting with another maxRows removes stale shards', async () => {
  const a = tmpDir();
  const b = tmpDir();
  const ra = await writeClipShards(a, clip, { maxRows: 4, metadata: META });
  const rb = await writeClipShards(b, clip, { maxRows: 4, metadata: META });
  for (let i = 0; i < ra.files.length; i++) {
    assert.ok(readFileSync(path.join(a, ra.files[i]!)).equals(readFileSync(path.join(b, rb.files[i]!))));
  }
  // a neighbouring clip whose id extends this one must survive the cleanup
  const other = { ...clip, clipId: `${clip.clipId}-0001` };
  await writeClipShards(a, other, { maxRows: 100, metadata: META });
  const again = await writeClipShards(a, clip, { maxRows: 100, metadata: META });
  assert.deepEqual(again.files, [shardRelPath(clip.clipId, 0)]);
  assert.deepEqual(readdirSync(path.join(a, 'shards')).sort(), ['WDA_AlexandriaOcasioCortez_000-0000.arrow', 'WDA_AlexandriaOcasioCortez_000-0001-0000.arrow']);
  const back = await readInFreshProcess([path.join(a, again.files[0]!)]);
  assert.equal(back[0]!.numRows, N);
  assert.equal(back[0]!.batches, 1);
});

test('a 150-frame shard holds 64-row record batches that stream in order', async () => {
  const R = 15; // tile the 10-frame clip 15 times
  const tile = <T extends Float32Array | Int32Array>(a: T): T => {
    const out = new (a.constructor as new (n: number) => T)(a.length * R);
    for (let i = 0; i < R; i++) out.set(a, i * a.length);
    return out;
  };
  const big: ClipShardInput = {
    ...clip,
    clipId: 'big',
    images: Array.from({ length: R }, () => clip.images).flat(),
    faceStatus: Array.from({ length: R }, () => clip.faceStatus).flat(),
    faceScore: tile(clip.faceScore),
    landmarks478: tile(clip.landmarks478),
    landmarks478Raw: tile(clip.landmarks478Raw),
    landmarks68: tile(clip.landmarks68),
    maskRowTrain: tile(clip.maskRowTrain),
    maskRowTest: tile(clip.maskRowTest),
    audio: clip.audio.map((a) => ({ name: a.name, windows: { ...a.windows, frames: N * R, data: tile(a.windows.data) } })),
    refFrameIndex: tile(clip.refFrameIndex),
  };
  const dir = tmpDir();
  const res = await writeClipShards(dir, big, { maxRows: 1000, metadata: META });
  assert.equal(res.files.length, 1);
  const back = await readInFreshProcess([path.join(dir, res.files[0]!)]);
  assert.equal(back[0]!.numRows, 150);
  assert.equal(back[0]!.batches, 3);
  const sizes: number[] = [];
  const idx: number[] = [];
  for await (const rb of iterateRows(dir, { columns: ['frame_index'] })) {
    sizes.push(rb.batch.numRows);
    idx.push(...(rb.batch.getChild('frame_index')!.toArray() as Int32Array));
  }
  assert.deepEqual(sizes, [64, 64, 22]);
  assert.deepEqual(idx, [...Array(150).keys()]);
});

test('bad input is one clear DifftalkError', async () => {
  const dir = tmpDir();
  const bad = async (c: Partial<ClipShardInput>, re: RegExp, meta: ShardMetadata = META, maxRows = 4): Promise<void> => {
    await assert.rejects(writeClipShards(dir, { ...clip, ...c }, { maxRows, metadata: meta }), (e: DifftalkError) => {
      assert.ok(e instanceof DifftalkError);
      assert.match(e.message, re);
      return true;
    });
  };
  await bad({ clipId: '../evil' }, /safe file name/);
  await bad({ landmarks68: new Float32Array(5) }, /landmarks68 has 5 values/);
  await bad({ refFrameIndex: Int32Array.from({ length: N }, () => N) }, /reference index 10/);
  await bad({ audio: clip.audio.slice(0, 1) }, /audio features/);
  await bad({ fps: 30 }, /fps 30/);
  await bad({ images: [new Uint8Array(0), ...clip.images.slice(1)] }, /image of frame 0 is empty/);
  await bad({}, /jpeg quality/, { ...META, jpegQuality: 0 });
  await bad({}, /column audio_mfcc/, { ...META, audioFeatures: [{ ...META.audioFeatures[0]!, column: 'mfcc' }, META.audioFeatures[1]!] });
  await bad({}, /shard rows/, META, 0);
});

test('shard-reader streams batches with projection and split filter; rejects other schema versions', async () => {
  const dir = tmpDir();
  await writeClipShards(dir, clip, { maxRows: 100, metadata: META });
  await writeClipShards(dir, { ...clip, clipId: 'WRA_Train_000', split: 'train' }, { maxRows: 6, metadata: META });
  const all: string[] = [];
  let rows = 0;
  for await (const rb of iterateRows(dir, { columns: ['clip_id', 'frame_index', 'image'] })) {
    assert.deepEqual(
      rb.batch.schema.fields.map((f) => f.name),
      ['clip_id', 'frame_index', 'image'],
    );
    all.push(`${rb.shard}:${rb.split}:${rb.batch.numRows}`);
    rows += rb.batch.numRows;
  }
  assert.equal(rows, 2 * N);
  assert.deepEqual(all, [
    'shards/WDA_AlexandriaOcasioCortez_000-0000.arrow:test:10',
    'shards/WRA_Train_000-0000.arrow:train:6',
    'shards/WRA_Train_000-0001.arrow:train:4',
  ]);
  const trainFrames: number[] = [];
  for await (const rb of iterateRows(dir, { split: 'train', columns: ['frame_index'] })) {
    for (let i = 0; i < rb.batch.numRows; i++) trainFrames.push(rb.batch.getChild('frame_index')!.get(i) as number);
  }
  assert.deepEqual(trainFrames, [...Array(N).keys()]);
  // projection keeps the requested order, also for columns that are not a prefix of the schema
  for await (const rb of iterateRows(dir, { clips: ['WDA_AlexandriaOcasioCortez_000'], columns: ['ref_frame_index', 'face_status'] })) {
    assert.deepEqual(
      rb.batch.schema.fields.map((f) => f.name),
      ['ref_frame_index', 'face_status'],
    );
    assert.deepEqual([...rb.batch.getChild('ref_frame_index')!.toArray()], [...clip.refFrameIndex]);
    assert.equal(rb.batch.getChild('face_status')!.get(7), 'no-face');
  }
  await assert.rejects(async () => {
    for await (const _ of iterateRows(dir, { columns: ['nope'] })) void _;
  }, /unknown column/);

  const shard = await openShard(path.join(dir, 'shards/WDA_AlexandriaOcasioCortez_000-0000.arrow'));
  assert.equal(shard.metadata.size, 256);
  assert.equal(shard.metadata.audioFeatures[1]!.name, 'mel');
  assert.equal(shard.metadata.reference.seed, 23);
  await shard.close();

  // a shard claiming schema version 2
  const t = tableFromIPC(readFileSync(path.join(dir, 'shards/WRA_Train_000-0001.arrow')));
  const md = new Map(t.schema.metadata);
  md.set('difftalk.schema_version', '2');
  const v2 = path.join(dir, 'v2.arrow');
  writeFileSync(
    v2,
    tableToIPC(
      new Table(
        new Schema(t.schema.fields, md),
        t.batches.map((b) => b),
      ),
      'file',
    ),
  );
  await assert.rejects(openShard(v2), (e: DifftalkError) => e.code === 'shard-schema-mismatch' && /version 2.*version 1/.test(e.message));
  const junk = path.join(dir, 'junk.arrow');
  writeFileSync(junk, 'not arrow');
  await assert.rejects(openShard(junk), (e: DifftalkError) => e.code === 'shard-unreadable');
});

test('encodeFrames: deterministic JPEG close to the frame; PNG lossless', async () => {
  const two: RgbFrames = { ...frames, count: 2, data: frames.data.subarray(0, 2 * SIZE * SIZE * 3) };
  const j1 = await encodeFrames(two, { format: 'jpeg', quality: 95 });
  const j2 = await encodeFrames(two, { format: 'jpeg', quality: 95 });
  assert.deepEqual(
    j1.map((x) => sha256(x)),
    j2.map((x) => sha256(x)),
  );
  const dec = await sharp(Buffer.from(j1[0]!)).raw().toBuffer();
  let se = 0;
  for (let i = 0; i < dec.length; i++) se += (dec[i]! - two.data[i]!) ** 2;
  const psnr = 10 * Math.log10((255 * 255) / (se / dec.length));
  // Reference: the source frame itself. Measured 45.9 dB for JPEG q95 4:4:4 on this frame; bound 42 dB.
  assert.ok(psnr > 42, `psnr ${psnr.toFixed(2)} dB`);
  const png = await encodeFrames(two, { format: 'png' });
  const pdec = await sharp(Buffer.from(png[1]!)).raw().toBuffer();
  assert.ok(pdec.equals(Buffer.from(two.data.subarray(SIZE * SIZE * 3, 2 * SIZE * SIZE * 3))));
  await assert.rejects(encodeFrames(two, { format: 'jpeg', quality: 101 }), DifftalkError);
});
