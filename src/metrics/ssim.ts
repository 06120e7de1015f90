/**
 * SSIM on 8-bit RGB frames (../shared/docs/eval-metrics.md §2), two named variants, R = 255, K1 = 0.01, K2 = 0.03,
 * per-channel SSIM averaged over the 3 channels, mean of the S-map over **valid window positions only**:
 * - `gaussian` → `ssim(gaussian-11-1.5)` (default): 11×11 sampled Gaussian σ = 1.5 (skimage `gaussian_weights=True`,
 *   truncate 3.5 → radius 5, weights normalised), population covariance — equals KAIR/BasicSR `ssim()`.
 * - `skimage` → `ssim(skimage-7)`: skimage `structural_similarity` defaults, 7×7 box filter, sample covariance
 *   (×49/48).
 * Filters are separable and run in float64 over the valid region only. With a {@link FramePool} the frames of a
 * batch are scored on worker threads (same kernel, so the same values bit for bit).
 */
import { DifftalkError } from '../util/errors.js';
import type { FramePool } from './frame-pool.js';
import { checkPair, frameAt, MeanFrameMetric, type RgbFrames, type MetricDirection } from './metric.js';

export type SsimVariant = 'gaussian' | 'skimage';

export const SSIM_NAMES: Record<SsimVariant, string> = {
  gaussian: 'ssim(gaussian-11-1.5)',
  skimage: 'ssim(skimage-7)',
};

interface Window {
  /** Half of the symmetric taps: `half[0]` the centre weight, `half[j]` the weight at ±j (radius = length − 1). */
  half: Float64Array;
  covNorm: number;
}

function windowOf(variant: SsimVariant): Window {
  if (variant === 'skimage') return { half: new Float64Array(4).fill(1 / 7), covNorm: 49 / 48 };
  const sigma = 1.5;
  const radius = Math.trunc(3.5 * sigma + 0.5);
  const half = new Float64Array(radius + 1);
  let s = 0;
  for (let i = -radius; i <= radius; i++) s += Math.exp((-0.5 * i * i) / (sigma * sigma));
  for (let i = 0; i <= radius; i++) half[i] = Math.exp((-0.5 * i * i) / (sigma * sigma)) / s;
  return { half, covNorm: 1 };
}

const WINDOWS: Record<SsimVariant, Window> = { gaussian: windowOf('gaussian'), skimage: windowOf('skimage') };

export interface SsimFrameResult {
  ssim: number;
  perChannel: [number, number, number];
}

/**
 * Work buffers of one frame size and window, reused from frame to frame (no allocation per frame or pixel):
 * one row of each of the 5 moment inputs (x, y, x², y², xy), and a ring of the last `k` horizontally filtered rows
 * of each moment, so the vertical pass reads at most k·5 rows (L2-sized) instead of whole filtered planes.
 */
interface Scratch {
  width: number;
  k: number;
  row: Float64Array[];
  ring: Float64Array[];
  offA: Int32Array;
  offB: Int32Array;
}

let scratch: Scratch | undefined;

function scratchFor(width: number, k: number): Scratch {
  if (scratch?.width === width && scratch.k === k) return scratch;
  const ow = width - k + 1;
  const r = (k - 1) / 2;
  scratch = {
    width,
    k,
    row: Array.from({ length: 4 }, () => new Float64Array(width)),
    ring: Array.from({ length: 4 }, () => new Float64Array(k * ow)),
    offA: new Int32Array(r + 1),
    offB: new Int32Array(r + 1),
  };
  return scratch;
}

/**
 * SSIM of one RGB frame pair (interleaved HWC uint8, `width`×`height`).
 * Separable filter over the valid region, symmetric taps (each pair of mirrored samples summed before the multiply),
 * float64 throughout; agrees with skimage to float64 round-off (≈1e-15 per frame).
 * Throws DifftalkError('frame-too-small') when the frame is smaller than the window.
 */
export function ssimFrame(pred: Uint8Array, target: Uint8Array, width: number, height: number, variant: SsimVariant = 'gaussian'): SsimFrameResult {
  const { half, covNorm } = WINDOWS[variant];
  const r = half.length - 1;
  const k = 2 * r + 1;
  if (width < k || height < k) {
    throw new DifftalkError('frame-too-small', `${SSIM_NAMES[variant]} needs frames of at least ${k}×${k}, got ${width}×${height}`);
  }
  const ow = width - k + 1;
  const oh = height - k + 1;
  const C1 = (0.01 * 255) ** 2;
  const C2 = (0.03 * 255) ** 2;
  const w0 = half[0]!;
  const { row, ring, offA, offB } = scratchFor(width, k);
  const [px, py, pss, pxy] = row as [Float64Array, Float64Array, Float64Array, Float64Array];
  const [hx, hy, hss, hxy] = ring as [Float64Array, Float64Array, Float64Array, Float64Array];
  const perChannel: [number, number, number] = [0, 0, 0];
  for (let c = 0; c < 3; c++) {
    let total = 0;
    for (let y = 0; y < height; y++) {
      // horizontal pass of row y into ring slot y mod k
      const base = y * width * 3 + c;
      for (let x = 0; x < width; x++) {
        const a = pred[base + 3 * x]!;
        const b = target[base + 3 * x]!;
        px[x] = a;
        py[x] = b;
        pss[x] = a * a + b * b;
        pxy[x] = a * b;
      }
      const o = (y % k) * ow;
      for (let x = 0; x < ow; x++) {
        const m = x + r;
        let sx = w0 * px[m]!;
        let sy = w0 * py[m]!;
        let sss = w0 * pss[m]!;
        let sxy = w0 * pxy[m]!;
        for (let j = 1; j <= r; j++) {
          const w = half[j]!;
          const lo = m - j;
          const hi = m + j;
          sx += w * (px[lo]! + px[hi]!);
          sy += w * (py[lo]! + py[hi]!);
          sss += w * (pss[lo]! + pss[hi]!);
          sxy += w * (pxy[lo]! + pxy[hi]!);
        }
        hx[o + x] = sx;
        hy[o + x] = sy;
        hss[o + x] = sss;
        hxy[o + x] = sxy;
      }
      if (y < k - 1) continue;
      // vertical pass: output row y − k + 1 from the ring's k rows, then the S-map row
      const top = y - k + 1;
      const centre = ((top + r) % k) * ow;
      for (let j = 1; j <= r; j++) {
        offA[j] = ((top + r - j) % k) * ow;
        offB[j] = ((top + r + j) % k) * ow;
      }
      for (let x = 0; x < ow; x++) {
        let ux = w0 * hx[centre + x]!;
        let uy = w0 * hy[centre + x]!;
        let uss = w0 * hss[centre + x]!;
        let uxy = w0 * hxy[centre + x]!;
        for (let j = 1; j <= r; j++) {
          const w = half[j]!;
          const lo = offA[j]! + x;
          const hi = offB[j]! + x;
          ux += w * (hx[lo]! + hx[hi]!);
          uy += w * (hy[lo]! + hy[hi]!);
          uss += w * (hss[lo]! + hss[hi]!);
          uxy += w * (hxy[lo]! + hxy[hi]!);
        }
        const mm = ux * ux + uy * uy;
        const vxvy = covNorm * (uss - mm);
        const vxy = covNorm * (uxy - ux * uy);
        total += ((2 * ux * uy + C1) * (2 * vxy + C2)) / ((mm + C1) * (vxvy + C2));
      }
    }
    perChannel[c] = total / (ow * oh);
  }
  return { ssim: (perChannel[0] + perChannel[1] + perChannel[2]) / 3, perChannel };
}

/** Per-frame SSIM values of two frame batches. */
export function ssim(pred: RgbFrames, target: RgbFrames, variant: SsimVariant = 'gaussian'): number[] {
  checkPair(pred, target, SSIM_NAMES[variant]);
  const out: number[] = [];
  for (let i = 0; i < pred.count; i++) out.push(ssimFrame(frameAt(pred, i), frameAt(target, i), pred.width, pred.height, variant).ssim);
  return out;
}

export class SsimMetric extends MeanFrameMetric {
  static readonly metricName = 'ssim';
  static readonly variants: readonly SsimVariant[] = ['gaussian', 'skimage'];
  static readonly direction: MetricDirection = 'higher';
  readonly name: string;
  readonly direction: MetricDirection = 'higher';

  private readonly pool?: FramePool;

  /** `pool`: score batches on its worker threads (same values); the caller owns and closes it. */
  constructor(
    readonly variant: SsimVariant = 'gaussian',
    options: { pool?: FramePool } = {},
  ) {
    super();
    this.name = SSIM_NAMES[variant];
    this.pool = options.pool;
  }

  async update(pred: RgbFrames, target: RgbFrames): Promise<void> {
    checkPair(pred, target, this.name);
    if (this.pool && pred.count > 1) {
      const r = await this.pool.ssim(pred, target, this.variant);
      r.values.forEach((v, i) => this.add(v, { perChannel: Array.from(r.perChannel.subarray(3 * i, 3 * i + 3)) }));
      return;
    }
    for (let i = 0; i < pred.count; i++) {
      const r = ssimFrame(frameAt(pred, i), frameAt(target, i), pred.width, pred.height, this.variant);
      this.add(r.ssim, { perChannel: r.perChannel });
    }
  }
}
