import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { exportCheckpoint, type ExportCheckpointResult } from '../../export/checkpoint.js';
import { initBackend } from '../../util/tf.js';

export default class ExportCheckpoint extends BaseCommand {
  static override summary = 'Write a `difftalk train ldm` run as a PyTorch checkpoint that the reference DiffTalk code loads.';
  static override description =
    "torch.save's zip format with {'state_dict': …} under the reference LatentDiffusion names (model.diffusion_model.*, " +
    'model_ema.*, first_stage_model.*, cond_stage_model_for_audio / _audio_smooth / _ldm.*, the DDPM schedule buffers): ' +
    'torch.load(f, weights_only=True) opens it and the reference model loads it with load_state_dict(strict=True). ' +
    '--ema puts the EMA UNet in model.diffusion_model.* as well. See docs/commands/export.md.';
  static override examples = [
    '<%= config.bin %> export checkpoint --run runs/ldm --out model.ckpt',
    '<%= config.bin %> export checkpoint --run runs/ldm/ckpt-00020000 --out ema.ckpt --ema --force',
  ];
  static override flags = {
    run: Flags.string({ summary: 'A `difftalk train ldm` run folder (its latest checkpoint) or one of its ckpt-* folders.', required: true }),
    out: Flags.string({ summary: 'The .ckpt file to write.', required: true }),
    ema: Flags.boolean({ default: false, summary: 'Write the EMA UNet as model.diffusion_model.* too (the weights sampling uses).' }),
    force: Flags.boolean({ default: false, summary: 'Replace an existing --out file.' }),
  };

  async run(): Promise<ExportCheckpointResult> {
    const { flags } = await this.parse(ExportCheckpoint);
    const onEvent = this.events(flags['log-level']);
    await initBackend('cpu', onEvent);
    const r = await exportCheckpoint({ run: flags.run, out: flags.out, ema: flags.ema, force: flags.force, onEvent });
    this.log(`wrote ${r.out}: ${r.tensors} tensors, ${r.parameters.toLocaleString('en-US')} values, ${(r.bytes / 1e6).toFixed(1)} MB`);
    this.log(`  from ${r.checkpoint} (step ${r.step}), first stage ${r.firstStage}, model.diffusion_model = ${r.ema ? 'EMA' : 'trained'} weights`);
    return r;
  }
}
