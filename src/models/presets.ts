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
import type { UNetConfig } from './unet.js';
import { VQ_F4, type VqConfig } from './vq-f4.js';

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
