import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { exportDifftalk, type ExportDifftalkResult } from '../../export/difftalk.js';

export default class ExportDifftalk extends BaseCommand {
  static override summary = 'Write a prepared dataset in the layout the official DiffTalk code reads (data/HDTF/…, data_train.txt, data_test.txt).';
  static override description =
    'Images (256² JPEG), landmarks (.lms, 68 points in pixels), audio_smooth (.npy float32 8×16×29 from the dataset’s ' +
    'audio_deepspeech column), data.txt, the train/test lists and clip_ids.csv (vid ↔ clip id) under --out/data. Resumable: a ' +
    'rerun keeps the files already written. See docs/commands/export.md.';

  static override examples = [
    '<%= config.bin %> export difftalk --data data/hdtf --out ../DiffTalk',
    '<%= config.bin %> export difftalk --data data/hdtf --out exports/difftalk --json',
  ];

  static override flags = {
    data: Flags.directory({ summary: 'Prepared dataset folder (difftalk prep --out), with the deepspeech audio feature.', required: true }),
    out: Flags.directory({ summary: 'Folder to write data/ into (e.g. a checkout of the DiffTalk repository).', required: true }),
    force: Flags.boolean({ summary: 'Write into a non-empty folder not made by this export, or over an export of another dataset.', default: false }),
  };

  async run(): Promise<ExportDifftalkResult> {
    const { flags } = await this.parse(ExportDifftalk);
    const r = await exportDifftalk({ dataset: flags.data, out: flags.out, force: flags.force, onEvent: this.events(flags['log-level']) });
    this.log(
      `exported ${r.videos.length} videos, ${r.frames.total} frames (${r.frames.train} train / ${r.frames.test} test listed; ` +
        `${r.frames.notListed.noFace} without one face, ${r.frames.notListed.noReference} without a reference candidate) to ${r.out}/data`,
    );
    this.log(`files: ${r.files.written} written, ${r.files.kept} already there; images ${r.images.mode}${r.images.kernel ? ` (${r.images.kernel})` : ''}`);
    this.log(`vid ↔ clip id: ${r.layout.mapping}`);
    return r;
  }
}
