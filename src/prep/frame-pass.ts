/**
 * frame-pass: one pass over a prepared clip's frames in chunks of bounded size, so that a long clip is never in
 * memory as raw frames (HDTF's longest clip, 500 s, would be 9.8 GB at 512²). Each chunk is decoded from the work
 * clip, handed to the landmark engine (landmarkClip: tracking carries over from chunk to chunk) and then encoded
 * (JPEG/PNG); the frames a --preview sheet shows are kept. The result does not depend on the chunk size (tested).
 */
import { iterateFrames } from '../media/frames.js';
import { landmarkClip, type LandmarkClip, type LandmarkClipOptions } from '../face/landmarks/clip.js';
import { PREVIEW_CELLS, previewFrameIndices } from './preview.js';
import { encodeFrames, type ImageFormat } from '../dataset/shard-writer.js';
import type { LandmarkEngine } from '../face/types.js';
import type { PreparedClip, RgbFrames } from '../media/types.js';
import type { StageResult } from '../util/result.js';

/** Decoded frames held at once by default (≈ 680 frames at 256², 170 at 512²). */
export const FRAME_CHUNK_BYTES = 128 * 1024 * 1024;

export interface FramePassOptions {
  image: { format: ImageFormat; quality: number };
  landmarks: Omit<LandmarkClipOptions, 'frameCount'>;
  /** Frames per chunk (default: as many as fit in FRAME_CHUNK_BYTES, at least 16). */
  chunkFrames?: number;
  /** Keep the frames of a contact sheet with this many cells (0 = none). */
  previewCells?: number;
}

export interface FramePassResult {
  landmarks: StageResult<LandmarkClip>;
  /** One encoded image per frame (all frames, also when the landmarks dropped the clip). */
  images: Uint8Array[];
  /** The frames kept for the contact sheet and their frame numbers (writePreview's `frameNumbers`). */
  preview: { frames: RgbFrames; frameNumbers: number[] };
  /** Wall seconds per stage: reading frames, the landmark engine, encoding. */
  seconds: { decode: number; landmarks: number; encode: number };
}

export async function runFramePass(engine: LandmarkEngine, clip: PreparedClip, opts: FramePassOptions): Promise<FramePassResult> {
  const frameBytes = clip.size * clip.size * 3;
  const chunk = opts.chunkFrames ?? Math.max(16, Math.floor(FRAME_CHUNK_BYTES / frameBytes));
  const shown = previewFrameIndices(clip.frameCount, opts.previewCells ?? PREVIEW_CELLS);
  const keep = (opts.previewCells ?? PREVIEW_CELLS) > 0 ? shown : [];
  const kept: { index: number; data: Uint8Array }[] = [];
  const images: Uint8Array[] = [];
  const seconds = { decode: 0, landmarks: 0, encode: 0 };

  async function* chunks(): AsyncGenerator<RgbFrames> {
    const it = iterateFrames(clip.video, { chunk, info: { width: clip.size, height: clip.size, fps: clip.fps } })[Symbol.asyncIterator]();
    for (;;) {
      const t0 = performance.now();
      const next = await it.next();
      seconds.decode += (performance.now() - t0) / 1000;
      if (next.done) return;
      const frames = next.value;
      yield frames; // the engine runs on this chunk; then it is encoded before the next one is read
      const t1 = performance.now();
      for (const img of await encodeFrames(frames, { format: opts.image.format, quality: opts.image.quality })) images.push(img);
      for (const f of keep) {
        const k = f - frames.start;
        if (k >= 0 && k < frames.count) kept.push({ index: f, data: frames.data.slice(k * frameBytes, (k + 1) * frameBytes) });
      }
      seconds.encode += (performance.now() - t1) / 1000;
    }
  }

  const t0 = performance.now();
  const landmarks = await landmarkClip(engine, chunks(), { ...opts.landmarks, frameCount: clip.frameCount });
  seconds.landmarks = (performance.now() - t0) / 1000 - seconds.decode - seconds.encode;
  return {
    landmarks,
    images,
    preview: {
      frames: { width: clip.size, height: clip.size, count: kept.length, data: Buffer.concat(kept.map((k) => k.data)) },
      frameNumbers: kept.map((k) => k.index),
    },
    seconds,
  };
}
