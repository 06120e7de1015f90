/**
 * Frame folders as eval inputs (issue 12 point 1): a folder of PNG/JPG/WebP frames in natural numeric order
 * (`2.png` before `10.png`), decoded losslessly with sharp (no re-encode), all frames the same size.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import type { RgbFrames } from '../media/types.js';
import { DifftalkError } from '../util/errors.js';

/** Frame image extensions a folder of frames may hold. */
export const FRAME_EXT: ReadonlySet<string> = new Set(['.png', '.jpg', '.jpeg', '.webp']);

/** Natural order: digit runs compare as numbers (`frame2.png` < `frame10.png`). */
export function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true, sensitivity: 'variant' });
}

/** The frame files of `dir` (by extension), naturally ordered; [] when it holds none. */
export async function listFrameFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && FRAME_EXT.has(path.extname(e.name).toLowerCase()))
    .map((e) => e.name)
    .sort(naturalCompare)
    .map((n) => path.join(dir, n));
}

/** Size of the first frame (all others must match; checked by readFrames). */
export async function frameSize(files: readonly string[]): Promise<{ width: number; height: number }> {
  const first = files[0];
  if (!first) throw new DifftalkError('no-frames', 'no frame files');
  try {
    const m = await sharp(first).metadata();
    if (!m.width || !m.height) throw new Error('no size');
    return { width: m.width, height: m.height };
  } catch (e) {
    throw new DifftalkError('bad-image', `${first} is not a readable image (${(e as Error).message})`);
  }
}

/**
 * Decode frames to RGB (alpha dropped). `size`: resize every frame to it (bilinear via sharp, `fit: fill`);
 * without it every frame must have the first one's size (DifftalkError 'frame-size' otherwise).
 */
export async function readFrames(files: readonly string[], size?: { width: number; height: number }): Promise<RgbFrames> {
  const { width, height } = size ?? (await frameSize(files));
  const n = width * height * 3;
  const data = new Uint8Array(files.length * n);
  for (const [i, f] of files.entries()) {
    let img = sharp(f).removeAlpha().toColorspace('srgb');
    if (size) img = img.resize(width, height, { fit: 'fill' });
    let raw: { data: Buffer; info: { width: number; height: number; channels: number } };
    try {
      raw = await img.raw().toBuffer({ resolveWithObject: true });
    } catch (e) {
      throw new DifftalkError('bad-image', `${f} is not a readable image (${(e as Error).message})`);
    }
    if (raw.info.width !== width || raw.info.height !== height || raw.info.channels !== 3) {
      throw new DifftalkError('frame-size', `${f} is ${raw.info.width}×${raw.info.height}, the folder's first frame ${width}×${height}`, {
        suggestion: 'all frames of a clip must have one size',
      });
    }
    data.set(raw.data, i * n);
  }
  return { width, height, count: files.length, data };
}
