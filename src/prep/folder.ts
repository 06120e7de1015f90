/**
 * folder: the state of a prep output folder, read and checked before any work and written one record at a time.
 *   - ownership: empty, or created by prep (prep-config.json); anything else only with `force`;
 *   - prep-config.json: the data-determining settings (with the landmark model and the set of inputs) of the run
 *     that started the folder; a run with others is refused (or, with `force`, the folder is started over);
 *   - work/<clip>/status.json: one clip's record, written last (the clip's resume mark).
 * Temp files of killed runs (`.<name>.<pid>.<hex>.tmp`, util/fs.ts) are swept when the folder is opened.
 */
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { DifftalkError } from '../util/errors.js';
import { checkOutputFolder, exists, readJson, sweepTempFiles, writeJsonAtomic } from '../util/fs.js';
import type { DatasetClip } from '../dataset/manifest.js';

/** A clip's record as written to work/<clip>/status.json: the dataset.json record plus the stage timings. */
export interface ClipStatus extends DatasetClip {
  seconds?: Record<string, number>;
}

export const CONFIG_FILE = 'prep-config.json';
const STATUS_FILE = 'status.json';
/** What prep writes that depends on the settings: removed by a --force restart (downloads/ is kept: it does not). */
const OWN_ENTRIES = [CONFIG_FILE, 'dataset.json', 'shards', 'work', 'previews'];
/** A clip's work folder (normalised media while it is prepared, then only its status file). */
export const clipWorkDir = (out: string, id: string): string => path.join(out, 'work', id);
const statusFile = (out: string, id: string) => path.join(clipWorkDir(out, id), STATUS_FILE);

/**
 * Before any work: the output folder is empty, or was created by prep (prep-config.json); `force` allows anything
 * else (util/fs.ts checkOutputFolder, the rule of every command that fills a folder). Temp files of earlier killed
 * runs are swept.
 */
export async function checkPrepFolder(out: string, force: boolean): Promise<void> {
  await checkOutputFolder(out, { marker: CONFIG_FILE, creator: 'difftalk prep', force, forceNote: 'files named like prep outputs are replaced' });
  await mkdir(out, { recursive: true });
  await sweepTempFiles(out, 3);
}

/**
 * Refuse to mix two configurations (settings, landmark model, set of inputs) in one output folder, before any work.
 * With `force` the earlier run's outputs are removed and the run starts over. Writes prep-config.json.
 */
export async function checkStoredConfig(out: string, stored: Record<string, unknown>, force: boolean): Promise<void> {
  const file = path.join(out, CONFIG_FILE);
  if (await exists(file)) {
    const prev = await readJson<Record<string, unknown>>(file);
    const differing = Object.keys({ ...prev, ...stored }).filter((k) => JSON.stringify(prev[k]) !== JSON.stringify(stored[k]));
    if (differing.length === 0) return;
    if (!force) {
      throw new DifftalkError(
        'config-mismatch',
        `${out} was prepared with different settings (${differing.join(', ')}); its shards would mix two configurations. Nothing was written`,
        { suggestion: 'use another --out folder, rerun with the settings recorded in prep-config.json, or --force to start this folder over' },
      );
    }
    for (const e of OWN_ENTRIES) await rm(path.join(out, e), { recursive: true, force: true });
  }
  await writeJsonAtomic(file, stored);
}

/** A clip's status record, or undefined when the clip was not finished (never started, or stopped part-way). */
export async function readClipStatus(out: string, id: string): Promise<ClipStatus | undefined> {
  const file = statusFile(out, id);
  return (await exists(file)) ? await readJson<ClipStatus>(file) : undefined;
}

/** Write a clip's status record (atomic): from here on the clip counts as finished or dropped. */
export function writeClipStatus(out: string, status: ClipStatus): Promise<void> {
  return writeJsonAtomic(statusFile(out, status.id), status);
}
