import path from 'node:path';
import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { commonTrainFlags, commonTrainOptions, positiveNumber } from '../../cli/flags.js';
import { checkPreset, recordedRun, startBackend, type GpuDevice } from '../../cli/train-run.js';
import { trainAutoencoder } from '../../train/autoencoder.js';
import { DEFAULT_TRAIN, type TrainResult } from '../../train/core.js';
import { DEFAULT_LDM, trainLdm } from '../../train/ldm.js';

/** Run-folder layout of `difftalk train`: the first stage and the LDM side by side under --out. */
export const FIRST_STAGE_DIR = 'first-stage';
export const LDM_DIR = 'ldm';
const DEFAULT_FIRST_STAGE_STEPS = 1000;
const DEFAULT_FIRST_STAGE_BASE_LR = 4.5e-6;

export default class Train extends BaseCommand {
  static override summary = 'Train the whole model a dataset needs: the VQ first stage (unless --first-stage is given), then the conditional LDM.';
  static override description =
    'One preset for both stages and one run folder: <out>/first-stage (the autoencoder run, skipped with --first-stage) and ' +
    '<out>/ldm (the LDM run; give it to `difftalk render --checkpoint`). Each holds checkpoints, loss.svg, sample grids and ' +
    'TensorBoard event files (tensorboard --logdir <out>). A preset that cannot run on the backend (e.g. paper on wasm) is ' +
    'refused before any work with its estimated memory and time per step. --resume continues both stages. ' +
    '`train autoencoder`, `train ldm` and `train syncnet` train the stages one at a time. ' +
    'Backends: wasm on CPU-only machines (tiny, small), webgpu or tensorflow on a GPU (small, paper); cpu is a slow reference.';
  static override examples = [
    '<%= config.bin %> train --data data/aoc --out runs/aoc --preset tiny --first-stage-steps 300 --first-stage-lr 2e-3 --steps 300 --lr 1e-3 --backend wasm',
    '<%= config.bin %> train --data data/hdtf --out runs/hdtf --preset paper --first-stage models/vq-f4/model.ckpt --backend webgpu',
  ];
  static override flags = {
    ...commonTrainFlags({ ...DEFAULT_LDM, preset: 'tiny', batch: DEFAULT_LDM.batchSize }),
    'first-stage': Flags.string({
      summary: 'Use this first stage instead of training one: an autoencoder run folder or a VQ checkpoint (LDM vq-f4 model.ckpt).',
    }),
    'first-stage-steps': Flags.integer({ min: 1, default: DEFAULT_FIRST_STAGE_STEPS, summary: 'Autoencoder steps (when it is trained here).' }),
    'first-stage-batch': Flags.integer({ min: 1, summary: 'Autoencoder batch (default: --batch).' }),
    'first-stage-lr': Flags.string({ summary: 'Autoencoder absolute learning rate (default: --first-stage-base-lr × batch).' }),
    'first-stage-base-lr': Flags.string({ default: String(DEFAULT_FIRST_STAGE_BASE_LR), summary: 'Autoencoder per-sample learning rate.' }),
  };

  async run(): Promise<{ backend: string; device?: GpuDevice; firstStage: TrainResult | string; ldm: TrainResult; summary: string[] }> {
    const { flags } = await this.parse(Train);
    const onEvent = this.events(flags['log-level'], flags['log-every']);
    const common = commonTrainOptions(flags);
    const aeBatch = flags['first-stage-batch'] ?? flags.batch;
    const stages = flags['first-stage'] ? (['ldm'] as const) : (['autoencoder', 'ldm'] as const);
    const batchOf = (s: 'autoencoder' | 'ldm') => (s === 'autoencoder' ? aeBatch : flags.batch);
    const check = (backend: string) => {
      for (const s of stages) checkPreset(flags.preset, [s], backend, batchOf(s) * flags.accumulate);
    };
    if (flags.backend !== 'auto') check(flags.backend);
    const { backend, precision, device } = await startBackend(flags.backend, flags.precision, onEvent);
    check(backend);
    const summary: string[] = [];
    const ldmOut = path.join(flags.out, LDM_DIR);
    let firstStage: TrainResult | string;
    if (flags['first-stage']) firstStage = flags['first-stage'];
    else {
      const aeOut = path.join(flags.out, FIRST_STAGE_DIR);
      const ae = await recordedRun('first stage (autoencoder)', aeOut, onEvent, 'the LDM trains next on this first stage', (ev) =>
        trainAutoencoder({
          ...DEFAULT_TRAIN,
          ...common,
          precision,
          out: aeOut,
          steps: flags['first-stage-steps'],
          batchSize: aeBatch,
          baseLr: positiveNumber('first-stage-base-lr', flags['first-stage-base-lr']),
          lr: flags['first-stage-lr'] === undefined ? undefined : positiveNumber('first-stage-lr', flags['first-stage-lr']),
          onEvent: ev,
        }),
      );
      for (const l of ae.summary) this.log(l);
      summary.push(...ae.summary);
      firstStage = ae.result;
    }
    const next = `${this.config.bin} render --checkpoint ${ldmOut} --video <person.mp4> --audio <speech.wav> -o out.mp4`;
    const ldm = await recordedRun('conditional LDM', ldmOut, onEvent, next, (ev) =>
      trainLdm({
        ...DEFAULT_LDM,
        ...common,
        precision,
        out: ldmOut,
        firstStage: typeof firstStage === 'string' ? firstStage : firstStage.out,
        onEvent: ev,
      }),
    );
    for (const l of ldm.summary) this.log(l);
    summary.push(...ldm.summary);
    return { backend, ...(device ? { device } : {}), firstStage, ldm: ldm.result, summary };
  }
}
