/**
 * crop-track: HDTF cropping "method 2", used by `prep --input` where no annotated box exists.
 * Run a landmark engine over the source (reduced size, every n-th frame), take each frame's face box (the extent of
 * its landmarks), union the boxes, enlarge the union by `ratio` about its centre, make it square and fit it into the
 * frame. The geometry is the pure function cropFromFaceBoxes; trackCropBox feeds it from the video.
 */
import { DifftalkError, errorMessage } from '../util/errors.js';
import { silent, type OnEvent } from '../util/events.js';
import { fitSquareBox } from '../media/clip.js';
import { iterateFramesScaled, type VideoGeometry } from '../media/frames.js';
import { drop, ok, type StageResult } from '../util/result.js';
import type { Box } from '../media/types.js';
import type { FaceLandmarks, LandmarkEngine } from './types.js';

/** A crop box from tracking, with what happened on the way (assignable to Box). */
export interface TrackedBox extends Box {
  /** True when the enlarged square had to be shrunk or shifted to fit the frame. */
  clamped: boolean;
  notes: string[];
  /** Frames with a face box / frames looked at. */
  framesWithFace: number;
  framesAnalysed: number;
}

/** Union of the non-null boxes, or null when there is none. */
export function unionBoxes(boxes: readonly (Box | null)[]): Box | null {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (const b of boxes) {
    if (!b || !(b.w > 0 && b.h > 0)) continue;
    x0 = Math.min(x0, b.x);
    y0 = Math.min(y0, b.y);
    x1 = Math.max(x1, b.x + b.w);
    y1 = Math.max(y1, b.y + b.h);
  }
  return x1 > x0 ? { x: x0, y: y0, w: x1 - x0, h: y1 - y0 } : null;
}

/**
 * Method-2 geometry: union the per-frame face boxes (null = no face in that frame), scale the union by `ratio`
 * about its centre, make it square (side = ratio · max(union w, union h)) and fit it into frameW×frameH
 * (shrunk to the shorter edge if larger, shifted in if outside; even integer coordinates, see fitSquareBox).
 * No box at all → drop 'no-face'.
 */
export function cropFromFaceBoxes(boxes: readonly (Box | null)[], ratio: number, frameW: number, frameH: number): StageResult<TrackedBox> {
  if (!(ratio > 0) || !Number.isFinite(ratio)) throw new DifftalkError('bad-argument', `crop ratio ${ratio} must be > 0`);
  const u = unionBoxes(boxes);
  const withFace = boxes.filter((b) => b && b.w > 0 && b.h > 0).length;
  if (!u) return drop('no-face', `no face found in any of ${boxes.length} analysed frames`);
  const side = Math.max(u.w, u.h) * ratio;
  const cx = u.x + u.w / 2;
  const cy = u.y + u.h / 2;
  const fitted = fitSquareBox({ x: cx - side / 2, y: cy - side / 2, w: side, h: side }, frameW, frameH);
  return ok({ ...fitted.box, clamped: fitted.clamped, notes: fitted.notes, framesWithFace: withFace, framesAnalysed: boxes.length });
}

/** The extent of one frame's landmarks (x, y of each point), or null when the frame has no single face. */
export function faceBoxFromLandmarks(face: FaceLandmarks): Box | null {
  if (face.status !== 'ok' || face.points.length < 3) return null;
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (let i = 0; i + 2 < face.points.length; i += 3) {
    const x = face.points[i]!;
    const y = face.points[i + 1]!;
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  return x1 > x0 && y1 > y0 ? { x: x0, y: y0, w: x1 - x0, h: y1 - y0 } : null;
}

export interface TrackCropOptions {
  /** HDTF crop_ratio; 1.2 for --input. */
  ratio: number;
  /** Longer side of the analysis frames (default 320; the box barely depends on it, see docs/commands/prep-clip.md). */
  analysisMaxSide?: number;
  /** Look at every n-th frame (default 5: 5 frames per second of a 25 fps video). */
  sampleEvery?: number;
  /** The source's size and frame rate when the caller has probed it (saves an ffprobe run). */
  sourceInfo?: VideoGeometry;
  /** Frames handed to the engine at once (default 64; one ffmpeg run each). */
  chunk?: number;
  onEvent?: OnEvent;
}

/**
 * HDTF method 2 on a source video: decode it reduced (aspect kept), run `engine` on every `sampleEvery`-th frame,
 * map each face box back to source pixels and build the crop with cropFromFaceBoxes. The engine is reset before
 * and after. 'no-face' when no analysed frame has a face; 'video-corrupt' when the source cannot be decoded.
 */
export async function trackCropBox(source: string, engine: LandmarkEngine, opts: TrackCropOptions): Promise<StageResult<TrackedBox>> {
  const onEvent = opts.onEvent ?? silent;
  const boxes: (Box | null)[] = [];
  let srcW = 0;
  let srcH = 0;
  const t0 = performance.now();
  onEvent({ type: 'stage-start', stage: 'crop-track', unit: 'frames' });
  try {
    await engine.reset();
    for await (const frames of iterateFramesScaled(source, opts.analysisMaxSide ?? 320, {
      sampleEvery: opts.sampleEvery ?? 5,
      chunk: opts.chunk ?? 64,
      info: opts.sourceInfo,
    })) {
      srcW = frames.sourceWidth;
      srcH = frames.sourceHeight;
      const sx = frames.sourceWidth / frames.width;
      const sy = frames.sourceHeight / frames.height;
      const faces = await engine.detect(frames);
      if (faces.length !== frames.count) {
        throw new DifftalkError('clip-failed', `landmark engine ${engine.name} returned ${faces.length} results for ${frames.count} frames`);
      }
      for (const f of faces) {
        const b = faceBoxFromLandmarks(f);
        boxes.push(b && { x: b.x * sx, y: b.y * sy, w: b.w * sx, h: b.h * sy });
      }
      onEvent({ type: 'progress', stage: 'crop-track', done: boxes.length, detail: source });
    }
  } catch (e) {
    if (e instanceof DifftalkError && e.code === 'video-corrupt') return drop('video-corrupt', e.message);
    if (e instanceof DifftalkError && e.code === 'tool-missing') throw e;
    return drop('clip-failed', `face tracking failed: ${errorMessage(e)}`);
  } finally {
    await engine.reset().catch(() => undefined);
  }
  onEvent({ type: 'stage-done', stage: 'crop-track', done: boxes.length, seconds: (performance.now() - t0) / 1000 });
  if (boxes.length === 0) return drop('video-corrupt', `no frame could be decoded from ${source}`);
  return cropFromFaceBoxes(boxes, opts.ratio, srcW, srcH);
}
