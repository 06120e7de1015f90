import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { backendFlag, logEveryFlag, positiveNumber } from '../../cli/flags.js';
import { createLandmarkEngine } from '../../face/landmarks/index.js';
import { syncClipFromVideo, syncClipsFromDataset, trainSyncNet, type SyncClip, type SyncTrainResult } from '../../train/syncnet.js';
import { DifftalkError } from '../../util/errors.js';
import { initBackend, type BackendName } from '../../util/tf.js';
import { stoppableRun } from '../../cli/train-run.js';

export default class TrainSyncnet extends BaseCommand {
  static override summary = 'Train a SyncNet-style lip-sync expert (SyncNet v2 architecture, contrastive loss) for LSE scoring.';
  static override description =
    'Trains from a prepared dataset (frames + stored 13×20 MFCC windows) or from videos (face crops by the SyncNet crop rule, MFCC ' +
    'from the audio track). Checkpoints are those of every trainer (ckpt-<step>/ with model.safetensors, optimizer.safetensors and ' +
    'state.json; latest.json points at the newest; give the run folder to `eval --syncnet-weights`). Scores produced with ' +
    'these weights are labelled "trained by difftalk" and are not comparable with published LSE numbers. --width < 1 trains a ' +
    'reduced network (labelled as such) for CPU experiments.';

  static override examples = [
    '<%= config.bin %> train syncnet --data data/hdtf-prepared --out runs/sync --steps 20000 --backend tensorflow',
    '<%= config.bin %> train syncnet --video clip.mp4 --out runs/sync-small --steps 60 --batch 16 --width 0.25 --lr 1e-3',
    '<%= config.bin %> train syncnet --video clip.mp4 --out runs/sync-small --steps 200 --batch 16 --width 0.25 --lr 1e-3 --resume',
  ];

  static override flags = {
    data: Flags.directory({ summary: 'Prepared dataset (needs the mfcc audio feature with window 20).', exclusive: ['video'] }),
    video: Flags.file({ summary: 'Train from video file(s) with their own audio instead (repeatable).', multiple: true }),
    split: Flags.option({ options: ['train', 'test'] as const, default: 'train', summary: 'Dataset split to train on.' })(),
    out: Flags.directory({ summary: 'Checkpoint folder.', required: true }),
    steps: Flags.integer({ min: 1, default: 1000 }),
    batch: Flags.integer({ min: 2, default: 16, summary: 'Pairs per step (half in sync, half off sync).' }),
    lr: Flags.string({ default: '1e-4', summary: 'Adam learning rate.' }),
    width: Flags.string({ default: '1', summary: 'Channel multiplier (1 = the published syncnet_v2 size).' }),
    margin: Flags.string({ default: '20', summary: 'Contrastive margin on the Euclidean embedding distance.' }),
    'min-shift': Flags.integer({ min: 1, default: 5, summary: 'Smallest audio offset (frames) of an off-sync pair.' }),
    seed: Flags.integer({ default: 0 }),
    'checkpoint-every': Flags.integer({ min: 1, default: 500 }),
    resume: Flags.boolean({
      default: false,
      summary: 'Continue the run in --out from latest.json (weights, Adam state); --steps is the total to reach.',
    }),
    'resume-from': Flags.string({ summary: 'With --resume: continue from this checkpoint (a ckpt-* folder or a step) instead of latest.json.' }),
    force: Flags.boolean({ default: false, summary: 'Write into a non-empty --out folder that difftalk did not create.' }),
    'keep-last': Flags.integer({ min: 1, default: 3, summary: 'Checkpoints kept.' }),
    backend: backendFlag(),
    'log-every': logEveryFlag(),
  };

  async run(): Promise<SyncTrainResult> {
    const { flags } = await this.parse(TrainSyncnet);
    if (!flags.data && !flags.video?.length) throw new DifftalkError('bad-flag', 'give --data <prepared dataset> or --video <file>');
    const onEvent = this.events(flags['log-level'], flags['log-every']);
    const backend = await initBackend(flags.backend as BackendName, onEvent);
    let clips: SyncClip[];
    let dataSource: string;
    if (flags.data) {
      clips = await syncClipsFromDataset(flags.data, { split: flags.split });
      dataSource = `prepared dataset ${flags.data} (split ${flags.split})`;
    } else {
      const { engine } = await createLandmarkEngine({ engine: 'tfjs' });
      try {
        clips = [];
        for (const v of flags.video!) clips.push(await syncClipFromVideo(v, engine));
      } finally {
        await engine.close();
      }
      dataSource = `videos ${flags.video!.join(', ')} (SyncNet crop rule from tfjs landmarks)`;
    }
    const result = await stoppableRun(this, 'SyncNet expert', flags.out, onEvent, undefined, (ev, signal) =>
      trainSyncNet({
        out: flags.out,
        clips,
        dataSource,
        steps: flags.steps,
        batch: flags.batch,
        lr: positiveNumber('lr', flags.lr),
        width: positiveNumber('width', flags.width),
        margin: positiveNumber('margin', flags.margin),
        minShift: flags['min-shift'],
        seed: flags.seed,
        checkpointEvery: flags['checkpoint-every'],
        keepLast: flags['keep-last'],
        resume: flags.resume,
        resumeFrom: flags['resume-from'],
        force: flags.force,
        onEvent: ev,
        signal,
      }),
    );
    this.log(
      `trained to step ${result.steps} on ${backend}; checkpoint ${result.checkpoint} (model sha256 ${result.sha256}) — trained by difftalk, width ${result.config.width}`,
    );
    return result;
  }
}
