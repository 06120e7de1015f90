/**
 * LMD, mouth landmark distance (RAD-NeRF `LMDMeter`, ../shared/docs/eval-metrics.md §6): 68-point iBUG layout,
 * mouth points 48–67 (20 points); each set is centred on its own mean (translation removed, no scale or rotation
 * normalisation); LMD = mean Euclidean distance over the points, in pixels at the evaluation resolution; averaged
 * over frames. The landmark model here is the project's LandmarkEngine (MediaPipe 478 → iBUG-68 by a fixed map), not
 * FAN or dlib, so values are labelled with the engine and are not comparable with papers' numbers.
 *
 * `LmdMetric.update` runs the engine on both frame batches (raw per-frame landmarks, no temporal smoothing, as
 * RAD calls FAN per frame). Frames where either side has no face are not averaged; they are counted in
 * `extra.framesWithoutFace`.
 */
import { toIbug68 } from '../face/ibug68.js';
import type { FaceLandmarks, LandmarkEngine } from '../face/types.js';
import { DifftalkError } from '../util/errors.js';
import { checkPair, MeanFrameMetric, type RgbFrames, type MetricDirection } from './metric.js';
import { LM68_VALUES } from '../face/ibug68.js';

export type LmdRegion = 'mouth' | 'all';
export const LMD_REGIONS: Record<LmdRegion, readonly [number, number]> = { mouth: [48, 68], all: [0, 68] };

/** LMD of one frame from two iBUG-68 sets (136 floats, x,y interleaved). NaN if either has a NaN point. */
export function lmdFrame(pred68: ArrayLike<number>, gt68: ArrayLike<number>, region: LmdRegion = 'mouth'): number {
  const [a, b] = LMD_REGIONS[region];
  const n = b - a;
  let pmx = 0;
  let pmy = 0;
  let gmx = 0;
  let gmy = 0;
  for (let k = a; k < b; k++) {
    pmx += pred68[2 * k]!;
    pmy += pred68[2 * k + 1]!;
    gmx += gt68[2 * k]!;
    gmy += gt68[2 * k + 1]!;
  }
  pmx /= n;
  pmy /= n;
  gmx /= n;
  gmy /= n;
  let s = 0;
  for (let k = a; k < b; k++) {
    const dx = pred68[2 * k]! - pmx - (gt68[2 * k]! - gmx);
    const dy = pred68[2 * k + 1]! - pmy - (gt68[2 * k + 1]! - gmy);
    s += Math.sqrt(dx * dx + dy * dy);
  }
  return s / n;
}

/** Per-frame LMD of two landmark sequences (frames × 136); NaN where a frame lacks a face. */
export function lmd(pred68: Float32Array, gt68: Float32Array, region: LmdRegion = 'mouth'): number[] {
  if (pred68.length !== gt68.length || pred68.length % LM68_VALUES !== 0) {
    throw new DifftalkError('frame-mismatch', `LMD: landmark arrays of ${pred68.length} and ${gt68.length} floats (need equal multiples of ${LM68_VALUES})`);
  }
  const out: number[] = [];
  for (let i = 0; i < pred68.length / LM68_VALUES; i++)
    out.push(lmdFrame(pred68.subarray(i * LM68_VALUES, (i + 1) * LM68_VALUES), gt68.subarray(i * LM68_VALUES, (i + 1) * LM68_VALUES), region));
  return out;
}

/** iBUG-68 points (frames × 136) from engine results; NaN rows for frames without a face. */
export function ibug68FromResults(results: readonly FaceLandmarks[]): Float32Array {
  const out = new Float32Array(results.length * LM68_VALUES).fill(Number.NaN);
  results.forEach((r, i) => {
    if (r.status !== 'no-face' && r.points.length >= 468 * 3) out.set(toIbug68(r.points), i * LM68_VALUES);
  });
  return out;
}

export class LmdMetric extends MeanFrameMetric {
  static readonly direction: MetricDirection = 'lower';
  readonly name: string;
  readonly direction: MetricDirection = LmdMetric.direction;
  private readonly engine: LandmarkEngine;
  private readonly region: LmdRegion;
  /** Per-frame values of the last update (NaN for frames without a face). */
  lastFrames: number[] = [];

  /** `engineLabel` names the landmark model in the metric name, e.g. `mediapipe` → `lmd(mouth-48-67,mediapipe)`. */
  constructor(engine: LandmarkEngine, engineLabel: string, region: LmdRegion = 'mouth') {
    super();
    this.engine = engine;
    this.region = region;
    const [a, b] = LMD_REGIONS[region];
    this.name = `lmd(${region}-${a}-${b - 1},${engineLabel})`;
  }

  async update(pred: RgbFrames, target: RgbFrames): Promise<void> {
    checkPair(pred, target, this.name);
    await this.engine.reset();
    const p = ibug68FromResults(await this.engine.detect(pred));
    await this.engine.reset();
    const g = ibug68FromResults(await this.engine.detect(target));
    this.updateLandmarks(p, g);
  }

  /** Add frames from precomputed landmarks (frames × 136 each). */
  updateLandmarks(pred68: Float32Array, gt68: Float32Array): void {
    this.lastFrames = lmd(pred68, gt68, this.region);
    for (const v of this.lastFrames) {
      if (Number.isFinite(v)) this.add(v);
      else this.skip('framesWithoutFace');
    }
  }
}
