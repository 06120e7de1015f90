import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { DEFAULT_EVAL_METRICS, DEFAULT_FRAMES_FPS, DEFAULT_MAX_LENGTH_DIFF, EVAL_METRICS, runEval, type EvalMetric } from '../eval/pipeline.js';
import { summaryJson, writeEvalReport } from '../eval/report.js';
import { DIRECTION_TEXT } from '../metrics/metric.js';
import { DifftalkError } from '../util/errors.js';
import { initBackend, type BackendName } from '../util/tf.js';

export default class Eval extends BaseCommand {
  static override summary = 'Score generated talking-head videos against ground truth (PSNR, SSIM, LPIPS, LSE-D/LSE-C, LMD).';
  static override description =
    'Pairs clips by name, aligns frame counts, evaluates on face crops (SyncNet crop rule from landmarks) or full frames, and ' +
    'writes frames.csv, clips.csv, summary.json and report.html to --out. Every score is named with its variant and, for ' +
    'LSE, the SyncNet weights identity. See docs/commands/eval.md.';

  static override examples = [
    '<%= config.bin %> eval --pred out/render/clip.mp4 --gt data/clip.mp4 --out out/eval',
    '<%= config.bin %> eval --pred out/render --gt data/hdtf-prepared --out out/eval --metrics psnr,ssim,lpips,lse,lmd --baseline',
    '<%= config.bin %> eval --pred gen.mp4 --gt gt.mp4 --out ev --metrics lse --syncnet-weights runs/sync',
  ];

  static override flags = {
    pred: Flags.string({
      summary:
        'Generated video, a folder of videos, a folder of frames (PNG/JPG/WebP, natural order), a folder of such folders (one clip each), an ffmpeg-style pattern (frames/%05d.png) or a DiffTalk inference folder (with --difftalk-list).',
      required: true,
    }),
    gt: Flags.string({
      summary:
        'Ground-truth video, folder of videos, folder of frames or of frame folders, a pattern, a prepared dataset (clip_id = video base name), or a DiffTalk data root (images/<vid>_<frame>.jpg, with --difftalk-list).',
      required: true,
    }),
    out: Flags.directory({ summary: 'Output folder for the report files.', required: true }),
    metrics: Flags.string({ summary: `Comma-separated: ${EVAL_METRICS.join(',')}.`, default: DEFAULT_EVAL_METRICS.join(',') }),
    crop: Flags.option({ options: ['face', 'none'] as const, default: 'face', summary: 'Frame metrics on face crops (from GT landmarks) or full frames.' })(),
    'crop-size': Flags.integer({ min: 32, max: 1024, default: 224, summary: 'Side of the face crops for the frame metrics.' }),
    baseline: Flags.boolean({ summary: 'Add GT-vs-GT rows and LSE of the GT with shifted audio.', default: false }),
    'baseline-shift': Flags.integer({ default: 10, summary: 'Audio shift in frames for the shifted-audio baseline.' }),
    'ssim-variant': Flags.option({ options: ['gaussian', 'skimage'] as const, default: 'gaussian', summary: 'SSIM variant.' })(),
    'lpips-net': Flags.option({ options: ['alex', 'vgg'] as const, default: 'alex', summary: 'LPIPS backbone.' })(),
    'syncnet-weights': Flags.string({
      summary: 'SyncNet weights (a `difftalk train syncnet` run or ckpt-* folder, a .safetensors file, or syncnet_v2.model); default: the imported syncnet-v2.',
    }),
    'sync-crop': Flags.option({
      options: ['landmarks', 'reference'] as const,
      default: 'landmarks',
      summary:
        'Face crops for LSE: landmarks (SyncNet crop rule on landmark boxes) or reference (syncnet_python run_pipeline.py: S3FD, tracking, JPEG round trips; needs `weights fetch s3fd`).',
    })(),
    's3fd-weights': Flags.file({ summary: 'S3FD weights (sfd_face.pth or a converted .safetensors) for --sync-crop reference; default: the imported s3fd.' }),
    'landmark-engine': Flags.option({ options: ['tfjs', 'mediapipe'] as const, default: 'tfjs', summary: 'Landmark engine for face crops and LMD.' })(),
    'cache-dir': Flags.directory({ summary: 'Weights cache folder.' }),
    fps: Flags.string({ summary: `Frame rate of --pred/--gt given as folders of frames (default ${DEFAULT_FRAMES_FPS}; stated in the report).` }),
    resize: Flags.boolean({ summary: "Resize the GT to the prediction's size when they differ (otherwise an error).", default: false }),
    align: Flags.string({
      summary:
        'How prediction frame 0 meets the GT: first, offset:N (prediction frame 0 = GT frame N) or auto (searched within ±25 frames outside the mouth; reported).',
      default: 'first',
    }),
    'max-length-diff': Flags.integer({
      min: 0,
      default: DEFAULT_MAX_LENGTH_DIFF,
      summary: 'Compared lengths (after --align) may differ by at most this many frames; beyond it is an error.',
    }),
    audio: Flags.file({
      summary: 'Audio (WAV or any media ffmpeg reads) for LSE when the prediction has no audio track (default: the GT audio).',
      exists: true,
    }),
    'difftalk-list': Flags.file({
      summary: 'The data_test.txt a DiffTalk inference folder was made from: maps its {batch:04d}_{j:04d}.jpg files to clips and frames.',
      exists: true,
    }),
    'difftalk-map': Flags.file({
      summary: 'Names of the DiffTalk numeric ids: the clip_ids.csv of `difftalk export difftalk` or JSON {"<clip id>": <vid>}; default: the numeric id.',
      exists: true,
    }),
    'fvd-clips': Flags.integer({
      min: 1,
      summary: 'FVD clips per video (default: every complete 16-frame window; 1 = StyleGAN-V, one clip per video).',
    }),
    force: Flags.boolean({ summary: 'Write the report into a non-empty --out folder (its report files are replaced).', default: false }),
    backend: Flags.option({
      options: ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'] as const,
      summary: 'TensorFlow.js backend for every network. Default: LPIPS, FID and SyncNet on onnxruntime-node (all CPU cores) when it loads, the rest on wasm.',
      description:
        'Not given: the LPIPS, FID Inception and SyncNet (LSE) networks run on onnxruntime-node (native, multi-threaded CPU ' +
        'kernels; the optional dependency) when it loads, else on tfjs-wasm; landmarks and the rest run on tfjs-wasm. ' +
        'Given: every network runs on that tfjs backend (webgpu on a GPU; see `difftalk doctor`). The report names what ran each network.',
    })(),
  };

  async run(): Promise<unknown> {
    const { flags } = await this.parse(Eval);
    const metrics = flags.metrics
      .split(',')
      .map((m) => m.trim())
      .filter(Boolean) as EvalMetric[];
    const bad = metrics.filter((m) => !EVAL_METRICS.includes(m));
    if (bad.length) throw new DifftalkError('bad-flag', `unknown metric(s) ${bad.join(', ')}`, { suggestion: `use ${EVAL_METRICS.join(',')}` });
    await initBackend((flags.backend ?? 'wasm') as BackendName, this.events(flags['log-level']));
    const result = await writeEvalReport(
      await runEval({
        pred: flags.pred,
        gt: flags.gt,
        out: flags.out,
        metrics,
        crop: flags.crop,
        cropSize: flags['crop-size'],
        baseline: flags.baseline,
        baselineShift: flags['baseline-shift'],
        ssimVariant: flags['ssim-variant'],
        lpipsNet: flags['lpips-net'],
        syncnetWeights: flags['syncnet-weights'],
        syncCrop: flags['sync-crop'],
        s3fdWeights: flags['s3fd-weights'],
        landmarkEngine: flags['landmark-engine'],
        weightsCacheDir: flags['cache-dir'],
        force: flags.force,
        netExecutor: flags.backend === undefined ? 'auto' : 'tfjs',
        resize: flags.resize,
        align: flags.align,
        maxLengthDiff: flags['max-length-diff'],
        audio: flags.audio,
        difftalkList: flags['difftalk-list'],
        difftalkMap: flags['difftalk-map'],
        fvdClipsPerVideo: flags['fvd-clips'],
        fps: flags.fps === undefined ? undefined : Number(flags.fps),
        commandLine: [this.config.bin, this.id ?? 'eval', ...this.argv],
        onEvent: this.events(flags['log-level']),
      }),
    );
    for (const [system, rows] of Object.entries(result.summary)) {
      this.log(`${system}:`);
      for (const m of rows)
        this.log(
          `  ${m.name} = ${m.value.toFixed(4)} (${DIRECTION_TEXT[m.direction]}; ${m.averagedOver === 'dataset' ? `one statistic over ${m.count} frames` : m.averagedOver === 'clips' ? `one statistic over ${m.count} 16-frame clips` : `mean over ${m.count} ${m.averagedOver}`})`,
        );
    }
    for (const c of result.clips)
      if (c.alignment && c.alignment.method !== 'first') this.log(`${c.clip}: prediction frame 0 = GT frame ${c.alignment.offset} (${c.alignment.method})`);
    this.log(`report: ${result.files.report}`);
    return summaryJson(result);
  }
}
