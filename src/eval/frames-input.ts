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

/** ffmpeg's image2 pattern (`%d`, `%05d`) in a file name; undefined when `p` has none. */
export function parsePattern(p: string): { dir: string; re: RegExp; width: number } | undefined {
  const base = path.basename(p);
  const m = /%(0?)(\d*)d/.exec(base);
  if (!m) return undefined;
  if (/%(0?\d*)d/.exec(base.slice(m.index + m[0].length))) throw new DifftalkError('bad-input', `${p} has more than one %d`);
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const width = m[2] ? Number(m[2]) : 0;
  const digits = width > 0 && m[1] === '0' ? `\\d{${width},}` : '\\d+';
  const re = new RegExp(`^${esc(base.slice(0, m.index))}(${digits})${esc(base.slice(m.index + m[0].length))}$`);
  return { dir: path.dirname(p), re, width: m[1] === '0' ? width : 0 };
}

/**
 * The files of an ffmpeg-style pattern (`frames/%05d.png`) in the order ffmpeg reads them: from the first number in
 * 0…4 (its start_number range) up to the first gap. Numbers after a gap, or none in 0…4, are errors (ffmpeg would
 * silently stop or fail) with the fix.
 */
export async function patternFrameFiles(p: string): Promise<string[]> {
  const pat = parsePattern(p);
  if (!pat) throw new DifftalkError('internal', `${p} is not a pattern`);
  if (!FRAME_EXT.has(path.extname(p).toLowerCase())) {
    throw new DifftalkError('bad-input', `${p}: frames must be ${[...FRAME_EXT].join(', ')}`);
  }
  let names: string[];
  try {
    names = await readdir(pat.dir);
  } catch {
    throw new DifftalkError('file-missing', `the folder of ${p} does not exist`);
  }
  const byNum = new Map<number, string>();
  for (const n of names) {
    const m = pat.re.exec(n);
    if (!m) continue;
    const s = m[1]!;
    // %05d prints at least 5 digits: a longer number has no leading zero.
    if (pat.width && s.length > pat.width && s.startsWith('0')) continue;
    byNum.set(Number(s), n);
  }
  if (byNum.size === 0)
    throw new DifftalkError('no-frames', `no file matches ${p}`, { suggestion: 'check the folder and the %d width (e.g. %05d for 00001.png)' });
  const start = [0, 1, 2, 3, 4].find((k) => byNum.has(k));
  if (start === undefined) {
    throw new DifftalkError('no-frames', `${p}: the first frame number is ${Math.min(...byNum.keys())}; ffmpeg starts at 0…4`, {
      suggestion: 'renumber the frames from 0 or 1, or pass the folder itself (frames in natural order)',
    });
  }
  const files: string[] = [];
  for (let k = start; byNum.has(k); k++) files.push(path.join(pat.dir, byNum.get(k)!));
  if (files.length !== byNum.size) {
    throw new DifftalkError('frames-gap', `${p}: frame ${start + files.length} is missing, ${byNum.size - files.length} frame(s) after it would be ignored`, {
      suggestion: 'restore the missing frame, or pass the folder itself (frames in natural order, gaps allowed)',
    });
  }
  return files;
}
