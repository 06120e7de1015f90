/**
 * SSIM on 8-bit RGB frames (../shared/docs/eval-metrics.md §2), two named variants, R = 255, K1 = 0.01, K2 = 0.03,
 * per-channel SSIM averaged over the 3 channels, mean of the S-map over **valid window positions only**:
 * - `gaussian` → `ssim(gaussian-11-1.5)` (default): 11×11 sampled Gaussian σ = 1.5 (skimage `gaussian_weights=True`,
 *   truncate 3.5 → radius 5, weights normalised), population covariance — equals KAIR/BasicSR `ssim()`.
 * - `skimage` → `ssim(skimage-7)`: skimage `structural_similarity` defaults, 7×7 box filter, sample covariance
 *   (×49/48).
 * Filters are separable and run in float64 over the valid region only.
 */
import { DifftalkError } from '../util/errors.js';
import { checkPair, frameAt, MeanFrameMetric, type RgbFrames, type MetricDirection } from './metric.js';

export type SsimVariant = 'gaussian' | 'skimage';

export const SSIM_NAMES: Record<SsimVariant, string> = {
  gaussian: 'ssim(gaussian-11-1.5)',
  skimage: 'ssim(skimage-7)',
};

interface Window {
  taps: Float64Array;
  covNorm: number;
}

function windowOf(variant: SsimVariant): Window {
  if (variant === 'skimage') {
    const taps = new Float64Array(7).fill(1 / 7);
    return { taps, covNorm: 49 / 48 };
  }
  const sigma = 1.5;
  const radius = Math.trunc(3.5 * sigma + 0.5);
  const taps = new Float64Array(2 * radius + 1);
  let s = 0;
  for (let i = -radius; i <= radius; i++) s += taps[i + radius] = Math.exp((-0.5 * i * i) / (sigma * sigma));
  for (let i = 0; i < taps.length; i++) taps[i]! /= s;
  return { taps, covNorm: 1 };
}

const WINDOWS: Record<SsimVariant, Window> = { gaussian: windowOf('gaussian'), skimage: windowOf('skimage') };

export interface SsimFrameResult {
  ssim: number;
  perChannel: [number, number, number];
}

/**
 * SSIM of one RGB frame pair (interleaved HWC uint8, `width`×`height`).
 * Throws DifftalkError('frame-too-small') when the frame is smaller than the window.
 */
export function ssimFrame(pred: Uint8Array, target: Uint8Array, width: number, height: number, variant: SsimVariant = 'gaussian'): SsimFrameResult {
  const { taps, covNorm } = WINDOWS[variant];
  const k = taps.length;
  if (width < k || height < k) {
    throw new DifftalkError('frame-too-small', `${SSIM_NAMES[variant]} needs frames of at least ${k}×${k}, got ${width}×${height}`);
  }
  const ow = width - k + 1;
  const oh = height - k + 1;
  const C1 = (0.01 * 255) ** 2;
  const C2 = (0.03 * 255) ** 2;
  // horizontal pass: 5 moments, height × ow
  const hx = new Float64Array(height * ow);
  const hy = new Float64Array(height * ow);
  const hxx = new Float64Array(height * ow);
  const hyy = new Float64Array(height * ow);
  const hxy = new Float64Array(height * ow);
  const rx = new Float64Array(width);
  const ry = new Float64Array(width);
  const perChannel: [number, number, number] = [0, 0, 0];
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < height; y++) {
      const row = y * width * 3 + c;
      for (let x = 0; x < width; x++) {
        rx[x] = pred[row + 3 * x]!;
        ry[x] = target[row + 3 * x]!;
      }
      const o = y * ow;
      for (let x = 0; x < ow; x++) {
        let sx = 0;
        let sy = 0;
        let sxx = 0;
        let syy = 0;
        let sxy = 0;
        for (let t = 0; t < k; t++) {
          const w = taps[t]!;
          const a = rx[x + t]!;
          const b = ry[x + t]!;
          const wa = w * a;
          const wb = w * b;
          sx += wa;
          sy += wb;
          sxx += wa * a;
          syy += wb * b;
          sxy += wa * b;
        }
        hx[o + x] = sx;
        hy[o + x] = sy;
        hxx[o + x] = sxx;
        hyy[o + x] = syy;
        hxy[o + x] = sxy;
      }
    }
    // vertical pass + S-map mean
    let total = 0;
    for (let y = 0; y < oh; y++) {
      for (let x = 0; x < ow; x++) {
        let ux = 0;
        let uy = 0;
        let uxx = 0;
        let uyy = 0;
        let uxy = 0;
        for (let t = 0; t < k; t++) {
          const w = taps[t]!;
          const i = (y + t) * ow + x;
          ux += w * hx[i]!;
          uy += w * hy[i]!;
          uxx += w * hxx[i]!;
          uyy += w * hyy[i]!;
          uxy += w * hxy[i]!;
        }
        const vx = covNorm * (uxx - ux * ux);
        const vy = covNorm * (uyy - uy * uy);
        const vxy = covNorm * (uxy - ux * uy);
        total += ((2 * ux * uy + C1) * (2 * vxy + C2)) / ((ux * ux + uy * uy + C1) * (vx + vy + C2));
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

  constructor(readonly variant: SsimVariant = 'gaussian') {
    super();
    this.name = SSIM_NAMES[variant];
  }

  async update(pred: RgbFrames, target: RgbFrames): Promise<void> {
    checkPair(pred, target, this.name);
    for (let i = 0; i < pred.count; i++) {
      const r = ssimFrame(frameAt(pred, i), frameAt(target, i), pred.width, pred.height, this.variant);
      this.add(r.ssim, { perChannel: r.perChannel });
    }
  }
}
