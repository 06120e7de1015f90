/**
 * dataset-manifest: `<dataset>/dataset.json`, the index of a prepared dataset (schema: manifests/dataset.schema.json).
 * - writeDatasetManifest / readDatasetManifest (atomic write, version check);
 * - summarizeClips: the split/drop/total counts derived from the clip list (never hand-kept);
 * - mergeManifests: join the outputs of array jobs (disjoint clip sets, one config) into one dataset.
 */
import { copyFile, link, mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { DifftalkError } from '../util/errors.js';
import { tempPathFor, writeJsonAtomic } from '../util/fs.js';
import { VERSION } from '../util/version.js';
import type { DropReason } from '../util/result.js';
import { assertNoIdentityLeak, type Split } from './split.js';
import { SHARD_SCHEMA_VERSION } from './shard-writer.js';

export const DATASET_MANIFEST_VERSION = 1;
export const DATASET_MANIFEST_FILE = 'dataset.json';

export interface DatasetClip {
  id: string;
  identity: string;
  subset?: 'RD' | 'WDA' | 'WRA';
  /** Source: HDTF video name or the input file. */
  source?: string;
  split: Split;
  status: 'done' | 'dropped';
  /** Rows written (= frames of the prepared clip); 0 when dropped before frames existed. */
  frames: number;
  /** Shard paths relative to the dataset directory; empty when dropped. */
  shards: string[];
  drop_reason?: DropReason;
  drop_message?: string;
  /** Non-fatal facts about the clip: clamped crop box, crop jitter, trailing spaces in annotations, ... */
  notes: string[];
  /** Measured facts of a finished clip (machine-readable). */
  stats?: ClipStats;
}

export interface ClipStats {
  /** Crop box applied, in pixels of the source video, and whether it had to be clamped to the frame. */
  crop: { x: number; y: number; w: number; h: number };
  crop_clamped: boolean;
  /** Landmark jitter in pixels of the stored frame (landmarks/smoothing.ts `jitter`), raw and smoothed. */
  jitter_raw_px: number;
  jitter_smoothed_px: number;
  /** Frames without exactly one face. */
  bad_frames: number;
  source_width: number;
  source_height: number;
}

export interface DatasetSummary {
  splits: Record<Split, { clips: number; frames: number; identities: number }>;
  drop_reasons: Partial<Record<DropReason, number>>;
  totals: { clips: number; done: number; dropped: number; frames: number; identities: number };
}

export interface DatasetManifest extends DatasetSummary {
  /** Version of this file's layout (DATASET_MANIFEST_VERSION). */
  manifest_version: number;
  /** Arrow shard schema version (SHARD_SCHEMA_VERSION). */
  schema_version: string;
  tool_version: string;
  /** ISO-8601 UTC. */
  created: string;
  /**
   * Every option that determines the data: fps, size, image format/quality, shard rows, landmark engine/model/
   * smoothing, audio feature extractors and parameters, reference sampler and seed, split method and seed, ...
   * Free-form JSON owned by the prep pipeline; compared as a whole by mergeManifests.
   */
  config: Record<string, unknown>;
  /**
   * Per-run settings that do not change the data (workers, --shard-index/--num-shards of an array job, host, ...).
   * Kept out of `config` so that array jobs' configs compare equal; dropped by mergeManifests.
   */
  job?: Record<string, unknown>;
  clips: DatasetClip[];
  /** Directories merged into this one by `difftalk prep merge`, when it was made that way. */
  merged_from?: string[];
}

/** Counts derived from the clips. */
export function summarizeClips(clips: readonly DatasetClip[]): DatasetSummary {
  const splits: DatasetSummary['splits'] = {
    train: { clips: 0, frames: 0, identities: 0 },
    test: { clips: 0, frames: 0, identities: 0 },
  };
  const ids: Record<Split, Set<string>> = { train: new Set(), test: new Set() };
  const drop_reasons: DatasetSummary['drop_reasons'] = {};
  let done = 0;
  let frames = 0;
  for (const c of clips) {
    if (c.status === 'done') {
      done++;
      frames += c.frames;
      splits[c.split].clips++;
      splits[c.split].frames += c.frames;
      ids[c.split].add(c.identity);
    } else {
      const r = c.drop_reason ?? 'clip-failed';
      drop_reasons[r] = (drop_reasons[r] ?? 0) + 1;
    }
  }
  splits.train.identities = ids.train.size;
  splits.test.identities = ids.test.size;
  const sorted = Object.fromEntries(Object.entries(drop_reasons).sort(([a], [b]) => a.localeCompare(b)));
  return {
    splits,
    drop_reasons: sorted,
    totals: {
      clips: clips.length,
      done,
      dropped: clips.length - done,
      frames,
      identities: new Set(clips.filter((c) => c.status === 'done').map((c) => c.identity)).size,
    },
  };
}

/** Build a manifest from config and clips (counts computed, clips sorted by id, created = now unless given). */
export function buildDatasetManifest(input: {
  config: Record<string, unknown>;
  clips: DatasetClip[];
  created?: string;
  toolVersion?: string;
  mergedFrom?: string[];
  job?: Record<string, unknown>;
}): DatasetManifest {
  const clips = [...input.clips].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const manifest: DatasetManifest = {
    manifest_version: DATASET_MANIFEST_VERSION,
    schema_version: SHARD_SCHEMA_VERSION,
    tool_version: input.toolVersion ?? VERSION,
    created: input.created ?? new Date().toISOString(),
    config: input.config,
    ...(input.job ? { job: input.job } : {}),
    ...summarizeClips(clips),
    clips,
  };
  if (input.mergedFrom) manifest.merged_from = input.mergedFrom;
  validateDatasetManifest(manifest, 'manifest');
  return manifest;
}

/** Structural checks with errors that name the bad field. */
export function validateDatasetManifest(m: DatasetManifest, source: string): void {
  const bad = (msg: string): never => {
    throw new DifftalkError('dataset-manifest-invalid', `${source}: ${msg}`);
  };
  if (typeof m !== 'object' || m === null) bad('not a JSON object');
  if (m.manifest_version !== DATASET_MANIFEST_VERSION) {
    bad(`manifest_version ${String(m.manifest_version)} is not ${DATASET_MANIFEST_VERSION} (written by another difftalk version?)`);
  }
  if (m.schema_version !== SHARD_SCHEMA_VERSION) {
    throw new DifftalkError(
      'shard-schema-mismatch',
      `${source}: shard schema version ${String(m.schema_version)}; this difftalk reads version ${SHARD_SCHEMA_VERSION}`,
      { suggestion: 'rerun `difftalk prep` with this version of difftalk' },
    );
  }
  if (typeof m.config !== 'object' || m.config === null || Array.isArray(m.config)) bad('config must be an object');
  if (m.job !== undefined && (typeof m.job !== 'object' || m.job === null || Array.isArray(m.job))) bad('job must be an object');
  if (!Array.isArray(m.clips)) bad('clips must be an array');
  const seen = new Set<string>();
  m.clips.forEach((c, i) => {
    const where = `clips[${i}]${typeof c?.id === 'string' ? ` (${c.id})` : ''}`;
    if (typeof c.id !== 'string' || !c.id) bad(`${where}.id must be a non-empty string`);
    if (seen.has(c.id)) bad(`clip id ${c.id} appears twice`);
    seen.add(c.id);
    if (typeof c.identity !== 'string' || !c.identity) bad(`${where}.identity must be a non-empty string`);
    if (c.split !== 'train' && c.split !== 'test') bad(`${where}.split must be 'train' or 'test'`);
    if (c.status !== 'done' && c.status !== 'dropped') bad(`${where}.status must be 'done' or 'dropped'`);
    if (!Number.isInteger(c.frames) || c.frames < 0) bad(`${where}.frames must be a non-negative integer`);
    if (!Array.isArray(c.shards) || c.shards.some((s) => typeof s !== 'string' || !/^shards\/[^/\\]+\.arrow$/.test(s))) {
      bad(`${where}.shards must be paths 'shards/<name>.arrow'`);
    }
    if (c.status === 'done' && c.shards.length === 0) bad(`${where} is done but lists no shards`);
    if (c.status === 'dropped' && !c.drop_reason) bad(`${where} is dropped without a drop_reason`);
    if (!Array.isArray(c.notes)) bad(`${where}.notes must be an array`);
    if (c.stats !== undefined && (typeof c.stats !== 'object' || c.stats === null)) bad(`${where}.stats must be an object`);
  });
}

/** Write `<dir>/dataset.json` atomically. */
export async function writeDatasetManifest(dir: string, manifest: DatasetManifest): Promise<string> {
  validateDatasetManifest(manifest, DATASET_MANIFEST_FILE);
  const file = path.join(dir, DATASET_MANIFEST_FILE);
  await writeJsonAtomic(file, manifest);
  return file;
}

/** Read and validate `<dir>/dataset.json`. */
export async function readDatasetManifest(dir: string): Promise<DatasetManifest> {
  const file = path.join(dir, DATASET_MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new DifftalkError('dataset-missing', `cannot read ${file}: ${(e as Error).message}`, {
      suggestion: 'run `difftalk prep` first, or point at the dataset directory',
      cause: e,
    });
  }
  let m: DatasetManifest;
  try {
    m = JSON.parse(text) as DatasetManifest;
  } catch (e) {
    throw new DifftalkError('dataset-manifest-invalid', `${file} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  validateDatasetManifest(m, file);
  return m;
}

/** Canonical JSON (object keys sorted) for comparing configs. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, value: unknown) =>
    value && typeof value === 'object' && !Array.isArray(value)
      ? Object.fromEntries(Object.entries(value as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
      : value,
  );
}

function configDiff(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  return keys.filter((k) => canonical(a[k]) !== canonical(b[k]));
}

async function placeFile(src: string, dest: string): Promise<void> {
  await mkdir(path.dirname(dest), { recursive: true });
  const tmp = tempPathFor(dest);
  try {
    try {
      await link(src, tmp);
    } catch {
      await copyFile(src, tmp);
    }
    await rename(tmp, dest);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/**
 * Merge the dataset.json of several prep outputs (e.g. array jobs) into `<outDir>/dataset.json`.
 * - configs, schema versions and tool versions must be identical (`job` is ignored and not carried over) (else 'dataset-merge-conflict' naming the keys);
 * - a clip id in several inputs is an error unless the entries are identical (then it is kept once);
 * - every shard of a done clip must exist; shards of inputs other than outDir are hard-linked (or copied) into
 *   `<outDir>/shards/`;
 * - an identity in both train and test after merging is an error ('split-identity-leak').
 */
export async function mergeManifests(dirs: string[], outDir: string): Promise<DatasetManifest> {
  if (dirs.length === 0) throw new DifftalkError('bad-argument', 'nothing to merge: no dataset directories given');
  const inputs: { dir: string; m: DatasetManifest }[] = [];
  for (const dir of dirs) inputs.push({ dir, m: await readDatasetManifest(dir) });
  const first = inputs[0] as { dir: string; m: DatasetManifest };
  for (const { dir, m } of inputs.slice(1)) {
    const diff = configDiff(first.m.config, m.config);
    if (diff.length > 0) {
      throw new DifftalkError('dataset-merge-conflict', `${dir} was prepared with a different config than ${first.dir} (differing keys: ${diff.join(', ')})`, {
        suggestion: 'merge only outputs of the same `difftalk prep` command (same manifest and flags)',
      });
    }
    if (m.tool_version !== first.m.tool_version) {
      throw new DifftalkError('dataset-merge-conflict', `${dir} was written by difftalk ${m.tool_version}, ${first.dir} by ${first.m.tool_version}`, {
        suggestion: 'prepare all parts with the same difftalk version',
      });
    }
  }
  const byId = new Map<string, { dir: string; clip: DatasetClip }>();
  for (const { dir, m } of inputs) {
    for (const clip of m.clips) {
      const prev = byId.get(clip.id);
      if (prev) {
        if (!isDeepStrictEqual(prev.clip, clip)) {
          throw new DifftalkError('dataset-merge-conflict', `clip ${clip.id} differs between ${prev.dir} and ${dir}`, {
            suggestion: 'array jobs must prepare disjoint clip sets (--shard-index/--num-shards)',
          });
        }
        continue;
      }
      byId.set(clip.id, { dir, clip });
    }
  }
  const outAbs = path.resolve(outDir);
  for (const { dir, clip } of byId.values()) {
    if (clip.status !== 'done') continue;
    for (const shard of clip.shards) {
      const src = path.join(dir, shard);
      try {
        await stat(src);
      } catch {
        throw new DifftalkError('dataset-merge-conflict', `clip ${clip.id}: shard ${src} is missing`, {
          suggestion: 'rerun the prep job that wrote this clip',
        });
      }
      if (path.resolve(dir) !== outAbs) await placeFile(src, path.join(outDir, shard));
    }
  }
  const clips = [...byId.values()].map((v) => v.clip);
  assertNoIdentityLeak(clips, 'merged dataset');
  const merged = buildDatasetManifest({
    config: first.m.config,
    clips,
    toolVersion: first.m.tool_version,
    mergedFrom: dirs.map((d) => path.resolve(d)),
  });
  await writeDatasetManifest(outDir, merged);
  return merged;
}
