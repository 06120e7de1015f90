import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { DEFAULT_TRAIN, trainAutoencoder, type TrainResult } from '../../train/loop.js';
import type { PresetName } from '../../train/presets.js';
import { initBackend, type BackendName } from '../../util/tf.js';
import { positive } from './ldm.js';

export default class TrainAutoencoder extends BaseCommand {
  static override summary = 'Train the VQ first stage (VQ-f4 architecture at the preset size) on a prepared dataset\'s frames.';
  static override description =
    'Loss: L1 reconstruction + codebook + 0.25·commitment (no LPIPS / discriminator: for small experiments; for the paper setup ' +
    'use LDM\'s released vq-f4). Checkpoints are safetensors + state.json with <out>/latest.json; --resume continues exactly.';
  static override examples = ['<%= config.bin %> train autoencoder --data data/small --out runs/ae --preset tiny --steps 500 --lr 2e-3 --backend wasm'];
  static override flags = {
    data: Flags.directory({ summary: 'Prepared dataset folder.', required: true }),
    out: Flags.directory({ summary: 'Run folder.', required: true }),
    preset: Flags.option({ options: ['paper', 'small', 'tiny'] as const, default: 'tiny' })(),
    steps: Flags.integer({ min: 1, default: 1000 }),
    batch: Flags.integer({ min: 1, default: 8 }),
    accumulate: Flags.integer({ min: 1, default: 1 }),
    'base-lr': Flags.string({ default: '4.5e-6', summary: 'Per-sample lr (LDM autoencoder configs use 4.5e-6).' }),
    lr: Flags.string({ summary: 'Absolute learning rate (overrides the base-lr rule).' }),
    seed: Flags.integer({ default: DEFAULT_TRAIN.seed }),
    'checkpoint-every': Flags.integer({ min: 1, default: DEFAULT_TRAIN.checkpointEvery }),
    'validate-every': Flags.integer({ min: 1, default: DEFAULT_TRAIN.validateEvery }),
    'sample-every': Flags.integer({ min: 1, default: DEFAULT_TRAIN.sampleEvery }),
    resume: Flags.boolean({ default: false }),
    backend: Flags.option({ options: ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'] as const, default: 'auto', summary: 'TensorFlow.js backend.' })(),
  };

  async run(): Promise<TrainResult & { backend: string }> {
    const { flags } = await this.parse(TrainAutoencoder);
    const onEvent = this.events(flags['log-level']);
    const backend = await initBackend(flags.backend as BackendName);
    onEvent({ type: 'log', level: 'info', message: `TensorFlow.js backend: ${backend}` });
    const result = await trainAutoencoder({
      ...DEFAULT_TRAIN,
      dataset: flags.data,
      out: flags.out,
      preset: flags.preset as PresetName,
      steps: flags.steps,
      batchSize: flags.batch,
      accumulate: flags.accumulate,
      baseLr: positive('base-lr', flags['base-lr']),
      lr: flags.lr === undefined ? undefined : positive('lr', flags.lr),
      seed: flags.seed,
      checkpointEvery: flags['checkpoint-every'],
      validateEvery: flags['validate-every'],
      sampleEvery: flags['sample-every'],
      resume: flags.resume,
      onEvent,
    });
    return { ...result, backend };
  }
}
