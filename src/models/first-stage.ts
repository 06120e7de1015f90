/**
 * The frozen first stage used by LDM training and rendering: a `difftalk train autoencoder` run/checkpoint (config
 * from its state.json) or an LDM VQ checkpoint file (`vq-f4` model.ckpt, .pt, .safetensors) with a preset's VQ config.
 *
 * Pinning (FirstStagePin): an LDM run pins its first stage by the sha256 of its weights file and a path. An autoencoder
 * checkpoint is copied into the LDM run (`<run>/first-stage/`, run-relative path), so continuing the autoencoder run
 * (which prunes its old checkpoints) never breaks the LDM run, and render/resume work from any cwd. A weights file
 * (often hundreds of MB) is pinned by its absolute path and hash instead; a changed or moved file is an error.
 */
import { copyFile, mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { DifftalkError } from '../util/errors.js';
import { exists, sha256File } from '../util/fs.js';
import type { TensorData } from '../weights/torch.js';
import { resolveCheckpoint, loadCheckpoint } from './checkpoint.js';
import { Params } from './blocks.js';
import { loadVqWeights, vqParamSpecs, type VqConfig } from './vq-f4.js';
import type { DifftalkConfig } from './presets.js';

export interface FirstStage {
  params: Params;
  config: VqConfig;
  /** Face crop side the first stage was trained for. */
  imageSize: number;
  /** Content id (sha256 of the weights file) for latent-cache keys and provenance. */
  id: string;
  source: string;
}

/** How a checkpoint names its first stage: `path` is absolute or relative to the run folder. */
export interface FirstStagePin {
  /** Where the user's first stage came from (absolute; provenance only). */
  source: string;
  /** sha256 of the weights file. */
  id: string;
  /** Absolute, or relative to the run folder (the copy in `<run>/first-stage`). Absent in runs saved before pinning. */
  path?: string;
}

/** Folder name of the pinned copy of an autoencoder checkpoint inside an LDM run. */
export const PINNED_FIRST_STAGE = 'first-stage';

export async function loadFirstStage(source: string, fallback: { vq: VqConfig; imageSize: number }): Promise<FirstStage> {
  const st = await stat(source).catch(() => undefined);
  if (!st)
    throw new DifftalkError('first-stage-missing', `first-stage weights ${source} not found`, {
      suggestion: 'train one with `difftalk train autoencoder`, or pass LDM vq-f4 model.ckpt',
    });
  const ckpt = await resolveCheckpoint(source);
  if (ckpt) {
    const saved = await loadCheckpoint<{ kind: string; config: DifftalkConfig }>(ckpt);
    if (saved.state.kind !== 'autoencoder')
      throw new DifftalkError('first-stage-wrong-kind', `${source} is a '${saved.state.kind}' checkpoint, not an autoencoder`);
    const cfg = saved.state.config;
    if (!cfg || typeof cfg !== 'object' || !cfg.vq || typeof cfg.imageSize !== 'number')
      throw new DifftalkError('checkpoint-corrupt', `${ckpt}/state.json has no first-stage config`);
    const params = new Params(vqParamSpecs(cfg.vq), 'init', 0, { trainable: false });
    params.loadTorch(saved.model as Map<string, TensorData>, { source: ckpt });
    return { params, config: cfg.vq, imageSize: cfg.imageSize, id: await sha256File(path.join(ckpt, 'model.safetensors')), source: ckpt };
  }
  if (st.isDirectory())
    throw new DifftalkError('first-stage-not-checkpoint', `${source} is a folder but neither an autoencoder run (latest.json) nor a checkpoint (state.json)`, {
      suggestion: 'pass the --out folder of `difftalk train autoencoder`, one of its ckpt-* folders, or a vq-f4 weights file',
    });
  const params = await loadVqWeights(source, fallback.vq);
  return { params, config: fallback.vq, imageSize: fallback.imageSize, id: await sha256File(source), source: path.resolve(source) };
}

/**
 * Pin a loaded first stage for the run in `runDir`: copy an autoencoder checkpoint into `<runDir>/first-stage/`
 * (verified by hash), or keep a weights file's absolute path.
 */
export async function pinFirstStage(runDir: string, fs: FirstStage): Promise<FirstStagePin> {
  const source = path.resolve(fs.source);
  if (!(await exists(path.join(source, 'state.json')))) return { source, id: fs.id, path: source };
  const dest = path.join(runDir, PINNED_FIRST_STAGE);
  const tmp = path.join(runDir, `.${PINNED_FIRST_STAGE}.tmp`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  for (const f of ['model.safetensors', 'state.json']) await copyFile(path.join(source, f), path.join(tmp, f));
  if ((await sha256File(path.join(tmp, 'model.safetensors'))) !== fs.id)
    throw new DifftalkError('first-stage-changed', `${source} changed while it was being copied into ${runDir}`);
  await rm(dest, { recursive: true, force: true });
  await rename(tmp, dest);
  return { source, id: fs.id, path: PINNED_FIRST_STAGE };
}

/** Load the first stage a checkpoint in `runDir` pins, and check its hash. */
export async function loadPinnedFirstStage(runDir: string, pin: FirstStagePin, fallback: { vq: VqConfig; imageSize: number }): Promise<FirstStage> {
  if (!pin || typeof pin.id !== 'string' || typeof pin.source !== 'string')
    throw new DifftalkError('checkpoint-corrupt', `the checkpoint in ${runDir} does not name its first stage`);
  const where = pin.path === undefined ? pin.source : path.isAbsolute(pin.path) ? pin.path : path.join(runDir, checkedRelative(pin.path));
  const fs = await loadFirstStage(where, fallback);
  if (fs.id !== pin.id) {
    fs.params.dispose();
    throw new DifftalkError('first-stage-changed', `the first-stage weights at ${where} changed since the run in ${runDir} was trained`, {
      suggestion: 'restore the original first stage (its sha256 is in state.json)',
    });
  }
  return fs;
}

/** A run-relative path from a checkpoint: a plain name inside the run folder, never `..` or absolute. */
function checkedRelative(p: string): string {
  if (p !== PINNED_FIRST_STAGE) throw new DifftalkError('checkpoint-corrupt', `first-stage path '${p}' in a checkpoint is not a path inside the run`);
  return p;
}
