/**
 * One inference pipeline (the diffusers idea), used by render, by training's sample grids and by the quality test:
 * a DiffTalkPipeline holds the LDM (UNet, EMA UNet when there is one, audio and landmark encoders), the frozen first
 * stage and the DDIM scheduler; it prepares the conditions of frames, samples, and decodes.
 *
 * `prepare`: per frame, the test-time masked target (rows ≥ the nose-tip mask row set to −1), the 39 condition
 * landmarks in 256-px coordinates, the jaw-polygon latent mask, and the first-stage latents of target and masked target
 * (one encoder batch); audio context and reference latent come from the caller (render: the first / previous output
 * frame; training: a frame of the clip). Condition normalisation is applied by the model (`DifftalkModel.context`).
 *
 * `generate`: DiffTalk's DDIM masked latent inpainting (scripts/inference.py + LDM ddim.py with mask/x0).
 * Per DDIM step t (descending): x ← q_sample(z_gt, t)·m + (1 − m)·x (m = 1 outside the jaw polygon: keep the noised
 * ground-truth latent), ε = UNet([x, z_masked, z_ref], t, context), x ← DDIM step (η = 0); `decode` is the quantised
 * first-stage decode, clipped to [−1, 1].
 */
import path from 'node:path';
import { tf } from '../util/tf.js';
import { DifftalkError } from '../util/errors.js';
import { exists, sha256File } from '../util/fs.js';
import { Params } from './blocks.js';
import { loadCheckpoint } from './checkpoint.js';
import { LANDMARK_FRAME, latentJawMask, maskRowsBelow, scaleMaskRow } from './conditions.js';
import { DifftalkModel, PREFIX } from './difftalk.js';
import { loadPinnedFirstStage, type FirstStage, type FirstStagePin } from './first-stage.js';
import { CONDITION_POINTS } from './ldm-net.js';
import type { DifftalkConfig } from './presets.js';
import { DdimScheduler } from './schedulers/ddim.js';
import { unetParamSpecs } from './unet.js';
import { vqDecode, vqEncode } from './vq-f4.js';
import { LM68_VALUES } from '../face/ibug68.js';

/** iBUG-68 values per frame (68 points × x, y) and the LDM's condition landmarks (39 points × x, y). */
export { LM68_VALUES };
const LM39_VALUES = CONDITION_POINTS.length * 2;

export interface GenerateInput {
  /** (B, h, w, 3) latent of the ground-truth / driving frame (used outside the mask). */
  zGt: tf.Tensor4D;
  zMasked: tf.Tensor4D;
  zRef: tf.Tensor4D;
  /** (B, 8, window, dim) audio context and (B, 39, 2) landmarks. */
  audio: tf.Tensor4D;
  landmarks: tf.Tensor3D;
  /** (B, h, w, 1): 1 = keep the ground truth, 0 = generate. Omit to generate everything. */
  mask?: tf.Tensor4D;
  steps: number;
  seed: number;
  /** UNet weights to sample with (EMA by default in callers). */
  unet?: Params;
  onStep?: (i: number, total: number) => void;
}

export function generate(model: DifftalkModel, scheduler: DdimScheduler, input: GenerateInput): tf.Tensor4D {
  const ts = scheduler.setTimesteps(input.steps);
  const shape = input.zGt.shape;
  const ctx = tf.tidy(() => model.context(input.audio, input.landmarks));
  let x = tf.randomNormal(shape, 0, 1, 'float32', input.seed) as tf.Tensor4D;
  ts.forEach((t, i) => {
    const next = tf.tidy(() => {
      let xi = x;
      if (input.mask) {
        const noisy = scheduler.addNoise(input.zGt, tf.randomNormal(shape, 0, 1, 'float32', input.seed + 1 + i) as tf.Tensor4D, t);
        xi = tf.add(tf.mul(noisy, input.mask), tf.mul(xi, tf.sub(1, input.mask))) as tf.Tensor4D;
      }
      const eps = model.eps(xi, input.zMasked, input.zRef, tf.fill([shape[0]], t, 'int32') as tf.Tensor1D, ctx, input.unet);
      return scheduler.step(eps, t, xi).prevSample;
    });
    x.dispose();
    x = next;
    input.onStep?.(i + 1, ts.length);
  });
  ctx.dispose();
  return x;
}

/** One frame to inpaint. */
export interface PipelineFrame {
  /** The target / driving face at the model's imageSize, HWC RGB in [−1, 1]. */
  image: Float32Array;
  /** iBUG-68 landmarks (136 values) in pixels of a `frameSize`² face crop. */
  landmarks68: Float32Array;
  /** Test-time mask row (nose tip, pt 33) in pixels of the `frameSize`² crop. */
  maskRow: number;
  /** AUDIO_CONTEXT × window × dim audio features (conditions.ts audioContext). */
  audio: Float32Array;
}

/** Prepared conditions of a batch of frames; dispose with `disposePrepared`. */
export interface Prepared {
  zGt: tf.Tensor4D;
  zMasked: tf.Tensor4D;
  audio: tf.Tensor4D;
  landmarks: tf.Tensor3D;
  mask: tf.Tensor4D;
  /** The masked target images (model input, for grids). */
  masked: Float32Array[];
}

export function disposePrepared(p: Prepared): void {
  tf.dispose([p.zGt, p.zMasked, p.audio, p.landmarks, p.mask]);
}

/** What a checkpoint's state.json holds that the pipeline reads. */
export interface LdmCheckpointState {
  kind: string;
  step: number;
  config: DifftalkConfig;
  options: Record<string, unknown>;
  firstStage?: FirstStagePin;
  dataset?: string;
}

export class DiffTalkPipeline {
  readonly scheduler: DdimScheduler;

  constructor(
    readonly model: DifftalkModel,
    /** The UNet weights sampling uses (the EMA UNet when the checkpoint has one). */
    readonly unet: Params,
    readonly firstStage: FirstStage,
  ) {
    this.scheduler = new DdimScheduler(model.config.schedule);
  }

  get config(): DifftalkConfig {
    return this.model.config;
  }

  /** Side of the latent grid. */
  get latentSize(): number {
    return this.config.imageSize / 2 ** (this.firstStage.config.chMult.length - 1);
  }

  /**
   * From a `difftalk train ldm` run folder or one of its ckpt-* folders: the model, the EMA UNet when present
   * (DiffTalk samples with EMA weights), and the pinned first stage (checked by sha256).
   */
  static async fromCheckpoint(checkpoint: string): Promise<{
    pipeline: DiffTalkPipeline;
    dir: string;
    step: number;
    id: string;
    ema: boolean;
    state: LdmCheckpointState;
  }> {
    if (!(await exists(checkpoint)))
      throw new DifftalkError('checkpoint-missing', `checkpoint ${checkpoint} not found`, {
        suggestion: 'pass the --out folder of `difftalk train ldm` or one of its ckpt-* folders',
      });
    const saved = await loadCheckpoint<LdmCheckpointState>(checkpoint);
    if (saved.state.kind !== 'ldm')
      throw new DifftalkError('checkpoint-wrong-kind', `${saved.dir} is a '${saved.state.kind}' checkpoint, not an LDM`, {
        suggestion: 'render needs a `difftalk train ldm` run',
      });
    const config = saved.state.config;
    if (!saved.state.firstStage) throw new DifftalkError('checkpoint-corrupt', `${saved.dir}/state.json does not name its first stage`);
    // pinned by hash; a run-relative path resolves against the run folder (the checkpoint's parent), not the cwd
    const fs = await loadPinnedFirstStage(path.dirname(path.resolve(saved.dir)), saved.state.firstStage, { vq: config.vq, imageSize: config.imageSize });
    const model = new DifftalkModel(config, 'init', 0);
    model.load(saved.model, saved.dir);
    const hasEma = [...saved.model.keys()].some((k) => k.startsWith(PREFIX.ema));
    let unet = model.unet;
    if (hasEma) {
      unet = new Params(unetParamSpecs(config.unet), 'init', 0, { trainable: false });
      unet.loadTorch(saved.model, { prefix: PREFIX.ema, source: saved.dir });
    }
    const id = await sha256File(path.join(saved.dir, 'model.safetensors'));
    return { pipeline: new DiffTalkPipeline(model, unet, fs), dir: saved.dir, step: saved.state.step, id, ema: hasEma, state: saved.state };
  }

  /** First-stage latents (pre-quantisation) of images at imageSize, (n, h, w, 3). */
  encode(images: readonly Float32Array[]): tf.Tensor4D {
    const S = this.config.imageSize;
    const P = S * S * 3;
    const data = new Float32Array(images.length * P);
    images.forEach((img, i) => data.set(img, i * P));
    return tf.tidy(() => vqEncode(this.firstStage.params, this.firstStage.config, tf.tensor4d(data, [images.length, S, S, 3])));
  }

  /** The conditions of a batch of frames (see the file comment); `frameSize` is the pixel frame of landmarks and mask rows. */
  prepare(frames: readonly PipelineFrame[], frameSize: number): Prepared {
    const S = this.config.imageSize;
    const L = this.latentSize;
    const n = frames.length;
    const k = LANDMARK_FRAME / frameSize;
    const masked = frames.map((f) => maskRowsBelow(f.image, S, scaleMaskRow(f.maskRow, frameSize, S)));
    const lms = new Float32Array(n * LM39_VALUES);
    const masks = new Float32Array(n * L * L);
    const aw = frames[0]?.audio.length ?? 0;
    const aud = new Float32Array(n * aw);
    frames.forEach((f, i) => {
      if (f.landmarks68.length !== LM68_VALUES) throw new DifftalkError('internal', `frame ${i}: ${f.landmarks68.length} landmark values, not ${LM68_VALUES}`);
      CONDITION_POINTS.forEach((p, j) => {
        lms[i * LM39_VALUES + 2 * j] = f.landmarks68[2 * p]! * k;
        lms[i * LM39_VALUES + 2 * j + 1] = f.landmarks68[2 * p + 1]! * k;
      });
      masks.set(latentJawMask(f.landmarks68, frameSize, L), i * L * L);
      aud.set(f.audio, i * aw);
    });
    // target and masked target in one encoder batch
    const both = this.encode([...frames.map((f) => f.image), ...masked]);
    const [zGt, zMasked] = tf.tidy(() => [both.slice([0, 0, 0, 0], [n, -1, -1, -1]), both.slice([n, 0, 0, 0], [n, -1, -1, -1])] as tf.Tensor4D[]);
    both.dispose();
    const { winSize: window, featureDim } = this.config.audio;
    return {
      zGt: zGt!,
      zMasked: zMasked!,
      audio: tf.tensor4d(aud, [n, aw / (window * featureDim), window, featureDim]),
      landmarks: tf.tensor3d(lms, [n, CONDITION_POINTS.length, 2]),
      mask: tf.tensor4d(masks, [n, L, L, 1]),
      masked,
    };
  }

  /** DDIM inpainting of the jaw region with this pipeline's UNet (EMA when loaded from a checkpoint with one). */
  sample(input: Omit<GenerateInput, 'unet'>): tf.Tensor4D {
    return generate(this.model, this.scheduler, { ...input, unet: this.unet });
  }

  /** Quantised first-stage decode, clipped to [−1, 1], read asynchronously: (n·S·S·3) HWC values. */
  async decode(z: tf.Tensor4D): Promise<Float32Array> {
    const img = tf.tidy(() => tf.clipByValue(vqDecode(this.firstStage.params, this.firstStage.config, z), -1, 1));
    const data = (await img.data()) as Float32Array;
    img.dispose();
    return data;
  }

  /** Free what `fromCheckpoint` loaded (not for a pipeline built around a training run's live model). */
  dispose(): void {
    if (this.unet !== this.model.unet) this.unet.dispose();
    this.model.dispose();
    this.firstStage.params.dispose();
  }
}
