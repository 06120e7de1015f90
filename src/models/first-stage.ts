/**
 * The frozen first stage used by LDM training and rendering: a `difftalk train autoencoder` run/checkpoint (config
 * from its state.json) or an LDM VQ checkpoint file (`vq-f4` model.ckpt, .pt, .safetensors) with a preset's VQ config.
 */
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

export async function loadFirstStage(source: string, fallback: { vq: VqConfig; imageSize: number }): Promise<FirstStage> {
  if (!(await exists(source)))
    throw new DifftalkError('first-stage-missing', `first-stage weights ${source} not found`, {
      suggestion: 'train one with `difftalk train autoencoder`, or pass LDM vq-f4 model.ckpt',
    });
  const ckpt = await resolveCheckpoint(source);
  if (ckpt) {
    const saved = await loadCheckpoint<{ kind: string; config: DifftalkConfig }>(ckpt);
    if (saved.state.kind !== 'autoencoder')
      throw new DifftalkError('first-stage-wrong-kind', `${source} is a '${saved.state.kind}' checkpoint, not an autoencoder`);
    const cfg = saved.state.config;
    const params = new Params(vqParamSpecs(cfg.vq), 'init', 0, { trainable: false });
    params.loadTorch(saved.model as Map<string, TensorData>, { source: ckpt });
    return { params, config: cfg.vq, imageSize: cfg.imageSize, id: await sha256File(path.join(ckpt, 'model.safetensors')), source: ckpt };
  }
  const params = await loadVqWeights(source, fallback.vq);
  return { params, config: fallback.vq, imageSize: fallback.imageSize, id: await sha256File(source), source };
}
