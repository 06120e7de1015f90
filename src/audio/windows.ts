/**
 * Per-video-frame windows of audio features.
 *
 * Time convention (the one SyncNet uses, ../shared/docs/eval-metrics.md §4):
 * - video frame k covers [k/fps, (k+1)/fps) and its centre is (k+0.5)/fps;
 * - feature frame j is stamped j/rate (the start of its analysis window: PSF/mel frame j starts at sample j·hop).
 * The window for frame k is the `window` feature frames j0 … j0+window−1 with
 *   j0 = floor((k + 0.5)·rate/fps − window/2 + 0.5)   (nearest, halves rounded up),
 * i.e. the window's stamps are centred on the frame centre. At 25 fps and 100 Hz this is j0 = 4k + 2 − window/2:
 * window 20 gives 4k−8 … 4k+11, which for k = i+2 is exactly SyncNet's MFCC window 4i … 4i+19 of the 5-frame clip
 * i … i+4. Feature frames before 0 or past the end are zero vectors (zero-padding at both ends, as SyncNet pads its
 * sequences with zeros in calc_pdist).
 * A sequence that is already one row per video frame (`frameOffset` set, e.g. DeepSpeech's 16×29 windows at 25 Hz)
 * is windowed by that offset instead: frame k gets rows k+frameOffset … (DiffTalk's i−4 … i+3), zero rows outside.
 */
import { DifftalkError } from '../util/errors.js';
import type { FeatureSequence, FrameWindows } from './types.js';

/** Default window lengths (feature frames) per built-in extractor: mfcc 20 (0.2 s, SyncNet), mel 16, deepspeech 8 (DiffTalk). */
export const DEFAULT_WINDOWS: Readonly<Record<string, number>> = { mfcc: 20, mel: 16, deepspeech: 8 };

/** Window for extractors without a default. */
export const FALLBACK_WINDOW = 16;

export function defaultWindowFor(name: string): number {
  return DEFAULT_WINDOWS[name] ?? FALLBACK_WINDOW;
}

/** First feature frame (may be negative) of the window centred on video frame k. */
export function windowStart(k: number, fps: number, rate: number, window: number): number {
  const x = ((k + 0.5) * rate) / fps - window / 2;
  const f = Math.floor(x);
  return x - f >= 0.5 ? f + 1 : f; // floor(x + 0.5), exact
}

/** Windows for `videoFrames` frames at `fps`: videoFrames × window × dim, row-major, zero-padded at the ends. */
export function frameWindows(seq: FeatureSequence, videoFrames: number, fps: number, window: number): FrameWindows {
  if (!Number.isInteger(videoFrames) || videoFrames < 0)
    throw new DifftalkError('bad-audio-params', `videoFrames must be a non-negative integer, got ${videoFrames}`);
  if (!(fps > 0)) throw new DifftalkError('bad-audio-params', `fps must be positive, got ${fps}`);
  if (!Number.isInteger(window) || window < 1) throw new DifftalkError('bad-audio-params', `window must be a positive integer, got ${window}`);
  if (!(seq.rate > 0)) throw new DifftalkError('bad-audio-params', `feature rate must be positive, got ${seq.rate}`);
  const { dim } = seq;
  if (seq.frameOffset !== undefined) {
    if (!Number.isInteger(seq.frameOffset)) throw new DifftalkError('bad-audio-params', `frameOffset must be an integer, got ${seq.frameOffset}`);
    if (Math.abs(seq.rate - fps) > 1e-9) {
      throw new DifftalkError('bad-audio-params', `these features are one row per video frame at ${seq.rate} fps, but the video is ${fps} fps`, {
        suggestion: `prepare the video at ${seq.rate} fps (prep does: its clips are 25 fps)`,
      });
    }
  }
  const data = new Float32Array(videoFrames * window * dim);
  for (let k = 0; k < videoFrames; k++) {
    const j0 = seq.frameOffset !== undefined ? k + seq.frameOffset : windowStart(k, fps, seq.rate, window);
    const lo = Math.max(0, j0);
    const hi = Math.min(seq.frames, j0 + window);
    if (hi > lo) data.set(seq.data.subarray(lo * dim, hi * dim), (k * window + (lo - j0)) * dim);
  }
  return { data, frames: videoFrames, window, dim };
}
