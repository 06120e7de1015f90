import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { DEFAULT_LDM, trainLdm, type TrainResult } from '../../train/loop.js';
import type { PresetName } from '../../train/presets.js';
import { DifftalkError } from '../../util/errors.js';
import { initBackend, type BackendName } from '../../util/tf.js';

export const positive = (name: string, v: string): number => {
  const x = Number(v);
  if (!Number.isFinite(x) || x <= 0) throw new DifftalkError('bad-flag', `--${name} must be a positive number, got ${v}`);
  return x;
};

export default class TrainLdm extends BaseCommand {
  static override summary = "Train DiffTalk's conditional latent diffusion model (UNet + audio and landmark encoders) on a prepared dataset.";
  static override description =
    'Latents of the frozen first stage (--first-stage: a `difftalk train autoencoder` run, or LDM vq-f4 model.ckpt) are cached ' +
    'under <out>/latents. lr = --base-lr × --batch × --accumulate unless --lr is given (paper: 1e-6 × 64 = 6.4e-5). ' +
    'Checkpoints (safetensors + state.json) every --checkpoint-every steps with <out>/latest.json; --resume continues exactly. ' +
    'Writes <out>/loss.svg and sample grids <out>/samples/step-*.png (GT | masked | reference | sample).';
  static override examples = [
    '<%= config.bin %> train ldm --data data/hdtf --first-stage models/vq-f4/model.ckpt --out runs/ldm --preset paper --batch 8 --backend webgpu',
    '<%= config.bin %> train ldm --data data/small --first-stage runs/ae --out runs/ldm-tiny --preset tiny --steps 200 --lr 1e-3 --backend wasm',
  ];
  static override flags = {
    data: Flags.directory({ summary: 'Prepared dataset folder (difftalk prep --out).', required: true }),
    'first-stage': Flags.string({ summary: 'Autoencoder run/checkpoint folder, or a VQ checkpoint file (.ckpt/.pt/.safetensors).', required: true }),
    out: Flags.directory({ summary: 'Run folder.', required: true }),
    preset: Flags.option({ options: ['paper', 'small', 'tiny'] as const, default: 'paper' })(),
    'audio-feature': Flags.string({ summary: 'Audio feature column to condition on (default: the one with window 16).' }),
    steps: Flags.integer({ min: 1, default: DEFAULT_LDM.steps }),
    batch: Flags.integer({ min: 1, default: DEFAULT_LDM.batchSize }),
    accumulate: Flags.integer({ min: 1, default: DEFAULT_LDM.accumulate }),
    'base-lr': Flags.string({ default: String(DEFAULT_LDM.baseLr) }),
    lr: Flags.string({ summary: 'Absolute learning rate (overrides the base-lr rule).' }),
    'weight-decay': Flags.string({ default: String(DEFAULT_LDM.weightDecay) }),
    'grad-clip': Flags.string({ default: String(DEFAULT_LDM.gradClip) }),
    'ema-decay': Flags.string({ default: String(DEFAULT_LDM.emaDecay) }),
    seed: Flags.integer({ default: DEFAULT_LDM.seed }),
    'checkpoint-every': Flags.integer({ min: 1, default: DEFAULT_LDM.checkpointEvery }),
    'validate-every': Flags.integer({ min: 1, default: DEFAULT_LDM.validateEvery }),
    'sample-every': Flags.integer({ min: 1, default: DEFAULT_LDM.sampleEvery }),
    'sample-steps': Flags.integer({ min: 1, default: DEFAULT_LDM.sampleSteps }),
    resume: Flags.boolean({ default: false, summary: 'Continue the run in --out from latest.json; --steps is the total to reach.' }),
    backend: Flags.option({ options: ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'] as const, default: 'auto', summary: 'TensorFlow.js backend.' })(),
  };

  async run(): Promise<TrainResult & { backend: string }> {
    const { flags } = await this.parse(TrainLdm);
    const onEvent = this.events(flags['log-level']);
    const backend = await initBackend(flags.backend as BackendName);
    onEvent({ type: 'log', level: 'info', message: `TensorFlow.js backend: ${backend}` });
    const result = await trainLdm({
      ...DEFAULT_LDM,
      dataset: flags.data,
      firstStage: flags['first-stage'],
      out: flags.out,
      preset: flags.preset as PresetName,
      audioFeature: flags['audio-feature'],
      steps: flags.steps,
      batchSize: flags.batch,
      accumulate: flags.accumulate,
      baseLr: positive('base-lr', flags['base-lr']),
      lr: flags.lr === undefined ? undefined : positive('lr', flags.lr),
      weightDecay: Number(flags['weight-decay']),
      gradClip: positive('grad-clip', flags['grad-clip']),
      emaDecay: positive('ema-decay', flags['ema-decay']),
      seed: flags.seed,
      checkpointEvery: flags['checkpoint-every'],
      validateEvery: flags['validate-every'],
      sampleEvery: flags['sample-every'],
      sampleSteps: flags['sample-steps'],
      resume: flags.resume,
      onEvent,
    });
    return { ...result, backend };
  }
}
