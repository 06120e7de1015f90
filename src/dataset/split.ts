/**
 * split: assign every clip to 'train' or 'test'.
 *
 * Default (no split file): by identity, so no person is in both sets. Each identity gets
 * u = first 52 bits of sha256(`difftalk-split:<seed>:<identity>`) / 2^52 ∈ [0, 1) and goes to test iff u < testFraction.
 * The value depends only on (seed, identity), never on the other clips, so array jobs agree. Guarantees, applied
 * over the whole clip list given (pass ALL clips of the run, before dividing work between jobs):
 * - 1 identity → everything is train (there is nothing to test on without a leak);
 * - ≥ 2 identities and 0 < testFraction < 1: at least one identity in each set (if the hash put none in test, the
 *   identity with the smallest u moves to test; if it put all in test, the one with the largest u moves to train).
 *
 * --split-file: see parseSplitFile for the accepted formats.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { DifftalkError } from '../util/errors.js';

export type Split = 'train' | 'test';

export interface SplitClip {
  id: string;
  identity: string;
}

/** A parsed --split-file. */
export type SplitFile =
  /** `<clip_id> <train|test>` lines: every prepared clip must be listed. */
  | { kind: 'assignments'; source: string; assignments: Map<string, Split> }
  /** DiffTalk-style train_name.txt (or the derived TSV): listed clips are train, every other clip is test. */
  | { kind: 'train-list'; source: string; train: Set<string> };

export interface SplitOptions {
  /** Fraction of identities in test (default 0.2). */
  testFraction?: number;
  /** Seed of the identity hash (default 0). */
  seed?: number;
  /** A parsed split file; overrides the identity hash. */
  splitFile?: SplitFile;
  /** Accept a split that puts one identity in both sets (default false: it is an error). */
  allowIdentityLeak?: boolean;
}

export interface SplitResult {
  splits: Map<string, Split>;
  /** Identities with clips in both train and test (empty unless allowIdentityLeak). */
  leaks: string[];
  /** How the split was made, for dataset.json. */
  method: 'identity-hash' | 'split-file';
}

export const DEFAULT_TEST_FRACTION = 0.2;

/** u ∈ [0, 1) from sha256(`difftalk-split:<seed>:<identity>`) (first 52 bits). */
export function identityHashUnit(identity: string, seed = 0): number {
  const h = createHash('sha256').update(`difftalk-split:${seed}:${identity}`).digest();
  const hi = h.readUInt32BE(0); // 32 bits
  const lo = h.readUInt32BE(4) >>> 12; // 20 bits
  return (hi * 2 ** 20 + lo) / 2 ** 52;
}

/** The default identity-disjoint split (see the module comment for the tiny-dataset guarantees). */
export function splitByIdentity(clips: readonly SplitClip[], opts: { testFraction?: number; seed?: number } = {}): Map<string, Split> {
  const testFraction = opts.testFraction ?? DEFAULT_TEST_FRACTION;
  const seed = opts.seed ?? 0;
  if (!(testFraction >= 0 && testFraction <= 1)) {
    throw new DifftalkError('bad-argument', `test fraction ${testFraction} must be between 0 and 1`);
  }
  const identities = [...new Set(clips.map((c) => c.identity))].sort();
  const u = new Map(identities.map((id) => [id, identityHashUnit(id, seed)] as const));
  const bySplit = new Map<string, Split>(identities.map((id) => [id, (u.get(id) as number) < testFraction ? 'test' : 'train']));
  if (identities.length === 1) {
    bySplit.set(identities[0] as string, 'train');
  } else if (identities.length >= 2 && testFraction > 0 && testFraction < 1) {
    const ranked = [...identities].sort((a, b) => (u.get(a) as number) - (u.get(b) as number));
    const tests = identities.filter((id) => bySplit.get(id) === 'test').length;
    if (tests === 0) bySplit.set(ranked[0] as string, 'test');
    if (tests === identities.length) bySplit.set(ranked[ranked.length - 1] as string, 'train');
  }
  return new Map(clips.map((c) => [c.id, bySplit.get(c.identity) as Split]));
}

/** A clip id from a listed file name: directory and video extension removed (`HDTF/RD_Radio34_003.mp4` → `RD_Radio34_003`). */
export function clipIdFromListedName(name: string): string {
  const base = path.posix.basename(name.replace(/\\/g, '/'));
  return base.replace(/\.(mp4|mkv|webm|mov|avi|m4v)$/i, '');
}

const DERIVED_HEADER = /^#\s*split\tdifftalk_video_id\t/;

/**
 * Parse a split file. Formats (blank lines and `#` comments ignored, fields separated by spaces or tabs):
 * 1. `<clip_id> <train|test>` per line → explicit assignments (every prepared clip must be listed).
 * 2. One clip file name per line (DiffTalk's data/train_name.txt, e.g. `RD_Radio34_003.mp4`) → those clips are
 *    train, every other clip is test. Directories and the video extension are stripped.
 * 3. The project's derived table (../shared/data/hdtf/difftalk_split_derived.tsv, recognised by its
 *    `# split\tdifftalk_video_id…` header): its train rows with a known clip name form a train list as in 2.
 * Mixed or malformed files are an error naming the first bad line.
 */
export function parseSplitFile(text: string, source = 'split file'): SplitFile {
  const raw = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  if (raw.some((l) => DERIVED_HEADER.test(l))) return parseDerivedTable(raw, source);
  const lines = raw.map((l, i) => ({ n: i + 1, fields: l.replace(/#.*$/, '').trim().split(/\s+/).filter(Boolean) })).filter((l) => l.fields.length > 0);
  if (lines.length === 0) throw new DifftalkError('split-file-invalid', `${source} lists no clips`);
  const twoColumn = (lines[0] as { fields: string[] }).fields.length === 2;
  if (twoColumn) {
    const assignments = new Map<string, Split>();
    for (const { n, fields } of lines) {
      const [id, split] = fields;
      if (fields.length !== 2 || (split !== 'train' && split !== 'test')) {
        throw new DifftalkError('split-file-invalid', `${source} line ${n}: expected '<clip_id> <train|test>', got '${fields.join(' ')}'`);
      }
      const clipId = clipIdFromListedName(id as string);
      const prev = assignments.get(clipId);
      if (prev !== undefined && prev !== split) {
        throw new DifftalkError('split-file-invalid', `${source} line ${n}: clip ${clipId} is listed as both ${prev} and ${split}`);
      }
      assignments.set(clipId, split);
    }
    return { kind: 'assignments', source, assignments };
  }
  const train = new Set<string>();
  for (const { n, fields } of lines) {
    if (fields.length !== 1) {
      throw new DifftalkError('split-file-invalid', `${source} line ${n}: expected one clip file name per line (train list) but got '${fields.join(' ')}'`, {
        suggestion: "use either one clip name per line (train list) or '<clip_id> <train|test>' on every line",
      });
    }
    train.add(clipIdFromListedName(fields[0] as string));
  }
  return { kind: 'train-list', source, train };
}

function parseDerivedTable(raw: string[], source: string): SplitFile {
  const train = new Set<string>();
  raw.forEach((line, i) => {
    if (!line.trim() || line.startsWith('#')) return;
    const cols = line.split('\t');
    const split = cols[0];
    const name = cols[5]?.trim();
    if (cols.length < 6 || (split !== 'train' && split !== 'test') || !name) {
      throw new DifftalkError('split-file-invalid', `${source} line ${i + 1}: not a row of the derived DiffTalk split table`);
    }
    if (split === 'train' && name !== 'unknown') train.add(name);
  });
  if (train.size === 0) throw new DifftalkError('split-file-invalid', `${source} names no train clips`);
  return { kind: 'train-list', source, train };
}

/** Read and parse a --split-file. */
export async function readSplitFile(file: string): Promise<SplitFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new DifftalkError('split-file-invalid', `cannot read split file ${file}: ${(e as Error).message}`, { cause: e });
  }
  return parseSplitFile(text, path.basename(file));
}

/** Apply a parsed split file to the clips (assignments: a clip missing from the file is an error). */
export function applySplitFile(clips: readonly SplitClip[], file: SplitFile): Map<string, Split> {
  if (file.kind === 'train-list') return new Map(clips.map((c) => [c.id, file.train.has(c.id) ? 'train' : 'test']));
  const missing = clips.filter((c) => !file.assignments.has(c.id)).map((c) => c.id);
  if (missing.length > 0) {
    throw new DifftalkError(
      'split-file-invalid',
      `${file.source} does not assign ${missing.length} clip(s): ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`,
      { suggestion: "add '<clip_id> train' or '<clip_id> test' lines for them" },
    );
  }
  return new Map(clips.map((c) => [c.id, file.assignments.get(c.id) as Split]));
}

/** Identities that have clips in both train and test (sorted). */
export function findIdentityLeaks(clips: readonly (SplitClip & { split: Split })[]): string[] {
  const seen = new Map<string, Set<Split>>();
  for (const c of clips) {
    const s = seen.get(c.identity) ?? new Set<Split>();
    s.add(c.split);
    seen.set(c.identity, s);
  }
  return [...seen]
    .filter(([, s]) => s.size > 1)
    .map(([id]) => id)
    .sort();
}

/** Throw a DifftalkError('split-identity-leak') naming the leaking identities, if any. */
export function assertNoIdentityLeak(clips: readonly (SplitClip & { split: Split })[], context = 'split'): void {
  const leaks = findIdentityLeaks(clips);
  if (leaks.length > 0) {
    throw new DifftalkError(
      'split-identity-leak',
      `${context}: ${leaks.length} identit${leaks.length === 1 ? 'y is' : 'ies are'} in both train and test: ${leaks.slice(0, 8).join(', ')}${leaks.length > 8 ? ', …' : ''}`,
      { suggestion: 'assign all clips of a person to one split, or pass allowIdentityLeak (--allow-identity-leak) knowingly' },
    );
  }
}

/** The split of every clip: the split file if given, else the identity hash; identity leaks are an error unless allowed. */
export function resolveSplits(clips: readonly SplitClip[], opts: SplitOptions = {}): SplitResult {
  const ids = new Set<string>();
  for (const c of clips) {
    if (ids.has(c.id)) throw new DifftalkError('bad-argument', `clip id ${c.id} appears twice`);
    ids.add(c.id);
  }
  const splits = opts.splitFile ? applySplitFile(clips, opts.splitFile) : splitByIdentity(clips, opts);
  const labelled = clips.map((c) => ({ ...c, split: splits.get(c.id) as Split }));
  if (!opts.allowIdentityLeak) assertNoIdentityLeak(labelled, opts.splitFile ? opts.splitFile.source : 'identity split');
  return { splits, leaks: findIdentityLeaks(labelled), method: opts.splitFile ? 'split-file' : 'identity-hash' };
}
