/**
 * Face tracking and crop rectangles of joonson/syncnet_python `run_pipeline.py` (track_shot, crop_video), for
 * `difftalk eval --sync-crop reference` (../shared/docs/eval-metrics.md §4). Pure functions on per-frame detections;
 * the detector (models/s3fd.ts) and the ffmpeg/JPEG steps (metrics/sync-reference.ts) live in higher layers.
 *
 * track_shot, as the reference does it (its quirks included, since they decide which boxes form a track):
 * - repeat until no track starts: walk the frames in order; in each frame walk its detections: the first detection
 *   seen starts the track; a later one joins when it is at most `numFailedDet` (25) frames after the track's last box
 *   and IoU(box, last box) > 0.5; a detection that is too late ends the walk over that frame (and, frame by frame,
 *   the track). Taken detections are removed from their frame's list while that list is being walked — in Python
 *   this skips the detection after each one taken, and so does this port.
 * - a track is kept when it has more than `minTrack` (100) detections; its boxes are linearly interpolated over every
 *   frame from its first to its last (scipy interp1d), and it is kept when max(mean width, mean height) > `minFaceSize`
 *   (100 px).
 * Shots: the clip is one shot (the reference splits with PySceneDetect first; not done here: documented). It is
 * tracked only when it has at least `minTrack` frames.
 * crop_video: s = max(w, h)/2, centre (x, y), each median-filtered (kernel 13, zero padded: scipy.signal.medfilt),
 * then the rectangles of sync-crop.ts cropRects (pad 110 by int(1.8s), rows [y − s, y + 1.8s), columns [x − 1.4s,
 * x + 1.4s)).
 */
import { cropRects, medfilt, SYNCNET_MEDFILT, type CropTrack, type FaceBox } from './sync-crop.js';

export interface ReferenceTrackOptions {
  /** Missed detections allowed before a track stops (default 25). */
  numFailedDet?: number;
  /** A track needs more than this many detections (default 100; LatentSync uses 50). */
  minTrack?: number;
  /** max(mean width, mean height) of the track's boxes must exceed this (default 100 px). */
  minFaceSize?: number;
}

export const REFERENCE_TRACK_DEFAULTS: Required<ReferenceTrackOptions> = { numFailedDet: 25, minTrack: 100, minFaceSize: 100 };
const IOU_THRESHOLD = 0.5;

/** One face track: consecutive frames first…last, one (interpolated) box each. */
export interface FaceTrack {
  /** Frame index of each box (first…last, consecutive). */
  frames: number[];
  boxes: FaceBox[];
  /** How many detections formed it (before interpolation). */
  detections: number;
}

/** Why candidate tracks were dropped, for the clip's notes. */
export interface TrackingResult {
  tracks: FaceTrack[];
  dropped: { short: number; small: number };
  /** Frames with at least one detection. */
  framesWithFaces: number;
  /** The clip had fewer than minTrack frames: nothing was tracked. */
  shotTooShort: boolean;
}

/** bb_intersection_over_union (no +1 in the areas). */
export function boxIou(a: FaceBox, b: FaceBox): number {
  const iw = Math.max(0, Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1));
  const ih = Math.max(0, Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1));
  const inter = iw * ih;
  return inter / ((a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter);
}

/** scipy interp1d (linear) of the track's boxes at every frame from the first to the last detection. */
export function interpolateTrack(frames: readonly number[], boxes: readonly FaceBox[]): { frames: number[]; boxes: FaceBox[] } {
  const first = frames[0]!;
  const last = frames[frames.length - 1]!;
  const outF: number[] = [];
  const outB: FaceBox[] = [];
  let k = 0;
  for (let f = first; f <= last; f++) {
    while (k + 1 < frames.length - 1 && frames[k + 1]! < f) k++;
    // segment [frames[k], frames[k+1]] containing f (interp1d: x_lo < f ≤ x_hi, the first segment includes its start)
    const f0 = frames[k]!;
    const f1 = frames[Math.min(k + 1, frames.length - 1)]!;
    const a = boxes[k]!;
    const b = boxes[Math.min(k + 1, frames.length - 1)]!;
    const t = f1 === f0 ? 0 : (f - f0) / (f1 - f0);
    const lerp = (u: number, v: number) => u + t * (v - u);
    outF.push(f);
    outB.push({ x1: lerp(a.x1, b.x1), y1: lerp(a.y1, b.y1), x2: lerp(a.x2, b.x2), y2: lerp(a.y2, b.y2) });
  }
  return { frames: outF, boxes: outB };
}

/** track_shot over one shot (here: the whole clip). `dets[f]` are frame f's detections, best first (as S3FD returns). */
export function trackFaces(dets: ReadonlyArray<readonly FaceBox[]>, opts: ReferenceTrackOptions = {}): TrackingResult {
  const o = { ...REFERENCE_TRACK_DEFAULTS, ...opts };
  const framesWithFaces = dets.filter((d) => d.length > 0).length;
  if (dets.length < o.minTrack) return { tracks: [], dropped: { short: 0, small: 0 }, framesWithFaces, shotTooShort: true };
  const remaining = dets.map((d, f) => d.map((box) => ({ frame: f, box })));
  const tracks: FaceTrack[] = [];
  const dropped = { short: 0, small: 0 };
  for (;;) {
    const track: Array<{ frame: number; box: FaceBox }> = [];
    for (const list of remaining) {
      let i = 0;
      while (i < list.length) {
        const face = list[i]!;
        if (track.length === 0) {
          track.push(face);
          list.splice(i, 1);
          i++; // Python's list iterator moves on past the element that slid into the removed one's place
        } else if (face.frame - track[track.length - 1]!.frame <= o.numFailedDet) {
          if (boxIou(face.box, track[track.length - 1]!.box) > IOU_THRESHOLD) {
            track.push(face);
            list.splice(i, 1);
          }
          i++;
        } else break;
      }
    }
    if (track.length === 0) break;
    if (track.length <= o.minTrack) {
      dropped.short++;
      continue;
    }
    const it = interpolateTrack(
      track.map((t) => t.frame),
      track.map((t) => t.box),
    );
    const mean = (f: (b: FaceBox) => number) => it.boxes.reduce((a, b) => a + f(b), 0) / it.boxes.length;
    if (
      Math.max(
        mean((b) => b.x2 - b.x1),
        mean((b) => b.y2 - b.y1),
      ) > o.minFaceSize
    )
      tracks.push({ ...it, detections: track.length });
    else dropped.small++;
  }
  return { tracks, dropped, framesWithFaces, shotTooShort: false };
}

/**
 * crop_video's smoothing and rectangles for a track (medfilt kernel 13, zero padding: the reference's tracks have
 * > 100 boxes). `frame` is the frame size (slices are clipped to the padded frame, as numpy does).
 */
export function referenceCropTrack(track: Pick<FaceTrack, 'boxes'>, frame: { width: number; height: number }): CropTrack {
  const bx = track.boxes;
  const s = medfilt(
    bx.map((b) => Math.max(b.y2 - b.y1, b.x2 - b.x1) / 2),
    SYNCNET_MEDFILT,
  );
  const x = medfilt(
    bx.map((b) => (b.x1 + b.x2) / 2),
    SYNCNET_MEDFILT,
  );
  const y = medfilt(
    bx.map((b) => (b.y1 + b.y2) / 2),
    SYNCNET_MEDFILT,
  );
  return { rects: cropRects(s, x, y, frame), interpolated: [] };
}
