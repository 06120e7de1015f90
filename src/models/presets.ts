/**
 * Model presets. Every size lives in one {@link DifftalkConfig} object, which is saved in each checkpoint and read
 * back on resume / render, so architecture keys always come from the checkpoint.
 *
 * - paper: DiffTalk's talking.yaml — VQ-f4 (ch 128) on 256² faces → 3×64×64 latents, UNet 256·[1,2,3,4], 530 M params.
 * - small: 128² faces, VQ ch 64, UNet 64·[1,2,3] — a single-GPU experiment size.
 * - tiny: 32² faces, VQ ch 32 with ch_mult [1,1,2] (vq-f4's [1,2,4] costs ~2.7× the FLOPs per image, so a CPU test
 *   affords fewer steps), 1 res block → 3×8×8 latents, UNet 32·[1,2] with attention at 4² (the parity-fixture UNet's widths) —
 *   for CPU/wasm tests only.
 */
import { DifftalkError } from '../util/errors.js';
import { PAPER_AUDIO_NET, type AudioNetConfig } from './audio-net.js';
import { PAPER_LDM_NET, type LdmNetConfig } from './ldm-net.js';
import { unetParamSpecs as unetSpecs, type UNetConfig } from './unet.js';
import { VQ_F4, vqParamSpecs as vqSpecs, type VqConfig } from './vq-f4.js';

export interface ScheduleConfig {
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
}

/**
 * Standardisation of the two conditions before their encoders, (x − mean) / std: audio per feature dimension, landmarks
 * per coordinate (78 = 39 points × x, y in 256-px coordinates). Not in the reference, which feeds DeepSpeech logits and
 * raw pixel coordinates; computed from the training frames when `trainLdm` is asked to (`normalizeConditions`), and
 * saved in the checkpoint's config so sampling and render apply the same affine map.
 */
export interface ConditionNorm {
  audioMean: number[];
  audioStd: number[];
  landmarkMean: number[];
  landmarkStd: number[];
}

export interface DifftalkConfig {
  preset: PresetName;
  /** Face crop side fed to the first stage (dataset frames are resized to this). */
  imageSize: number;
  vq: VqConfig;
  unet: UNetConfig;
  audio: AudioNetConfig;
  ldm: LdmNetConfig;
  schedule: ScheduleConfig;
  /** Condition standardisation (absent: raw conditions, as the reference). */
  conditionNorm?: ConditionNorm;
}

export type PresetName = 'paper' | 'small' | 'tiny';

/** LDM "linear" schedule of talking.yaml: betas = linspace(√0.0015, √0.0195, 1000)². */
export const DIFFTALK_SCHEDULE: ScheduleConfig = { numTrainTimesteps: 1000, betaStart: 0.0015, betaEnd: 0.0195 };

const unet = (over: Partial<UNetConfig>): UNetConfig => ({
  imageSize: 64,
  inChannels: 9,
  outChannels: 3,
  modelChannels: 256,
  attentionResolutions: [8, 4, 2],
  numResBlocks: 2,
  channelMult: [1, 2, 3, 4],
  numHeadChannels: 32,
  transformerDepth: 1,
  contextDim: PAPER_AUDIO_NET.dimAud + PAPER_LDM_NET.dimLdm,
  ...over,
});

export const PRESETS: Readonly<Record<PresetName, DifftalkConfig>> = {
  paper: { preset: 'paper', imageSize: 256, vq: VQ_F4, unet: unet({}), audio: PAPER_AUDIO_NET, ldm: PAPER_LDM_NET, schedule: DIFFTALK_SCHEDULE },
  small: {
    preset: 'small',
    imageSize: 128,
    vq: { ...VQ_F4, resolution: 128, ch: 64, numResBlocks: 1, nEmbed: 1024 },
    unet: unet({ imageSize: 32, modelChannels: 64, channelMult: [1, 2, 3], attentionResolutions: [2, 4], numResBlocks: 1 }),
    audio: PAPER_AUDIO_NET,
    ldm: PAPER_LDM_NET,
    schedule: DIFFTALK_SCHEDULE,
  },
  tiny: {
    preset: 'tiny',
    imageSize: 32,
    vq: { ...VQ_F4, resolution: 32, ch: 32, chMult: [1, 1, 2], numResBlocks: 1, nEmbed: 256 },
    unet: unet({ imageSize: 8, modelChannels: 32, channelMult: [1, 2], attentionResolutions: [2], numResBlocks: 1, numHeadChannels: 8 }),
    audio: PAPER_AUDIO_NET,
    ldm: PAPER_LDM_NET,
    schedule: DIFFTALK_SCHEDULE,
  },
};

/** A preset with the audio feature shape of the dataset (window × dim per frame) filled in. */
export function resolveConfig(preset: string, audio: { winSize: number; featureDim: number }): DifftalkConfig {
  if (!(preset in PRESETS)) {
    throw new DifftalkError('bad-flag', `unknown model preset '${preset}'`, { suggestion: `use one of ${Object.keys(PRESETS).join(', ')}` });
  }
  const base = PRESETS[preset as PresetName];
  return structuredClone({ ...base, audio: { ...base.audio, winSize: audio.winSize, featureDim: audio.featureDim } });
}

// --- what a training step of a preset costs, and whether it fits a backend ---

/** A TensorFlow.js backend as `initBackend` names it. */
export type StepBackend = 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';

/** Estimated cost of one optimizer step (order of magnitude: analytic counts, calibrated on this project's CPU runs). */
export interface StepEstimate {
  params: number;
  /** Weights, gradients, 2 AdamW moments, and the activations kept for the backward pass of one batch. */
  memoryBytes: number;
  /** Forward + backward floating-point operations of one step. */
  gflop: number;
}

const BYTES_PER_FLOAT = 4;
/** Weights + gradient + AdamW m and v. */
const COPIES_PER_PARAM = 4;
/** Tensors kept per conv output for backward (conv output, group-norm output, SiLU output). */
const ACTIVATIONS_PER_CONV = 3;
/** Backward ≈ 2× forward. */
const TRAIN_FLOP_FACTOR = 3;
const KERNEL_3X3 = 9;
const MUL_ADD = 2;

const paramCount = (shapes: readonly { shape: readonly number[] }[]) => shapes.reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);

/** Conv stacks at levels of halving resolution: activation floats and forward FLOPs of one sample. */
function convPyramid(resolution: number, channels: readonly number[], convsPerLevel: (level: number) => number): { floats: number; flop: number } {
  let floats = 0;
  let flop = 0;
  channels.forEach((c, i) => {
    const r = resolution / 2 ** i;
    const n = convsPerLevel(i);
    floats += r * r * c * n * ACTIVATIONS_PER_CONV;
    flop += r * r * c * c * KERNEL_3X3 * MUL_ADD * n;
  });
  return { floats, flop };
}

/** Self-attention over r² tokens: the attention matrices (heads × tokens²) dominate memory and FLOPs. */
function attention(r: number, channels: number, heads: number): { floats: number; flop: number } {
  const tokens = r * r;
  return { floats: heads * tokens * tokens * ACTIVATIONS_PER_CONV, flop: 2 * tokens * tokens * channels * MUL_ADD };
}

/**
 * Cost of one training step of `stage` for a preset at `batch` samples per step. The autoencoder step runs encoder +
 * decoder at the image size; the LDM step runs the UNet on cached latents (the first stage is frozen).
 */
export function estimateTrainStep(config: DifftalkConfig, stage: 'autoencoder' | 'ldm', batch: number): StepEstimate {
  let params: number;
  let floats: number;
  let flop: number;
  if (stage === 'autoencoder') {
    const v = config.vq;
    params = paramCount(vqSpecs(v));
    const ch = v.chMult.map((m) => m * v.ch);
    const MID_CONVS = 4;
    const last = ch.length - 1;
    const convs = convPyramid(v.resolution, ch, (i) => v.numResBlocks * 2 + (v.numResBlocks + 1) * 2 + (i === last ? 2 * MID_CONVS : 0));
    const attn = attention(v.resolution / 2 ** last, ch[last]!, 1);
    const ATTN_BLOCKS = 2; // encoder and decoder mid blocks
    floats = convs.floats + ATTN_BLOCKS * attn.floats;
    flop = convs.flop + ATTN_BLOCKS * attn.flop;
  } else {
    const u = config.unet;
    params = paramCount(unetSpecs(u));
    const ch = u.channelMult.map((m) => m * u.modelChannels);
    const convs = convPyramid(u.imageSize, ch, () => u.numResBlocks * 2 + (u.numResBlocks + 1) * 2);
    floats = convs.floats;
    flop = convs.flop;
    ch.forEach((c, i) => {
      const ds = 2 ** i;
      if (!u.attentionResolutions.includes(ds)) return;
      const a = attention(u.imageSize / ds, c, Math.max(1, c / u.numHeadChannels));
      const layers = u.numResBlocks + (u.numResBlocks + 1);
      floats += a.floats * layers * u.transformerDepth;
      flop += a.flop * layers * u.transformerDepth;
    });
  }
  return {
    params,
    memoryBytes: (params * COPIES_PER_PARAM + floats * batch) * BYTES_PER_FLOAT,
    gflop: (flop * batch * TRAIN_FLOP_FACTOR) / 1e9,
  };
}

/**
 * Sustained training GFLOP/s per backend, calibrated on this project's runs on 2 shared CPU cores (wasm: tiny
 * autoencoder batch 4 ~10 s per step, tiny LDM batch 8 ~0.8 s; cpu: tiny autoencoder batch 8 ~208 s); tensorflow (tfjs-node,
 * native CPU) and webgpu (a discrete GPU) are rough figures. Good to an order of magnitude, which is what the check needs.
 */
export const BACKEND_GFLOPS: Readonly<Record<StepBackend, number>> = { wasm: 0.4, cpu: 0.024, tensorflow: 5, webgpu: 500 };
/** WebAssembly (wasm32) heap limit: 4 GiB; tfjs-wasm aborts with "memory access out of bounds" beyond it. */
export const WASM_MEMORY_BYTES = 4 * 1024 ** 3;
/** A step estimated to take longer than this is refused as not runnable (s). */
export const MAX_SECONDS_PER_STEP = 600;

export interface PresetFit {
  preset: PresetName;
  stage: 'autoencoder' | 'ldm';
  estimate: StepEstimate;
  secondsPerStep: number;
  memoryLimitBytes?: number;
  fits: boolean;
}

/** Whether a preset's training step fits the backend's memory (`memoryLimitBytes`: host or GPU memory when known). */
export function presetFit(preset: PresetName, stage: 'autoencoder' | 'ldm', backend: StepBackend, batch: number, memoryLimitBytes?: number): PresetFit {
  const estimate = estimateTrainStep(PRESETS[preset], stage, batch);
  const limit = backend === 'wasm' ? Math.min(WASM_MEMORY_BYTES, memoryLimitBytes ?? Infinity) : memoryLimitBytes;
  const secondsPerStep = estimate.gflop / BACKEND_GFLOPS[backend];
  const fits = (limit === undefined || estimate.memoryBytes <= limit) && secondsPerStep <= MAX_SECONDS_PER_STEP;
  return { preset, stage, estimate, secondsPerStep, memoryLimitBytes: limit, fits };
}

const gib = (b: number) => `${(b / 1024 ** 3).toFixed(b < 1024 ** 3 ? 2 : 1)} GiB`;
const duration = (s: number) => (s < 1 ? `${(s * 1000).toFixed(0)} ms` : s < 120 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(0)} min`);

/** One line: "paper ldm, batch 8: ~6.1 GiB, ~40 s per step on wasm". */
export function describeFit(f: PresetFit, backend: StepBackend, batch: number): string {
  return `${f.preset} ${f.stage}, batch ${batch}: ~${gib(f.estimate.memoryBytes)} memory, ~${duration(f.secondsPerStep)} per step on ${backend} (${(f.estimate.params / 1e6).toFixed(1)} M parameters)`;
}

/**
 * Refuse, before any work, a preset whose training steps (the given stages) cannot run on the backend: too much memory
 * for it (wasm's 4 GiB heap, or `memoryLimitBytes`) or longer than {@link MAX_SECONDS_PER_STEP} per step. The error
 * gives the estimate and names the largest preset that fits.
 */
export function checkPresetFits(
  preset: PresetName,
  stages: readonly ('autoencoder' | 'ldm')[],
  backend: StepBackend,
  batch: number,
  memoryLimitBytes?: number,
): PresetFit[] {
  const fits = stages.map((s) => presetFit(preset, s, backend, batch, memoryLimitBytes));
  const bad = fits.filter((f) => !f.fits);
  if (!bad.length) return fits;
  const ORDER: PresetName[] = ['paper', 'small', 'tiny'];
  const smaller = ORDER.slice(ORDER.indexOf(preset) + 1).filter((p) => stages.every((s) => presetFit(p, s, backend, batch, memoryLimitBytes).fits));
  const limit = bad[0]!.memoryLimitBytes;
  const suggestion = smaller.length
    ? `use --preset ${smaller.join(' or --preset ')} on ${backend} (${smaller.map((p) => stages.map((s) => describeFit(presetFit(p, s, backend, batch, memoryLimitBytes), backend, batch)).join('; ')).join('; ')}), a smaller --batch, or a GPU backend (--backend webgpu / tensorflow)`
    : `use a smaller --batch or a GPU backend (--backend webgpu / tensorflow); even --preset tiny does not fit ${backend} at batch ${batch}`;
  throw new DifftalkError(
    'preset-too-large',
    `preset '${preset}' cannot train on the ${backend} backend: ${bad.map((f) => describeFit(f, backend, batch)).join('; ')}` +
      (limit !== undefined ? ` (limit ${gib(limit)}${backend === 'wasm' ? ', the WebAssembly heap' : ''}` : ' (') +
      `, at most ${MAX_SECONDS_PER_STEP} s per step)`,
    { suggestion },
  );
}
