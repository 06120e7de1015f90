/**
 * Checkpoints, one format for every trainer (LDM, autoencoder, SyncNet): `<run>/ckpt-<step:08d>/` with
 * `model.safetensors` (weights in PyTorch layout and names, EMA included; a trainer may add metadata, e.g. SyncNet's
 * config), `optimizer.safetensors` (AdamW moments) and `state.json` (run config, step, seed,
 * optimizer hyper-parameters and step, EMA counter, training options, first-stage pin, loss history).
 *
 * Write order (a run killed at any moment leaves the previous checkpoint usable, never a half-written one):
 * 1. the folder is written under `.ckpt-<step>.tmp-<pid>` and renamed to its name (an existing folder of the same step
 *    is moved aside first and deleted only after the pointer update);
 * 2. `<run>/latest.json` is replaced atomically;
 * 3. only then are checkpoints beyond `keepLast` removed.
 *
 * Resume policy: `latest.json` must exist, parse and point at an intact checkpoint, else a DifftalkError says how to
 * recover (`--resume-from <checkpoint dir|step>`, e.g. the newest intact one `newestIntactCheckpoint` finds). Temp files
 * of killed runs are swept on resume (`sweepRunTemp`). A run folder carries `difftalk-run.json` (RUN_MARKER) so a
 * non-empty folder that difftalk did not create is never written into without --force.
 */
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { DifftalkError } from '../util/errors.js';
import { exists, writeJsonAtomic } from '../util/fs.js';
import { readSafetensors, writeSafetensors } from '../weights/safetensors.js';
import type { TensorData } from '../weights/torch.js';

export const LATEST = 'latest.json';
/** Marker file of a folder difftalk created as a run folder. */
export const RUN_MARKER = 'difftalk-run.json';
const CKPT_RE = /^ckpt-\d{8}$/;
/** Largest state.json / latest.json read (the loss history of a long run fits easily). */
const MAX_JSON_BYTES = 256 * 1024 * 1024;

export interface LatestPointer {
  checkpoint: string;
  step: number;
}

export const ckptName = (step: number): string => `ckpt-${String(step).padStart(8, '0')}`;

export interface SavedCheckpoint<S> {
  dir: string;
  state: S;
  model: Map<string, TensorData>;
  optimizer?: Map<string, TensorData>;
}

/**
 * Parse a JSON file written by difftalk: a missing, oversized, truncated or malformed file, or one holding a
 * non-finite number (JSON has none; a hand edit or a foreign writer may write `NaN`/`1e999`), is one DifftalkError.
 */
export async function readCheckedJson<T>(file: string, what: string): Promise<T> {
  let text: string;
  try {
    const st = await stat(file);
    if (!st.isFile()) throw new DifftalkError('checkpoint-corrupt', `${what} ${file} is not a file`);
    if (st.size > MAX_JSON_BYTES) throw new DifftalkError('checkpoint-corrupt', `${what} ${file} is ${st.size} bytes, more than a checkpoint's JSON can be`);
    text = await readFile(file, 'utf8');
  } catch (e) {
    if (e instanceof DifftalkError) throw e;
    throw new DifftalkError('checkpoint-missing', `${what} ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text, (_k, v: unknown) => {
      if (typeof v === 'number' && !Number.isFinite(v)) throw new RangeError('non-finite number');
      return v;
    });
  } catch (e) {
    throw new DifftalkError('checkpoint-corrupt', `${what} ${file} is not valid JSON (${(e as Error).message})`, {
      suggestion: 'the file is truncated or was edited; use another checkpoint of the run (--resume-from <checkpoint dir|step>)',
    });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new DifftalkError('checkpoint-corrupt', `${what} ${file} is not a JSON object`);
  return value as T;
}

/** Whether `dir` is a complete checkpoint (state.json parses, weights present). */
async function intact(dir: string, optimizer: boolean): Promise<boolean> {
  try {
    const s = await readCheckedJson<{ step?: unknown }>(path.join(dir, 'state.json'), 'state');
    if (typeof s.step !== 'number') return false;
    if (!(await exists(path.join(dir, 'model.safetensors')))) return false;
    return !optimizer || (await exists(path.join(dir, 'optimizer.safetensors')));
  } catch {
    return false;
  }
}

/** The checkpoint folders of a run, oldest first. */
export async function listCheckpoints(runDir: string): Promise<string[]> {
  return (await readdir(runDir).catch(() => [] as string[])).filter((n) => CKPT_RE.test(n)).sort();
}

/** The newest checkpoint of a run that is complete (for `--resume-from` after a broken latest.json), or undefined. */
export async function newestIntactCheckpoint(runDir: string): Promise<string | undefined> {
  for (const n of (await listCheckpoints(runDir)).reverse()) if (await intact(path.join(runDir, n), true)) return path.join(runDir, n);
  return undefined;
}

/** Remove what killed runs left behind: `.ckpt-*.tmp-*` folders and `.*.tmp` files of atomic writes, in the run folder. */
export async function sweepRunTemp(runDir: string): Promise<string[]> {
  const swept: string[] = [];
  for (const n of await readdir(runDir).catch(() => [] as string[])) {
    if (/^\.ckpt-\d{8}\.(tmp|old)-\d+$/.test(n) || /^\..+\.tmp$/.test(n)) {
      await rm(path.join(runDir, n), { recursive: true, force: true });
      swept.push(n);
    }
  }
  return swept;
}

export async function saveCheckpoint<S extends { step: number }>(
  runDir: string,
  state: S,
  model: Map<string, TensorData>,
  optimizer: Map<string, TensorData> | undefined,
  opts: { keepLast?: number; keep?: ReadonlySet<string>; metadata?: Record<string, string> } = {},
): Promise<string> {
  const name = ckptName(state.step);
  const dir = path.join(runDir, name);
  const tmp = path.join(runDir, `.${name}.tmp-${process.pid}`);
  const old = path.join(runDir, `.${name}.old-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await writeSafetensors(path.join(tmp, 'model.safetensors'), model, { ...opts.metadata, format: 'pt' });
  if (optimizer) await writeSafetensors(path.join(tmp, 'optimizer.safetensors'), optimizer);
  await writeJsonAtomic(path.join(tmp, 'state.json'), state);
  // a folder of the same step (a re-save) is moved aside, not deleted, until the new one is in place
  const replaced = await exists(dir);
  if (replaced) await rename(dir, old);
  await rename(tmp, dir);
  await writeJsonAtomic(path.join(runDir, LATEST), { checkpoint: name, step: state.step } satisfies LatestPointer);
  if (replaced) await rm(old, { recursive: true, force: true });
  const keep = opts.keepLast ?? 3;
  const all = await listCheckpoints(runDir);
  for (const o of all.slice(0, Math.max(0, all.length - keep))) if (!opts.keep?.has(o)) await rm(path.join(runDir, o), { recursive: true, force: true });
  return dir;
}

const RECOVER = (runDir: string) =>
  `resume from an intact checkpoint explicitly: --resume-from ${runDir}/ckpt-<step> (or --resume-from <step>); ` + 'or start a new run in another --out folder';

/**
 * The checkpoint folder a path names: a checkpoint folder itself, or a run folder with latest.json; undefined when
 * it is neither. A latest.json that is corrupt or dangling is an error (never "no checkpoint").
 */
export async function resolveCheckpoint(p: string): Promise<string | undefined> {
  if (await exists(path.join(p, 'state.json'))) return p;
  if (await exists(path.join(p, LATEST))) {
    const latest = await readCheckedJson<Partial<LatestPointer>>(path.join(p, LATEST), 'checkpoint pointer').catch((e: unknown) => {
      throw new DifftalkError('checkpoint-corrupt', (e as Error).message, { suggestion: RECOVER(p) });
    });
    if (typeof latest.checkpoint !== 'string' || !CKPT_RE.test(latest.checkpoint))
      throw new DifftalkError('checkpoint-corrupt', `${path.join(p, LATEST)} does not name a checkpoint folder`, { suggestion: RECOVER(p) });
    const dir = path.join(p, latest.checkpoint);
    if (!(await exists(path.join(dir, 'state.json'))))
      throw new DifftalkError('checkpoint-missing', `${path.join(p, LATEST)} points at ${latest.checkpoint}, which is missing`, { suggestion: RECOVER(p) });
    return dir;
  }
  return undefined;
}

/**
 * The checkpoint a resumed run continues from. `from` (--resume-from): a checkpoint folder, or a step number of this
 * run; without it latest.json, which must exist and be intact.
 */
export async function resumeCheckpoint(runDir: string, from?: string): Promise<string> {
  if (from !== undefined) {
    const dir = /^\d+$/.test(from) ? path.join(runDir, ckptName(Number(from))) : path.resolve(from);
    if (!(await intact(dir, true)))
      throw new DifftalkError('checkpoint-missing', `${dir} is not a complete checkpoint`, {
        suggestion: `the newest intact one is ${(await newestIntactCheckpoint(runDir)) ?? '(none)'}`,
      });
    return dir;
  }
  if (!(await exists(path.join(runDir, LATEST)))) {
    const newest = await newestIntactCheckpoint(runDir);
    throw new DifftalkError('checkpoint-missing', `--resume: ${runDir} has no ${LATEST}`, {
      suggestion: newest ? `${RECOVER(runDir)}; the newest intact checkpoint is ${newest}` : 'it holds no checkpoint; start without --resume',
    });
  }
  const dir = (await resolveCheckpoint(runDir))!;
  if (!(await intact(dir, true)))
    throw new DifftalkError('checkpoint-corrupt', `${dir} (named by ${LATEST}) is incomplete or corrupt`, { suggestion: RECOVER(runDir) });
  return dir;
}

export async function loadCheckpoint<S>(p: string, opts: { optimizer?: boolean } = {}): Promise<SavedCheckpoint<S>> {
  const dir = await resolveCheckpoint(p);
  if (!dir)
    throw new DifftalkError('checkpoint-missing', `${p} is neither a checkpoint folder nor a run folder with ${LATEST}`, {
      suggestion: 'pass the --out folder of `difftalk train`',
    });
  const state = await readCheckedJson<S>(path.join(dir, 'state.json'), 'checkpoint state');
  const model = (await readSafetensors(path.join(dir, 'model.safetensors'))).tensors;
  const optimizer = opts.optimizer ? (await readSafetensors(path.join(dir, 'optimizer.safetensors'))).tensors : undefined;
  return { dir, state, model, optimizer };
}
