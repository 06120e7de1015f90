/**
 * `difftalk eval`: score generated talking-head videos against ground truth.
 *
 * Protocol (docs/commands/eval.md):
 * 1. Pair clips by name: file ↔ file; folder ↔ folder (same base name, any video extension); videos ↔ a prepared
 *    dataset (base name = clip_id; GT frames from the shards' `image` column).
 * 2. Frame rates are aligned by resampling the prediction to the GT's rate (ffmpeg fps filter, noted); frame counts
 *    are aligned to the shorter one and the mismatch is recorded in the clip's notes; GT is decoded at the
 *    prediction's size (a size mismatch is noted).
 * 3. Frame metrics (PSNR, SSIM, LPIPS) on full frames (`crop: 'none'`) or on face crops (`crop: 'face'`, default):
 *    the SyncNet crop rule (face-crop.ts) from the GT's landmark boxes, applied to both videos, at `cropSize`².
 *    Reported as the mean of per-frame values over all frames of all clips (the talking-head convention).
 * 4. LMD on full frames at the prediction's resolution, raw per-frame landmarks of the LandmarkEngine.
 * 5. LSE-D / LSE-C on the prediction's own SyncNet face crops (its landmarks) with its own audio track (or the GT's
 *    audio when the prediction has none); mean over videos (Wav2Lip aggregation).
 * 6. `baseline`: the same scores for GT vs GT, and LSE of the GT video with its audio shifted by `baselineShift` frames.
 * 7. FID (pytorch-fid InceptionV3 pool3) between the set of all prediction crops and all GT crops (the frames the frame
 *    metrics see), one value per system for the whole run ('dataset' in the summary); biased by the sample count.
 * 8. FVD (I3D Kinetics-400, StyleGAN-V / LatentSync protocol, metrics/fvd.ts) on clips of 16 consecutive compared
 *    frames (the frames the frame metrics see), one value per run like FID.
 */
import sharp from 'sharp';
import { loadAudio16k, type AudioData } from '../audio/wav.js';
import { createLandmarkEngine, type LandmarkEngineName } from '../face/landmarks/index.js';
import { LM68_VALUES } from '../face/ibug68.js';
import { maskRows } from '../face/masks.js';
import { applyCropTrack, cropsToFrames, meshBox, syncnetCropTrack, type CropTrack } from '../face/sync-crop.js';
import type { FaceLandmarks, LandmarkEngine } from '../face/types.js';
import { probeMedia } from '../media/probe.js';
import type { RgbFrames } from '../media/types.js';
import { FidMetric, inceptionFeatures } from '../metrics/fid.js';
import { FvdMetric } from '../metrics/fvd.js';
import { ibug68FromResults, LmdMetric } from '../metrics/lmd.js';
import { loadLpips, LpipsMetric, type Lpips, type LpipsNet } from '../metrics/lpips.js';
import { LseMetric, SAMPLES_PER_VIDEO_FRAME, SyncStream, type SyncScores } from '../metrics/lse.js';
import { frameAt, type MeanFrameMetric, worseFirst, type MetricDirection } from '../metrics/metric.js';
import { FramePool } from '../metrics/frame-pool.js';
import { PsnrMetric } from '../metrics/psnr.js';
import { SsimMetric, type SsimVariant } from '../metrics/ssim.js';
import type { NetExecutor } from '../models/net-runner.js';
import { loadFidInception, type FidInception } from '../models/inception.js';
import { loadS3fd, type S3fd } from '../models/s3fd.js';
import { referenceSyncScores, type ReferenceInput } from '../metrics/sync-reference.js';
import { loadI3d, type I3d } from '../models/i3d.js';
import { loadSyncNetRunner, type SyncNetIdentity } from '../models/syncnet-weights.js';
import { SYNCNET_SIZE } from '../models/syncnet.js';
import { DifftalkError } from '../util/errors.js';
import { silent, type OnEvent } from '../util/events.js';
import { sha256File } from '../util/fs.js';
import { VERSION } from '../util/version.js';
import { chunkFrames, openClipReader, pairedChunks, selectFrames, type ClipReader, type Size } from './clip-reader.js';
import type { Source } from './inputs.js';
import { readDifftalkList } from './difftalk-input.js';
import { pairClips } from './inputs.js';
import { checkReportFolder } from './report.js';

export { pairClips, type Source } from './inputs.js';

export type SyncCrop = 'landmarks' | 'reference';
export const SYNC_CROPS: readonly SyncCrop[] = ['landmarks', 'reference'];

export type EvalMetric = 'psnr' | 'ssim' | 'lpips' | 'lse' | 'lmd' | 'fid' | 'fvd';
export const EVAL_METRICS: readonly EvalMetric[] = ['psnr', 'ssim', 'lpips', 'lse', 'lmd', 'fid', 'fvd'];
export const DEFAULT_EVAL_METRICS: readonly EvalMetric[] = ['psnr', 'ssim', 'lmd'];

export interface EvalOptions {
  pred: string;
  gt: string;
  out: string;
  metrics?: readonly EvalMetric[];
  crop?: 'none' | 'face';
  /** Side of the face crops for the frame metrics (default 224). */
  cropSize?: number;
  baseline?: boolean;
  /** Audio shift (video frames) of the shifted-audio baseline (default 10 = 0.4 s). */
  baselineShift?: number;
  /** SyncNet weights file; default: the imported `syncnet-v2` kind from the weights cache. */
  syncnetWeights?: string;
  /**
   * Face crops LSE scores: 'landmarks' (default: the SyncNet crop rule on the landmark engine's face boxes, face/sync-crop.ts)
   * or 'reference' (syncnet_python's run_pipeline.py: S3FD, tracking, JPEG round trips; metrics/sync-reference.ts).
   */
  syncCrop?: SyncCrop;
  /** S3FD weights file for `syncCrop: 'reference'`; default: the imported `s3fd` kind from the weights cache. */
  s3fdWeights?: string;
  lpipsNet?: LpipsNet;
  ssimVariant?: SsimVariant;
  landmarkEngine?: LandmarkEngineName;
  weightsCacheDir?: string;
  /** Frame rate of inputs given as frames (default 25; recorded in the report). */
  fps?: number;
  /** Resize the GT to the prediction's size when they differ (default: different sizes are an error). */
  resize?: boolean;
  /**
   * How prediction frame 0 meets the GT: 'first' (GT frame 0, or the frame a DiffTalk list names), an `offset:N` more
   * (prediction frame 0 = GT frame N; negative: the prediction starts earlier) or 'auto' (searched within ±25 frames by
   * matching the prediction to the GT outside the mouth, DiffTalk's test mask). Default 'first'.
   */
  align?: string;
  /** Compared lengths may differ by at most this many frames (default 5); beyond it is an error with the fix. */
  maxLengthDiff?: number;
  /** Audio for LSE when the prediction has no audio track (default: the GT's). */
  audio?: string;
  /** The DiffTalk test list (data_test.txt) a flat DiffTalk inference folder was made from. */
  difftalkList?: string;
  /** Names of the DiffTalk numeric ids: `clip_ids.csv` (vid,clip_id,…) or JSON ({"<clip id>": <vid>} or {"<vid>": "<clip id>"}). */
  difftalkMap?: string;
  /** Frames per decoded chunk (per side); default: as many as fit in 64 MiB, at most 64. */
  chunkFrames?: number;
  /** Write over a non-empty --out folder (checked before any work; default: refuse). */
  force?: boolean;
  /**
   * Executor of the LPIPS, FID Inception, SyncNet and FVD (I3D) networks (src/models/net-runner.ts): 'tfjs' (the
   * initialised backend; default), 'onnx' (onnxruntime-node on all CPU cores) or 'auto' (onnx when onnxruntime-node
   * loads, else tfjs). Recorded in the report's protocol.
   */
  netExecutor?: NetExecutor;
  /** The command line as typed (recorded in the report). */
  commandLine?: readonly string[];
  /** Worst frames per clip embedded in the HTML report (default 4). */
  worstFrames?: number;
  /** FVD clips per video (default: every complete 16-frame window; 1 = StyleGAN-V's one clip per video). */
  fvdClipsPerVideo?: number;
  onEvent?: OnEvent;
}

export type SystemName = 'pred' | 'gt' | `gt-shifted-audio(${string})`;

export interface ClipResult {
  clip: string;
  system: SystemName;
  pred: string;
  gt: string;
  frames: number;
  /** Mean over this clip's frames (frame metrics) or the clip's score (LSE), by full metric name. */
  scores: Record<string, number>;
  lse?: SyncScores;
  notes: string[];
  /** GT frame shown by prediction frame 0 after alignment (how it was found: `first`, `offset`, `auto`). */
  alignment?: { offset: number; method: 'first' | 'offset' | 'auto' };
}

export interface FrameResult {
  clip: string;
  system: SystemName;
  frame: number;
  values: Record<string, number>;
}

export interface WorstFrame {
  clip: string;
  frame: number;
  metric: string;
  value: number;
  /** JPEG of prediction | ground truth side by side. */
  jpeg: Uint8Array;
}

export interface MetricSummary {
  name: string;
  value: number;
  /** From the metric itself (its class's `direction`), never from the name. */
  direction: MetricDirection;
  /**
   * 'frames' (mean of per-frame values), 'videos' (mean of per-video scores), 'dataset' (one statistic over all frames:
   * FID) or 'clips' (one statistic over all 16-frame clips: FVD; `count` = clips).
   */
  averagedOver: 'frames' | 'videos' | 'dataset' | 'clips';
  count: number;
}

export interface EvalResult {
  out: string;
  files: { framesCsv: string; clipsCsv: string; summary: string; report: string };
  protocol: {
    tool: { name: 'difftalk'; version: string };
    commandLine?: readonly string[];
    /** Provenance of every weights file the run used: its kind, path and the sha256 of the file itself. */
    weights: Array<{ kind: string; file: string; sha256: string }>;
    /** Frame rate given to inputs that are frames (set only when one was). */
    framesFps?: number;
    crop: 'none' | 'face';
    cropSize: number;
    /** How LSE's face crops were made (set when LSE ran). */
    syncCrop?: SyncCrop;
    landmarkEngine?: { engine: string; model: string; sha256: string };
    syncnet?: SyncNetIdentity;
    baselineShift?: number;
    /** The alignment asked for and the length tolerance. */
    align: string;
    maxLengthDiff: number;
    /** Frames per decoded chunk per side of each clip (streaming decoding holds at most one chunk of each). */
    chunkFrames: number[];
    deviations: string[];
    /** What ran each network (`tfjs-wasm`, `onnxruntime-cpu (2 threads)` …), by network. */
    networks: Record<string, string>;
  };
  /** Dataset-level scores per system ('pred' first). */
  summary: Record<string, MetricSummary[]>;
  clips: ClipResult[];
  unmatched: { pred: string[]; gt: string[] };
  lseWindowsPerSecond?: number;
  frames: FrameResult[];
  worst: WorstFrame[];
}

/** Frame rate assumed for folders of frames when --fps is not given. */
export const DEFAULT_FRAMES_FPS = 25;
/** Default for `maxLengthDiff`: 5 frames (0.2 s at 25 fps) of rounding between a prediction and its GT. */
export const DEFAULT_MAX_LENGTH_DIFF = 5;
/** Search range of `--align auto` (frames either way) and the frames it compares. */
export const AUTO_ALIGN_RANGE = 25;
const AUTO_ALIGN_FRAMES = 16;
const AUTO_ALIGN_SIDE = 64;

async function sideBySide(a: Uint8Array, b: Uint8Array, w: number, h: number): Promise<Uint8Array> {
  const both = new Uint8Array(w * 2 * h * 3);
  for (let y = 0; y < h; y++) {
    both.set(a.subarray(y * w * 3, (y + 1) * w * 3), y * w * 6);
    both.set(b.subarray(y * w * 3, (y + 1) * w * 3), y * w * 6 + w * 3);
  }
  const scale = Math.min(1, 256 / h);
  return new Uint8Array(
    await sharp(both, { raw: { width: w * 2, height: h, channels: 3 } })
      .resize(Math.round(w * 2 * scale), Math.round(h * scale))
      .jpeg({ quality: 85 })
      .toBuffer(),
  );
}

/** Score every clip pair; writes nothing (see report.ts writeEvalReport). */
export async function runEval(opts: EvalOptions): Promise<EvalResult> {
  const onEvent = opts.onEvent ?? silent;
  const metrics = [...new Set(opts.metrics ?? DEFAULT_EVAL_METRICS)];
  for (const m of metrics)
    if (!EVAL_METRICS.includes(m)) throw new DifftalkError('bad-option', `unknown metric '${m}'`, { suggestion: `use ${EVAL_METRICS.join(', ')}` });
  const crop = opts.crop ?? 'face';
  const framesFps = opts.fps ?? DEFAULT_FRAMES_FPS;
  if (!(framesFps > 0) || !Number.isFinite(framesFps)) throw new DifftalkError('bad-option', `--fps must be a positive number, got ${framesFps}`);
  const cropSize = opts.cropSize ?? SYNCNET_SIZE;
  const shift = opts.baselineShift ?? 10;
  const ssimVariant = opts.ssimVariant ?? 'gaussian';
  const align = parseAlign(opts.align ?? 'first');
  const maxLengthDiff = opts.maxLengthDiff ?? DEFAULT_MAX_LENGTH_DIFF;
  if (!Number.isInteger(maxLengthDiff) || maxLengthDiff < 0)
    throw new DifftalkError('bad-option', `--max-length-diff must be a whole number ≥ 0, got ${maxLengthDiff}`);
  const deviations: string[] = [];

  // Fail early on a used --out, missing weights or inputs, before decoding anything.
  await checkReportFolder(opts.out, opts.force);
  if (opts.difftalkMap && !opts.difftalkList) {
    throw new DifftalkError('bad-option', '--difftalk-map names the clips of a --difftalk-list', { suggestion: 'pass --difftalk-list data_test.txt too' });
  }
  const difftalk = opts.difftalkList ? await readDifftalkList(opts.difftalkList, { mapping: opts.difftalkMap }) : undefined;
  const { pairs, unmatched } = await pairClips(opts.pred, opts.gt, { difftalk });
  if (opts.fps !== undefined && !pairs.some((p) => p.pred.kind === 'frames' || p.gt.kind === 'frames')) {
    throw new DifftalkError('bad-option', `--fps ${opts.fps} gives the frame rate of frames, but neither --pred nor --gt is frames`, {
      suggestion: 'drop --fps: videos and prepared datasets carry their own rate (a prediction at another rate than its GT is resampled, and noted)',
    });
  }
  const extraAudio = opts.audio ? await loadAudio16k(opts.audio) : undefined;
  const weights: EvalResult['protocol']['weights'] = [];
  const networks: Record<string, string> = {};
  let sync: Awaited<ReturnType<typeof loadSyncNetRunner>> | undefined;
  let lpips: Lpips | undefined;
  let fidNet: { net: FidInception; file: string } | undefined;
  let fid: FidMetric | undefined;
  let fvdNet: { net: I3d; file: string } | undefined;
  let fvd: FvdMetric | undefined;
  let engine: LandmarkEngine | undefined;
  /** PSNR/SSIM on every core (worker threads, closed at the end). */
  const framePool = metrics.includes('psnr') || metrics.includes('ssim') ? new FramePool() : undefined;
  let engineInfo: EvalResult['protocol']['landmarkEngine'];
  const syncCrop = opts.syncCrop ?? 'landmarks';
  if (!SYNC_CROPS.includes(syncCrop)) throw new DifftalkError('bad-option', `--sync-crop ${syncCrop} is not landmarks or reference`);
  const reference = syncCrop === 'reference' && metrics.includes('lse');
  let s3fd: { net: S3fd; file: string } | undefined;
  const frameCrops = crop === 'face' && (['psnr', 'ssim', 'lpips', 'fid', 'fvd'] as const).some((m) => metrics.includes(m));
  const needLandmarks = frameCrops || (metrics.includes('lse') && !reference) || metrics.includes('lmd') || align.method === 'auto';
  const clips: ClipResult[] = [];
  const frames: FrameResult[] = [];
  const worst: WorstFrame[] = [];
  /** The run's metrics per system: each clip's own instances are merged into these (the summary is their compute()). */
  const runFrameMetrics = new Map<SystemName, Map<string, MeanFrameMetric>>();
  const runLse = new Map<SystemName, LseMetric>();
  const mergeInto = (sys: SystemName, ms: readonly MeanFrameMetric[]) => {
    const into = runFrameMetrics.get(sys) ?? new Map<string, MeanFrameMetric>();
    runFrameMetrics.set(sys, into);
    for (const m of ms) {
      const have = into.get(m.name);
      if (have) have.merge(m);
      else into.set(m.name, m);
    }
  };
  let lseWindows = 0;
  let lseSeconds = 0;
  const chunkSizes: number[] = [];
  try {
    if (metrics.includes('lse')) {
      sync = await loadSyncNetRunner(opts.syncnetWeights, { cacheDir: opts.weightsCacheDir, executor: opts.netExecutor });
      weights.push({ kind: sync.identity.source, file: sync.identity.file, sha256: sync.identity.sha256 });
      if (sync.identity.source !== 'syncnet-v2') deviations.push(`LSE uses ${sync.identity.description}`);
      if (reference) {
        s3fd = await loadS3fd({ weights: opts.s3fdWeights, cacheDir: opts.weightsCacheDir, fetch: true, onEvent });
        weights.push({ kind: 's3fd', file: s3fd.file, sha256: await sha256File(s3fd.file) });
        deviations.push(
          'LSE face crops by the reference pipeline (syncnet_python run_pipeline.py: S3FD, one shot, IoU tracking, JPEG frames); ' +
            'differences: no PySceneDetect shot split, the crop avi written by ffmpeg mpeg4/XVID instead of OpenCV, JPEGs decoded by libjpeg-turbo (sharp), ' +
            'cv2.resize in floating point; a clip score is the mean over its face tracks',
        );
      }
    }
    if (sync) networks.syncnet = sync.net.executor;
    if (metrics.includes('lpips')) {
      lpips = await loadLpips(opts.lpipsNet ?? 'alex', { cacheDir: opts.weightsCacheDir, fetch: true, onEvent, executor: opts.netExecutor });
      networks[lpips.name] = lpips.executor;
    }
    if (metrics.includes('fid')) {
      fidNet = await loadFidInception({ cacheDir: opts.weightsCacheDir, executor: opts.netExecutor });
      networks['fid-inception'] = fidNet.net.executor;
      const sha = await sha256File(fidNet.file);
      weights.push({ kind: 'fid-inception', file: fidNet.file, sha256: sha });
      fid = new FidMetric(sha.slice(0, 12));
    }
    if (metrics.includes('fvd')) {
      fvdNet = await loadI3d({ cacheDir: opts.weightsCacheDir, fetch: true, onEvent, executor: opts.netExecutor });
      networks.i3d = fvdNet.net.executor;
      const sha = await sha256File(fvdNet.file);
      weights.push({ kind: 'i3d', file: fvdNet.file, sha256: sha });
      fvd = new FvdMetric(fvdNet.net, sha.slice(0, 12), { clipsPerVideo: opts.fvdClipsPerVideo, onEvent });
    }
    if (needLandmarks) {
      const created = await createLandmarkEngine({ engine: opts.landmarkEngine ?? 'tfjs' });
      engine = created.engine;
      engineInfo = created.info;
      deviations.push(
        `${reference ? 'frame-metric face crops' : 'face boxes'} from the ${created.info.engine} landmark engine (mesh bounding box) instead of S3FD; no shot detection or multi-face tracking (one face per clip)`,
      );
    }
    const lseLabel = sync ? lseLabelOf(sync.identity.label, syncCrop) : '';
    /** This clip's frame metrics, one set per system (fresh instances: update per chunk, compute per clip, then merge). */
    const makeFrameMetrics = (): MeanFrameMetric[] => [
      ...(metrics.includes('psnr') ? [new PsnrMetric({ withVariant: true, pool: framePool })] : []),
      ...(metrics.includes('ssim') ? [new SsimMetric(ssimVariant, { pool: framePool })] : []),
      ...(lpips ? [new LpipsMetric(lpips)] : []),
    ];
    const lmdLabel = engineInfo?.engine ?? '';

    // Clip-level bar (rate and ETA come from the renderer); the networks' own stages nest under it.
    const t0 = performance.now();
    onEvent({ type: 'stage-start', stage: 'eval', total: pairs.length, unit: 'clips' });
    for (const [pi, pair] of pairs.entries()) {
      onEvent({ type: 'progress', stage: 'eval', done: pi, total: pairs.length, detail: pair.id });
      if (pair.pred.kind === 'dataset') throw new DifftalkError('internal', 'prediction must be a video or frames');
      const notes: string[] = [];
      const pr = await openClipReader(pair.pred, framesFps);
      let gr = await openClipReader(pair.gt, framesFps);
      // A DiffTalk list with gaps (frames the export left out) against a full GT clip: the GT frames it lists, in order.
      const listed = pair.pred.listed;
      const gapped = listed !== undefined && !pair.gt.listed && listed.some((f, i) => i > 0 && f !== listed[i - 1]! + 1);
      if (gapped) {
        if (align.method !== 'first') {
          throw new DifftalkError(
            'bad-option',
            `${pair.id}: its DiffTalk list has gaps, so its frames are paired with the listed GT frames; --align ${opts.align} cannot apply`,
            {
              suggestion: 'leave --align at first for DiffTalk output (the list gives each frame its GT frame)',
            },
          );
        }
        gr = selectFrames(
          gr,
          listed.map((f) => f - 1),
        );
        notes.push(`DiffTalk list: ${listed.length} listed frames of GT frames ${listed[0]}…${listed.at(-1)} (1-based; gaps skipped)`);
      }
      const predHasAudio = pair.pred.kind === 'video' && (await probeMedia(pair.pred.file)).hasAudio;
      const size = { width: pr.width, height: pr.height };
      if (gr.width !== pr.width || gr.height !== pr.height) {
        sizeMismatch(pair.id, gr, pr, opts.resize);
        notes.push(
          `GT is ${gr.width}×${gr.height}, prediction ${pr.width}×${pr.height}: ${pair.gt.kind === 'video' ? "GT decoded at the prediction's size" : "GT resized to the prediction's size"}`,
        );
      }
      const gtFps = gr.fps;
      // Different frame rates: the prediction is resampled to the GT's rate (by timestamp) and the note says so.
      const resample = Math.abs(gtFps - pr.fps) > 1e-3;
      if (resample) notes.push(`prediction is ${pr.fps} fps, GT ${gtFps} fps: prediction resampled to ${gtFps} fps`);
      if (resample && pair.pred.kind === 'frames') {
        throw new DifftalkError('fps-mismatch', `${pair.id}: prediction frames are taken at ${pr.fps} fps (--fps), the GT is ${gtFps} fps`, {
          suggestion: `pass --fps ${gtFps} if the frames were made at the GT's rate, or resample them first`,
        });
      }
      const predFps = resample ? gtFps : undefined;
      const predCount = await pr.count(predFps);
      const gtCount = await gr.count();

      // Alignment: GT frame = prediction frame + offset.
      const base = gapped ? 0 : (pair.pred.listed?.[0] ?? 1) - (pair.gt.listed?.[0] ?? 1);
      let offset = base + (align.method === 'offset' ? align.offset : 0);
      if (align.method === 'auto') {
        offset = await autoOffset(pr, gr, { base, predCount, gtCount, predFps, size, engine: engine!, id: pair.id });
        notes.push(`--align auto: prediction frame 0 is GT frame ${offset}`);
      }
      const predSkip = Math.max(0, -offset);
      const gtSkip = Math.max(0, offset);
      const pLen = Math.max(0, predCount - predSkip);
      const gLen = Math.max(0, gtCount - gtSkip);
      const n = Math.min(pLen, gLen);
      if (n === 0) {
        throw new DifftalkError('too-short', `${pair.id}: no frames to compare (prediction ${predCount}, GT ${gtCount}, offset ${offset})`, {
          suggestion: 'check --align (the offset points past the end of a clip) and that both inputs hold frames',
        });
      }
      if (Math.abs(pLen - gLen) > maxLengthDiff) {
        throw new DifftalkError(
          'length-mismatch',
          `${pair.id}: prediction has ${pLen} frames and GT ${gLen}${offset ? ` (from GT frame ${offset})` : ''}: they differ by ${Math.abs(pLen - gLen)} > --max-length-diff ${maxLengthDiff}`,
          {
            suggestion:
              pLen < gLen
                ? `if the prediction covers only the start of the GT, pass --max-length-diff ${Math.abs(pLen - gLen)} (the first ${n} frames are compared); if it starts later, pass --align offset:N or --align auto`
                : `the prediction is longer than its GT: check the pairing (--difftalk-list for DiffTalk output) or --align, or pass --max-length-diff ${Math.abs(pLen - gLen)} to compare the first ${n} frames`,
          },
        );
      }
      if (pLen !== gLen) notes.push(`frame counts differ (prediction ${pLen}, GT ${gLen}): first ${n} frames compared`);
      const alignment: ClipResult['alignment'] = { offset: gapped ? listed[0]! - 1 : offset, method: align.method };
      if (offset !== 0) onEvent({ type: 'log', level: 'info', message: `${pair.id}: prediction frame 0 aligned to GT frame ${offset} (${align.method})` });
      const chunk = opts.chunkFrames ?? chunkFrames(size.width, size.height);
      chunkSizes.push(chunk);
      const stream = () => pairedChunks({ reader: pr, skip: predSkip, fps: predFps }, { reader: gr, skip: gtSkip }, n, size, chunk);

      // Pass 1: landmarks of both (one side at a time: the engine tracks one clip), chunk by chunk.
      let predLms: FaceLandmarks[] | undefined;
      let gtLms: FaceLandmarks[] | undefined;
      if (engine) {
        gtLms = await detectAll(engine, gr.frames({ skip: gtSkip, count: n, chunk, size }));
        predLms = await detectAll(engine, pr.frames({ skip: predSkip, count: n, chunk, fps: predFps }));
      }
      const noFace = (l: FaceLandmarks[]) => l.filter((x) => x.status === 'no-face').length;
      if (gtLms && noFace(gtLms)) notes.push(`no face in ${noFace(gtLms)} GT frame(s): boxes interpolated`);
      if (predLms && noFace(predLms)) notes.push(`no face in ${noFace(predLms)} prediction frame(s): boxes interpolated`);

      const faceCrops =
        crop === 'face' && (metrics.includes('psnr') || metrics.includes('ssim') || metrics.includes('lpips') || fidNet !== undefined || fvd !== undefined);
      const gtTrack = gtLms && (faceCrops || (sync && !reference && opts.baseline)) ? syncnetCropTrack(gtLms.map(meshBox), `${pair.id} (GT)`) : undefined;
      const predTrack = sync && !reference ? syncnetCropTrack(predLms!.map(meshBox), `${pair.id} (prediction)`) : undefined;
      const p68 = metrics.includes('lmd') ? ibug68FromResults(predLms!) : undefined;
      const g68 = metrics.includes('lmd') ? ibug68FromResults(gtLms!) : undefined;

      // This clip's metric instances.
      const predMetrics = makeFrameMetrics();
      const gtMetrics = opts.baseline ? makeFrameMetrics() : [];
      if (p68) {
        predMetrics.push(new LmdMetric(engine!, lmdLabel));
        if (opts.baseline) gtMetrics.push(new LmdMetric(engine!, lmdLabel));
      }
      let predSync: SyncStream | undefined;
      let refJob: { predAudio?: AudioData; gtAudio?: AudioData; shiftedAudio?: AudioData } | undefined;
      let gtSync: SyncStream | undefined;
      let shiftedSync: SyncStream | undefined;
      let gtAudio: AudioData | undefined;
      if (sync) {
        if (Math.abs(pr.fps - 25) > 1e-3) notes.push(`SyncNet assumes 25 fps; this clip is ${pr.fps} fps`);
        if (pair.gt.kind === 'video' && (await probeMedia(pair.gt.file)).hasAudio) gtAudio = await loadAudio16k(pair.gt.file);
        // Audio from the first compared frame: the prediction's own (or --audio, which drives it) skips what the prediction
        // skips; the GT's skips what the GT skips (SAMPLES_PER_VIDEO_FRAME samples per 25 fps frame).
        const from = (a: AudioData | undefined, frames: number): AudioData | undefined =>
          a && frames > 0 ? { ...a, samples: a.samples.subarray(Math.min(a.samples.length, frames * SAMPLES_PER_VIDEO_FRAME)) } : a;
        gtAudio = from(gtAudio, gtSkip);
        const predAudio = predHasAudio ? from(await loadAudio16k(pair.pred.file), predSkip) : extraAudio ? from(extraAudio, predSkip) : gtAudio;
        if (!predAudio) {
          throw new DifftalkError('no-audio', `${pair.id}: the prediction has no audio track and the GT gives none; LSE needs the driving audio`, {
            suggestion: 'pass --audio <wav> (the audio the prediction was driven by), or a GT video with its audio',
          });
        }
        if (!predHasAudio)
          notes.push(extraAudio ? `prediction has no audio track: LSE uses --audio ${opts.audio}` : 'prediction has no audio track: LSE uses the GT audio');
        if (reference) {
          // the prediction's own audio (as the reference extracts it from its avi) when its file is used as is
          const own = predHasAudio && predSkip === 0 && pair.pred.kind === 'video';
          const shifted = gtAudio && {
            samples: gtAudio.samples.subarray(Math.min(gtAudio.samples.length, shift * 640)),
            sampleRate: gtAudio.sampleRate,
            channels: 1,
          };
          refJob = { predAudio: own ? undefined : predAudio, gtAudio, shiftedAudio: shifted };
          if (opts.baseline && !gtAudio) notes.push('GT has no audio (or is a prepared dataset): no LSE baselines');
        } else predSync = new SyncStream(sync.net, predAudio);
        if (opts.baseline && !reference) {
          if (!gtAudio) notes.push('GT has no audio (or is a prepared dataset): no LSE baselines');
          else {
            gtSync = new SyncStream(sync.net, gtAudio);
            // Shift: video frame i meets the audio of frame i + shift (the first shift·640 samples are dropped).
            shiftedSync = new SyncStream(sync.net, {
              samples: gtAudio.samples.subarray(Math.min(gtAudio.samples.length, shift * 640)),
              sampleRate: gtAudio.sampleRate,
            });
          }
        }
      }

      // Pass 2: prediction and GT in lockstep, chunk by chunk, through every metric's update().
      const frameVals: Array<Record<string, number>> = Array.from({ length: n }, () => ({}));
      const gtGtVals: Array<Record<string, number>> = Array.from({ length: n }, () => ({}));
      const keyMetric = predMetrics[0];
      const worstK = opts.worstFrames ?? 4;
      let candidates: Array<{ i: number; v: number; p: Uint8Array; g: Uint8Array; w: number; h: number }> = [];
      fvd?.beginVideo();
      const fvdUnused = fvd?.unusedFrames ?? 0;
      for await (const c of stream()) {
        const sub = (t: CropTrack): CropTrack => ({ rects: t.rects.slice(c.start, c.start + c.pred.count), interpolated: [] });
        const evalP = faceCrops ? cropsToFrames(applyCropTrack(c.pred, sub(gtTrack!), cropSize), cropSize) : c.pred;
        const evalG = faceCrops ? cropsToFrames(applyCropTrack(c.gt, sub(gtTrack!), cropSize), cropSize) : c.gt;
        const feed = async (
          ms: readonly MeanFrameMetric[],
          a: RgbFrames,
          b: RgbFrames,
          lm68: Float32Array | undefined,
          vals: Array<Record<string, number>>,
        ) => {
          for (const m of ms) {
            if (m instanceof LmdMetric) {
              const r = (x: Float32Array) => x.subarray(c.start * LM68_VALUES, (c.start + c.pred.count) * LM68_VALUES);
              m.updateLandmarks(r(lm68!), r(g68!));
            } else await m.update(a, b);
            m.takeFrames().forEach((v, k) => (vals[c.start + k]![m.name] = v));
          }
        };
        await feed(predMetrics, evalP, evalG, p68, frameVals);
        if (opts.baseline) await feed(gtMetrics, evalG, evalG, g68, gtGtVals);
        if (fidNet && fid)
          fid.update(await inceptionFeatures(evalP, { net: fidNet.net, onEvent }), await inceptionFeatures(evalG, { net: fidNet.net, onEvent }));
        if (fvd) await fvd.update(evalP, evalG);
        if (predSync) {
          const ts = performance.now();
          await predSync.push(applyCropTrack(c.pred, sub(predTrack!), SYNCNET_SIZE));
          if (gtSync && shiftedSync) {
            const gCrops = applyCropTrack(c.gt, sub(gtTrack!), SYNCNET_SIZE);
            await gtSync.push(gCrops);
            await shiftedSync.push(gCrops);
          }
          lseSeconds += (performance.now() - ts) / 1000;
        }
        // Worst frames by the first frame metric, in the direction that metric declares: keep only the current worst k.
        if (keyMetric && worstK > 0) {
          const cmp = worseFirst(keyMetric.direction);
          for (let k = 0; k < c.pred.count; k++) {
            const v = frameVals[c.start + k]![keyMetric.name]!;
            if (!Number.isFinite(v)) continue;
            if (candidates.length >= worstK && cmp(v, candidates.at(-1)!.v) >= 0) continue;
            candidates.push({ i: c.start + k, v, p: frameAt(evalP, k).slice(), g: frameAt(evalG, k).slice(), w: evalP.width, h: evalP.height });
            candidates = candidates.sort((x, y) => cmp(x.v, y.v) || x.i - y.i).slice(0, worstK);
          }
        }
      }

      if (fvd) {
        fvd.endVideo();
        const unused = fvd.unusedFrames - fvdUnused;
        if (unused > 0) notes.push(`FVD: ${unused} of ${n} frames fall outside its ${fvd.clipFrames}-frame clips and are not used`);
      }

      // LSE of the clip (per video), through LseMetric
      let lsePred: SyncScores | undefined;
      const lseRows: ClipResult[] = [];
      const gtPath = pair.gt.kind === 'dataset' ? `${pair.gt.dir}#${pair.gt.id}` : pair.gt.file;
      const lseOf = (sys: SystemName) => runLse.get(sys) ?? runLse.set(sys, new LseMetric()).get(sys)!;
      const baselineRows = (g: SyncScores, s: SyncScores) => {
        const shiftedName: SystemName = `gt-shifted-audio(${shift >= 0 ? '+' : ''}${shift})`;
        lseOf('gt').update(pair.id, g);
        lseOf(shiftedName).update(pair.id, s);
        lseRows.push({ clip: pair.id, system: 'gt', pred: gtPath, gt: gtPath, frames: n, scores: lseScores(g, lseLabel), lse: g, notes: [] });
        lseRows.push({
          clip: pair.id,
          system: shiftedName,
          pred: gtPath,
          gt: gtPath,
          frames: n,
          scores: lseScores(s, lseLabel),
          lse: s,
          notes: [`GT video with its audio advanced by ${shift} frames`],
        });
      };
      if (predSync) {
        const ts = performance.now();
        lsePred = await predSync.finish();
        lseOf('pred').update(pair.id, lsePred);
        lseWindows += lsePred.windows;
        if (gtSync && shiftedSync) baselineRows(await gtSync.finish(), await shiftedSync.finish());
        lseSeconds += (performance.now() - ts) / 1000;
      }
      if (refJob && sync && s3fd) {
        const ts = performance.now();
        const nets = { s3fd: s3fd.net, syncnet: sync.net };
        const predIn = referenceInput(pr, pair.pred, { skip: predSkip, fps: predFps, count: n, size, hasAudio: predHasAudio });
        if (predIn.kind === 'raw')
          notes.push('reference SyncNet crop: the compared frames were re-encoded (aligned, resampled or frames input), not the file itself');
        const r = await referenceSyncScores(predIn, nets, { audio: refJob.predAudio, onEvent });
        notes.push(...r.notes);
        lsePred = r.scores;
        if (lsePred) {
          lseOf('pred').update(pair.id, lsePred);
          lseWindows += lsePred.windows;
        }
        if (opts.baseline && refJob.gtAudio && refJob.shiftedAudio) {
          const gIn = referenceInput(gr, pair.gt, { skip: gtSkip, count: n, size, hasAudio: false });
          const g = await referenceSyncScores(gIn, nets, { audio: refJob.gtAudio, alternates: [refJob.shiftedAudio], onEvent });
          if (g.scores && g.alternateScores[0]) baselineRows(g.scores, g.alternateScores[0]);
          else notes.push(...g.notes.map((x) => `GT: ${x}`));
        }
        lseSeconds += (performance.now() - ts) / 1000;
      }

      const clipScores: Record<string, number> = {};
      for (const m of predMetrics) clipScores[m.name] = m.compute().value;
      if (lsePred) Object.assign(clipScores, lseScores(lsePred, lseLabel));
      clips.push({ clip: pair.id, system: 'pred', pred: pair.pred.file, gt: gtPath, frames: n, scores: clipScores, lse: lsePred, notes, alignment });
      // Notes change a number (frame counts, faces, resampling): the console shows them too, not only clips.csv.
      for (const note of notes) onEvent({ type: 'log', level: 'warn', message: `${pair.id}: ${note}` });
      frameVals.forEach((values, frame) => frames.push({ clip: pair.id, system: 'pred', frame, values }));
      mergeInto('pred', predMetrics);
      if (opts.baseline) {
        const gScores: Record<string, number> = {};
        for (const m of gtMetrics) gScores[m.name] = m.compute().value;
        const gtRow = lseRows.find((r) => r.system === 'gt');
        clips.push({
          clip: pair.id,
          system: 'gt',
          pred: gtPath,
          gt: gtPath,
          frames: n,
          scores: { ...gScores, ...(gtRow?.scores ?? {}) },
          lse: gtRow?.lse,
          notes: ['GT vs GT'],
        });
        gtGtVals.forEach((values, frame) => frames.push({ clip: pair.id, system: 'gt', frame, values }));
        mergeInto('gt', gtMetrics);
        clips.push(...lseRows.filter((r) => r.system !== 'gt'));
      }
      for (const o of candidates) {
        worst.push({ clip: pair.id, frame: o.i, metric: keyMetric!.name, value: o.v, jpeg: await sideBySide(o.p, o.g, o.w, o.h) });
      }
    }
    onEvent({ type: 'progress', stage: 'eval', done: pairs.length, total: pairs.length });
    onEvent({ type: 'stage-done', stage: 'eval', done: pairs.length, seconds: (performance.now() - t0) / 1000 });
  } finally {
    fidNet?.net.dispose();
    fvdNet?.net.dispose();
    sync?.net.dispose();
    s3fd?.net.dispose();
    lpips?.dispose();
    await framePool?.close();
    await engine?.close().catch(() => undefined);
  }

  // The summary is each run-level metric's compute(), its direction the metric's own.
  const summary: Record<string, MetricSummary[]> = {};
  const systems = [...new Set(clips.map((c) => c.system))];
  for (const sys of systems) {
    const rows: MetricSummary[] = [];
    for (const m of runFrameMetrics.get(sys)?.values() ?? []) {
      const r = m.compute();
      rows.push({ name: r.name, value: r.value, direction: r.direction, averagedOver: 'frames', count: r.frames });
    }
    const l = runLse.get(sys);
    if (l && l.videos.length) {
      const r = l.compute();
      const label = lseLabelOf(sync!.identity.label, syncCrop);
      rows.push({ name: `lse-d(${label})`, value: r.lseD, direction: LseMetric.direction['lse-d'], averagedOver: 'videos', count: r.videos });
      rows.push({ name: `lse-c(${label})`, value: r.lseC, direction: LseMetric.direction['lse-c'], averagedOver: 'videos', count: r.videos });
      rows.push({ name: `av-offset(${label})`, value: r.offset, direction: LseMetric.direction['av-offset'], averagedOver: 'videos', count: r.videos });
    }
    summary[sys] = rows;
  }
  if (fid) {
    const r = fid.compute();
    summary.pred = [...(summary.pred ?? []), { name: r.name, value: r.value, direction: r.direction, averagedOver: 'dataset', count: r.frames }];
    if (opts.baseline && summary.gt) {
      const g = fid.compute(true);
      summary.gt = [...summary.gt, { name: g.name, value: g.value, direction: g.direction, averagedOver: 'dataset', count: g.frames }];
    }
  }
  if (fvd) {
    const r = fvd.compute();
    summary.pred = [...(summary.pred ?? []), { name: r.name, value: r.value, direction: r.direction, averagedOver: 'clips', count: r.clips }];
    if (opts.baseline && summary.gt) {
      const g = fvd.compute(true);
      summary.gt = [...summary.gt, { name: g.name, value: g.value, direction: g.direction, averagedOver: 'clips', count: g.clips }];
    }
  }
  return {
    out: opts.out,
    files: { framesCsv: '', clipsCsv: '', summary: '', report: '' },
    protocol: {
      tool: { name: 'difftalk', version: VERSION },
      commandLine: opts.commandLine,
      weights,
      framesFps: pairs.some((p) => p.pred.kind === 'frames' || p.gt.kind === 'frames') ? framesFps : undefined,
      crop,
      cropSize,
      syncCrop: sync ? syncCrop : undefined,
      landmarkEngine: engineInfo,
      syncnet: sync?.identity,
      baselineShift: opts.baseline ? shift : undefined,
      align: opts.align ?? 'first',
      maxLengthDiff,
      chunkFrames: chunkSizes,
      deviations,
      networks,
    },
    summary,
    clips,
    unmatched,
    lseWindowsPerSecond: lseSeconds > 0 ? lseWindows / lseSeconds : undefined,
    frames,
    worst,
  };
}

/** `first`, `offset:N` (N an integer, may be negative) or `auto`. */
export function parseAlign(s: string): { method: 'first' | 'offset' | 'auto'; offset: number } {
  if (s === 'first' || s === 'auto') return { method: s, offset: 0 };
  const m = /^offset:(-?\d+)$/.exec(s);
  if (m) return { method: 'offset', offset: Number(m[1]) };
  throw new DifftalkError('bad-option', `--align ${s} is not first, offset:N or auto`, {
    suggestion: 'e.g. --align offset:3 (prediction frame 0 is GT frame 3)',
  });
}

async function detectAll(engine: LandmarkEngine, chunks: AsyncIterable<RgbFrames>): Promise<FaceLandmarks[]> {
  await engine.reset();
  const out: FaceLandmarks[] = [];
  for await (const c of chunks) out.push(...(await engine.detect(c)));
  return out;
}

/**
 * `--align auto`: the offset d (GT frame = prediction frame + d) within base ± AUTO_ALIGN_RANGE whose GT frames best
 * match 16 prediction frames above the mouth: rows above the subnasale (iBUG 33, the top of DiffTalk's test mask,
 * face/masks.ts maskRows) of the GT frame, compared at 64 px wide (mean squared difference). Each offset compares the
 * first 16 prediction frames that have a GT frame under it (from prediction frame max(0, −d)), so a short prediction
 * or one that starts before its GT is searched too; offsets that leave fewer frames are not candidates. Ties go to
 * the offset nearest the base.
 */
async function autoOffset(
  pr: ClipReader,
  gr: ClipReader,
  o: { base: number; predCount: number; gtCount: number; predFps?: number; size: Size; engine: LandmarkEngine; id: string },
): Promise<number> {
  const R = AUTO_ALIGN_RANGE;
  const m = Math.min(AUTO_ALIGN_FRAMES, o.predCount, o.gtCount);
  const dLo = o.base - R;
  const dHi = o.base + R;
  const usable = (d: number) => Math.max(0, -d) + m <= o.predCount && Math.max(0, d) + m <= o.gtCount;
  if (m < 4 || ![...Array(dHi - dLo + 1).keys()].some((k) => usable(dLo + k))) {
    throw new DifftalkError(
      'too-short',
      `${o.id}: --align auto compares ${AUTO_ALIGN_FRAMES} frames (at least 4) at offsets ${dLo}…${dHi}; the prediction has ${o.predCount} frames and the GT ${o.gtCount}`,
      { suggestion: 'pass --align offset:N with the known offset' },
    );
  }
  const pTo = Math.min(o.predCount, Math.max(0, -dLo) + m);
  const gFrom = Math.min(o.gtCount, Math.max(0, dLo));
  const gTo = Math.min(o.gtCount, Math.max(0, dHi) + m);
  const small = { width: AUTO_ALIGN_SIDE, height: Math.max(1, Math.round((AUTO_ALIGN_SIDE * o.size.height) / o.size.width)) };
  const chunk = chunkFrames(o.size.width, o.size.height);
  // Mask rows of the GT frames, from their landmarks at the prediction's size.
  const lms = await detectAll(o.engine, gr.frames({ skip: gFrom, count: gTo - gFrom, chunk, size: o.size }));
  const rows = lms.map((l) => {
    const r = l.status === 'no-face' ? null : maskRows(ibug68FromResults([l]));
    return Math.max(1, Math.min(small.height, Math.floor(((r ? r.test : o.size.height / 2) * small.height) / o.size.height)));
  });
  const collect = async (it: AsyncIterable<RgbFrames>) => {
    const parts: Uint8Array[] = [];
    for await (const c of it) parts.push(c.data.slice());
    return Buffer.concat(parts);
  };
  const g = await collect(gr.frames({ skip: gFrom, count: gTo - gFrom, chunk: 64, size: small }));
  const p = await collect(pr.frames({ skip: 0, count: pTo, chunk: 64, size: small, fps: o.predFps }));
  const fb = small.width * small.height * 3;
  let best = { d: o.base, err: Infinity };
  for (let d = dLo; d <= dHi; d++) {
    if (!usable(d)) continue;
    const p0 = Math.max(0, -d);
    let se = 0;
    let cnt = 0;
    for (let i = p0; i < p0 + m; i++) {
      const gi = i + d - gFrom;
      const lim = rows[gi]! * small.width * 3;
      for (let k = 0; k < lim; k++) {
        const x = p[i * fb + k]! - g[gi * fb + k]!;
        se += x * x;
      }
      cnt += lim;
    }
    const err = se / cnt;
    if (err < best.err || (err === best.err && Math.abs(d - o.base) < Math.abs(best.d - o.base))) best = { d, err };
  }
  return best.d;
}

/** Different sizes are an error unless resizing was asked for (issue 12 point 2: no silent resize). */
function sizeMismatch(id: string, gt: { width: number; height: number }, pred: { width: number; height: number }, resize: boolean | undefined): void {
  if (resize) return;
  throw new DifftalkError('size-mismatch', `${id}: GT is ${gt.width}×${gt.height}, prediction ${pred.width}×${pred.height}`, {
    suggestion: "pass --resize to resize the GT to the prediction's size (the report notes it), or render the prediction at the GT's size",
  });
}

/** Per-clip LSE scores by full name (`<part>(<weights label>)`, part as in LseMetric.direction). */
function lseScores(s: SyncScores, label: string): Record<string, number> {
  return { [`lse-d(${label})`]: s.lseD, [`lse-c(${label})`]: s.lseC, [`av-offset(${label})`]: s.offset };
}

/** LSE metric names carry the crop when it is not the default: `lse-d(<weights label>,reference-crop)`. */
function lseLabelOf(weightsLabel: string, syncCrop: SyncCrop): string {
  return syncCrop === 'reference' ? `${weightsLabel},reference-crop` : weightsLabel;
}

/** The reference pipeline's input: the file itself when it is compared as is, else the compared frames, re-encoded. */
function referenceInput(reader: ClipReader, src: Source, o: { skip: number; fps?: number; count: number; size: Size; hasAudio: boolean }): ReferenceInput {
  if (src.kind === 'video' && o.skip === 0 && o.fps === undefined) return { kind: 'file', file: src.file, hasAudio: o.hasAudio };
  async function* perFrame(): AsyncGenerator<Uint8Array> {
    for await (const c of reader.frames({ skip: o.skip, count: o.count, chunk: 16, size: o.size, fps: o.fps })) {
      const px = c.width * c.height * 3;
      for (let i = 0; i < c.count; i++) yield c.data.slice(i * px, (i + 1) * px);
    }
  }
  return { kind: 'raw', width: o.size.width, height: o.size.height, fps: o.fps ?? reader.fps, frames: perFrame() };
}
