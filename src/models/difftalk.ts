/**
 * The DiffTalk conditional LDM as one object: trainable UNet + AudioNet + AudioAttNet + LdmNet, with the frozen first
 * stage kept outside (latents come from the cache or from `vqEncode`).
 *
 * DiffusionWrapper (conditioning_key crossattn): UNet input = concat(z_t, z_masked, z_ref) on channels (9), context =
 * concat(audio64, landmark64) as ONE token (B, 1, 128) — cross-attention over a single key, i.e. a per-layer bias.
 *
 * Checkpoint names: `model.diffusion_model.*` (LDM's UNet prefix), `audio_net.*`, `audio_att_net.*`, `ldm_net.*`,
 * and the UNet EMA as `model_ema.diffusion_model.*`.
 */
import { tf } from '../util/tf.js';
import type { TensorData } from '../weights/torch.js';
import type { DifftalkConfig } from './presets.js';
import { Params, type ParamSource } from './blocks.js';
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
