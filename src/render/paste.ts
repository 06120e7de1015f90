/**
 * Paste-back of generated faces into the original-resolution frame, and the loop/trim of the person video to the
 * driving audio. Pure functions on raw RGB (interleaved uint8), no I/O.
 *
 * DiffTalk's own inference stops at 256² face crops (difftalk-reference.md §3, §6.8 "paste-back ... absent"); what is
 * done here is this project's choice:
 * - only the jaw polygon (iBUG 2…14 + 33, the region DiffTalk inpaints) of the generated crop is pasted back, so
 *   eyes, nose, hair and background stay the source pixels;
 * - its edge is feathered: the 0/1 polygon alpha (rasterised at the crop box's size in source pixels) is blurred by
 *   two box passes of radius ⌈F/2⌉, so the blend ramps over about F px across the edge and pixels farther than F px
 *   outside the polygon are untouched. F defaults to 4% of the crop side (≈ 12 px for a 300 px face box).
 */
import { DifftalkError } from '../util/errors.js';
import { jawPolygon, rasterizeMask } from '../face/masks.js';
import type { Box } from '../media/types.js';

export type LoopMode = 'pingpong' | 'wrap';

/** Default feather width as a fraction of the crop side. */
export const FEATHER_FRACTION = 0.04;

/**
 * Source frame of output frame k when a video of n frames is looped to any length: 'pingpong' plays it forward then
 * backward (0 … n−1, n−2 … 1, 0 …), which has no jump at the turn; 'wrap' restarts at 0. A longer source is trimmed.
 */
export function sourceFrameIndex(k: number, n: number, mode: LoopMode = 'pingpong'): number {
  if (!(n >= 1) || !Number.isInteger(n)) throw new DifftalkError('bad-argument', `source frame count ${n} must be a positive integer`);
  if (k < n) return k;
  if (mode === 'wrap' || n === 1) return k % n;
  const period = 2 * n - 2;
  const m = k % period;
  return m < n ? m : period - m;
}

/** Separable box blur (radius r, edges clamped) of a side×side float image, in place through a scratch buffer. */
function boxBlur(img: Float32Array, side: number, r: number): void {
  if (r <= 0) return;
  const tmp = new Float32Array(img.length);
  const w = 2 * r + 1;
  for (let y = 0; y < side; y++) {
    let s = 0;
    for (let x = -r; x <= r; x++) s += img[y * side + Math.min(side - 1, Math.max(0, x))]!;
    for (let x = 0; x < side; x++) {
      tmp[y * side + x] = s / w;
      s += img[y * side + Math.min(side - 1, x + r + 1)]! - img[y * side + Math.max(0, x - r)]!;
    }
  }
  for (let x = 0; x < side; x++) {
    let s = 0;
    for (let y = -r; y <= r; y++) s += tmp[Math.min(side - 1, Math.max(0, y)) * side + x]!;
    for (let y = 0; y < side; y++) {
      img[y * side + x] = s / w;
      s += tmp[Math.min(side - 1, y + r + 1) * side + x]! - tmp[Math.max(0, y - r) * side + x]!;
    }
  }
}

/**
 * Feathered paste alpha (1 = generated pixel) over a side×side crop box: the jaw polygon of `lm68` (iBUG-68 in pixels
 * of a `frameSize`² prepared frame) scaled to the box, blurred over `feather` px.
 */
export function jawAlpha(lm68: Float32Array, frameSize: number, side: number, feather: number): Float32Array {
  const m = rasterizeMask(jawPolygon(lm68), side, { scale: side / frameSize });
  const a = new Float32Array(side * side);
  for (let i = 0; i < a.length; i++) a[i] = 1 - m[i]!;
  const r = Math.ceil(Math.max(0, feather) / 2);
  boxBlur(a, side, r);
  boxBlur(a, side, r);
  return a;
}

/**
 * Blend `face` (box.w² RGB, already resized to the box) into `frame` (width×height RGB) at `box` with `alpha`
 * (box.w², 1 = face). Pixels of the box outside the frame are skipped. Modifies `frame`.
 */
export function pasteFace(frame: Uint8Array, width: number, height: number, face: Uint8Array, box: Box, alpha: Float32Array): void {
  const side = box.w;
  if (box.w !== box.h) throw new DifftalkError('bad-argument', `paste box must be square, got ${box.w}x${box.h}`);
  if (face.length !== side * side * 3 || alpha.length !== side * side) throw new DifftalkError('bad-argument', 'face/alpha size does not match the paste box');
  for (let y = 0; y < side; y++) {
    const fy = box.y + y;
    if (fy < 0 || fy >= height) continue;
    for (let x = 0; x < side; x++) {
      const a = alpha[y * side + x]!;
      if (a <= 0) continue;
      const fx = box.x + x;
      if (fx < 0 || fx >= width) continue;
      const o = (fy * width + fx) * 3;
      const s = (y * side + x) * 3;
      for (let c = 0; c < 3; c++) frame[o + c] = Math.round(a * face[s + c]! + (1 - a) * frame[o + c]!);
    }
  }
}
