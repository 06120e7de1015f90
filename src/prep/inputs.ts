/**
 * inputs: `prep --input <files or folders>` → ClipSpec rows (no annotations; the crop comes from face tracking).
 * Folders are scanned (not recursively) for video files; each file becomes one clip whose id and identity are the
 * file's stem made safe (src/util/names.ts). Two inputs that map to the same id are an error, not an overwrite.
 */
import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { DifftalkError } from '../util/errors.js';
import { isSafeName, safeId } from '../util/names.js';
import type { ClipSpec } from '../media/types.js';

export const VIDEO_EXTENSIONS = new Set(['.mp4', '.mov', '.mkv', '.webm', '.avi', '.m4v', '.mpg', '.mpeg', '.flv', '.ts']);

/** Default crop enlargement for --input (HDTF's most common crop_ratio). */
export const DEFAULT_CROP_RATIO = 1.2;

async function expand(input: string): Promise<string[]> {
  let st;
  try {
    st = await stat(input);
  } catch {
    throw new DifftalkError('input-missing', `input ${JSON.stringify(input)} does not exist`);
  }
  if (st.isFile()) return [path.resolve(input)];
  if (!st.isDirectory()) throw new DifftalkError('input-invalid', `input ${JSON.stringify(input)} is neither a file nor a folder`);
  const names = (await readdir(input)).filter((n) => VIDEO_EXTENSIONS.has(path.extname(n).toLowerCase())).sort();
  if (names.length === 0) {
    throw new DifftalkError('input-invalid', `folder ${JSON.stringify(input)} holds no video files (${[...VIDEO_EXTENSIONS].join(' ')})`);
  }
  return names.map((n) => path.resolve(input, n));
}

/**
 * A clip id for a file stem in any script: the safe form of the stem (names.ts) when that keeps some of it, else
 * `clip-<8 hex of the stem's SHA-256>` (Cyrillic, CJK, emoji, only punctuation...), so no file name aborts a run;
 * a stem with non-ASCII characters that keeps some ASCII gets `-<8 hex>` appended.
 * Deterministic, so a rerun finds the same clip.
 */
export function clipIdFromStem(stem: string): string {
  let id: string | undefined;
  try {
    id = safeId(stem);
  } catch {
    id = undefined;
  }
  const hash = createHash('sha256').update(stem, 'utf8').digest('hex').slice(0, 8);
  if (id === undefined || !isSafeName(id)) return `clip-${hash}`;
  // A stem with characters outside ASCII keeps only part of itself ("Интервью_1" → "1"): the hash keeps two such
  // names apart. ASCII stems keep their plain safe form (`good clip` → `good_clip`), as before.
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(stem) ? id : `${id.slice(0, 110)}-${hash}`;
}

/** ClipSpec rows for local video files, in a stable (sorted) order. */
export async function clipsFromInputs(inputs: readonly string[], opts: { cropRatio?: number } = {}): Promise<ClipSpec[]> {
  const files = (await Promise.all(inputs.map(expand))).flat();
  const byId = new Map<string, ClipSpec>();
  for (const file of files) {
    const stem = path.basename(file, path.extname(file));
    const id = clipIdFromStem(stem);
    const prev = byId.get(id);
    if (prev) {
      if (prev.file === file) continue;
      throw new DifftalkError('input-invalid', `inputs ${prev.file} and ${file} both map to clip id ${id}`, {
        suggestion: 'rename one of the files',
      });
    }
    byId.set(id, {
      id,
      identity: id,
      video: id,
      clipIndex: 0,
      file,
      cropRatio: opts.cropRatio ?? DEFAULT_CROP_RATIO,
    });
  }
  return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** Deterministic partition for array jobs: clip k belongs to shard (k mod count) of the sorted clip list. */
export function partitionClips<T extends { id: string }>(clips: readonly T[], index: number, count: number): T[] {
  if (!Number.isInteger(count) || count < 1 || !Number.isInteger(index) || index < 0 || index >= count) {
    throw new DifftalkError('bad-flag', `--shard must be i/n with 0 <= i < n (got ${index}/${count})`);
  }
  const sorted = [...clips].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return sorted.filter((_, k) => k % count === index);
}
