/**
 * Frame folders as eval inputs (issue 12 point 1): a folder of PNG/JPG/WebP frames in natural numeric order
 * (`2.png` before `10.png`), decoded losslessly with sharp (no re-encode), all frames the same size.
 */
import { readdir, stat } from 'node:fs/promises';
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

/**
 * The frame files of `dir` (by extension), naturally ordered; [] when it holds none. Links to files count as frames
 * (a dangling link is an error, never a silently missing frame); hidden files (`.name`, e.g. macOS `._0001.png`) are
 * not frames. Two files for one frame (`7.png` and `7.jpg`, or `7.png` and `007.png`) are the error `frames-duplicate`.
 */
export async function listFrameFiles(dir: string): Promise<string[]> {
  const names: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.name.startsWith('.') || !FRAME_EXT.has(path.extname(e.name).toLowerCase())) continue;
    if (e.isSymbolicLink()) {
      const target = await stat(path.join(dir, e.name)).catch(() => undefined);
      if (!target)
        throw new DifftalkError('bad-image', `${path.join(dir, e.name)} is a link to nothing`, { suggestion: 'restore its target or remove the link' });
      if (!target.isFile()) continue;
    } else if (!e.isFile()) continue;
    names.push(e.name);
  }
  names.sort(naturalCompare);
  const stem = (n: string) => n.slice(0, n.length - path.extname(n).length);
  for (let i = 1; i < names.length; i++) {
    if (naturalCompare(stem(names[i - 1]!), stem(names[i]!)) === 0) {
      throw new DifftalkError('frames-duplicate', `${dir} holds ${names[i - 1]} and ${names[i]}: two files for one frame, so the frame order is ambiguous`, {
        suggestion: 'keep one file per frame (move the other format or numbering elsewhere)',
      });
    }
  }
  return names.map((n) => path.join(dir, n));
}

/**
 * How frames are decoded: the stored pixel values, as ffmpeg (the video path), OpenCV and PIL read them. sharp would
 * otherwise convert an image with an embedded ICC profile (e.g. Display P3) to sRGB, changing every value.
 */
const DECODE = { ignoreIcc: true } as const;

/** Size of the first frame (all others must match; checked by readFrames). */
export async function frameSize(files: readonly string[]): Promise<{ width: number; height: number }> {
  const first = files[0];
  if (!first) throw new DifftalkError('no-frames', 'no frame files');
  try {
    const m = await sharp(first, DECODE).metadata();
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
    let img = sharp(f, DECODE).removeAlpha().toColorspace('srgb');
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
