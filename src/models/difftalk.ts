/**
 * The DiffTalk conditional LDM as one object: trainable UNet + AudioNet + AudioAttNet + LdmNet, with the frozen first
 * stage kept outside (latents come from the cache or from `vqEncode`).
 *
 * DiffusionWrapper (conditioning_key crossattn): UNet input = concat(z_t, z_masked, z_ref) on channels (9), context =
 * concat(audio64, landmark64) as ONE token (B, 1, 128) — cross-attention over a single key, i.e. a per-layer bias.
 *
 * Checkpoint names: `model.diffusion_model.*` (LDM's UNet prefix), `audio_net.*`, `audio_att_net.*`, `ldm_net.*`,
 * and the UNet EMA as `model_ema.diffusion_model.*`. {@link REFERENCE_PREFIX} maps each to the reference LatentDiffusion's
 * state_dict name (`ddpm_talking.py`), both ways (`toReferenceName`, `DifftalkModel.fromReference`).
 */
import { tf } from '../util/tf.js';
import { DifftalkError } from '../util/errors.js';
import type { TensorData } from '../weights/torch.js';
import type { DifftalkConfig } from './presets.js';
import { Params, type ParamSource, type ParamSpec } from './blocks.js';
import { audioAttNetParamSpecs, audioNetParamSpecs, encodeAudio } from './audio-net.js';
import { ldmNet, ldmNetParamSpecs } from './ldm-net.js';
import { unetForward, unetParamSpecs } from './unet.js';

export const PREFIX = {
  unet: 'model.diffusion_model.',
  ema: 'model_ema.diffusion_model.',
  audio: 'audio_net.',
  audioAtt: 'audio_att_net.',
  ldm: 'ldm_net.',
} as const;

/**
 * The reference LatentDiffusion (DiffTalk `ddpm_talking.py`) module of each part: `model` (DiffusionWrapper) holds the
 * UNet, `model_ema` is LitEma (one buffer per UNet parameter, named `diffusion_model` + the parameter name with its
 * dots removed), and the trainable condition encoders are `cond_stage_model_for_audio` (AudioNet),
 * `cond_stage_model_for_audio_smooth` (AudioAttNet) and `cond_stage_model_for_ldm` (LdmNet).
 */
export const REFERENCE_PREFIX: Readonly<Record<keyof typeof PREFIX, string>> = {
  unet: 'model.diffusion_model.',
  ema: 'model_ema.diffusion_model',
  audio: 'cond_stage_model_for_audio.',
  audioAtt: 'cond_stage_model_for_audio_smooth.',
  ldm: 'cond_stage_model_for_ldm.',
};
/** The frozen first stage's module in the reference LatentDiffusion. */
export const REFERENCE_FIRST_STAGE = 'first_stage_model.';

/** A difftalk checkpoint name (PREFIX …) → the reference state_dict name. */
export function toReferenceName(name: string): string {
  for (const part of Object.keys(PREFIX) as (keyof typeof PREFIX)[]) {
    if (!name.startsWith(PREFIX[part])) continue;
    const rest = name.slice(PREFIX[part].length);
    return REFERENCE_PREFIX[part] + (part === 'ema' ? rest.replaceAll('.', '') : rest);
  }
  throw new DifftalkError('model-config', `${name} is not a DiffTalk model parameter name`);
}

/**
 * Every tensor of a DiffTalk checkpoint by difftalk name, in state_dict order: the UNet, the audio and landmark
 * encoders, then the UNet EMA (`PREFIX.ema` + UNet name). Specs only: nothing is allocated.
 */
export function checkpointSpecs(config: DifftalkConfig): Map<string, ParamSpec> {
  const out = new Map<string, ParamSpec>();
  const add = (prefix: string, specs: readonly ParamSpec[]) => {
    for (const s of specs) out.set(prefix + s.name, s);
  };
  add(PREFIX.unet, unetParamSpecs(config.unet));
  add(PREFIX.audio, audioNetParamSpecs(config.audio));
  add(PREFIX.audioAtt, audioAttNetParamSpecs(config.audio));
  add(PREFIX.ldm, ldmNetParamSpecs(config.ldm));
  add(PREFIX.ema, unetParamSpecs(config.unet));
  return out;
}

/**
 * A reference-named state dict (a PyTorch-trained DiffTalk checkpoint) → difftalk names: the inverse of
 * {@link toReferenceName} over the names of `config`'s model. `ema` is absent when the file has no `model_ema.*`
 * (e.g. saved with use_ema: false). Other entries (first_stage_model.*, schedule buffers, model_ema.decay /
 * num_updates) are left out; missing or mis-shaped ones are found by {@link DifftalkModel.load}.
 */
export function fromReferenceStateDict(
  sd: ReadonlyMap<string, TensorData>,
  config: DifftalkConfig,
): { model: Map<string, TensorData>; ema?: Map<string, TensorData> } {
  const model = new Map<string, TensorData>();
  const ema = new Map<string, TensorData>();
  for (const n of checkpointSpecs(config).keys()) {
    const t = sd.get(toReferenceName(n));
    if (t) (n.startsWith(PREFIX.ema) ? ema : model).set(n, t);
  }
  return { model, ema: ema.size ? ema : undefined };
}

export class DifftalkModel {
  readonly unet: Params;
  readonly audioNet: Params;
  readonly audioAtt: Params;
  readonly ldmNet: Params;

  constructor(
    readonly config: DifftalkConfig,
    source: ParamSource = 'init',
    seed = 23,
  ) {
    this.unet = new Params(unetParamSpecs(config.unet), source, seed);
    this.audioNet = new Params(audioNetParamSpecs(config.audio), source, seed + 1, { prefix: 'audio.' });
    this.audioAtt = new Params(audioAttNetParamSpecs(config.audio), source, seed + 2, { prefix: 'audio_att.' });
    this.ldmNet = new Params(ldmNetParamSpecs(config.ldm), source, seed + 3, { prefix: 'ldm.' });
  }

  /** All trainable variables keyed by checkpoint name. */
  trainable(): Map<string, tf.Variable> {
    const out = new Map<string, tf.Variable>();
    const add = (p: Params, prefix: string) => {
      for (const [n, v] of p.vars) out.set(prefix + n, v);
    };
    add(this.unet, PREFIX.unet);
    add(this.audioNet, PREFIX.audio);
    add(this.audioAtt, PREFIX.audioAtt);
    add(this.ldmNet, PREFIX.ldm);
    return out;
  }

  private normTensors?: { audioMean: tf.Tensor1D; audioStd: tf.Tensor1D; landmarkMean: tf.Tensor2D; landmarkStd: tf.Tensor2D };

  /** config.conditionNorm as tensors, made once (kept out of any tidy) and freed by dispose(). */
  private conditionNorm(): DifftalkModel['normTensors'] {
    const n = this.config.conditionNorm;
    if (n && !this.normTensors) {
      const points = n.landmarkMean.length / 2;
      this.normTensors = {
        audioMean: tf.keep(tf.tensor1d(n.audioMean)),
        audioStd: tf.keep(tf.tensor1d(n.audioStd)),
        landmarkMean: tf.keep(tf.tensor2d(n.landmarkMean, [points, 2])),
        landmarkStd: tf.keep(tf.tensor2d(n.landmarkStd, [points, 2])),
      };
    }
    return this.normTensors;
  }

  /** The single context token (B, 1, audioDim + landmarkDim). */
  context(audio: tf.Tensor4D, landmarks: tf.Tensor3D): tf.Tensor3D {
    const norm = this.conditionNorm();
    if (norm) {
      audio = tf.div(tf.sub(audio, norm.audioMean), norm.audioStd) as tf.Tensor4D;
      landmarks = tf.div(tf.sub(landmarks, norm.landmarkMean), norm.landmarkStd) as tf.Tensor3D;
    }
    const a = encodeAudio(this.audioNet, this.audioAtt, audio, this.config.audio);
    const l = ldmNet(this.ldmNet, landmarks, this.config.ldm);
    return tf.concat([a, l], 1).expandDims(1) as tf.Tensor3D;
  }

  /** ε prediction; `unet` lets sampling use the EMA weights. */
  eps(zt: tf.Tensor4D, zMasked: tf.Tensor4D, zRef: tf.Tensor4D, t: tf.Tensor1D, context: tf.Tensor3D, unet: Params = this.unet): tf.Tensor4D {
    return unetForward(unet, this.config.unet, tf.concat([zt, zMasked, zRef], 3), t, context);
  }

  toTensors(): Map<string, TensorData> {
    return new Map([
      ...this.unet.toTorch(PREFIX.unet),
      ...this.audioNet.toTorch(PREFIX.audio),
      ...this.audioAtt.toTorch(PREFIX.audioAtt),
      ...this.ldmNet.toTorch(PREFIX.ldm),
    ]);
  }

  load(tensors: ReadonlyMap<string, TensorData>, source: string): void {
    this.unet.loadTorch(tensors, { prefix: PREFIX.unet, source });
    this.audioNet.loadTorch(tensors, { prefix: PREFIX.audio, source });
    this.audioAtt.loadTorch(tensors, { prefix: PREFIX.audioAtt, source });
    this.ldmNet.loadTorch(tensors, { prefix: PREFIX.ldm, source });
  }

  dispose(): void {
    if (this.normTensors) tf.dispose(Object.values(this.normTensors));
    [this.unet, this.audioNet, this.audioAtt, this.ldmNet].forEach((p) => p.dispose());
  }
}
