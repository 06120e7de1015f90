import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { commonTrainFlags, commonTrainOptions, nonNegativeNumber } from '../../cli/flags.js';
import { checkPreset, startBackend, stoppableRun, type GpuDevice } from '../../cli/train-run.js';
import { trainAutoencoder } from '../../train/autoencoder.js';
import { DEFAULT_TRAIN, type TrainResult } from '../../train/core.js';

export default class TrainAutoencoder extends BaseCommand {
  static override summary = "Train the VQ first stage (VQ-f4 architecture at the preset size) on a prepared dataset's frames.";
  static override description =
    'Loss: L1 reconstruction + codebook + 0.25·commitment (no LPIPS / discriminator: for small experiments; for the paper setup ' +
    "use LDM's released vq-f4). --mouth-weight w weights the L1 term 1 + w inside each frame's jaw polygon (the region the LDM " +
    'inpaints). Checkpoints are safetensors + state.json with <out>/latest.json; --resume continues exactly.';
  static override examples = [
    '<%= config.bin %> train autoencoder --data data/small --out runs/ae --preset tiny --steps 500 --lr 2e-3 --backend wasm',
    '<%= config.bin %> train autoencoder --data data/small --out runs/ae --preset tiny --steps 200 --batch 2 --lr 3e-3 --lr-schedule cosine --mouth-weight 4',
  ];
  static override flags = {
    'resume-from': Flags.string({ summary: 'With --resume: continue from this checkpoint (a ckpt-* folder or a step) instead of latest.json.' }),
    force: Flags.boolean({ default: false, summary: 'Write into a non-empty --out folder that difftalk did not create.' }),
    ...commonTrainFlags({ ...DEFAULT_TRAIN, preset: 'tiny', steps: 1000, batch: 8, baseLr: 4.5e-6 }),
    'mouth-weight': Flags.string({ default: '0', summary: 'Extra L1 weight inside the jaw polygon (0: plain L1, as VQGAN).' }),
  };

  async run(): Promise<TrainResult & { backend: string; device?: GpuDevice }> {
    const { flags } = await this.parse(TrainAutoencoder);
    const onEvent = this.events(flags['log-level'], flags['log-every']);
    const mouthWeight = nonNegativeNumber('mouth-weight', flags['mouth-weight']);
    const batch = flags.batch * flags.accumulate;
    if (flags.backend !== 'auto') checkPreset(flags.preset, ['autoencoder'], flags.backend, batch);
    const { backend, precision, device } = await startBackend(flags.backend, flags.precision, onEvent);
    checkPreset(flags.preset, ['autoencoder'], backend, batch);
    const next = `${this.config.bin} train ldm --data ${flags.data} --first-stage ${flags.out} --out <ldm run> --preset ${flags.preset}`;
    const result = await stoppableRun(this, 'autoencoder', flags.out, onEvent, next, (ev, signal) =>
      trainAutoencoder({
        ...DEFAULT_TRAIN,
        ...commonTrainOptions(flags),
        resumeFrom: flags['resume-from'],
        force: flags.force,
        mouthWeight,
        precision,
        onEvent: ev,
        signal,
      }),
    );
    return { ...result, backend, ...(device ? { device } : {}) };
  }
}
