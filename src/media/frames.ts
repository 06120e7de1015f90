/**
 * frames: decode video frames to raw interleaved RGB (rgb24) over a pipe from ffmpeg.
 * - decodeFrames: a range of frames of a (prepared, constant-fps) video, optionally resized.
 * - iterateFrames: the whole video in chunks of `chunk` frames, one ffmpeg run per chunk, so memory stays at one
 *   chunk however slow the consumer is (prepared clips are intra-only, so each seek is cheap).
 * - decodeFramesScaled: a full-resolution source reduced to at most maxSide (aspect kept), for face tracking.
 */
import path from 'node:path';
import { DifftalkError } from '../util/errors.js';
import { ExecError, runTool, spawnToolReader } from '../util/exec.js';
import { probeMedia, type MediaInfo } from './probe.js';
import type { RgbFrames } from './types.js';

export interface DecodeOptions {
  /** Output size; give one to keep the aspect ratio, none for the video's own size. */
  width?: number;
  height?: number;
  /** First frame (0-based index at the video's frame rate). */
  start?: number;
  /** At most this many frames (default: to the end). */
  count?: number;
  /** Keep every n-th frame of the range (default 1). */
  every?: number;
  /** Resample to this constant frame rate first (ffmpeg fps filter: frames dropped or repeated by timestamp). */
  fps?: number;
  /** The video's size and frame rate when the caller knows them (e.g. a prepared clip): no ffprobe run. */
  info?: VideoGeometry;
}

/** What decoding needs to know about a video. */
export type VideoGeometry = Pick<MediaInfo, 'width' | 'height' | 'fps'>;

/** Output size for a decode: both given → as given; one → the other from the aspect ratio; none → as is. */
export function outputSize(srcW: number, srcH: number, width?: number, height?: number): { width: number; height: number } {
  if (width && height) return { width, height };
  if (width) return { width, height: Math.max(1, Math.round((srcH * width) / srcW)) };
  if (height) return { width: Math.max(1, Math.round((srcW * height) / srcH)), height };
  return { width: srcW, height: srcH };
}

/** The ffmpeg arguments of a decode (rawvideo rgb24 on stdout) and its output size; null when nothing is to be decoded. */
function decodeArgs(video: string, info: VideoGeometry, opts: DecodeOptions): { args: string[]; width: number; height: number } {
  const { width, height } = outputSize(info.width, info.height, opts.width, opts.height);
  const start = opts.start ?? 0;
  const every = Math.max(1, Math.floor(opts.every ?? 1));
  if (!Number.isInteger(start) || start < 0) throw new DifftalkError('bad-argument', `start frame ${start} is not a frame index`);
  if (opts.count !== undefined && (!Number.isInteger(opts.count) || opts.count < 0)) {
    throw new DifftalkError('bad-argument', `frame count ${opts.count} is not a whole number`);
  }
  const args = ['-v', 'error', '-nostdin'];
  // Seek to half a frame before the wanted one: accurate seeking then drops exactly the frames before it.
  if (start > 0) args.push('-ss', ((start - 0.5) / info.fps).toFixed(6));
  args.push('-i', path.resolve(video), '-map', '0:v:0');
  const filters: string[] = [];
  if (opts.fps !== undefined) {
    if (!(opts.fps > 0) || !Number.isFinite(opts.fps)) throw new DifftalkError('bad-argument', `fps ${opts.fps} must be a positive number`);
    if (start > 0) throw new DifftalkError('bad-argument', 'fps resampling decodes from the first frame (start must be 0)');
    filters.push(`fps=${opts.fps}:start_time=0`);
  }
  if (every > 1) filters.push(`select=not(mod(n\\,${every}))`);
  if (width !== info.width || height !== info.height) filters.push(`scale=w=${width}:h=${height}:flags=area`);
  if (filters.length) args.push('-vf', filters.join(','));
  args.push('-fps_mode', 'passthrough');
  if (opts.count !== undefined) args.push('-frames:v', String(opts.count));
  args.push('-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1');
  return { args, width, height };
}

function corrupt(video: string, e: ExecError): DifftalkError {
  return new DifftalkError('video-corrupt', `cannot decode ${path.basename(video)}: ${e.stderr.trim().split('\n').slice(-2).join(' ')}`, { cause: e });
}

async function decodeWith(video: string, info: VideoGeometry, opts: DecodeOptions): Promise<RgbFrames> {
  const { width, height } = outputSize(info.width, info.height, opts.width, opts.height);
  if (opts.count === 0) return { width, height, count: 0, data: new Uint8Array(0) };
  const { args } = decodeArgs(video, info, opts);
  const frameBytes = width * height * 3;
  // With a known count, write straight into the result (one copy of the frames in memory, not two).
  const cap = opts.count !== undefined ? opts.count * frameBytes : undefined;
  const direct = cap !== undefined ? new Uint8Array(cap) : undefined;
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    await runTool('ffmpeg', args, {
      onStdout: (c) => {
        if (direct) direct.set(c.subarray(0, Math.max(0, Math.min(c.length, direct.length - total))), total);
        else chunks.push(c);
        total += c.length;
      },
    });
  } catch (e) {
    if (e instanceof ExecError) throw corrupt(video, e);
    throw e;
  }
  if (cap !== undefined && total > cap) throw new DifftalkError('clip-failed', 'ffmpeg returned more frames than asked for');
  const count = Math.floor(total / frameBytes);
  let data: Uint8Array;
  if (direct) {
    data = count * frameBytes === direct.length ? direct : direct.slice(0, count * frameBytes);
  } else {
    data = new Uint8Array(count * frameBytes);
    let off = 0;
    for (const c of chunks) {
      if (off >= data.length) break;
      const n = Math.min(c.length, data.length - off);
      data.set(c.subarray(0, n), off);
      off += n;
    }
  }
  return { width, height, count, data };
}

/** Decode frames [start, start+count) of `video` as rgb24 (all frames by default). */
export async function decodeFrames(video: string, opts: DecodeOptions = {}): Promise<RgbFrames> {
  return decodeWith(video, opts.info ?? (await probeMedia(video)), opts);
}

/**
 * Yield the frames of `video` in chunks of at most `chunk` frames (the last may be shorter), in order.
 * Each chunk is a separate ffmpeg run seeking to its first frame, so at most one chunk is held in memory.
 */
export async function* iterateFrames(
  video: string,
  opts: { chunk: number; width?: number; height?: number; info?: VideoGeometry },
): AsyncGenerator<RgbFrames & { start: number }> {
  const chunk = Math.floor(opts.chunk);
  if (!(chunk >= 1)) throw new DifftalkError('bad-argument', `chunk ${opts.chunk} must be at least 1`);
  const info = opts.info ?? (await probeMedia(video));
  for (let start = 0; ; start += chunk) {
    const frames = await decodeWith(video, info, { width: opts.width, height: opts.height, start, count: chunk });
    if (frames.count > 0) yield { ...frames, start };
    if (frames.count < chunk) return;
  }
}

/**
 * Stream the frames of `video` from ONE ffmpeg run in chunks of at most `chunk` frames, with back-pressure: ffmpeg
 * waits while the consumer works, so memory stays at one chunk (plus the pipe) whatever the video's length or size.
 * `skip` frames are decoded and dropped first (exact, no seeking); `fps` resamples as decodeFrames does. Ending the
 * loop early kills ffmpeg.
 */
export async function* streamFrames(
  video: string,
  opts: { chunk: number; width?: number; height?: number; fps?: number; skip?: number; count?: number; info?: VideoGeometry },
): AsyncGenerator<RgbFrames> {
  const chunk = Math.floor(opts.chunk);
  if (!(chunk >= 1)) throw new DifftalkError('bad-argument', `chunk ${opts.chunk} must be at least 1`);
  const skip = opts.skip ?? 0;
  if (!Number.isInteger(skip) || skip < 0) throw new DifftalkError('bad-argument', `skip ${skip} is not a frame count`);
  const info = opts.info ?? (await probeMedia(video));
  const total = opts.count === undefined ? undefined : skip + opts.count;
  if (total === skip) return;
  const { args, width, height } = decodeArgs(video, info, { width: opts.width, height: opts.height, fps: opts.fps, count: total });
  const frameBytes = width * height * 3;
  const child = spawnToolReader('ffmpeg', args);
  let buf = new Uint8Array(chunk * frameBytes);
  let filled = 0;
  let toSkip = skip * frameBytes;
  let finished = false;
  try {
    for await (const piece of child.stdout) {
      let c: Uint8Array = piece;
      if (toSkip > 0) {
        const k = Math.min(toSkip, c.length);
        toSkip -= k;
        c = c.subarray(k);
      }
      while (c.length > 0) {
        const k = Math.min(c.length, buf.length - filled);
        buf.set(c.subarray(0, k), filled);
        filled += k;
        c = c.subarray(k);
        if (filled === buf.length) {
          yield { width, height, count: chunk, data: buf };
          buf = new Uint8Array(chunk * frameBytes);
          filled = 0;
        }
      }
    }
    try {
      await child.done();
    } catch (e) {
      throw e instanceof ExecError ? corrupt(video, e) : e;
    }
    finished = true;
    const count = Math.floor(filled / frameBytes);
    if (count > 0) yield { width, height, count, data: buf.subarray(0, count * frameBytes) };
  } finally {
    if (!finished) await child.kill();
  }
}

export interface ScaledFrames extends RgbFrames {
  /** Source (display) size and the factor from analysis pixels to source pixels. */
  sourceWidth: number;
  sourceHeight: number;
  scale: number;
  /** Source frame index of each decoded frame. */
  frameIndices: number[];
}

/** Analysis size for a source: longer side at most maxSide, aspect kept, never enlarged. */
function reducedSize(info: VideoGeometry, maxSide: number): { width: number; height: number } {
  if (!(maxSide >= 16)) throw new DifftalkError('bad-argument', `maxSide ${maxSide} is too small`);
  const k = Math.min(1, maxSide / Math.max(info.width, info.height));
  return { width: Math.max(1, Math.round(info.width * k)), height: Math.max(1, Math.round(info.height * k)) };
}

/**
 * Decode a source video reduced so its longer side is at most `maxSide` (aspect kept, never enlarged),
 * optionally keeping only every `sampleEvery`-th frame; for analysing full-resolution videos cheaply.
 */
export async function decodeFramesScaled(file: string, maxSide: number, opts: { sampleEvery?: number } = {}): Promise<ScaledFrames> {
  const info = await probeMedia(file);
  const { width, height } = reducedSize(info, maxSide);
  const every = Math.max(1, Math.floor(opts.sampleEvery ?? 1));
  const frames = await decodeWith(file, info, { width, height, every });
  return {
    ...frames,
    sourceWidth: info.width,
    sourceHeight: info.height,
    scale: info.width / width,
    frameIndices: Array.from({ length: frames.count }, (_, i) => i * every),
  };
}

/**
 * decodeFramesScaled in chunks of at most `chunk` decoded frames (one ffmpeg run per chunk), for sources too long
 * to hold in memory even at reduced size. Frame indices are source frame indices at the probed frame rate.
 */
export async function* iterateFramesScaled(
  file: string,
  maxSide: number,
  opts: { sampleEvery?: number; chunk: number; info?: VideoGeometry },
): AsyncGenerator<ScaledFrames> {
  const info = opts.info ?? (await probeMedia(file));
  const { width, height } = reducedSize(info, maxSide);
  const every = Math.max(1, Math.floor(opts.sampleEvery ?? 1));
  const chunk = Math.floor(opts.chunk);
  if (!(chunk >= 1)) throw new DifftalkError('bad-argument', `chunk ${opts.chunk} must be at least 1`);
  for (let start = 0; ; start += chunk * every) {
    const frames = await decodeWith(file, info, { width, height, every, start, count: chunk });
    if (frames.count > 0) {
      yield {
        ...frames,
        sourceWidth: info.width,
        sourceHeight: info.height,
        scale: info.width / width,
        frameIndices: Array.from({ length: frames.count }, (_, i) => start + i * every),
      };
    }
    if (frames.count < chunk) return;
  }
}
