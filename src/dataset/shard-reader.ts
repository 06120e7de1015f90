/**
 * shard-reader: open Arrow shards of a prepared dataset and stream their rows batch by batch.
 * A shard is read through an async random-access file reader, so only one record batch (SHARD_BATCH_ROWS rows)
 * per open shard is in memory; iterateRows opens one shard at a time.
 */
import { open, readdir, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { RecordBatchReader, type AsyncRecordBatchFileReader, type RecordBatch, type Schema } from 'apache-arrow';
import { DifftalkError } from '../util/errors.js';
import { exists } from '../util/fs.js';
import { readDatasetManifest } from './manifest.js';
import { SHARD_SCHEMA_VERSION, type ImageFormat, type ShardMetadata } from './shard-writer.js';
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
  const imageFormat = get('difftalk.image_format') as ImageFormat;
  const q = get('difftalk.jpeg_quality');
  return {
    schemaVersion: version,
    fps: Number(get('difftalk.fps')),
    size: Number(get('difftalk.size')),
    imageFormat,
    jpegQuality: q === '' ? undefined : Number(q),
    landmarker: json('difftalk.landmarker'),
    audioFeatures: json('difftalk.audio_features'),
    reference: json('difftalk.reference'),
    toolVersion: get('difftalk.tool_version'),
  };
}

/** Open one shard file; call close() when done. */
export async function openShard(file: string): Promise<OpenShard> {
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    throw new DifftalkError('shard-unreadable', `cannot open shard ${file}: ${(e as Error).message}`, { cause: e });
  }
  let reader: AsyncRecordBatchFileReader;
  try {
    const r = await RecordBatchReader.from(fh);
    if (!r.isFile()) throw new Error('not in Arrow IPC file format');
    reader = (await r.open()) as AsyncRecordBatchFileReader;
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw new DifftalkError('shard-unreadable', `${path.basename(file)} is not a readable Arrow IPC file: ${(e as Error).message}`, {
      cause: e,
    });
  }
  let metadata: OpenShard['metadata'];
  try {
    metadata = parseShardMetadata(reader.schema.metadata, path.basename(file));
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw e;
  }
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await fh.close().catch(() => undefined);
  };
  return {
    file,
    schema: reader.schema,
    metadata,
    numBatches: reader.numRecordBatches,
    async *batches() {
      for (let i = 0; i < reader.numRecordBatches; i++) {
        const b = await reader.readRecordBatch(i);
        if (b) yield b;
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
