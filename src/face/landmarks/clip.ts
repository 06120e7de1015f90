import { DifftalkError } from '../../util/errors.js';
import { silent, type OnEvent } from '../../util/events.js';
import { drop, ok, type StageResult } from '../../util/result.js';
import type { FaceLandmarks, LandmarkEngine } from '../types.js';
import type { RgbFrames } from '../../media/types.js';
import { toIbug68 } from '../ibug68.js';
import { DEFAULT_SMOOTHING, jitter, parseSmoothing, smoothSequence, type SmoothingSpec } from './smoothing.js';
import { LM68_VALUES } from '../ibug68.js';

export const MESH_FLOATS = 478 * 3;

/** Landmarks of one clip, frame-major; bad frames are NaN in `smoothed` and `lm68`. */
export interface LandmarkClip {
  /** count × 1434 (x, y, z) as the engine gave them: kept for ok and multi-face frames (first face), NaN for no-face. */
  raw: Float32Array;
  /** count × 1434, temporally smoothed within runs of good ('ok') frames; NaN for bad frames. */
  smoothed: Float32Array;
  /** count × 136 iBUG-68 (x, y) from `smoothed` by the fixed map (ibug68.ts); NaN for bad frames. */
  lm68: Float32Array;
  /** Per-frame engine score (0 for no-face; NaN where the engine does not expose one). */
  scores: Float32Array;
  status: FaceLandmarks['status'][];
  /** Jitter (px, smoothing.ts `jitter`) of the raw and the smoothed points. */
  jitter: { raw: number; smoothed: number };
  /** Indices of frames whose status is not 'ok'. */
  badFrames: number[];
  /** The smoothing actually applied (spec string). */
  smoothing: string;
}

export interface LandmarkClipOptions {
  smoothing?: SmoothingSpec;
  /** Drop the clip ('too-many-bad-frames') when more than this fraction of frames is not 'ok'. Default 0.2. */
  maxBadFrameFraction?: number;
  onEvent?: OnEvent;
  /** Clip id for events. */
  id?: string;
  /** Frames in the clip, for progress when `frames` comes in chunks. */
  frameCount?: number;
}

/**
 * Stage 4: landmarks for every frame of one clip. Resets the engine (fresh tracking), runs it over the frames (one
 * buffer, or consecutive chunks of the clip so that a long clip never has to be in memory at once; tracking carries
 * over from chunk to chunk), marks no-face and multi-face frames, smooths the good runs and derives the 68 points.
 * Too many bad frames → a dropped clip.
 */
export async function landmarkClip(
  engine: LandmarkEngine,
  frames: RgbFrames | AsyncIterable<RgbFrames>,
  opts: LandmarkClipOptions = {},
): Promise<StageResult<LandmarkClip>> {
  const onEvent = opts.onEvent ?? silent;
  const spec = opts.smoothing ?? DEFAULT_SMOOTHING;
  const smoother = parseSmoothing(spec);
  const maxBad = opts.maxBadFrameFraction ?? 0.2;
  if (!(maxBad >= 0 && maxBad <= 1)) throw new DifftalkError('bad-option', `maxBadFrameFraction must be in [0, 1], got ${maxBad}`);
  const chunks: AsyncIterable<RgbFrames> | RgbFrames[] = 'data' in frames ? [frames] : frames;
  await engine.reset();
  const t0 = performance.now();
  onEvent({ type: 'stage-start', stage: 'landmarks', total: opts.frameCount ?? ('data' in frames ? frames.count : undefined), unit: 'frames' });
  const results: FaceLandmarks[] = [];
  for await (const chunk of chunks) {
    const r = await engine.detect(chunk);
    if (r.length !== chunk.count) {
      throw new DifftalkError('landmarker-failed', `engine ${engine.name} returned ${r.length} results for ${chunk.count} frames`);
    }
    for (const x of r) results.push(x);
    onEvent({ type: 'progress', stage: 'landmarks', done: results.length, total: opts.frameCount, detail: opts.id });
  }
  onEvent({ type: 'stage-done', stage: 'landmarks', done: results.length, seconds: (performance.now() - t0) / 1000 });
  const count = results.length;
  if (count === 0) return drop('too-short', 'the clip has no frames');
  const raw = new Float32Array(count * MESH_FLOATS).fill(Number.NaN);
  const scores = new Float32Array(count);
  const status = results.map((r) => r.status);
  const good = status.map((s) => s === 'ok');
  results.forEach((r, i) => {
    if (r.points.length === MESH_FLOATS) raw.set(r.points, i * MESH_FLOATS);
    scores[i] = r.score;
  });
  const badFrames = good.flatMap((g, i) => (g ? [] : [i]));
  const counts = { 'no-face': 0, 'multi-face': 0 };
  for (const s of status) if (s !== 'ok') counts[s]++;
  if (badFrames.length > maxBad * count) {
    const message = `${badFrames.length} of ${count} frames without exactly one face (${counts['no-face']} no-face, ${counts['multi-face']} multi-face); limit ${Math.round(maxBad * 100)}%`;
    onEvent({ type: 'dropped', stage: 'landmarks', id: opts.id ?? '', reason: 'too-many-bad-frames', message });
    return drop('too-many-bad-frames', message);
  }
  const smoothed = smoothSequence(raw, MESH_FLOATS, good, smoother);
  const lm68 = new Float32Array(count * LM68_VALUES);
  for (let i = 0; i < count; i++) lm68.set(toIbug68(smoothed.subarray(i * MESH_FLOATS, (i + 1) * MESH_FLOATS)), i * LM68_VALUES);
  return ok({
    raw,
    smoothed,
    lm68,
    scores,
    status,
    jitter: { raw: jitter(raw, good), smoothed: jitter(smoothed, good) },
    badFrames,
    smoothing: spec,
  });
}
