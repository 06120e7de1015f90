/**
 * Checkpoints: `<run>/ckpt-<step:08d>/` with `model.safetensors` (weights in PyTorch layout and names, EMA included),
 * `optimizer.safetensors` (AdamW moments) and `state.json` (config, step, seed, optimizer hyper-parameters and step,
 * EMA counter, training options, loss history). The folder is written under a temporary name and renamed, then
 * `<run>/latest.json` is replaced atomically; a run killed at any moment leaves the previous checkpoint usable.
 */
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { DifftalkError } from '../util/errors.js';
import { exists, readJson, writeJsonAtomic } from '../util/fs.js';
import { readSafetensors, writeSafetensors } from '../weights/safetensors.js';
import type { TensorData } from '../weights/torch.js';

export const LATEST = 'latest.json';

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

export async function saveCheckpoint<S extends { step: number }>(
  runDir: string,
  state: S,
  model: Map<string, TensorData>,
  optimizer: Map<string, TensorData> | undefined,
  opts: { keepLast?: number } = {},
): Promise<string> {
  const name = ckptName(state.step);
  const dir = path.join(runDir, name);
  const tmp = path.join(runDir, `.${name}.tmp-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await writeSafetensors(path.join(tmp, 'model.safetensors'), model, { format: 'pt' });
  if (optimizer) await writeSafetensors(path.join(tmp, 'optimizer.safetensors'), optimizer);
  await writeJsonAtomic(path.join(tmp, 'state.json'), state);
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
  await writeJsonAtomic(path.join(runDir, LATEST), { checkpoint: name, step: state.step } satisfies LatestPointer);
  const keep = opts.keepLast ?? 3;
  const all = (await readdir(runDir)).filter((n) => /^ckpt-\d{8}$/.test(n)).sort();
  for (const old of all.slice(0, Math.max(0, all.length - keep))) await rm(path.join(runDir, old), { recursive: true, force: true });
  return dir;
}

/** The checkpoint folder a path names: a checkpoint folder itself, or a run folder with latest.json. */
export async function resolveCheckpoint(p: string): Promise<string | undefined> {
  if (await exists(path.join(p, 'state.json'))) return p;
  if (await exists(path.join(p, LATEST))) {
    const latest = await readJson<LatestPointer>(path.join(p, LATEST));
    const dir = path.join(p, latest.checkpoint);
    if (!(await exists(path.join(dir, 'state.json'))))
      throw new DifftalkError('checkpoint-missing', `${path.join(p, LATEST)} points at ${latest.checkpoint}, which is missing`);
    return dir;
  }
  return undefined;
}

export async function loadCheckpoint<S>(p: string, opts: { optimizer?: boolean } = {}): Promise<SavedCheckpoint<S>> {
  const dir = await resolveCheckpoint(p);
  if (!dir)
    throw new DifftalkError('checkpoint-missing', `${p} is neither a checkpoint folder nor a run folder with ${LATEST}`, {
      suggestion: 'pass the --out folder of `difftalk train`',
    });
  const state = await readJson<S>(path.join(dir, 'state.json'));
  const model = (await readSafetensors(path.join(dir, 'model.safetensors'))).tensors;
  const optimizer = opts.optimizer ? (await readSafetensors(path.join(dir, 'optimizer.safetensors'))).tensors : undefined;
  return { dir, state, model, optimizer };
}
