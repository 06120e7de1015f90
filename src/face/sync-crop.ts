/**
 * Face crops for evaluation, following SyncNet's `run_pipeline.py crop_video` rule (../shared/docs/eval-metrics.md §4):
 * per frame, box → s = max(w, h)/2 and centre (x, y); s, x and y are each median-filtered with kernel 13
 * (scipy.signal.medfilt: zero padding at both ends); the frame is padded with value 110 by bsi = int(1.8·s);
 * crop rows [y − s, y + 1.8s) and columns [x − 1.4s, x + 1.4s) (truncated to int as the reference does) — a 2.8s
 * square reaching below the chin — resized to the output size with OpenCV-style bilinear sampling (half-pixel
 * centres, edge replicated inside the crop).
 *
 * Deviation from the reference (documented in docs/commands/eval.md): the per-frame face box is the bounding box of
 * the LandmarkEngine's face mesh (forehead to chin, cheek to cheek) instead of an S3FD detection (whose weights are
 * not obtainable here), and the frames come straight from the decoder rather than from an ffmpeg JPEG round trip.
 * Frames without a face take boxes linearly interpolated from their neighbours (the reference interpolates its tracks).
 */
import type { FaceLandmarks } from './types.js';
import type { RgbFrames } from '../media/types.js';
import { DifftalkError } from '../util/errors.js';

export interface FaceBox {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

/** One crop per frame: the square region [x0, x0+w) × [y0, y0+h) of the padded-by-110 frame coordinates. */
export interface CropTrack {
  /** Per frame: crop rectangle in frame pixel coordinates (may extend outside the frame; that area is 110 grey). */
  rects: Array<{ x0: number; y0: number; w: number; h: number }>;
  /** Frames whose box was interpolated (no face found). */
  interpolated: number[];
}

export const SYNCNET_MEDFILT = 13;
export const SYNCNET_CROP_SCALE = 0.4;
export const SYNCNET_PAD_VALUE = 110;

/** Bounding box of a face mesh (x, y of each point); null when no face. */
export function meshBox(lm: FaceLandmarks): FaceBox | null {
  if (lm.status === 'no-face' || lm.points.length < 3) return null;
  let x1 = Infinity;
  let y1 = Infinity;
  let x2 = -Infinity;
  let y2 = -Infinity;
  for (let i = 0; i + 2 < lm.points.length; i += 3) {
    const x = lm.points[i]!;
    const y = lm.points[i + 1]!;
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    if (x < x1) x1 = x;
    if (x > x2) x2 = x;
    if (y < y1) y1 = y;
    if (y > y2) y2 = y;
  }
  return Number.isFinite(x1) ? { x1, y1, x2, y2 } : null;
}

/** scipy.signal.medfilt(x, k): odd kernel, zero padding at both ends. */
export function medfilt(x: readonly number[], k = SYNCNET_MEDFILT): number[] {
  const h = (k - 1) / 2;
  const out: number[] = [];
  const win: number[] = new Array<number>(k);
  for (let i = 0; i < x.length; i++) {
    for (let j = -h; j <= h; j++) win[j + h] = i + j >= 0 && i + j < x.length ? x[i + j]! : 0;
    const s = [...win].sort((a, b) => a - b);
    out.push(s[h]!);
  }
  return out;
}

/** Fill missing boxes by linear interpolation (nearest box at the ends). Throws when no frame has a face. */
export function interpolateBoxes(boxes: ReadonlyArray<FaceBox | null>, what = 'video'): { boxes: FaceBox[]; interpolated: number[] } {
  const known = boxes.flatMap((b, i) => (b ? [i] : []));
  if (known.length === 0) {
    throw new DifftalkError('no-face', `no face found in any frame of ${what}`, {
      suggestion: 'check the video shows a face, or evaluate with --crop none (LSE and LMD need a face)',
    });
  }
  const out: FaceBox[] = [];
  const interpolated: number[] = [];
  let k = 0;
  for (let i = 0; i < boxes.length; i++) {
    const b = boxes[i];
    if (b) {
      out.push(b);
      continue;
    }
    interpolated.push(i);
    while (k + 1 < known.length && known[k + 1]! < i) k++;
    const a = known[k]!;
    const c = known.find((j) => j > i);
    if (a > i || c === undefined) {
      out.push({ ...boxes[a > i ? a : known[known.length - 1]!]! });
      continue;
    }
    const t = (i - a) / (c - a);
    const A = boxes[a]!;
    const C = boxes[c]!;
    out.push({ x1: A.x1 + t * (C.x1 - A.x1), y1: A.y1 + t * (C.y1 - A.y1), x2: A.x2 + t * (C.x2 - A.x2), y2: A.y2 + t * (C.y2 - A.y2) });
  }
  return { boxes: out, interpolated };
}

/** The SyncNet crop rectangles for a track of boxes. */
export function syncnetCropTrack(boxes: ReadonlyArray<FaceBox | null>, what = 'video'): CropTrack {
  const { boxes: bx, interpolated } = interpolateBoxes(boxes, what);
  // The reference only crops tracks of ≥ 100 frames; for clips shorter than the kernel, shrink it to the largest odd
  // length ≤ the clip so the zero padding cannot become the median.
  const k = Math.min(SYNCNET_MEDFILT, bx.length % 2 === 1 ? bx.length : bx.length - 1);
  const medfiltK = (v: number[]) => (k >= 1 ? medfilt(v, k) : v);
  const s = medfiltK(bx.map((b) => Math.max(b.x2 - b.x1, b.y2 - b.y1) / 2));
  const x = medfiltK(bx.map((b) => (b.x1 + b.x2) / 2));
  const y = medfiltK(bx.map((b) => (b.y1 + b.y2) / 2));
  return { rects: cropRects(s, x, y), interpolated };
}

/**
 * crop_video's rectangles from the smoothed half-size s and centre (x, y) of each frame: the frame padded by
 * bsi = int(1.8·s), rows [int(y + bsi − s), int(y + bsi + 1.8s)), columns [int(x + bsi − 1.4s), int(x + bsi + 1.4s))
 * (Python int() truncation; slices clipped to the padded frame as numpy does), back in frame coordinates.
 */
export function cropRects(s: readonly number[], x: readonly number[], y: readonly number[], frame?: { width: number; height: number }): CropTrack['rects'] {
  const cs = SYNCNET_CROP_SCALE;
  return s.map((bs, i) => {
    const bsi = Math.trunc(bs * (1 + 2 * cs));
    const my = y[i]! + bsi;
    const mx = x[i]! + bsi;
    // Indices in the padded frame, truncated like Python int(); back to frame coordinates by − bsi.
    let r0 = Math.trunc(my - bs);
    let r1 = Math.trunc(my + bs * (1 + 2 * cs));
    let c0 = Math.trunc(mx - bs * (1 + cs));
    let c1 = Math.trunc(mx + bs * (1 + cs));
    if (frame) {
      const clip = (v: number, n: number) => Math.min(Math.max(v, 0), n);
      [r0, r1] = [clip(r0, frame.height + 2 * bsi), clip(r1, frame.height + 2 * bsi)];
      [c0, c1] = [clip(c0, frame.width + 2 * bsi), clip(c1, frame.width + 2 * bsi)];
    }
    return { x0: c0 - bsi, y0: r0 - bsi, w: Math.max(1, c1 - c0), h: Math.max(1, r1 - r0) };
  });
}

/**
 * Crop every frame by its rectangle and resize to size×size (cv2.resize INTER_LINEAR semantics on the cropped array;
 * pixels outside the frame read as 110). Returns one RGB buffer per frame.
 */
export function applyCropTrack(frames: RgbFrames, track: CropTrack, size: number): Uint8Array[] {
  if (track.rects.length < frames.count) {
    throw new DifftalkError('frame-mismatch', `crop track has ${track.rects.length} boxes for ${frames.count} frames`);
  }
  const { width: W, height: H } = frames;
  const out: Uint8Array[] = [];
  const fpx = W * H * 3;
  for (let f = 0; f < frames.count; f++) {
    const r = track.rects[f]!;
    const src = frames.data.subarray(f * fpx, (f + 1) * fpx);
    const dst = new Uint8Array(size * size * 3);
    const sx = r.w / size;
    const sy = r.h / size;
    const px = (cx: number, cy: number, c: number): number => {
      const X = r.x0 + cx;
      const Y = r.y0 + cy;
      return X < 0 || Y < 0 || X >= W || Y >= H ? SYNCNET_PAD_VALUE : src[(Y * W + X) * 3 + c]!;
    };
    for (let v = 0; v < size; v++) {
      let fy = (v + 0.5) * sy - 0.5;
      fy = Math.min(Math.max(fy, 0), r.h - 1);
      const y0 = Math.floor(fy);
      const y1 = Math.min(y0 + 1, r.h - 1);
      const wy = fy - y0;
      for (let u = 0; u < size; u++) {
        let fx = (u + 0.5) * sx - 0.5;
        fx = Math.min(Math.max(fx, 0), r.w - 1);
        const x0 = Math.floor(fx);
        const x1 = Math.min(x0 + 1, r.w - 1);
        const wx = fx - x0;
        for (let c = 0; c < 3; c++) {
          const a = px(x0, y0, c) * (1 - wx) + px(x1, y0, c) * wx;
          const b = px(x0, y1, c) * (1 - wx) + px(x1, y1, c) * wx;
          dst[(v * size + u) * 3 + c] = Math.round(a * (1 - wy) + b * wy);
        }
      }
    }
    out.push(dst);
  }
  return out;
}

/** Pack per-frame crops back into one RgbFrames batch. */
export function cropsToFrames(crops: readonly Uint8Array[], size: number): RgbFrames {
  const data = new Uint8Array(crops.length * size * size * 3);
  crops.forEach((c, i) => data.set(c, i * size * size * 3));
  return { width: size, height: size, count: crops.length, data };
}
