/**
 * Streamed, bounded-memory frame reading for eval (issue 11 point 5): every input kind (video, frames, prepared dataset)
 * is read in chunks of at most `chunkFrames(width, height)` frames, and prediction and GT are read in lockstep, so a
 * clip is never in memory whole, whatever its length or resolution.
 */
import { openDataset, type Dataset } from '../dataset/dataset.js';
import { streamFrames } from '../media/frames.js';
import { probeMedia } from '../media/probe.js';
import type { RgbFrames } from '../media/types.js';
import { DifftalkError } from '../util/errors.js';
import { frameSize, readFrames } from './frames-input.js';
import type { Source } from './inputs.js';

/** Bytes of raw RGB one chunk may hold (per side). */
export const CHUNK_BYTES = 64 * 1024 * 1024;

/** Frames per chunk at a size: as many as fit in CHUNK_BYTES, at least 1, at most 64. */
export function chunkFrames(width: number, height: number, bytes = CHUNK_BYTES): number {
  return Math.max(1, Math.min(64, Math.floor(bytes / (width * height * 3))));
}

export interface Size {
  width: number;
  height: number;
}

/** One clip's frames, readable any number of times as chunks. */
export interface ClipReader {
  /** Native size and frame rate of the clip. */
  readonly width: number;
  readonly height: number;
  readonly fps: number;
  /** Frames [skip, skip + count) in chunks of at most `chunk`, at `size` (default native), optionally resampled to `fps`. */
  frames(o: { skip?: number; count?: number; chunk: number; size?: Size; fps?: number }): AsyncGenerator<RgbFrames>;
  /** Number of frames (at `fps` when given: counted by decoding). */
  count(fps?: number): Promise<number>;
}

export async function openClipReader(src: Source, framesFps: number): Promise<ClipReader> {
  if (src.kind === 'video') {
    const info = await probeMedia(src.file);
    const counts = new Map<string, number>();
    const reader: ClipReader = {
      width: info.width,
      height: info.height,
      fps: info.fps,
      frames: (o) => streamFrames(src.file, { chunk: o.chunk, width: o.size?.width, height: o.size?.height, fps: o.fps, skip: o.skip, count: o.count, info }),
      async count(fps) {
        const key = String(fps ?? '');
        let n = counts.get(key);
        if (n === undefined) {
          // Exact: the same filter chain (fps resampling) at a tiny size; decoding dominates and is cheap next to the metrics.
          n = 0;
          for await (const f of streamFrames(src.file, { chunk: 1024, width: 8, height: 8, fps, info })) n += f.count;
          counts.set(key, n);
        }
        return n;
      },
    };
    return reader;
  }
  if (src.kind === 'frames') {
    const size = await frameSize(src.frames);
    return {
      ...size,
      fps: framesFps,
      async *frames(o) {
        if (o.fps !== undefined && Math.abs(o.fps - framesFps) > 1e-3) throw new DifftalkError('internal', 'frames are not resampled');
        const skip = o.skip ?? 0;
        const end = Math.min(src.frames.length, o.count === undefined ? Infinity : skip + o.count);
        const resize = o.size && (o.size.width !== size.width || o.size.height !== size.height) ? o.size : undefined;
        for (let a = skip; a < end; a += o.chunk) yield await readFrames(src.frames.slice(a, Math.min(end, a + o.chunk)), resize);
      },
      count: async () => src.frames.length,
    };
  }
  const ds: Dataset = await openDataset(src.dir, { clips: [src.id] });
  const size = ds.metadata.size;
  return {
    width: size,
    height: size,
    fps: ds.metadata.fps,
    async *frames(o) {
      const out = o.size ?? { width: size, height: size };
      const fb = out.width * out.height * 3;
      let buf = new Uint8Array(o.chunk * fb);
      let k = 0;
      for await (const f of ds.frames(src.id, { size: out, from: o.skip ?? 0, count: o.count })) {
        buf.set(f.rgb, k++ * fb);
        if (k === o.chunk) {
          yield { ...out, count: k, data: buf };
          buf = new Uint8Array(o.chunk * fb);
          k = 0;
        }
      }
      if (k > 0) yield { ...out, count: k, data: buf.subarray(0, k * fb) };
    },
    count: async () => ds.clip(src.id).frames,
  };
}

/** A chunk of aligned frames: prediction and GT frames [start, start + count) of the compared range. */
export interface PairedChunk {
  start: number;
  pred: RgbFrames;
  gt: RgbFrames;
}

/**
 * Prediction and GT in lockstep: both read in chunks of the same length, `n` frames from their own start (`predSkip`,
 * `gtSkip`), so at most one chunk of each is held. Throws when either side ends early.
 */
export async function* pairedChunks(
  pred: { reader: ClipReader; skip: number; fps?: number },
  gt: { reader: ClipReader; skip: number },
  n: number,
  size: Size,
  chunk = chunkFrames(size.width, size.height),
): AsyncGenerator<PairedChunk> {
  const p = pred.reader.frames({ skip: pred.skip, count: n, chunk, fps: pred.fps })[Symbol.asyncIterator]();
  const g = gt.reader.frames({ skip: gt.skip, count: n, chunk, size })[Symbol.asyncIterator]();
  try {
    for (let start = 0; start < n;) {
      const [a, b] = await Promise.all([p.next(), g.next()]);
      if (a.done || b.done || a.value.count !== b.value.count) {
        throw new DifftalkError('frame-mismatch', `prediction and GT streams diverged at frame ${start} (one ended or chunk sizes differ)`);
      }
      yield { start, pred: a.value, gt: b.value };
      start += a.value.count;
    }
  } finally {
    await p.return?.(undefined);
    await g.return?.(undefined);
  }
}

/**
 * The frames of `reader` at `indices` (0-based, increasing) as a clip of its own: a DiffTalk list with gaps (frames the
 * export left out) against a full GT clip. Reads the covering range in chunks and keeps the listed frames.
 */
export function selectFrames(reader: ClipReader, indices: readonly number[]): ClipReader {
  return {
    width: reader.width,
    height: reader.height,
    fps: reader.fps,
    count: async () => indices.length,
    async *frames(o) {
      const skip = o.skip ?? 0;
      const want = indices.slice(skip, o.count === undefined ? undefined : skip + o.count);
      if (want.length === 0) return;
      const first = want[0]!;
      const size = o.size ?? { width: reader.width, height: reader.height };
      const fb = size.width * size.height * 3;
      let buf = new Uint8Array(o.chunk * fb);
      let k = 0;
      let w = 0;
      let at = first;
      for await (const c of reader.frames({ skip: first, count: want.at(-1)! - first + 1, chunk: o.chunk, size: o.size })) {
        for (let i = 0; i < c.count; i++, at++) {
          if (at !== want[w]) continue;
          buf.set(c.data.subarray(i * fb, (i + 1) * fb), k++ * fb);
          w++;
          if (k === o.chunk) {
            yield { ...size, count: k, data: buf };
            buf = new Uint8Array(o.chunk * fb);
            k = 0;
          }
        }
      }
      if (w !== want.length) throw new DifftalkError('frames-missing', `the GT clip ends before listed frame ${want[w]! + 1}`);
      if (k > 0) yield { ...size, count: k, data: buf.subarray(0, k * fb) };
    },
  };
}
