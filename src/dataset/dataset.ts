/**
 * dataset: the one way to open a prepared dataset. `openDataset(dir)` reads dataset.json, opens every shard of every
 * finished clip once and cross-checks them (same schema metadata everywhere; each shard's rows belong to its clip;
 * frame_index runs 0 … frames−1 exactly once; the row count equals the manifest's `frames`), so a mismatch is one
 * error (exit 2) before any work instead of training on missing frames. `frames(clipId, {size})` is the one way to
 * read ground-truth frames, with one resize kernel (GT_RESIZE_KERNEL) for train, eval, render and SyncNet.
 */
import path from 'node:path';
import sharp from 'sharp';
import { DifftalkError, errorMessage } from '../util/errors.js';
import { exists } from '../util/fs.js';
import { unsafeNameReason } from '../util/names.js';
import { DATASET_MANIFEST_FILE, readDatasetManifest, type DatasetManifest } from './manifest.js';
import { iterateRows, listShards, openShard, type IterateRowsOptions, type OpenShard, type RowBatch } from './shard-reader.js';
import type { Split } from './split.js';

/**
 * The resize kernel for every ground-truth frame read from a dataset: sharp/libvips `cubic` (Catmull-Rom, with
 * libvips' antialiasing on reduction), the closest to DiffTalk's PIL bicubic resize of its 256² training images
 * (../shared/docs/difftalk-reference.md §1). Train, eval, render and SyncNet training all use it through `frames()`.
 */
export const GT_RESIZE_KERNEL = 'cubic' as const;

const RGB = 3;

/** A finished clip of the dataset, as cross-checked against its shards. */
export interface DatasetClipEntry {
  id: string;
  split: Split;
  identity?: string;
  /** Rows (frames) of the clip, equal in manifest and shards. */
  frames: number;
  /** Shard paths relative to the dataset directory. */
  shards: string[];
}

/** A frame size: `n` for n×n, or width × height (eval resizes GT to the prediction's size). */
export type FrameSize = number | { width: number; height: number };

/** One ground-truth frame: HWC RGB bytes at the size asked for (or the stored size). */
export interface GtFrame {
  index: number;
  width: number;
  height: number;
  rgb: Uint8Array;
}

export interface Dataset {
  dir: string;
  /** dataset.json, or undefined for a bare `shards/` folder. */
  manifest?: DatasetManifest;
  /** The shards' common schema metadata (fps, stored size, image format, landmarker, audio features, reference). */
  metadata: OpenShard['metadata'];
  /** Finished clips in manifest order (bare folders: in shard-name order). */
  clips: DatasetClipEntry[];
  /** A clip by id; 'clip-missing' (naming the known ids) when absent. */
  clip(id: string): DatasetClipEntry;
  /**
   * The clip's frames in order, decoded and resized to `size`² with GT_RESIZE_KERNEL (fit: fill), or at the stored
   * size when `size` is omitted. `from`/`count` select a range. A frame that cannot be decoded is a
   * 'dataset-corrupt' error naming the clip and the frame.
   */
  frames(clipId: string, opts?: { size?: FrameSize; from?: number; count?: number }): AsyncGenerator<GtFrame>;
  /** Row batches, as iterateRows (columns projected, split/clip filters). */
  rows(opts?: IterateRowsOptions): AsyncGenerator<RowBatch>;
}

export interface OpenDatasetOptions {
  /** Cross-check only these clips (default: all finished clips). Unknown ids are an error. */
  clips?: string[];
}

const corrupt = (dir: string, msg: string): DifftalkError =>
  new DifftalkError('dataset-corrupt', `${dir}: ${msg}`, {
    suggestion: 'rerun `difftalk prep` on this folder (it redoes clips whose shards are missing or inconsistent)',
  });

/** Decode one stored frame (JPEG/PNG bytes) and resize it with GT_RESIZE_KERNEL; errors name the clip and frame. */
export async function decodeGtFrame(bytes: Uint8Array, where: { clipId: string; index: number }, size?: FrameSize): Promise<GtFrame> {
  try {
    let img = sharp(bytes, { failOn: 'error' }).removeAlpha();
    if (size !== undefined) {
      const { width, height } = typeof size === 'number' ? { width: size, height: size } : size;
      img = img.resize(width, height, { kernel: GT_RESIZE_KERNEL, fit: 'fill' });
    }
    const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== RGB) throw new Error(`${info.channels} channels`);
    return { index: where.index, width: info.width, height: info.height, rgb: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  } catch (e) {
    throw new DifftalkError('dataset-corrupt', `clip ${where.clipId}, frame ${where.index}: the stored image cannot be decoded (${errorMessage(e)})`, {
      suggestion: 'rerun `difftalk prep` for this clip (delete its shards, then rerun prep on the folder)',
      cause: e,
    });
  }
}

/** decodeGtFrame as a model input: size² RGB scaled to [-1, 1] (x/127.5 − 1), HWC. */
export async function decodeGtImage(bytes: Uint8Array, where: { clipId: string; index: number }, size: number): Promise<Float32Array> {
  const { rgb } = await decodeGtFrame(bytes, where, size);
  return Float32Array.from(rgb, (v) => v / UNIT_SCALE - 1);
}

const UNIT_SCALE = 127.5;

/** Open and cross-check a prepared dataset (see the module comment). */
export async function openDataset(dir: string, opts: OpenDatasetOptions = {}): Promise<Dataset> {
  const manifest = (await exists(path.join(dir, DATASET_MANIFEST_FILE))) ? await readDatasetManifest(dir) : undefined;
  const listed = await listShards(dir);
  if (listed.length === 0) throw new DifftalkError('dataset-empty', `${dir} has no finished clips`, { suggestion: 'run `difftalk prep` first' });

  // Clips as the manifest declares them (bare folders: discovered from the rows below).
  const declared = new Map<string, DatasetClipEntry>();
  if (manifest) {
    for (const c of manifest.clips) {
      if (c.status !== 'done') continue;
      const why = unsafeNameReason(c.id);
      if (why) throw corrupt(dir, `clip id ${JSON.stringify(c.id)} in ${DATASET_MANIFEST_FILE}: ${why}`);
      declared.set(c.id, { id: c.id, split: c.split, identity: c.identity, frames: c.frames, shards: [...c.shards] });
    }
  }
  const wanted = opts.clips ? new Set(opts.clips) : undefined;
  if (wanted && manifest) {
    const unknown = [...wanted].filter((id) => !declared.has(id));
    if (unknown.length) throw new DifftalkError('clip-missing', `${dir} has no finished clip ${unknown.join(', ')}`);
  }

  // Scan clip_id / frame_index of every shard that is checked.
  let metadata: OpenShard['metadata'] | undefined;
  const seen = new Map<string, { split: Split; indices: Set<number>; shards: string[]; max: number }>();
  for (const entry of listed) {
    if (wanted && entry.clipId !== undefined && !wanted.has(entry.clipId)) continue;
    const file = path.join(dir, entry.shard);
    if (!(await exists(file))) throw corrupt(dir, `${entry.shard} of clip ${entry.clipId ?? '?'} is missing`);
    const shard = await openShard(file);
    try {
      const m = shard.metadata;
      if (!metadata) metadata = m;
      else if (m.fps !== metadata.fps || m.size !== metadata.size || m.imageFormat !== metadata.imageFormat) {
        throw corrupt(
          dir,
          `${entry.shard} is ${m.size} px / ${m.fps} fps / ${m.imageFormat}, other shards are ${metadata.size} px / ${metadata.fps} fps / ${metadata.imageFormat}`,
        );
      }
      for await (const batch of shard.batches()) {
        const ids = batch.getChild('clip_id');
        const idx = batch.getChild('frame_index');
        const split = batch.getChild('split');
        if (!ids || !idx || !split) throw corrupt(dir, `${entry.shard} lacks the clip_id/frame_index/split columns`);
        for (let r = 0; r < batch.numRows; r++) {
          const id = ids.get(r) as string;
          if (entry.clipId !== undefined && id !== entry.clipId) {
            throw corrupt(dir, `${entry.shard} is listed for clip ${entry.clipId} but holds rows of clip ${JSON.stringify(id)}`);
          }
          const why = unsafeNameReason(id);
          if (why) throw corrupt(dir, `${entry.shard}: clip id ${JSON.stringify(id)}: ${why}`);
          if (wanted && !wanted.has(id)) continue;
          const k = idx.get(r) as number;
          let s = seen.get(id);
          if (!s) {
            s = { split: split.get(r) as Split, indices: new Set(), shards: [], max: -1 };
            seen.set(id, s);
          }
          if (!s.shards.includes(entry.shard)) s.shards.push(entry.shard);
          if (!Number.isInteger(k) || k < 0 || s.indices.has(k)) throw corrupt(dir, `clip ${id}: frame_index ${k} in ${entry.shard} is invalid or repeated`);
          s.indices.add(k);
          s.max = Math.max(s.max, k);
        }
      }
    } finally {
      await shard.close();
    }
  }
  if (!metadata) throw new DifftalkError('dataset-empty', `${dir}: none of the requested clips has shards`);

  const clips: DatasetClipEntry[] = [];
  if (manifest) {
    for (const c of declared.values()) {
      if (wanted && !wanted.has(c.id)) continue;
      const s = seen.get(c.id);
      const n = s?.indices.size ?? 0;
      if (n !== c.frames) throw corrupt(dir, `clip ${c.id}: ${DATASET_MANIFEST_FILE} says ${c.frames} frames, its shards hold ${n}`);
      if (s && s.max !== n - 1) throw corrupt(dir, `clip ${c.id}: frame indices are not 0…${n - 1}`);
      clips.push(c);
    }
  } else {
    for (const [id, s] of seen) {
      if (s.max !== s.indices.size - 1) throw corrupt(dir, `clip ${id}: frame indices are not 0…${s.indices.size - 1}`);
      clips.push({ id, split: s.split, frames: s.indices.size, shards: s.shards });
    }
    if (wanted) {
      const unknown = [...wanted].filter((id) => !seen.has(id));
      if (unknown.length) throw new DifftalkError('clip-missing', `${dir} has no clip ${unknown.join(', ')}`);
    }
  }
  const byId = new Map(clips.map((c) => [c.id, c]));
  const clip = (id: string): DatasetClipEntry => {
    const c = byId.get(id);
    if (!c) {
      throw new DifftalkError('clip-missing', `clip ${id} is not among the checked clips of ${dir}`, {
        suggestion: `clips: ${[...byId.keys()].slice(0, 10).join(', ')}${byId.size > 10 ? ', …' : ''}`,
      });
    }
    return c;
  };

  async function* frames(clipId: string, o: { size?: FrameSize; from?: number; count?: number } = {}): AsyncGenerator<GtFrame> {
    const c = clip(clipId);
    const from = o.from ?? 0;
    const to = Math.min(c.frames, from + (o.count ?? c.frames));
    if (!Number.isInteger(from) || from < 0) throw new DifftalkError('bad-argument', `frame range starts at ${from}`);
    const dims = o.size === undefined ? [] : typeof o.size === 'number' ? [o.size] : [o.size.width, o.size.height];
    if (!dims.every((d) => Number.isInteger(d) && d > 0)) throw new DifftalkError('bad-argument', `frame size ${JSON.stringify(o.size)}`);
    // Shards hold rows in frame order (the writer's contract, checked above as 0…n−1 coverage); buffer out-of-order rows.
    const pending = new Map<number, Uint8Array>();
    let next = from;
    for await (const rb of iterateRows(dir, { clips: [clipId], columns: ['clip_id', 'frame_index', 'image'] })) {
      const idx = rb.batch.getChild('frame_index')!;
      const img = rb.batch.getChild('image')!;
      for (let r = 0; r < rb.batch.numRows; r++) {
        const k = idx.get(r) as number;
        if (k >= from && k < to) pending.set(k, img.get(r) as Uint8Array);
      }
      while (pending.has(next)) {
        const bytes = pending.get(next)!;
        pending.delete(next);
        yield await decodeGtFrame(bytes, { clipId, index: next }, o.size);
        next++;
      }
      if (next >= to) return;
    }
    if (next < to) throw corrupt(dir, `clip ${clipId}: frame ${next} is missing from its shards`);
  }

  return { dir, manifest, metadata, clips, clip, frames, rows: (o = {}) => iterateRows(dir, o) };
}

/** All of a clip's frames (or a range) at one size in one RgbFrames-shaped buffer (count × height × width × 3). */
export async function readClipFrames(
  ds: Dataset,
  clipId: string,
  opts: { size?: FrameSize; from?: number; count?: number } = {},
): Promise<{ width: number; height: number; count: number; data: Uint8Array }> {
  const c = ds.clip(clipId);
  const from = opts.from ?? 0;
  const n = Math.max(0, Math.min(c.frames - from, opts.count ?? c.frames));
  const size = opts.size ?? ds.metadata.size;
  const { width, height } = typeof size === 'number' ? { width: size, height: size } : size;
  const data = new Uint8Array(n * width * height * RGB);
  let k = 0;
  for await (const f of ds.frames(clipId, { ...opts, size })) data.set(f.rgb, k++ * width * height * RGB);
  return { width, height, count: k, data };
}
