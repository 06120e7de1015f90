/**
 * `train ldm --init <file>`: a new run starts from a PyTorch DiffTalk checkpoint (the reference code's Lightning
 * `.ckpt`, or `difftalk export checkpoint`'s): its `state_dict` under the reference LatentDiffusion names is mapped to
 * difftalk's by the inverse of the one mapping in `models/difftalk.ts` (`fromReferenceStateDict`) and loaded strictly
 * (every UNet and encoder tensor present, shapes equal to the run's config). The UNet EMA starts from `model_ema.*`
 * with its `num_updates` when the file has them, else from the UNet weights. `first_stage_model.*` is not read here:
 * the run's first stage is `--first-stage` (which accepts the same file).
 */
import { DifftalkError } from '../util/errors.js';
import { fromReferenceStateDict, PREFIX, toReferenceName, type DifftalkModel } from '../models/difftalk.js';
import type { Params } from '../models/blocks.js';
import { readTorchFile, stateDict, type TensorData } from '../weights/torch.js';

export interface InitResult {
  /** Tensors loaded into the model (UNet + encoders). */
  tensors: number;
  /** Whether the EMA came from the file's model_ema.* (else a copy of the UNet). */
  ema: boolean;
  /** The file's LitEma num_updates (0 without one). */
  emaNumUpdates: number;
}

function scalarInt(t: TensorData | undefined): number {
  if (!t || t.data.length !== 1) return 0;
  const v = Number(t.data[0]);
  return Number.isSafeInteger(v) && v >= 0 ? v : 0;
}

/** Load `file` into `model` and the EMA store `ema` (a view over the EMA shadows of the UNet). */
export async function initFromTorch(file: string, model: DifftalkModel, ema: Params): Promise<InitResult> {
  const sd = stateDict(await readTorchFile(file));
  if (![...sd.keys()].some((k) => k.startsWith('model.diffusion_model.')))
    throw new DifftalkError('bad-weights', `${file} holds no model.diffusion_model.* tensors: not a DiffTalk / LDM checkpoint`, {
      suggestion: 'pass a checkpoint of the reference DiffTalk code (Lightning .ckpt) or of `difftalk export checkpoint`',
    });
  const mapped = fromReferenceStateDict(sd, model.config);
  for (const [name, t] of [...mapped.model, ...(mapped.ema ?? [])])
    if (!(t.data instanceof Float32Array) && !(t.data instanceof Float64Array))
      throw new DifftalkError('bad-weights', `${file}: ${toReferenceName(name)} is ${t.dtype}, not a floating-point tensor`, {
        suggestion: 'the file is not a DiffTalk checkpoint (weights are float32, float16 or bfloat16)',
      });
  try {
    model.load(mapped.model, file);
    if (mapped.ema) ema.loadTorch(mapped.ema, { prefix: PREFIX.ema, source: file });
    else ema.loadTorch(mapped.model, { prefix: PREFIX.unet, source: file });
  } catch (e) {
    if (e instanceof DifftalkError && e.code === 'weights-mismatch')
      throw new DifftalkError('weights-mismatch', `--init ${e.message}`, {
        suggestion:
          'the checkpoint was made for another model size or audio feature: use the --preset it was trained with (paper for the reference DiffTalk) and a dataset audio feature of the same window × dim (DeepSpeech 16×29 for the reference)',
      });
    throw e;
  }
  return { tensors: mapped.model.size, ema: Boolean(mapped.ema), emaNumUpdates: mapped.ema ? scalarInt(sd.get('model_ema.num_updates')) : 0 };
}
