/**
 * shard-writer: persist one prepared clip as Arrow IPC *file* shards (schema v1, docs/data-format.md).
 * - One row per video frame; `<dataset>/shards/<clip_id>-<k:04d>.arrow`, at most maxRows rows each, written to a
 *   temp name and renamed; shards of the same clip with a higher k left by an earlier run are removed afterwards.
 * - Bytes depend only on the input (no time stamps), so a resumed run writes the same files as an uninterrupted one.
 * - encodeFrames: RGB frames → JPEG/PNG bytes with sharp (deterministic).
 */
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import {
  Binary,
  Field,
  FixedSizeList,
  Float32,
  Float64,
  Int32,
  makeData,
  RecordBatch,
  Schema,
  Struct,
  Table,
  tableToIPC,
  Utf8,
  type Data,
  type DataType,
} from 'apache-arrow';
import { DifftalkError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import { VERSION } from '../util/version.js';
import type { Split } from './split.js';
import type { FaceLandmarks } from '../face/types.js';
import type { FrameWindows } from '../audio/types.js';
import type { RgbFrames } from '../media/types.js';
import type { ReferenceParams } from './reference.js';
import { LM68_VALUES } from '../face/ibug68.js';

export const SHARD_SCHEMA_VERSION = '1';
export const LANDMARKS_478 = 478;
export const LANDMARKS_68 = 68;
/** Rows per Arrow record batch inside a shard: the unit a reader holds in memory. */
export const SHARD_BATCH_ROWS = 64;

export type ImageFormat = 'jpeg' | 'png';

/** One audio feature column's description, recorded in `difftalk.audio_features`. */
export interface AudioFeatureMetadata {
  /** Extractor name (`mfcc`, `mel`, ...); the column is `audio_<name>`. */
  name: string;
  column: string;
  /** Feature frames per video frame window, and features per feature frame. */
  window: number;
  dim: number;
  /** Feature frames per second. */
  rate: number;
  params: Record<string, string | number | boolean>;
}

export interface LandmarkerMetadata {
  engine: string;
  model: string;
  sha256: string;
  /** The temporal smoother and its parameters (free-form, JSON). */
  smoothing: unknown;
}

/** Dataset-wide schema metadata (identical for every shard of a dataset). */
export interface ShardMetadata {
  fps: number;
  size: number;
  imageFormat: ImageFormat;
  /** JPEG quality (1..100); ignored for PNG (recorded as ''). */
  jpegQuality?: number;
  landmarker: LandmarkerMetadata;
  audioFeatures: AudioFeatureMetadata[];
  reference: ReferenceParams;
  /** Defaults to the package version. */
  toolVersion?: string;
}

export interface AudioColumnInput {
  /** Must match an entry of metadata.audioFeatures (same name, window and dim). */
  name: string;
  windows: FrameWindows;
}

/** Everything stored for one clip; arrays are frames × K, row-major. */
export interface ClipShardInput {
  clipId: string;
  split: Split;
  fps: number;
  /** Encoded frames (see encodeFrames), one per frame. */
  images: Uint8Array[];
  faceStatus: FaceLandmarks['status'][];
  faceScore: Float32Array;
  /** frames × 1434 (x, y, z), pixels of the stored frame; NaN where no face. */
  landmarks478: Float32Array;
  landmarks478Raw: Float32Array;
  /** frames × 136 (x, y). */
  landmarks68: Float32Array;
  /** See maskRowsFromLandmarks68. */
  maskRowTrain: Int32Array;
  maskRowTest: Int32Array;
  audio: AudioColumnInput[];
  refFrameIndex: Int32Array;
}

export interface WriteShardsResult {
  /** Paths relative to datasetDir (`shards/<clip>-0000.arrow`), in order. */
  files: string[];
  rows: number;
  bytes: number;
}

/** `shards/<clipId>-<k:04d>.arrow` relative to the dataset directory. */
export function shardRelPath(clipId: string, k: number): string {
  return `shards/${clipId}-${String(k).padStart(4, '0')}.arrow`;
}

/**
 * DiffTalk's mask rows from iBUG-68 landmarks (frames × 136): train = floor(y of point 30, nose tip),
 * test = floor(y of point 33, subnasale), clamped to [0, size]; -1 where the landmark is NaN (no face).
 */
export function maskRowsFromLandmarks68(landmarks68: Float32Array, size: number): { train: Int32Array; test: Int32Array } {
  const frames = landmarks68.length / (LANDMARKS_68 * 2);
  if (!Number.isInteger(frames)) throw new DifftalkError('bad-argument', `landmarks68 length ${landmarks68.length} is not frames × ${LM68_VALUES}`);
  const row = (y: number): number => (Number.isFinite(y) ? Math.min(size, Math.max(0, Math.floor(y))) : -1);
  const train = new Int32Array(frames);
  const test = new Int32Array(frames);
  for (let f = 0; f < frames; f++) {
    train[f] = row(landmarks68[f * LM68_VALUES + 30 * 2 + 1] as number);
    test[f] = row(landmarks68[f * LM68_VALUES + 33 * 2 + 1] as number);
  }
  return { train, test };
}

/** The Arrow schema (fields and metadata) of a dataset's shards. */
export function shardSchema(metadata: ShardMetadata): Schema {
  const fsl = (n: number): FixedSizeList => new FixedSizeList(n, new Field('item', new Float32(), false));
  const fields: Field[] = [
    new Field('clip_id', new Utf8(), false),
    new Field('frame_index', new Int32(), false),
    new Field('time_s', new Float64(), false),
    new Field('image', new Binary(), false),
    new Field('face_status', new Utf8(), false),
    new Field('face_score', new Float32(), false),
    new Field('landmarks_478', fsl(LANDMARKS_478 * 3), false),
    new Field('landmarks_478_raw', fsl(LANDMARKS_478 * 3), false),
    new Field('landmarks_68', fsl(LANDMARKS_68 * 2), false),
    new Field('mask_row_train', new Int32(), false),
    new Field('mask_row_test', new Int32(), false),
    ...metadata.audioFeatures.map((a) => new Field(a.column, fsl(a.window * a.dim), false)),
    new Field('ref_frame_index', new Int32(), false),
    new Field('split', new Utf8(), false),
  ];
  return new Schema(fields, shardMetadataMap(metadata));
}

/** Schema metadata as stored (string values, structured ones JSON), in a fixed key order. */
export function shardMetadataMap(m: ShardMetadata): Map<string, string> {
  validateMetadata(m);
  return new Map<string, string>([
    ['difftalk.schema_version', SHARD_SCHEMA_VERSION],
    ['difftalk.fps', String(m.fps)],
    ['difftalk.size', String(m.size)],
    ['difftalk.image_format', m.imageFormat],
    ['difftalk.jpeg_quality', m.imageFormat === 'jpeg' ? String(m.jpegQuality) : ''],
    ['difftalk.landmarker', JSON.stringify(m.landmarker)],
    ['difftalk.audio_features', JSON.stringify(m.audioFeatures)],
    ['difftalk.reference', JSON.stringify(m.reference)],
    ['difftalk.tool_version', m.toolVersion ?? VERSION],
  ]);
}

function validateMetadata(m: ShardMetadata): void {
  const bad = (msg: string): never => {
    throw new DifftalkError('bad-argument', `shard metadata: ${msg}`);
  };
  if (!(m.fps > 0)) bad(`fps ${m.fps} must be positive`);
  if (!Number.isInteger(m.size) || m.size < 1) bad(`size ${m.size} must be a positive integer`);
  if (m.imageFormat !== 'jpeg' && m.imageFormat !== 'png') bad(`image format '${String(m.imageFormat)}' is not jpeg or png`);
  if (m.imageFormat === 'jpeg' && !(Number.isInteger(m.jpegQuality) && (m.jpegQuality as number) >= 1 && (m.jpegQuality as number) <= 100)) {
    bad(`jpeg quality ${m.jpegQuality} must be an integer 1..100`);
  }
  const columns = new Set<string>();
  for (const a of m.audioFeatures) {
    if (!/^[a-z0-9_]+$/.test(a.name)) bad(`audio feature name '${a.name}' must be lowercase letters, digits or _`);
    if (a.column !== `audio_${a.name}`) bad(`audio feature ${a.name} must use column audio_${a.name}, not ${a.column}`);
    if (columns.has(a.column)) bad(`audio column ${a.column} appears twice`);
    columns.add(a.column);
    if (!(Number.isInteger(a.window) && a.window > 0 && Number.isInteger(a.dim) && a.dim > 0)) {
      bad(`audio feature ${a.name}: window ${a.window} and dim ${a.dim} must be positive integers`);
    }
  }
}

function checkClip(clip: ClipShardInput, m: ShardMetadata): number {
  const n = clip.images.length;
  const bad = (msg: string): never => {
    throw new DifftalkError('bad-argument', `clip ${clip.clipId}: ${msg}`);
  };
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(clip.clipId) || clip.clipId.includes('..')) {
    bad('clip id must be a safe file name (letters, digits, . _ -)');
  }
  if (clip.split !== 'train' && clip.split !== 'test') bad(`split '${String(clip.split)}' is not train or test`);
  if (clip.fps !== m.fps) bad(`fps ${clip.fps} differs from the dataset's ${m.fps}`);
  if (n === 0) bad('no frames');
  const len = (name: string, got: number, want: number): void => {
    if (got !== want) bad(`${name} has ${got} values, expected ${want} (${n} frames)`);
  };
  len('faceStatus', clip.faceStatus.length, n);
  len('faceScore', clip.faceScore.length, n);
  len('landmarks478', clip.landmarks478.length, n * LANDMARKS_478 * 3);
  len('landmarks478Raw', clip.landmarks478Raw.length, n * LANDMARKS_478 * 3);
  len('landmarks68', clip.landmarks68.length, n * LANDMARKS_68 * 2);
  len('maskRowTrain', clip.maskRowTrain.length, n);
  len('maskRowTest', clip.maskRowTest.length, n);
  len('refFrameIndex', clip.refFrameIndex.length, n);
  clip.images.forEach((im, i) => {
    if (!(im instanceof Uint8Array) || im.length === 0) bad(`image of frame ${i} is empty`);
  });
  for (const s of clip.faceStatus) if (s !== 'ok' && s !== 'no-face' && s !== 'multi-face') bad(`face status '${String(s)}'`);
  for (const r of clip.refFrameIndex) if (r < 0 || r >= n) bad(`reference index ${r} is outside 0..${n - 1}`);
  const names = clip.audio
    .map((a) => a.name)
    .sort()
    .join(',');
  const want = m.audioFeatures
    .map((a) => a.name)
    .sort()
    .join(',');
  if (names !== want) bad(`audio features [${names}] differ from the dataset's [${want}]`);
  for (const a of clip.audio) {
    const meta = m.audioFeatures.find((x) => x.name === a.name) as AudioFeatureMetadata;
    if (a.windows.window !== meta.window || a.windows.dim !== meta.dim) {
      bad(`audio ${a.name} windows are ${a.windows.window}×${a.windows.dim}, metadata says ${meta.window}×${meta.dim}`);
    }
    len(`audio ${a.name}`, a.windows.data.length, n * meta.window * meta.dim);
    if (a.windows.frames !== n) bad(`audio ${a.name} has ${a.windows.frames} windows for ${n} frames`);
  }
  return n;
}

const encoder = new TextEncoder();

function utf8Data(values: string[]): Data<Utf8> {
  const bytes = values.map((v) => encoder.encode(v));
  return makeData({ type: new Utf8(), length: values.length, nullCount: 0, ...packBytes(bytes) });
}

function binaryData(values: Uint8Array[]): Data<Binary> {
  return makeData({ type: new Binary(), length: values.length, nullCount: 0, ...packBytes(values) });
}

function packBytes(values: Uint8Array[]): { valueOffsets: Int32Array; data: Uint8Array } {
  const valueOffsets = new Int32Array(values.length + 1);
  let total = 0;
  values.forEach((v, i) => {
    total += v.length;
    valueOffsets[i + 1] = total;
  });
  if (total > 2 ** 31 - 1) throw new DifftalkError('bad-argument', 'a shard batch holds more than 2 GiB of binary data');
  const data = new Uint8Array(total);
  values.forEach((v, i) => data.set(v, valueOffsets[i] as number));
  return { valueOffsets, data };
}

function fslData(type: FixedSizeList, values: Float32Array, rows: number): Data<FixedSizeList> {
  const child = makeData({ type: new Float32(), length: values.length, nullCount: 0, data: values });
  return makeData({ type, length: rows, nullCount: 0, child });
}

function batchFor(schema: Schema, clip: ClipShardInput, start: number, end: number, fps: number): RecordBatch {
  const rows = end - start;
  const slice = (a: Float32Array, k: number): Float32Array => a.slice(start * k, end * k);
  const frameIndex = Int32Array.from({ length: rows }, (_, i) => start + i);
  const children: Data[] = [];
  for (const field of schema.fields) {
    const t = field.type as DataType;
    switch (field.name) {
      case 'clip_id':
        children.push(utf8Data(new Array<string>(rows).fill(clip.clipId)));
        break;
      case 'frame_index':
        children.push(makeData({ type: new Int32(), length: rows, nullCount: 0, data: frameIndex }));
        break;
      case 'time_s':
        children.push(makeData({ type: new Float64(), length: rows, nullCount: 0, data: Float64Array.from(frameIndex, (f) => f / fps) }));
        break;
      case 'image':
        children.push(binaryData(clip.images.slice(start, end)));
        break;
      case 'face_status':
        children.push(utf8Data(clip.faceStatus.slice(start, end)));
        break;
      case 'face_score':
        children.push(makeData({ type: new Float32(), length: rows, nullCount: 0, data: clip.faceScore.slice(start, end) }));
        break;
      case 'landmarks_478':
        children.push(fslData(t as FixedSizeList, slice(clip.landmarks478, LANDMARKS_478 * 3), rows));
        break;
      case 'landmarks_478_raw':
        children.push(fslData(t as FixedSizeList, slice(clip.landmarks478Raw, LANDMARKS_478 * 3), rows));
        break;
      case 'landmarks_68':
        children.push(fslData(t as FixedSizeList, slice(clip.landmarks68, LANDMARKS_68 * 2), rows));
        break;
      case 'mask_row_train':
        children.push(makeData({ type: new Int32(), length: rows, nullCount: 0, data: clip.maskRowTrain.slice(start, end) }));
        break;
      case 'mask_row_test':
        children.push(makeData({ type: new Int32(), length: rows, nullCount: 0, data: clip.maskRowTest.slice(start, end) }));
        break;
      case 'ref_frame_index':
        children.push(makeData({ type: new Int32(), length: rows, nullCount: 0, data: clip.refFrameIndex.slice(start, end) }));
        break;
      case 'split':
        children.push(utf8Data(new Array<string>(rows).fill(clip.split)));
        break;
      default: {
        const audio = clip.audio.find((a) => `audio_${a.name}` === field.name);
        if (!audio) throw new DifftalkError('clip-failed', `no data for column ${field.name}`);
        const k = audio.windows.window * audio.windows.dim;
        children.push(fslData(t as FixedSizeList, slice(audio.windows.data, k), rows));
      }
    }
  }
  const struct = makeData({ type: new Struct(schema.fields), length: rows, nullCount: 0, children });
  return new RecordBatch(schema, struct);
}

/** Serialise rows [start, end) of a clip as one Arrow IPC file (record batches of SHARD_BATCH_ROWS rows). */
export function encodeShard(schema: Schema, clip: ClipShardInput, start: number, end: number, fps: number): Uint8Array {
  const batches: RecordBatch[] = [];
  for (let s = start; s < end; s += SHARD_BATCH_ROWS) batches.push(batchFor(schema, clip, s, Math.min(end, s + SHARD_BATCH_ROWS), fps));
  return tableToIPC(new Table(schema, batches), 'file');
}

/**
 * Write a clip's shards into `<datasetDir>/shards/`. Each file is written atomically; afterwards, shards of this clip
 * with a higher index (from an earlier run with a smaller clip or different maxRows) are removed.
 */
export async function writeClipShards(
  datasetDir: string,
  clip: ClipShardInput,
  opts: { maxRows: number; metadata: ShardMetadata },
): Promise<WriteShardsResult> {
  if (!Number.isInteger(opts.maxRows) || opts.maxRows < 1) {
    throw new DifftalkError('bad-argument', `shard rows ${opts.maxRows} must be a positive integer`);
  }
  const schema = shardSchema(opts.metadata);
  const n = checkClip(clip, opts.metadata);
  const files: string[] = [];
  let bytes = 0;
  for (let k = 0, start = 0; start < n; k++, start += opts.maxRows) {
    const rel = shardRelPath(clip.clipId, k);
    const buf = encodeShard(schema, clip, start, Math.min(n, start + opts.maxRows), opts.metadata.fps);
    await writeFileAtomic(path.join(datasetDir, rel), buf);
    files.push(rel);
    bytes += buf.length;
  }
  await removeStaleShards(datasetDir, clip.clipId, files.length);
  return { files, rows: n, bytes };
}

/** Remove `shards/<clipId>-<k>.arrow` for k >= keep. */
export async function removeStaleShards(datasetDir: string, clipId: string, keep: number): Promise<string[]> {
  const dir = path.join(datasetDir, 'shards');
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const prefix = `${clipId}-`;
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith('.arrow')) continue;
    const k = name.slice(prefix.length, -'.arrow'.length);
    if (!/^\d{4,}$/.test(k) || Number(k) < keep) continue;
    await rm(path.join(dir, name), { force: true });
    removed.push(`shards/${name}`);
  }
  return removed.sort();
}

/**
 * Encode RGB frames as JPEG (baseline, 4:4:4 chroma, no metadata) or PNG (compression 6, no metadata) with sharp.
 * Output is deterministic for identical input. Frames are encoded `concurrency` at a time (default 4).
 */
export async function encodeFrames(frames: RgbFrames, opts: { format: ImageFormat; quality?: number; concurrency?: number }): Promise<Uint8Array[]> {
  const { width, height, count, data } = frames;
  const frameBytes = width * height * 3;
  if (data.length < count * frameBytes) throw new DifftalkError('bad-argument', `frame data holds fewer than ${count} frames`);
  const quality = opts.quality ?? 95;
  if (opts.format === 'jpeg' && !(Number.isInteger(quality) && quality >= 1 && quality <= 100)) {
    throw new DifftalkError('bad-argument', `jpeg quality ${quality} must be an integer 1..100`);
  }
  if (opts.format !== 'jpeg' && opts.format !== 'png') throw new DifftalkError('bad-argument', `image format '${String(opts.format)}'`);
  const encodeOne = async (i: number): Promise<Uint8Array> => {
    const raw = Buffer.from(data.buffer, data.byteOffset + i * frameBytes, frameBytes);
    const img = sharp(raw, { raw: { width, height, channels: 3 } });
    const out =
      opts.format === 'jpeg'
        ? await img.jpeg({ quality, chromaSubsampling: '4:4:4', progressive: false, mozjpeg: false }).toBuffer()
        : await img.png({ compressionLevel: 6, adaptiveFiltering: false, palette: false }).toBuffer();
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
  };
  const result = new Array<Uint8Array>(count);
  const concurrency = Math.max(1, opts.concurrency ?? 4);
  for (let s = 0; s < count; s += concurrency) {
    const idx = Array.from({ length: Math.min(concurrency, count - s) }, (_, j) => s + j);
    const outs = await Promise.all(idx.map(encodeOne));
    idx.forEach((i, j) => (result[i] = outs[j] as Uint8Array));
  }
  return result;
}
