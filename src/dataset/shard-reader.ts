/**
 * shard-reader: open Arrow shards of a prepared dataset and stream their rows batch by batch.
 * A shard is read through an async random-access file reader, so only one record batch (SHARD_BATCH_ROWS rows)
 * per open shard is in memory; iterateRows opens one shard at a time.
 *
 * Shards are untrusted files. Before apache-arrow reads a structure, the size it declares is checked against the
 * file's size (the footer length, each record batch's metadata, body, row count and field node lengths), so a file
 * can make the reader allocate at most about its own size; the schema must be the one shard-writer writes for the
 * file's metadata (names, types, FixedSizeList sizes from the audio feature windows); every batch's buffers must hold
 * its rows (offsets in range and non-decreasing, list children long enough, no nulls); clip ids must be safe names
 * and one per shard. Every violation is one DifftalkError (exit 2) naming the file, never a raw exception.
 */
import { open, readdir, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Message, RecordBatchReader, Type, type AsyncRecordBatchFileReader, type Data, type FixedSizeList, type RecordBatch, type Schema } from 'apache-arrow';
import { DifftalkError, errorMessage } from '../util/errors.js';
import { exists } from '../util/fs.js';
import { unsafeNameReason } from '../util/names.js';
import { readDatasetManifest } from './manifest.js';
import { SHARD_SCHEMA_VERSION, shardSchema, type AudioFeatureMetadata, type ImageFormat, type ShardMetadata } from './shard-writer.js';
import type { Split } from './split.js';

export interface OpenShard {
  file: string;
  schema: Schema;
  metadata: ShardMetadata & { schemaVersion: string; toolVersion: string };
  numBatches: number;
  /** Record batches in order (each read from disk when asked for). */
  batches(): AsyncGenerator<RecordBatch>;
  close(): Promise<void>;
}

/** Parse and check a shard's schema metadata (schema_version must be SHARD_SCHEMA_VERSION). */
export function parseShardMetadata(meta: Map<string, string>, source: string): OpenShard['metadata'] {
  const version = meta.get('difftalk.schema_version');
  if (version === undefined) {
    throw new DifftalkError('shard-schema-mismatch', `${source} is not a difftalk shard (no difftalk.schema_version metadata)`);
  }
  if (version !== SHARD_SCHEMA_VERSION) {
    throw new DifftalkError('shard-schema-mismatch', `${source} has shard schema version ${version}; this difftalk reads version ${SHARD_SCHEMA_VERSION}`, {
      suggestion: 'rerun `difftalk prep` with this version of difftalk, or use the difftalk version that wrote the dataset',
    });
  }
  const get = (k: string): string => {
    const v = meta.get(k);
    if (v === undefined) throw new DifftalkError('shard-schema-mismatch', `${source}: metadata ${k} is missing`);
    return v;
  };
  const json = <T>(k: string): T => {
    try {
      return JSON.parse(get(k)) as T;
    } catch (e) {
      if (e instanceof DifftalkError) throw e;
      throw new DifftalkError('shard-schema-mismatch', `${source}: metadata ${k} is not valid JSON`);
    }
  };
  const bad = (k: string, why: string) => new DifftalkError('shard-schema-mismatch', `${source}: metadata ${k} ${why}`);
  const number = (k: string, min: number, max: number, integer: boolean): number => {
    const v = Number(get(k));
    if (!Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v)))
      throw bad(k, `must be ${integer ? 'an integer' : 'a number'} in [${min}, ${max}]`);
    return v;
  };
  const imageFormat = get('difftalk.image_format');
  if (imageFormat !== 'jpeg' && imageFormat !== 'png')
    throw bad('difftalk.image_format', `must be jpeg or png (got ${JSON.stringify(imageFormat.slice(0, 40))})`);
  const q = get('difftalk.jpeg_quality');
  const landmarker = json<ShardMetadata['landmarker']>('difftalk.landmarker');
  const reference = json<ShardMetadata['reference']>('difftalk.reference');
  if (!isObject(landmarker)) throw bad('difftalk.landmarker', 'must be a JSON object');
  if (!isObject(reference)) throw bad('difftalk.reference', 'must be a JSON object');
  return {
    schemaVersion: version,
    fps: number('difftalk.fps', Number.MIN_VALUE, MAX_FPS, false),
    size: number('difftalk.size', 1, MAX_FRAME_SIZE, true),
    imageFormat: imageFormat as ImageFormat,
    jpegQuality: q === '' ? undefined : number('difftalk.jpeg_quality', 1, 100, true),
    landmarker,
    audioFeatures: checkAudioFeatures(json<unknown>('difftalk.audio_features'), source),
    reference,
    toolVersion: get('difftalk.tool_version'),
  };
}

/** Bounds on what a shard's metadata may declare (the writer: 25 fps, 256 or 512 px, a few audio windows). */
const MAX_FPS = 1000;
const MAX_FRAME_SIZE = 4096;
/** Floats per row of one audio feature column (window × dim); the writer's largest is 20 × 80. */
const MAX_AUDIO_VALUES = 1 << 16;
const MAX_AUDIO_FEATURES = 64;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function checkAudioFeatures(v: unknown, source: string): AudioFeatureMetadata[] {
  const bad = (why: string) => new DifftalkError('shard-schema-mismatch', `${source}: metadata difftalk.audio_features ${why}`);
  if (!Array.isArray(v) || v.length > MAX_AUDIO_FEATURES) throw bad(`must be a list of at most ${MAX_AUDIO_FEATURES} features`);
  return v.map((a: unknown, i) => {
    if (!isObject(a) || typeof a.name !== 'string' || typeof a.column !== 'string' || a.column !== `audio_${a.name}`) {
      throw bad(`[${i}] must have a name and the column audio_<name>`);
    }
    const { window, dim } = a;
    if (
      !Number.isInteger(window) ||
      !Number.isInteger(dim) ||
      (window as number) < 1 ||
      (dim as number) < 1 ||
      (window as number) * (dim as number) > MAX_AUDIO_VALUES
    ) {
      throw bad(`[${i}] (${a.column}): window × dim must be positive integers with at most ${MAX_AUDIO_VALUES} values`);
    }
    return a as unknown as AudioFeatureMetadata;
  });
}

/** Arrow IPC file framing: "ARROW1" + 2 bytes padding at the start; footer, int32 footer length, "ARROW1" at the end. */
const MAGIC = Buffer.from('ARROW1');
const HEAD_BYTES = 8;
const TAIL_BYTES = 4 + MAGIC.length;
/** The continuation marker before a message's metadata length (Arrow ≥ 0.15). */
const CONTINUATION = -1;

const unreadable = (file: string, why: string, cause?: unknown): DifftalkError =>
  new DifftalkError('shard-unreadable', `${path.basename(file)} is not a readable difftalk shard: ${why}`, {
    suggestion: 'rerun `difftalk prep` for this dataset (delete the shard first), or check that the file was copied completely',
    ...(cause === undefined ? {} : { cause }),
  });

async function readBytes(fh: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await fh.read(buf, 0, length, position);
  return buf.subarray(0, bytesRead);
}

/** The file's framing (magic at both ends, a footer length inside the file): checked before apache-arrow reads it. */
async function checkFraming(fh: FileHandle, file: string, size: number): Promise<{ footerStart: number }> {
  if (size < HEAD_BYTES + TAIL_BYTES) throw unreadable(file, `${size} bytes is too short for an Arrow IPC file (truncated?)`);
  const head = await readBytes(fh, 0, MAGIC.length);
  const tail = await readBytes(fh, size - TAIL_BYTES, TAIL_BYTES);
  if (!head.equals(MAGIC)) throw unreadable(file, 'no Arrow IPC file magic at the start');
  if (tail.length < TAIL_BYTES || !tail.subarray(4).equals(MAGIC)) throw unreadable(file, 'no Arrow IPC file magic at the end (truncated?)');
  const footerLength = tail.readInt32LE(0);
  const footerStart = size - TAIL_BYTES - footerLength;
  if (footerLength <= 0 || footerStart < HEAD_BYTES) throw unreadable(file, `the footer declares ${footerLength} bytes in a ${size}-byte file`);
  return { footerStart };
}

/**
 * A record batch's message header, read and bounded before apache-arrow loads the batch: the metadata and body lie
 * inside the file, every buffer inside the body, the row count is at most the body's bytes / 4 (every shard has the
 * int32 frame_index column) and every field node at most 8 × the body's bytes (a validity bit per value at least).
 */
async function checkBatchHeader(fh: FileHandle, file: string, at: { offset: number; end: number }, index: number): Promise<number> {
  const where = `record batch ${index}`;
  if (!Number.isSafeInteger(at.offset) || at.offset < HEAD_BYTES || at.offset + 8 > at.end) throw unreadable(file, `${where} lies outside the file`);
  const prefix = await readBytes(fh, at.offset, 8);
  let metaLength = prefix.readInt32LE(0);
  let metaStart = at.offset + 4;
  if (metaLength === CONTINUATION) {
    metaLength = prefix.readInt32LE(4);
    metaStart += 4;
  }
  if (metaLength <= 0 || metaStart + metaLength > at.end) throw unreadable(file, `${where}: its metadata (${metaLength} bytes) lies outside the file`);
  const message = Message.decode(await readBytes(fh, metaStart, metaLength));
  if (!message.isRecordBatch()) throw unreadable(file, `${where} is not a record batch message`);
  const body = message.bodyLength;
  const bodyStart = metaStart + metaLength;
  if (!Number.isSafeInteger(body) || body < 0 || bodyStart + body > at.end) throw unreadable(file, `${where}: its body (${body} bytes) lies outside the file`);
  const header = message.header();
  const rows = header.length;
  if (!Number.isSafeInteger(rows) || rows < 0 || rows * 4 > body) throw unreadable(file, `${where} declares ${rows} rows in a ${body}-byte body`);
  for (const n of header.nodes) {
    if (!Number.isSafeInteger(n.length) || n.length < 0 || n.length > 8 * body || n.nullCount < 0 || n.nullCount > n.length) {
      throw unreadable(file, `${where} declares a column of ${n.length} values in a ${body}-byte body`);
    }
  }
  for (const b of header.buffers) {
    if (!Number.isSafeInteger(b.offset) || !Number.isSafeInteger(b.length) || b.offset < 0 || b.length < 0 || b.offset + b.length > body) {
      throw unreadable(file, `${where} declares a buffer outside its body`);
    }
  }
  if (header.compression) throw unreadable(file, `${where} is compressed (difftalk writes uncompressed shards)`);
  return rows;
}

/** The file's schema must be exactly the one shard-writer writes for its metadata (names, order, types, list sizes). */
function checkSchema(schema: Schema, metadata: ShardMetadata, file: string): void {
  const want = shardSchema(metadata).fields;
  const got = schema.fields;
  const describe = (f: { name: string; type: unknown }) => `${f.name}: ${String(f.type)}`;
  for (let i = 0; i < Math.max(want.length, got.length); i++) {
    const w = want[i];
    const g = got[i];
    if (!w || !g || w.name !== g.name || String(w.type) !== String(g.type)) {
      throw new DifftalkError(
        'shard-schema-mismatch',
        `${path.basename(file)}: column ${i} is ${g ? describe(g) : 'missing'}, the shard format (with its metadata) has ${w ? describe(w) : 'no such column'}`,
        { suggestion: 'rerun `difftalk prep` for this dataset; see docs/data-format.md for the schema' },
      );
    }
  }
}

/** Why a column's buffers cannot hold `rows` values of its (already checked) type, or undefined. */
function columnProblem(data: Data, rows: number): string | undefined {
  if (data.length !== rows) return `${data.length} values for ${rows} rows`;
  if (data.nullCount !== 0) return 'null values';
  const typeId = data.typeId as Type;
  if (typeId === Type.Utf8 || typeId === Type.Binary) {
    const offsets = data.valueOffsets as Int32Array | undefined;
    const bytes = (data.values as Uint8Array | undefined)?.length ?? 0;
    if (!offsets || offsets.length < rows + 1) return 'too few value offsets';
    if (offsets[0]! < 0) return 'a negative value offset';
    for (let r = 0; r < rows; r++) if (offsets[r + 1]! < offsets[r]!) return `decreasing value offsets at row ${r}`;
    if (offsets[rows]! > bytes) return `value offsets past its ${bytes} bytes of data`;
    return undefined;
  }
  if (typeId === Type.FixedSizeList) {
    const size = (data.type as FixedSizeList).listSize;
    const child = data.children[0];
    if (!child || child.nullCount !== 0) return 'a missing or null list child';
    if (((child.values as Float32Array | undefined)?.length ?? 0) < rows * size) return `fewer than ${rows} × ${size} list values`;
    return undefined;
  }
  if (((data.values as ArrayLike<number> | undefined)?.length ?? 0) < rows) return `fewer than ${rows} values`;
  return undefined;
}

/** A loaded batch: every column holds its rows, clip ids are safe names and one per shard, splits are known. */
function checkBatch(batch: RecordBatch, rows: number, file: string, index: number, clip: { id?: string }): void {
  if (batch.numRows !== rows) throw unreadable(file, `record batch ${index} has ${batch.numRows} rows, its header ${rows}`);
  batch.schema.fields.forEach((f, i) => {
    const why = columnProblem(batch.data.children[i]!, rows);
    if (why) throw unreadable(file, `record batch ${index}, column ${f.name}: ${why}`);
  });
  const ids = batch.getChild('clip_id')!;
  const splits = batch.getChild('split')!;
  for (let r = 0; r < rows; r++) {
    const id = ids.get(r) as string;
    if (id !== clip.id) {
      const why = unsafeNameReason(id);
      if (why) throw unreadable(file, `clip id ${JSON.stringify(id.slice(0, 80))}: ${why}`);
      if (clip.id !== undefined) throw unreadable(file, `rows of two clips (${clip.id}, ${id}); a shard holds one clip`);
      clip.id = id;
    }
    const split = splits.get(r) as string;
    if (split !== 'train' && split !== 'test') throw unreadable(file, `row ${r} of record batch ${index}: split ${JSON.stringify(split.slice(0, 20))}`);
  }
}

/** Open one shard file (framing, metadata and schema checked); call close() when done. */
export async function openShard(file: string): Promise<OpenShard> {
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    throw new DifftalkError('shard-unreadable', `cannot open shard ${file}: ${(e as Error).message}`, { cause: e });
  }
  let reader: AsyncRecordBatchFileReader;
  let metadata: OpenShard['metadata'];
  let end: number;
  try {
    const stat = await fh.stat();
    if (!stat.isFile()) throw unreadable(file, 'not a file');
    end = (await checkFraming(fh, file, stat.size)).footerStart;
    try {
      const r = await RecordBatchReader.from(fh);
      if (!r.isFile()) throw new Error('not in Arrow IPC file format');
      reader = (await r.open()) as AsyncRecordBatchFileReader;
    } catch (e) {
      throw unreadable(file, `apache-arrow cannot read its footer or schema (${errorMessage(e)})`, e);
    }
    metadata = parseShardMetadata(reader.schema.metadata, path.basename(file));
    checkSchema(reader.schema, metadata, file);
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw e instanceof DifftalkError ? e : unreadable(file, errorMessage(e), e);
  }
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await fh.close().catch(() => undefined);
  };
  const clip: { id?: string } = {};
  return {
    file,
    schema: reader.schema,
    metadata,
    numBatches: reader.numRecordBatches,
    async *batches() {
      for (let i = 0; i < reader.numRecordBatches; i++) {
        const block = reader.footer?.getRecordBatch(i);
        if (!block) throw unreadable(file, `record batch ${i} is missing from the footer`);
        let rows: number;
        let b: RecordBatch | null;
        try {
          rows = await checkBatchHeader(fh, file, { offset: block.offset, end }, i);
          b = await reader.readRecordBatch(i);
        } catch (e) {
          throw e instanceof DifftalkError ? e : unreadable(file, `record batch ${i} cannot be read (${errorMessage(e)})`, e);
        }
        if (!b) throw unreadable(file, `record batch ${i} cannot be read`);
        checkBatch(b, rows, file, i, clip);
        yield b;
      }
    },
    close,
  };
}

/**
 * The named columns of a batch, in the order given. (apache-arrow 21's RecordBatch.select misplaces children when the
 * selected columns are not a prefix of the schema, so this goes through selectAt with explicit indices.)
 */
export function projectBatch(batch: RecordBatch, columns: readonly string[]): RecordBatch {
  const indices = columns.map((c) => {
    const i = batch.schema.fields.findIndex((f) => f.name === c);
    if (i < 0) throw new DifftalkError('bad-argument', `unknown column ${c}`);
    return i;
  });
  return batch.selectAt(indices);
}

export interface RowBatch {
  /** Shard path relative to the dataset directory. */
  shard: string;
  clipId: string;
  split: Split;
  /** The rows (only the requested columns). */
  batch: RecordBatch;
}

export interface IterateRowsOptions {
  split?: Split;
  /** Column names to keep (default: all). Unknown names are an error. */
  columns?: string[];
  /** Only these clips. */
  clips?: string[];
}

/**
 * The shards of a dataset in a stable order: from dataset.json (clips with status 'done', in manifest order) when it
 * exists, else every `shards/*.arrow` sorted by name.
 */
export async function listShards(datasetDir: string): Promise<{ shard: string; clipId?: string; split?: Split }[]> {
  if (await exists(path.join(datasetDir, 'dataset.json'))) {
    const m = await readDatasetManifest(datasetDir);
    return m.clips.filter((c) => c.status === 'done').flatMap((c) => c.shards.map((shard) => ({ shard, clipId: c.id, split: c.split })));
  }
  let names: string[];
  try {
    names = await readdir(path.join(datasetDir, 'shards'));
  } catch {
    throw new DifftalkError('dataset-missing', `${datasetDir} has no dataset.json and no shards/ folder`, {
      suggestion: 'run `difftalk prep` first, or point at the dataset directory',
    });
  }
  return names
    .filter((n) => n.endsWith('.arrow') && !n.startsWith('.'))
    .sort()
    .map((n) => ({ shard: `shards/${n}` }));
}

/** Stream record batches of a dataset, one shard open at a time, optionally filtered by split/clip and projected. */
export async function* iterateRows(datasetDir: string, opts: IterateRowsOptions = {}): AsyncGenerator<RowBatch> {
  const clipFilter = opts.clips ? new Set(opts.clips) : undefined;
  for (const entry of await listShards(datasetDir)) {
    if (opts.split && entry.split && entry.split !== opts.split) continue;
    if (clipFilter && entry.clipId && !clipFilter.has(entry.clipId)) continue;
    const shard = await openShard(path.join(datasetDir, entry.shard));
    try {
      if (opts.columns) {
        const names = new Set(shard.schema.fields.map((f) => f.name));
        const unknown = opts.columns.filter((c) => !names.has(c));
        if (unknown.length) {
          throw new DifftalkError('bad-argument', `unknown column(s) ${unknown.join(', ')} in ${entry.shard}`, {
            suggestion: `columns are: ${[...names].join(', ')}`,
          });
        }
      }
      for await (const batch of shard.batches()) {
        if (batch.numRows === 0) continue;
        const split = batch.getChild('split')?.get(0) as Split;
        const clipId = batch.getChild('clip_id')?.get(0) as string;
        if (opts.split && split !== opts.split) continue;
        if (clipFilter && !clipFilter.has(clipId)) continue;
        yield { shard: entry.shard, clipId, split, batch: opts.columns ? projectBatch(batch, opts.columns) : batch };
      }
    } finally {
      await shard.close();
    }
  }
}
