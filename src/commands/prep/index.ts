import os from 'node:os';
import { Args, Errors, Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { numberFlag } from '../../cli/flags.js';
import { renderPrepSummary } from '../../cli/summary.js';
import { DEFAULT_PREP_CONFIG, runPrep, type PrepConfig, type PrepResult, type PrepSource } from '../../prep/pipeline.js';
import { BUILTIN_HDTF_MANIFEST } from '../../prep/annotations.js';
import { DifftalkError } from '../../util/errors.js';

/** Exit statuses of a run stopped by a signal (128 + the signal number, as a shell reports them). */
const EXIT_SIGINT = 130;
const EXIT_SIGTERM = 143;

export default class Prep extends BaseCommand {
  static override summary = 'Build a talking-head dataset: HDTF annotations or videos → Arrow shards + dataset.json.';
  static override description =
    'Downloads (yt-dlp), cuts, crops and normalises clips (25 fps, 256/512 px, 16 kHz mono), finds 478 MediaPipe face landmarks ' +
    '(+ iBUG-68), computes per-frame audio feature windows, samples DiffTalk reference frames and writes Arrow IPC shards. ' +
    'Rerunning the same command resumes where it stopped.';

  static override examples = [
    '<%= config.bin %> prep --hdtf --subset WDA --limit 5 --out data/hdtf',
    '<%= config.bin %> prep --hdtf HDTF_dataset --out data/hdtf256 --subset WDA,WRA --limit 20',
    '<%= config.bin %> prep --input videos/ --out data/mine --size 512 --landmarker tfjs --preview',
    '<%= config.bin %> prep --hdtf HDTF_dataset --out data/part-3 --shard 3/16',
  ];

  static override args = {
    folder: Args.directory({
      description: '--hdtf: folder with the 15 HDTF annotation files (default: the clip manifest shipped with difftalk).',
      exists: true,
    }),
  };

  static override flags = {
    hdtf: Flags.boolean({
      summary: 'Prepare HDTF clips: from the shipped clip manifest, or from the annotation folder given after it.',
      exclusive: ['input'],
    }),
    input: Flags.string({ summary: 'Video file or folder of videos (repeatable).', multiple: true, exclusive: ['hdtf'] }),
    out: Flags.string({ summary: 'Dataset folder (created; rerun to resume).', required: true }),
    subset: Flags.string({ summary: 'HDTF subsets, comma-separated.', default: 'RD,WDA,WRA' }),
    limit: Flags.integer({ summary: 'Prepare at most N usable clips.', min: 1 }),
    size: Flags.option({ options: ['256', '512'] as const, default: '256', summary: 'Side of the square face crop in pixels.' })(),
    'image-format': Flags.option({ options: ['jpeg', 'png'] as const, default: 'jpeg', summary: 'Image encoding in the shards.' })(),
    'jpeg-quality': Flags.integer({ default: DEFAULT_PREP_CONFIG.jpegQuality, min: 1, max: 100, summary: 'JPEG quality.' }),
    'shard-rows': Flags.integer({ default: DEFAULT_PREP_CONFIG.shardRows, min: 1, summary: 'Rows (frames) per Arrow shard at most.' }),
    landmarker: Flags.option({ options: ['mediapipe', 'tfjs'] as const, default: 'mediapipe', summary: 'Landmark engine.' })(),
    'face-model': Flags.file({ exists: true, summary: "FaceLandmarker .task bundle (default: Google's official model, cached)." }),
    smoothing: Flags.string({ default: DEFAULT_PREP_CONFIG.smoothing, summary: 'Temporal landmark smoothing: none | ema:<alpha> | savgol:<window>.' }),
    'max-bad-frames': Flags.string({
      default: String(DEFAULT_PREP_CONFIG.maxBadFrameFraction),
      summary: 'Drop a clip when more than this fraction of frames has not exactly one face.',
    }),
    'audio-feature': Flags.string({
      multiple: true,
      summary: 'Audio feature (repeatable): mfcc, mel, mel:nMels=64, onnx:model=enc.onnx,id=w2v, deepspeech:model=output_graph.pb (DiffTalk (8,16,29)).',
      default: DEFAULT_PREP_CONFIG.audioFeatures,
    }),
    'audio-window': Flags.string({ multiple: true, summary: 'Feature frames per video frame, per feature: mfcc=20 (repeatable).' }),
    seed: Flags.integer({ default: DEFAULT_PREP_CONFIG.seed, summary: 'Seed of the reference sampler and the identity split.' }),
    'reference-policy': Flags.option({
      options: ['drop-clip', 'farthest'] as const,
      default: 'drop-clip',
      summary: 'Clips too short for the 60-frame reference rule: drop, or use the farthest frame.',
    })(),
    'test-fraction': Flags.string({ default: String(DEFAULT_PREP_CONFIG.testFraction), summary: 'Fraction of identities in the test split.' }),
    'split-file': Flags.file({ exists: true, summary: 'Split list: "<clip_id> train|test" lines, or a DiffTalk train_name.txt.' }),
    'allow-identity-leak': Flags.boolean({ default: false, summary: 'Accept a split file that puts one person in both splits.' }),
    'crop-ratio': Flags.string({ summary: '--input: enlargement of the tracked face box (default 1.2).' }),
    shard: Flags.string({ summary: 'Array job: prepare partition i of n (i/n, 0-based); merge with `prep merge`.' }),
    concurrency: Flags.integer({ default: 4, min: 1, summary: 'Parallel downloads.' }),
    workers: Flags.integer({
      default: Math.min(8, Math.max(2, os.cpus().length)),
      defaultHelp: async () => 'CPU cores, 2 to 8',
      min: 1,
      max: 64,
      summary: 'Clips prepared at once, each with its own landmark engine (mediapipe).',
    }),
    retries: Flags.integer({ default: 3, min: 0, summary: 'Retries of a transient download failure (exponential backoff).' }),
    'retry-failed': Flags.boolean({ default: false, summary: 'Retry videos/clips recorded as failed in an earlier run.' }),
    'keep-work': Flags.boolean({ default: false, summary: "Keep each finished clip's normalised video and audio in work/<clip>/ (deleted by default)." }),
    preview: Flags.boolean({ default: false, summary: 'Write a PNG contact sheet with landmarks and masks per clip (previews/).' }),
    force: Flags.boolean({
      default: false,
      summary: 'Write into a non-empty folder difftalk did not create, or start over a folder prepared with other settings.',
    }),
    'max-download': Flags.string({ default: '4096', summary: 'Largest video download accepted, in MiB (yt-dlp --max-filesize).' }),
  };

  async run(): Promise<PrepResult> {
    const { flags, args } = await this.parse(Prep);
    if (args.folder !== undefined && !flags.hdtf)
      throw new DifftalkError('bad-flag', `unexpected argument ${args.folder}`, { suggestion: 'an annotation folder goes after --hdtf; videos go in --input' });
    const num = (name: string, v: string, lo: number, hi: number) => numberFlag(name, v, { ge: lo, le: hi });
    let source: PrepSource;
    if (flags.hdtf) {
      const subsets = flags.subset.split(',').map((s) => s.trim().toUpperCase());
      for (const s of subsets) if (!['RD', 'WDA', 'WRA'].includes(s)) throw new DifftalkError('bad-flag', `--subset: unknown subset ${s} (RD, WDA, WRA)`);
      source = { kind: 'hdtf', dir: args.folder ?? BUILTIN_HDTF_MANIFEST, subsets: subsets as ('RD' | 'WDA' | 'WRA')[], limit: flags.limit };
    } else if (flags.input?.length) {
      source = {
        kind: 'input',
        paths: flags.input,
        limit: flags.limit,
        cropRatio: flags['crop-ratio'] ? num('crop-ratio', flags['crop-ratio'], 0.1, 10) : undefined,
      };
    } else {
      throw new DifftalkError('bad-flag', 'give --hdtf [annotation folder] or --input <video file or folder>');
    }
    const audioWindows: Record<string, number> = {};
    for (const w of flags['audio-window'] ?? []) {
      const m = /^([a-z0-9_-]+)=(\d+)$/.exec(w);
      if (!m) throw new DifftalkError('bad-flag', `--audio-window expects name=frames, got ${w}`);
      audioWindows[m[1]!] = Number(m[2]);
    }
    let shard: { index: number; count: number } | undefined;
    if (flags.shard) {
      const m = /^(\d+)\/(\d+)$/.exec(flags.shard);
      if (!m) throw new DifftalkError('bad-flag', `--shard expects i/n, got ${flags.shard}`);
      shard = { index: Number(m[1]), count: Number(m[2]) };
    }
    const config: PrepConfig = {
      ...DEFAULT_PREP_CONFIG,
      size: Number(flags.size) as 256 | 512,
      imageFormat: flags['image-format'],
      jpegQuality: flags['jpeg-quality'],
      shardRows: flags['shard-rows'],
      landmarker: flags.landmarker,
      faceModel: flags['face-model'],
      smoothing: flags.smoothing,
      maxBadFrameFraction: num('max-bad-frames', flags['max-bad-frames'], 0, 1),
      audioFeatures: flags['audio-feature'],
      audioWindows,
      seed: flags.seed,
      referencePolicy: flags['reference-policy'],
      testFraction: num('test-fraction', flags['test-fraction'], 0, 1),
      splitFile: flags['split-file'],
      allowIdentityLeak: flags['allow-identity-leak'],
    };
    // SIGTERM/SIGINT stop the run cleanly: the clips in progress are left to be redone, exit 143/130.
    const stop = new AbortController();
    const onSignal = (sig: NodeJS.Signals) => stop.abort(sig);
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    const maxDownloadMiB = num('max-download', flags['max-download'], 1, 1024 ** 2);
    let result: PrepResult;
    try {
      result = await runPrep(source, config, {
        out: flags.out,
        shard,
        concurrency: flags.concurrency,
        retries: flags.retries,
        retryFailed: flags['retry-failed'],
        preview: flags.preview,
        keepWork: flags['keep-work'],
        clipWorkers: flags.workers,
        force: flags.force,
        maxDownloadBytes: Math.round(maxDownloadMiB * 1024 ** 2),
        signal: stop.signal,
        onEvent: this.events(flags['log-level']),
      });
    } catch (e) {
      if (e instanceof DifftalkError && e.code === 'interrupted') {
        // oclif's --json path reads `exitCode`, the plain path `oclif.exit`: set both (as BaseCommand does for exit 2).
        const exit = stop.signal.reason === 'SIGINT' ? EXIT_SIGINT : EXIT_SIGTERM;
        throw Object.assign(new Errors.CLIError(e.message, { exit, code: e.code, suggestions: e.suggestion ? [e.suggestion] : undefined }), { exitCode: exit });
      }
      throw e;
    } finally {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    }
    if (!this.jsonEnabled()) this.log(renderPrepSummary(result));
    return result;
  }
}
