import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { DifftalkError } from './errors.js';

/** A temp path next to `file` (same directory, so rename is atomic). */
export function tempPathFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Write `data` to `file` atomically: write a temp file in the same directory, fsync, rename over.
 * A reader (or a resumed run after SIGKILL) sees either the old file or the complete new one.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = tempPathFor(file);
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** writeFileAtomic for JSON (2-space indent, trailing newline). */
export function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  return writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
}

/** Run `produce(tmpPath)` and rename the result into `file` only if it succeeds. */
export async function produceAtomic<T>(file: string, produce: (tmp: string) => Promise<T>): Promise<T> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = tempPathFor(file);
  try {
    const result = await produce(tmp);
    await rename(tmp, file);
    return result;
  } catch (e) {
    await rm(tmp, { force: true, recursive: true });
    throw e;
  }
}

export async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

/** Limits for {@link readJson}: every JSON file difftalk writes (manifests, run state, reports) is far below them. */
export const JSON_LIMITS = {
  maxBytes: 256 * 1024 * 1024,
  maxDepth: 256,
} as const;

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Deepest nesting of objects/arrays in JSON text (string contents skipped); linear in the text. */
export function jsonDepth(bytes: Uint8Array): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) inString = true;
    else if (c === OPEN_BRACE || c === OPEN_BRACKET) max = Math.max(max, ++depth);
    else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) depth--;
  }
  return max;
}

/**
 * Read and parse a JSON file. Every failure is one DifftalkError('bad-json' | 'not-found'): a missing file or a folder,
 * a file over JSON_LIMITS.maxBytes, nesting deeper than JSON_LIMITS.maxDepth, invalid UTF-8 or JSON (e.g. truncated).
 * The value is not validated: callers check its shape.
 */
export async function readJson<T>(file: string): Promise<T> {
  let info;
  try {
    info = await stat(file);
  } catch {
    throw new DifftalkError('not-found', `${file}: no such file`);
  }
  if (!info.isFile()) throw new DifftalkError('bad-json', `${file} is not a file`);
  if (info.size > JSON_LIMITS.maxBytes)
    throw new DifftalkError('bad-json', `${file} is ${info.size} bytes, over the ${JSON_LIMITS.maxBytes}-byte limit for JSON`);
  const bytes = await readFile(file);
  if (jsonDepth(bytes) > JSON_LIMITS.maxDepth) throw new DifftalkError('bad-json', `${file} nests deeper than ${JSON_LIMITS.maxDepth} levels`);
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as T;
  } catch (e) {
    throw new DifftalkError('bad-json', `${file} is not valid JSON (${e instanceof Error ? e.message : String(e)}); the file may be truncated`, {
      suggestion: 'restore it from a backup or remove it so that difftalk rewrites it',
      cause: e,
    });
  }
}

/** sha256 of a file, streamed. */
export function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file)
      .on('data', (c) => h.update(c))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Temp files of writeFileAtomic/produceAtomic (`.<name>.<pid>.<hex>.tmp`), as a killed run leaves them. */
export const TEMP_FILE_RE = /^\..+\.\d+\.[0-9a-f]+\.tmp$/;

/** Remove the temp files (TEMP_FILE_RE) a killed run left in `dir` and its subfolders down to `depth` levels (links not followed). */
export async function sweepTempFiles(dir: string, depth: number): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isFile() && TEMP_FILE_RE.test(e.name)) await rm(path.join(dir, e.name), { force: true });
    else if (e.isDirectory() && depth > 0 && !e.isSymbolicLink()) await sweepTempFiles(path.join(dir, e.name), depth - 1);
  }
}

/**
 * The output-folder rule of the commands that fill a folder (prep, export): before any work, `out` must be absent or
 * empty, or hold `marker` (the file the command writes into its own folders); `force` allows anything else. Otherwise
 * one DifftalkError('foreign-folder') naming `creator` and the marker, and nothing is written. A path that is not a
 * folder is always refused. Nothing is created here. Returns what was found.
 */
export async function checkOutputFolder(
  out: string,
  o: { marker: string; creator: string; force: boolean; forceNote: string },
): Promise<'absent' | 'empty' | 'own' | 'forced'> {
  let entries: string[];
  try {
    if (!(await stat(out)).isDirectory()) {
      throw new DifftalkError('foreign-folder', `${out} exists and is not a folder; nothing was written`, { suggestion: 'choose a folder for --out' });
    }
    entries = await readdir(out);
  } catch (e) {
    if (e instanceof DifftalkError) throw e;
    return 'absent';
  }
  if (entries.length === 0) return 'empty';
  if (entries.includes(o.marker)) return 'own';
  if (o.force) return 'forced';
  throw new DifftalkError('foreign-folder', `${out} is not empty and was not created by ${o.creator} (no ${o.marker}); nothing was written`, {
    suggestion: `use a new or empty --out folder, or --force to write into this one (${o.forceNote})`,
  });
}
