import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { commonTrainFlags, commonTrainOptions, nonNegativeNumber, positiveNumber } from '../../cli/flags.js';
import { checkPreset, startBackend, stoppableRun, type GpuDevice } from '../../cli/train-run.js';
import { DEFAULT_LDM, trainLdm } from '../../train/ldm.js';
import type { TrainResult } from '../../train/core.js';

export default class TrainLdm extends BaseCommand {
  static override summary = "Train DiffTalk's conditional latent diffusion model (UNet + audio and landmark encoders) on a prepared dataset.";
  static override description =
    'Latents of the frozen first stage (--first-stage: a `difftalk train autoencoder` run, or LDM vq-f4 model.ckpt) are cached ' +
    'under <out>/latents. lr = --base-lr × --batch × --accumulate unless --lr is given (paper: 1e-6 × 64 = 6.4e-5). ' +
    "--normalize-conditions standardises audio features and landmarks with the training frames' mean/std (not in the reference; " +
    'saved in the checkpoint, so render applies it too). ' +
    'Checkpoints (safetensors + state.json) every --checkpoint-every steps with <out>/latest.json; --resume continues exactly. ' +
    'Writes <out>/loss.svg, sample grids <out>/samples/step-*.png and TensorBoard event files (tensorboard --logdir <out>).';
  static override examples = [
    '<%= config.bin %> train ldm --data data/hdtf --first-stage models/vq-f4/model.ckpt --out runs/ldm --preset paper --batch 8 --backend webgpu',
    '<%= config.bin %> train ldm --data data/small --first-stage runs/ae --out runs/ldm-tiny --preset tiny --steps 200 --lr 1e-3 --backend wasm',
    '<%= config.bin %> train ldm --data data/hdtf --first-stage model.ckpt --init model.ckpt --out runs/ldm-continued --preset paper',
    '<%= config.bin %> train ldm --data data/small --first-stage runs/ae --out runs/ldm-tiny --preset tiny --steps 500 --batch 16 --lr 1e-3 --normalize-conditions --ema-decay 0.999',
  ];
  static override flags = {
    'resume-from': Flags.string({ summary: 'With --resume: continue from this checkpoint (a ckpt-* folder or a step) instead of latest.json.' }),
    force: Flags.boolean({ default: false, summary: 'Write into a non-empty --out folder that difftalk did not create.' }),
    ...commonTrainFlags({ ...DEFAULT_LDM, preset: 'tiny', batch: DEFAULT_LDM.batchSize }),
    'first-stage': Flags.string({ summary: 'Autoencoder run/checkpoint folder, or a VQ checkpoint file (.ckpt/.pt/.safetensors).', required: true }),
    'audio-feature': Flags.string({ summary: 'Audio feature column to condition on (default: the one with window 16).' }),
    'weight-decay': Flags.string({ default: String(DEFAULT_LDM.weightDecay) }),
    'grad-clip': Flags.string({ default: String(DEFAULT_LDM.gradClip) }),
    'ema-decay': Flags.string({ default: String(DEFAULT_LDM.emaDecay) }),
    'sample-steps': Flags.integer({ min: 1, default: DEFAULT_LDM.sampleSteps }),
    init: Flags.string({
      summary: "Start from a PyTorch DiffTalk checkpoint (the reference code's .ckpt or `export checkpoint`'s): UNet, EMA and encoders.",
    }),
    'normalize-conditions': Flags.boolean({ default: false, summary: 'Standardise audio features and landmarks before their encoders.' }),
  };

  async run(): Promise<TrainResult & { backend: string; device?: GpuDevice }> {
    const { flags } = await this.parse(TrainLdm);
    const onEvent = this.events(flags['log-level'], flags['log-every']);
    const options = {
      ...DEFAULT_LDM,
      ...commonTrainOptions(flags),
      firstStage: flags['first-stage'],
      audioFeature: flags['audio-feature'],
      weightDecay: nonNegativeNumber('weight-decay', flags['weight-decay']),
      gradClip: positiveNumber('grad-clip', flags['grad-clip']),
      emaDecay: positiveNumber('ema-decay', flags['ema-decay']),
      sampleSteps: flags['sample-steps'],
      normalizeConditions: flags['normalize-conditions'],
      init: flags.init,
    };
    const batch = flags.batch * flags.accumulate;
    if (flags.backend !== 'auto') checkPreset(flags.preset, ['ldm'], flags.backend, batch);
    const { backend, precision, device } = await startBackend(flags.backend, flags.precision, onEvent);
    checkPreset(flags.preset, ['ldm'], backend, batch);
    const next = `${this.config.bin} render --checkpoint ${flags.out} --video <person.mp4> --audio <speech.wav> -o out.mp4`;
    const result = await stoppableRun(this, 'conditional LDM', flags.out, onEvent, next, (ev, signal) =>
      trainLdm({ ...options, precision, resumeFrom: flags['resume-from'], force: flags.force, onEvent: ev, signal }),
    );
    return { ...result, backend, ...(device ? { device } : {}) };
  }
}
