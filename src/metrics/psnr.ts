/**
 * PSNR on 8-bit RGB frames (../shared/docs/eval-metrics.md §1): per frame `10·log10(255² / MSE)` with MSE over all
 * H×W×3 values, then the mean of the per-frame values (RAD-NeRF `PSNRMeter` / IP_LAP convention).
 * Identical frames (MSE = 0, PSNR = ∞) and any frame above 100 dB are capped at {@link PSNR_CAP_DB}; identical
 * frames are counted in `extra.identicalFrames` so a caller can see how many were capped. With a {@link FramePool}
 * the frames of a batch are scored on worker threads (same kernel, same values bit for bit).
 */
import type { FramePool } from './frame-pool.js';
import { checkPair, frameAt, MeanFrameMetric, type RgbFrames, type MetricDirection } from './metric.js';

export const PSNR_CAP_DB = 100;

/** PSNR in dB of two equally long uint8 arrays (R = 255), capped at 100 dB (∞ for identical input without the cap). */
export function psnrFrame(pred: Uint8Array, target: Uint8Array, cap = PSNR_CAP_DB): number {
  return psnrOfSquaredError(squaredError(pred, target), pred.length, cap);
}

/** PSNR in dB from the summed squared error of `n` values (R = 255), capped. */
export function psnrOfSquaredError(se: number, n: number, cap = PSNR_CAP_DB): number {
  if (se === 0) return cap;
  return Math.min(cap, 10 * Math.log10((255 * 255 * n) / se));
}

/**
 * Σ (pred − target)², exact. When both views are 4-byte aligned, 4 values per 32-bit load; block sums stay small
 * integers (≤ 8192·255² < 2³⁰, so the JIT keeps them in int registers), added up in a double
 * (exact below 2⁵³).
 */
export function squaredError(pred: Uint8Array, target: Uint8Array): number {
  const n = pred.length;
  let total = 0;
  let i0 = 0;
  if (pred.byteOffset % 4 === 0 && target.byteOffset % 4 === 0) {
    const words = n >> 2;
    const a = new Uint32Array(pred.buffer, pred.byteOffset, words);
    const b = new Uint32Array(target.buffer, target.byteOffset, words);
    for (let w0 = 0; w0 < words; w0 += 1024) {
      const end = Math.min(words, w0 + 1024);
      let s = 0;
      for (let i = w0; i < end; i++) {
        const x = a[i]!;
        const y = b[i]!;
        const d0 = (x & 255) - (y & 255);
        const d1 = ((x >>> 8) & 255) - ((y >>> 8) & 255);
        const d2 = ((x >>> 16) & 255) - ((y >>> 16) & 255);
        const d3 = (x >>> 24) - (y >>> 24);
        s += d0 * d0 + d1 * d1 + d2 * d2 + d3 * d3;
      }
      total += s;
    }
    i0 = words * 4;
  }
  for (; i0 < n; i0 += 8192) {
    const end = Math.min(n, i0 + 8192);
    let s = 0;
    for (let i = i0; i < end; i++) {
      const d = pred[i]! - target[i]!;
      s += d * d;
    }
    total += s;
  }
  return total;
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

  private readonly pool?: FramePool;

  /** `pool`: score batches on its worker threads (same values); the caller owns and closes it. */
  constructor(opts: { withVariant?: boolean; pool?: FramePool } = {}) {
    super();
    this.name = opts.withVariant ? `${PsnrMetric.metricName}(${PsnrMetric.variant})` : PsnrMetric.metricName;
    this.pool = opts.pool;
  }

  async update(pred: RgbFrames, target: RgbFrames): Promise<void> {
    checkPair(pred, target, this.name);
    if (this.pool && pred.count > 1) {
      const r = await this.pool.psnr(pred, target);
      r.values.forEach((v, i) => {
        if (r.identical[i]) this.bump('identicalFrames');
        this.add(v);
      });
    } else {
      for (let i = 0; i < pred.count; i++) {
        const se = squaredError(frameAt(pred, i), frameAt(target, i));
        if (se === 0) this.bump('identicalFrames');
        this.add(psnrOfSquaredError(se, pred.width * pred.height * 3));
      }
    }
    this.counters.identicalFrames ??= 0;
  }
}
