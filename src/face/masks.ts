/**
 * DiffTalk's masks, from the 68 iBUG points in pixels of the stored frame (difftalk-reference.md §1.2, §3, §6.5).
 * - training: every row y ≥ floor(pt30.y) (nose tip) is zeroed over the full width;
 * - test masked image: the same with pt33 (subnasale);
 * - test latent-inpainting mask: the jaw polygon, points 2..14 then 33, filled with 0 in a mask of ones.
 */
import { DifftalkError } from '../util/errors.js';
import { LM68_VALUES } from './ibug68.js';

export interface MaskRows {
  /** floor(lm68[30].y): the training mask zeroes rows ≥ this. */
  train: number;
  /** floor(lm68[33].y): the test-time masked image zeroes rows ≥ this. */
  test: number;
}

function check(lm68: Float32Array): void {
  if (lm68.length !== LM68_VALUES) throw new DifftalkError('bad-landmarks', `expected 68 (x, y) points (${LM68_VALUES} floats), got ${lm68.length}`);
}

/** Mask rows of one frame; null when the frame has no landmarks (NaN). */
export function maskRows(lm68: Float32Array): MaskRows | null {
  check(lm68);
  const y30 = lm68[30 * 2 + 1]!;
  const y33 = lm68[33 * 2 + 1]!;
  if (!Number.isFinite(y30) || !Number.isFinite(y33)) return null;
  return { train: Math.floor(y30), test: Math.floor(y33) };
}

/** The test-time jaw polygon: iBUG points 2, 3, …, 14, then 33 (x, y interleaved, 14 vertices). */
export function jawPolygon(lm68: Float32Array): Float32Array {
  check(lm68);
  const idx = [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 33];
  const out = new Float32Array(idx.length * 2);
  idx.forEach((k, j) => {
    out[j * 2] = lm68[k * 2]!;
    out[j * 2 + 1] = lm68[k * 2 + 1]!;
  });
  return out;
}

/**
 * A size×size mask of ones with the polygon filled with 0 (like cv2.fillPoly(ones, [poly], 0)). A pixel is filled
 * when its centre (x + 0.5, y + 0.5) is inside the polygon or on its boundary (even–odd rule per scanline). `scale` maps polygon coordinates to
 * mask pixels (e.g. 64 / 256 for the latent mask; DiffTalk itself fills at full size, then resizes).
 */
export function rasterizeMask(polygon: Float32Array, size: number, opts: { scale?: number } = {}): Uint8Array {
  if (!Number.isInteger(size) || size <= 0) throw new DifftalkError('bad-option', `mask size must be a positive integer, got ${size}`);
  const n = polygon.length >> 1;
  const s = opts.scale ?? 1;
  const mask = new Uint8Array(size * size).fill(1);
  if (n < 3) return mask;
  for (let i = 0; i < polygon.length; i++) {
    if (!Number.isFinite(polygon[i]!)) throw new DifftalkError('bad-landmarks', 'mask polygon has NaN vertices (frame without a face)');
  }
  const xs: number[] = [];
  for (let y = 0; y < size; y++) {
    const cy = y + 0.5;
    xs.length = 0;
    for (let i = 0, j = n - 1; i < n; j = i++) {
      const yi = polygon[i * 2 + 1]! * s;
      const yj = polygon[j * 2 + 1]! * s;
      if (yi > cy !== yj > cy) {
        const xi = polygon[i * 2]! * s;
        const xj = polygon[j * 2]! * s;
        xs.push(xi + ((cy - yi) / (yj - yi)) * (xj - xi));
      }
    }
    xs.sort((a, b) => a - b);
    for (let k = 0; k + 1 < xs.length; k += 2) {
      const x0 = Math.max(0, Math.ceil(xs[k]! - 0.5));
      const x1 = Math.min(size - 1, Math.floor(xs[k + 1]! - 0.5));
      for (let x = x0; x <= x1; x++) mask[y * size + x] = 0;
    }
  }
  return mask;
}

/** The training (or test, with rows.test) row mask: ones above `row`, zeros from `row` down. */
export function rowMask(row: number, size: number): Uint8Array {
  const mask = new Uint8Array(size * size).fill(1);
  const r = Math.max(0, Math.min(size, row));
  mask.fill(0, r * size);
  return mask;
}
