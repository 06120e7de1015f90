import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { mergeManifests, type DatasetManifest } from '../../dataset/manifest.js';

export default class PrepMerge extends BaseCommand {
  static override summary = 'Merge datasets prepared by an array job (prep --shard i/n) into one dataset.';
  static override examples = ['<%= config.bin %> prep merge data/part-* --out data/hdtf256'];
  static override strict = false;
  static override args = { dirs: Args.directory({ description: 'prepared dataset folders', required: true, exists: true }) };
  static override flags = { out: Flags.string({ summary: 'Merged dataset folder.', required: true }) };

  async run(): Promise<{ out: string; clips: number; frames: number; dropped: number; mergedFrom: string[] }> {
    const { argv, flags } = await this.parse(PrepMerge);
    const dirs = argv as string[];
    const m: DatasetManifest = await mergeManifests(dirs, flags.out);
    if (!this.jsonEnabled())
      this.log(`merged ${dirs.length} datasets into ${flags.out}: ${m.totals.done} clips, ${m.totals.frames} frames, ${m.totals.dropped} dropped`);
    return { out: flags.out, clips: m.totals.done, frames: m.totals.frames, dropped: m.totals.dropped, mergedFrom: dirs };
  }
}
