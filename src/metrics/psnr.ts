/**
 * PSNR on 8-bit RGB frames (../shared/docs/eval-metrics.md §1): per frame `10·log10(255² / MSE)` with MSE over all
 * H×W×3 values, then the mean of the per-frame values (RAD-NeRF `PSNRMeter` / IP_LAP convention).
 * Identical frames (MSE = 0, PSNR = ∞) and any frame above 100 dB are capped at {@link PSNR_CAP_DB}; identical
 * frames are counted in `extra.identicalFrames` so a caller can see how many were capped.
 */
import { checkPair, frameAt, MeanFrameMetric, type RgbFrames, type MetricDirection } from './metric.js';

export const PSNR_CAP_DB = 100;

/** PSNR in dB of two equally long uint8 arrays (R = 255), capped at 100 dB (∞ for identical input without the cap). */
export function psnrFrame(pred: Uint8Array, target: Uint8Array, cap = PSNR_CAP_DB): number {
  let se = 0;
  for (let i = 0; i < pred.length; i++) {
    const d = pred[i]! - target[i]!;
    se += d * d;
  }
  if (se === 0) return cap;
  return Math.min(cap, 10 * Math.log10((255 * 255 * pred.length) / se));
}

/** Per-frame PSNR values of two frame batches. */
export function psnr(pred: RgbFrames, target: RgbFrames): number[] {
  checkPair(pred, target, 'psnr');
  const out: number[] = [];
  for (let i = 0; i < pred.count; i++) out.push(psnrFrame(frameAt(pred, i), frameAt(target, i)));
  return out;
}

export class PsnrMetric extends MeanFrameMetric {
  static readonly metricName = 'psnr';
  static readonly variant = 'rgb-255-cap100';
  static readonly direction: MetricDirection = 'higher';
  /** `psnr`, or with `withVariant` (as eval reports it) `psnr(rgb-255-cap100)`. */
  readonly name: string;
  readonly direction: MetricDirection = 'higher';

  constructor(opts: { withVariant?: boolean } = {}) {
    super();
    this.name = opts.withVariant ? `${PsnrMetric.metricName}(${PsnrMetric.variant})` : PsnrMetric.metricName;
  }

  async update(pred: RgbFrames, target: RgbFrames): Promise<void> {
    checkPair(pred, target, this.name);
    for (let i = 0; i < pred.count; i++) {
      const a = frameAt(pred, i);
      const b = frameAt(target, i);
      const v = psnrFrame(a, b);
      if (v === PSNR_CAP_DB && a.every((x, j) => x === b[j])) this.bump('identicalFrames');
      this.add(v);
    }
    this.counters.identicalFrames ??= 0;
  }
}
