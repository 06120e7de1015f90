/**
 * The frame-metric interface (torchmetrics style): feed batches of prediction/target frames with `update`,
 * read the running result with `compute`, combine shards with `merge`, start over with `reset`.
 * Every metric here is the **mean of per-frame values** over all frames seen (../shared/docs/eval-metrics.md §1:
 * the talking-head convention), and reports its full variant name (e.g. `ssim(gaussian-11-1.5)`).
 */
import type { RgbFrames } from '../media/types.js';
import { DifftalkError } from '../util/errors.js';

export type { RgbFrames };

/**
 * Which way a metric improves, declared by the metric itself (never guessed from its name):
 * `higher` (PSNR, SSIM, LSE-C), `lower` (LPIPS, LMD, LSE-D, FID) or `zero` (nearer zero is better: the AV offset).
 */
export type MetricDirection = 'higher' | 'lower' | 'zero';

/** Words for a direction, as the console and the report print them. */
export const DIRECTION_TEXT: Record<MetricDirection, string> = { higher: 'higher is better', lower: 'lower is better', zero: 'nearer zero is better' };

/** Orders two values of a metric so that the worse one comes first (for "worst frames"). */
export function worseFirst(direction: MetricDirection): (a: number, b: number) => number {
  if (direction === 'higher') return (a, b) => a - b;
  if (direction === 'lower') return (a, b) => b - a;
  return (a, b) => Math.abs(b) - Math.abs(a);
}

export interface MetricResult {
  /** Full name including the variant, e.g. `psnr`, `ssim(skimage-7)`, `lpips(alex-v0.1)`. */
  name: string;
  /** Mean of the per-frame values (NaN when no frame was seen). */
  value: number;
  /** Number of frames averaged. */
  frames: number;
  direction: MetricDirection;
  /** Metric-specific extras (e.g. `identicalFrames` for PSNR, `perChannel` for SSIM, `perLayer` for LPIPS). */
  extra: Record<string, number | number[]>;
}

export interface FrameMetric {
  readonly name: string;
  readonly direction: MetricDirection;
  /** Add a batch of frame pairs (same width, height and count). */
  update(pred: RgbFrames, target: RgbFrames): Promise<void>;
  compute(): MetricResult;
  reset(): void;
  /** Add the state of another instance of the same metric (e.g. a shard computed elsewhere). */
  merge(other: FrameMetric): void;
}

/** Check that two frame batches can be compared; throws DifftalkError('frame-mismatch'). */
export function checkPair(pred: RgbFrames, target: RgbFrames, metric: string): void {
  if (pred.width !== target.width || pred.height !== target.height || pred.count !== target.count) {
    throw new DifftalkError(
      'frame-mismatch',
      `${metric}: prediction is ${pred.count}×${pred.width}×${pred.height}, target is ${target.count}×${target.width}×${target.height}`,
      { suggestion: 'Align frame counts and resize/crop both videos to the same size before evaluating.' },
    );
  }
  const n = pred.width * pred.height * 3 * pred.count;
  if (pred.data.length !== n || target.data.length !== n) {
    throw new DifftalkError('frame-mismatch', `${metric}: frame data length does not match ${pred.count}×${pred.width}×${pred.height}×3`);
  }
}

/** One frame of a batch as a view (no copy). */
export function frameAt(frames: RgbFrames, i: number): Uint8Array {
  const n = frames.width * frames.height * 3;
  return frames.data.subarray(i * n, (i + 1) * n);
}

/**
 * Base for metrics that average one value per frame: keeps the sum, the count and summed extras
 * (vectors summed elementwise, then divided by the frame count in `compute`; `counters` are reported as totals).
 */
export abstract class MeanFrameMetric implements FrameMetric {
  abstract readonly name: string;
  abstract readonly direction: MetricDirection;
  protected sum = 0;
  protected count = 0;
  protected sums: Record<string, number[]> = {};
  protected counters: Record<string, number> = {};
  /** Per-frame values since the last `takeFrames()` (NaN for a frame that was skipped), for per-frame reports. */
  private frameLog: number[] = [];

  abstract update(pred: RgbFrames, target: RgbFrames): Promise<void>;

  /** Record one frame's value and its per-frame vectors to be averaged. */
  protected add(value: number, vectors: Record<string, number[]> = {}): void {
    this.frameLog.push(value);
    this.sum += value;
    this.count++;
    for (const [k, v] of Object.entries(vectors)) {
      const acc = (this.sums[k] ??= new Array<number>(v.length).fill(0));
      v.forEach((x, i) => (acc[i] = acc[i]! + x));
    }
  }

  /** A frame that has no value (e.g. no face): counted in `counter`, NaN in the per-frame log, not averaged. */
  protected skip(counter: string): void {
    this.frameLog.push(Number.NaN);
    this.bump(counter);
  }

  /** The per-frame values added since the last call (in order), and forget them; the running mean is unaffected. */
  takeFrames(): number[] {
    const out = this.frameLog;
    this.frameLog = [];
    return out;
  }

  protected bump(counter: string, by = 1): void {
    this.counters[counter] = (this.counters[counter] ?? 0) + by;
  }

  compute(): MetricResult {
    const extra: Record<string, number | number[]> = { ...this.counters };
    for (const [k, v] of Object.entries(this.sums)) extra[k] = v.map((x) => x / this.count);
    return { name: this.name, value: this.count ? this.sum / this.count : NaN, frames: this.count, direction: this.direction, extra };
  }

  reset(): void {
    this.sum = 0;
    this.count = 0;
    this.sums = {};
    this.counters = {};
    this.frameLog = [];
  }

  merge(other: FrameMetric): void {
    if (!(other instanceof MeanFrameMetric) || other.name !== this.name) {
      throw new DifftalkError('metric-mismatch', `cannot merge ${other.name} into ${this.name}`);
    }
    this.sum += other.sum;
    this.count += other.count;
    for (const [k, v] of Object.entries(other.sums)) {
      const acc = (this.sums[k] ??= new Array<number>(v.length).fill(0));
      v.forEach((x, i) => (acc[i] = acc[i]! + x));
    }
    for (const [k, v] of Object.entries(other.counters)) this.bump(k, v);
  }
}
