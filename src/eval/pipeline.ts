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
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { loadAudio16k, type AudioData } from '../audio/wav.js';
import { decodeFrames } from '../media/frames.js';
import { createLandmarkEngine, type LandmarkEngineName } from '../face/landmarks/index.js';
import { probeMedia, type MediaInfo } from '../media/probe.js';
import { openDataset, readClipFrames } from '../dataset/dataset.js';
import { iterateRows, listShards } from '../dataset/shard-reader.js';
import type { FaceLandmarks, LandmarkEngine } from '../face/types.js';
import type { RgbFrames } from '../media/types.js';
import { DifftalkError } from '../util/errors.js';
import { silent, type OnEvent } from '../util/events.js';
import { exists, sha256File } from '../util/fs.js';
import { VERSION } from '../util/version.js';
import { FRAME_EXT, frameSize, listFrameFiles, naturalCompare, readFrames } from './frames-input.js';
import { checkReportFolder } from './report.js';
import { applyCropTrack, cropsToFrames, meshBox, syncnetCropTrack } from '../face/sync-crop.js';
import { ibug68FromResults, lmd, LmdMetric } from '../metrics/lmd.js';
import { loadLpips, LpipsMetric, type Lpips, type LpipsNet } from '../metrics/lpips.js';
import { LseMetric, syncScores, type SyncScores } from '../metrics/lse.js';
import { FidMetric, inceptionFeatures } from '../metrics/fid.js';
import { frameAt, worseFirst, type MetricDirection } from '../metrics/metric.js';
import { PsnrMetric, psnr } from '../metrics/psnr.js';
import { ssim, SSIM_NAMES, SsimMetric, type SsimVariant } from '../metrics/ssim.js';
import { loadSyncNet, type LoadedSyncNet, type SyncNetIdentity } from '../models/syncnet-weights.js';
import { loadFidInception, type FidInception } from '../models/inception.js';
import { SYNCNET_SIZE } from '../models/syncnet.js';

export type EvalMetric = 'psnr' | 'ssim' | 'lpips' | 'lse' | 'lmd' | 'fid';
export const EVAL_METRICS: readonly EvalMetric[] = ['psnr', 'ssim', 'lpips', 'lse', 'lmd', 'fid'];
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
  lpipsNet?: LpipsNet;
  ssimVariant?: SsimVariant;
  landmarkEngine?: LandmarkEngineName;
  weightsCacheDir?: string;
  /** Frame rate of inputs given as frames (default 25; recorded in the report). */
  fps?: number;
  /** Resize the GT to the prediction's size when they differ (default: different sizes are an error). */
  resize?: boolean;
  /** Write over a non-empty --out folder (checked before any work; default: refuse). */
  force?: boolean;
  /** The command line as typed (recorded in the report). */
  commandLine?: readonly string[];
  /** Worst frames per clip embedded in the HTML report (default 4). */
  worstFrames?: number;
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
  /** 'frames' (mean of per-frame values), 'videos' (mean of per-video scores) or 'dataset' (one statistic over all frames: FID). */
  averagedOver: 'frames' | 'videos' | 'dataset';
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
    landmarkEngine?: { engine: string; model: string; sha256: string };
    syncnet?: SyncNetIdentity;
    baselineShift?: number;
    deviations: string[];
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
const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg', '.webp', '.bmp', '.tif', '.tiff']);
const VIDEO_EXT = new Set(['.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg']);
const PSNR_NAME = `psnr(${PsnrMetric.variant})`;

type Source =
  | { kind: 'video'; id: string; file: string }
  | { kind: 'dataset'; id: string; dir: string }
  /** A folder of frames (`file` = the folder; `frames` naturally ordered). */
  | { kind: 'frames'; id: string; file: string; frames: string[] };

async function listSources(p: string, role: 'pred' | 'gt'): Promise<Source[]> {
  let st;
  try {
    st = await stat(p);
  } catch {
    throw new DifftalkError('file-missing', `--${role} ${p} does not exist`);
  }
  if (st.isFile() && IMAGE_EXT.has(path.extname(p).toLowerCase())) {
    // A single image is not a video: scoring it as a 1-frame clip against GT frame 0 is a silent misalignment.
    throw new DifftalkError('single-image', `--${role} ${p} is a single image, not a video or a sequence of frames`, {
      suggestion: `pass the video, or encode the frames losslessly first (ffmpeg -framerate 25 -i ${path.join(path.dirname(p), '%05d.png')} -c:v libx264rgb -crf 0 clip.mp4)`,
    });
  }
  if (st.isFile()) return [{ kind: 'video', id: path.basename(p).replace(/\.[^.]+$/, ''), file: p }];
  if (role === 'gt' && ((await exists(path.join(p, 'dataset.json'))) || (await exists(path.join(p, 'shards'))))) {
    const entries = await listShards(p);
    const ids = [...new Set(entries.map((e) => e.clipId ?? ''))].filter(Boolean);
    if (ids.length === 0) {
      // no manifest: read the clip ids from the shards
      for await (const rb of iterateRows(p, { columns: ['clip_id'] })) if (!ids.includes(rb.clipId)) ids.push(rb.clipId);
    }
    return ids.map((id) => ({ kind: 'dataset', id, dir: p }));
  }
  const frameFiles = await listFrameFiles(p);
  if (frameFiles.length > 0) return [{ kind: 'frames', id: path.basename(path.resolve(p)), file: p, frames: frameFiles }];
  const names = (await readdir(p)).filter((n) => VIDEO_EXT.has(path.extname(n).toLowerCase())).sort();
  if (names.length === 0) {
    // A folder of frame folders: one clip each.
    const subdirs = (await readdir(p, { withFileTypes: true }))
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort(naturalCompare);
    const clips: Source[] = [];
    for (const d of subdirs) {
      const files = await listFrameFiles(path.join(p, d));
      if (files.length > 0) clips.push({ kind: 'frames', id: d, file: path.join(p, d), frames: files });
    }
    if (clips.length > 0) return clips;
    throw new DifftalkError(
      'no-videos',
      `--${role} folder ${p} holds no video files (${[...VIDEO_EXT].join(', ')}), no frames (${[...FRAME_EXT].join(', ')}) and no folders of frames`,
    );
  }
  return names.map((n) => ({ kind: 'video', id: n.replace(/\.[^.]+$/, ''), file: path.join(p, n) }));
}

/** Pair prediction and GT clips by name (a single file on both sides pairs regardless of name). */
export async function pairClips(
  pred: string,
  gt: string,
): Promise<{ pairs: Array<{ id: string; pred: Source; gt: Source }>; unmatched: { pred: string[]; gt: string[] } }> {
  const ps = await listSources(pred, 'pred');
  const gs = await listSources(gt, 'gt');
  if (ps.length === 1 && gs.length === 1 && gs[0]!.kind !== 'dataset') {
    return { pairs: [{ id: ps[0]!.id, pred: ps[0]!, gt: gs[0]! }], unmatched: { pred: [], gt: [] } };
  }
  const gmap = new Map(gs.map((g) => [g.id, g]));
  const pairs = ps.flatMap((p) => (gmap.has(p.id) ? [{ id: p.id, pred: p, gt: gmap.get(p.id)! }] : []));
  const used = new Set(pairs.map((x) => x.id));
  const unmatched = { pred: ps.filter((p) => !gmap.has(p.id)).map((p) => p.id), gt: gs.filter((g) => !used.has(g.id)).map((g) => g.id) };
  if (pairs.length === 0) {
    throw new DifftalkError(
      'no-pairs',
      `no prediction matches a ground-truth clip by name (pred: ${ps
        .map((p) => p.id)
        .slice(0, 5)
        .join(', ')}; gt: ${gs
        .map((g) => g.id)
        .slice(0, 5)
        .join(', ')})`,
      {
        suggestion: 'name each generated video like its ground-truth clip (e.g. WDA_X_000.mp4 ↔ WDA_X_000.mp4 or clip_id)',
      },
    );
  }
  return { pairs, unmatched };
}

async function datasetFrames(dir: string, id: string, width: number, height: number): Promise<{ frames: RgbFrames; fps: number }> {
  const ds = await openDataset(dir, { clips: [id] });
  return { frames: await readClipFrames(ds, id, { size: { width, height } }), fps: ds.metadata.fps };
}

function truncate(f: RgbFrames, n: number): RgbFrames {
  return n >= f.count ? f : { ...f, count: n, data: f.data.subarray(0, n * f.width * f.height * 3) };
}

function mean(xs: readonly number[]): number {
  const v = xs.filter((x) => Number.isFinite(x));
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : Number.NaN;
}

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
  if (!(framesFps > 0)) throw new DifftalkError('bad-option', `--fps must be positive, got ${framesFps}`);
  const cropSize = opts.cropSize ?? SYNCNET_SIZE;
  const shift = opts.baselineShift ?? 10;
  const ssimVariant = opts.ssimVariant ?? 'gaussian';
  const ssimName = SSIM_NAMES[ssimVariant];
  const deviations: string[] = [];

  // Fail early on a used --out, missing weights or inputs, before decoding anything.
  await checkReportFolder(opts.out, opts.force);
  const { pairs, unmatched } = await pairClips(opts.pred, opts.gt);
  const weights: EvalResult['protocol']['weights'] = [];
  let sync: LoadedSyncNet | undefined;
  let lpips: Lpips | undefined;
  let fidNet: { net: FidInception; file: string } | undefined;
  let fid: FidMetric | undefined;
  /** Full metric name → the direction its metric class declares (filled as each metric is named). */
  const directions: Record<string, MetricDirection> = {};
  let engine: LandmarkEngine | undefined;
  let engineInfo: EvalResult['protocol']['landmarkEngine'];
  const needLandmarks = crop === 'face' || metrics.includes('lse') || metrics.includes('lmd');
  const clips: ClipResult[] = [];
  const frames: FrameResult[] = [];
  const worst: WorstFrame[] = [];
  let lseWindows = 0;
  let lseSeconds = 0;
  try {
    if (metrics.includes('lse')) {
      sync = await loadSyncNet(opts.syncnetWeights, { cacheDir: opts.weightsCacheDir });
      weights.push({ kind: sync.identity.source, file: sync.identity.file, sha256: sync.identity.sha256 });
      if (sync.identity.source !== 'syncnet-v2') deviations.push(`LSE uses ${sync.identity.description}`);
    }
    if (metrics.includes('lpips')) lpips = await loadLpips(opts.lpipsNet ?? 'alex', { cacheDir: opts.weightsCacheDir, fetch: true, onEvent });
    if (metrics.includes('fid')) {
      fidNet = await loadFidInception({ cacheDir: opts.weightsCacheDir });
      const sha = await sha256File(fidNet.file);
      weights.push({ kind: 'fid-inception', file: fidNet.file, sha256: sha });
      fid = new FidMetric(sha.slice(0, 12));
    }
    if (needLandmarks) {
      const created = await createLandmarkEngine({ engine: opts.landmarkEngine ?? 'tfjs' });
      engine = created.engine;
      engineInfo = created.info;
      deviations.push(
        `face boxes from the ${created.info.engine} landmark engine (mesh bounding box) instead of S3FD; no shot detection or multi-face tracking (one face per clip)`,
      );
    }
    const lmdName = engineInfo ? `lmd(mouth-48-67,${engineInfo.engine})` : 'lmd';
    const lseLabel = sync ? sync.identity.label : '';
    directions[PSNR_NAME] = PsnrMetric.direction;
    directions[ssimName] = SsimMetric.direction;
    directions[lmdName] = LmdMetric.direction;
    if (lpips) directions[lpips.name] = LpipsMetric.direction;
    if (fid) directions[fid.name] = FidMetric.direction;
    for (const [part, d] of Object.entries(LseMetric.direction)) directions[`${part}(${lseLabel})`] = d;

    // Clip-level bar (rate and ETA come from the renderer); the networks' own stages nest under it.
    const t0 = performance.now();
    onEvent({ type: 'stage-start', stage: 'eval', total: pairs.length, unit: 'clips' });
    for (const [pi, pair] of pairs.entries()) {
      onEvent({ type: 'progress', stage: 'eval', done: pi, total: pairs.length, detail: pair.id });
      if (pair.pred.kind === 'dataset') throw new DifftalkError('internal', 'prediction must be a video or frames');
      const notes: string[] = [];
      const pInfo: Pick<MediaInfo, 'width' | 'height' | 'fps' | 'hasAudio'> =
        pair.pred.kind === 'video' ? await probeMedia(pair.pred.file) : { ...(await frameSize(pair.pred.frames)), fps: framesFps, hasAudio: false };
      let gtFrames: RgbFrames;
      let gtFps: number;
      let gtAudio: AudioData | undefined;
      if (pair.gt.kind === 'frames') {
        const gSize = await frameSize(pair.gt.frames);
        const same = gSize.width === pInfo.width && gSize.height === pInfo.height;
        if (!same) {
          sizeMismatch(pair.id, gSize, pInfo, opts.resize);
          notes.push(`GT is ${gSize.width}×${gSize.height}, prediction ${pInfo.width}×${pInfo.height}: GT resized to the prediction's size`);
        }
        gtFrames = await readFrames(pair.gt.frames, same ? undefined : { width: pInfo.width, height: pInfo.height });
        gtFps = framesFps;
      } else if (pair.gt.kind === 'video') {
        const gInfo = await probeMedia(pair.gt.file);
        gtFps = gInfo.fps;
        if (gInfo.width !== pInfo.width || gInfo.height !== pInfo.height) {
          sizeMismatch(pair.id, gInfo, pInfo, opts.resize);
          notes.push(`GT is ${gInfo.width}×${gInfo.height}, prediction ${pInfo.width}×${pInfo.height}: GT decoded at the prediction's size`);
        }
        gtFrames = await decodeFrames(pair.gt.file, { width: pInfo.width, height: pInfo.height });
        if (gInfo.hasAudio && (metrics.includes('lse') || !pInfo.hasAudio)) gtAudio = await loadAudio16k(pair.gt.file);
      } else {
        const d = await datasetFrames(pair.gt.dir, pair.gt.id, pInfo.width, pInfo.height);
        gtFrames = d.frames;
        gtFps = d.fps;
      }
      // Different frame rates: the prediction is resampled to the GT's rate (by timestamp) and the note says so.
      const resample = Math.abs(gtFps - pInfo.fps) > 1e-3;
      if (resample) notes.push(`prediction is ${pInfo.fps} fps, GT ${gtFps} fps: prediction resampled to ${gtFps} fps`);
      if (resample && pair.pred.kind === 'frames') {
        throw new DifftalkError('fps-mismatch', `${pair.id}: prediction frames are taken at ${pInfo.fps} fps (--fps), the GT is ${gtFps} fps`, {
          suggestion: `pass --fps ${gtFps} if the frames were made at the GT's rate, or resample them first`,
        });
      }
      let predFrames = pair.pred.kind === 'frames' ? await readFrames(pair.pred.frames) : await decodeFrames(pair.pred.file, resample ? { fps: gtFps } : {});
      const n = Math.min(predFrames.count, gtFrames.count);
      if (predFrames.count !== gtFrames.count)
        notes.push(`frame counts differ (prediction ${predFrames.count}, GT ${gtFrames.count}): first ${n} frames compared`);
      if (n === 0) throw new DifftalkError('too-short', `${pair.id}: no frames to compare`);
      predFrames = truncate(predFrames, n);
      gtFrames = truncate(gtFrames, n);

      let predLms: FaceLandmarks[] | undefined;
      let gtLms: FaceLandmarks[] | undefined;
      if (engine) {
        await engine.reset();
        gtLms = await engine.detect(gtFrames);
        await engine.reset();
        predLms = await engine.detect(predFrames);
      }
      const noFace = (l: FaceLandmarks[]) => l.filter((x) => x.status === 'no-face').length;
      if (gtLms && noFace(gtLms)) notes.push(`no face in ${noFace(gtLms)} GT frame(s): boxes interpolated`);
      if (predLms && noFace(predLms)) notes.push(`no face in ${noFace(predLms)} prediction frame(s): boxes interpolated`);

      // Frame metrics
      const frameVals: Array<Record<string, number>> = Array.from({ length: n }, () => ({}));
      const gtGtVals: Array<Record<string, number>> = Array.from({ length: n }, () => ({}));
      let evalPred = predFrames;
      let evalGt = gtFrames;
      if (crop === 'face' && (metrics.includes('psnr') || metrics.includes('ssim') || metrics.includes('lpips') || fidNet)) {
        const track = syncnetCropTrack(gtLms!.map(meshBox), `${pair.id} (GT)`);
        evalPred = cropsToFrames(applyCropTrack(predFrames, track, cropSize), cropSize);
        evalGt = cropsToFrames(applyCropTrack(gtFrames, track, cropSize), cropSize);
      }
      const frameMetric = (name: string, pv: number[], gv: number[] | undefined) => {
        pv.forEach((v, i) => (frameVals[i]![name] = v));
        gv?.forEach((v, i) => (gtGtVals[i]![name] = v));
      };
      if (metrics.includes('psnr')) frameMetric(PSNR_NAME, psnr(evalPred, evalGt), opts.baseline ? psnr(evalGt, evalGt) : undefined);
      if (metrics.includes('ssim')) frameMetric(ssimName, ssim(evalPred, evalGt, ssimVariant), opts.baseline ? ssim(evalGt, evalGt, ssimVariant) : undefined);
      if (lpips) {
        frameMetric(lpips.name, (await lpips.distances(evalPred, evalGt)).total, opts.baseline ? (await lpips.distances(evalGt, evalGt)).total : undefined);
      }
      if (fidNet && fid)
        fid.update(await inceptionFeatures(evalPred, { net: fidNet.net, onEvent }), await inceptionFeatures(evalGt, { net: fidNet.net, onEvent }));
      if (metrics.includes('lmd')) {
        const p68 = ibug68FromResults(predLms!);
        const g68 = ibug68FromResults(gtLms!);
        frameMetric(lmdName, lmd(p68, g68), opts.baseline ? lmd(g68, g68) : undefined);
      }

      // LSE
      let lsePred: SyncScores | undefined;
      const lseRows: ClipResult[] = [];
      if (sync) {
        if (Math.abs(pInfo.fps - 25) > 1e-3) notes.push(`SyncNet assumes 25 fps; this clip is ${pInfo.fps} fps`);
        const predAudio = pInfo.hasAudio ? await loadAudio16k(pair.pred.file) : gtAudio;
        if (!predAudio) throw new DifftalkError('no-audio', `${pair.id}: neither the prediction nor the GT has an audio track; LSE needs the driving audio`);
        if (!pInfo.hasAudio) notes.push('prediction has no audio track: LSE uses the GT audio');
        const crops = applyCropTrack(predFrames, syncnetCropTrack(predLms!.map(meshBox), `${pair.id} (prediction)`), SYNCNET_SIZE);
        const t0 = performance.now();
        lsePred = await syncScores(
          sync.net,
          { frames: crops, samples: predAudio.samples, sampleRate: predAudio.sampleRate },
          { onEvent, stage: `lse ${pair.id}` },
        );
        lseSeconds += (performance.now() - t0) / 1000;
        lseWindows += lsePred.windows;
        if (opts.baseline) {
          if (!gtAudio) notes.push('GT has no audio (or is a prepared dataset): no LSE baselines');
          else {
            const gCrops = applyCropTrack(gtFrames, syncnetCropTrack(gtLms!.map(meshBox), `${pair.id} (GT)`), SYNCNET_SIZE);
            const g = await syncScores(
              sync.net,
              { frames: gCrops, samples: gtAudio.samples, sampleRate: gtAudio.sampleRate },
              { onEvent, stage: `lse ${pair.id} gt` },
            );
            // Shift: video frame i meets the audio of frame i + shift (the first shift·640 samples are dropped).
            const shifted = gtAudio.samples.subarray(Math.min(gtAudio.samples.length, shift * 640));
            const s = await syncScores(
              sync.net,
              { frames: gCrops, samples: shifted, sampleRate: gtAudio.sampleRate },
              { onEvent, stage: `lse ${pair.id} shifted` },
            );
            lseRows.push({
              clip: pair.id,
              system: 'gt',
              pred: pair.gt.kind === 'video' ? pair.gt.file : '',
              gt: '',
              frames: n,
              scores: lseScores(g, lseLabel),
              lse: g,
              notes: [],
            });
            lseRows.push({
              clip: pair.id,
              system: `gt-shifted-audio(${shift >= 0 ? '+' : ''}${shift})`,
              pred: '',
              gt: '',
              frames: n,
              scores: lseScores(s, lseLabel),
              lse: s,
              notes: [`GT video with its audio advanced by ${shift} frames`],
            });
          }
        }
      }

      const gtPath = pair.gt.kind === 'dataset' ? `${pair.gt.dir}#${pair.gt.id}` : pair.gt.file;
      const names = Object.keys(frameVals[0] ?? {});
      const clipScores: Record<string, number> = {};
      for (const k of names) clipScores[k] = mean(frameVals.map((v) => v[k]!));
      if (lsePred) Object.assign(clipScores, lseScores(lsePred, lseLabel));
      clips.push({ clip: pair.id, system: 'pred', pred: pair.pred.file, gt: gtPath, frames: n, scores: clipScores, lse: lsePred, notes });
      // Notes change a number (frame counts, faces, resampling): the console shows them too, not only clips.csv.
      for (const note of notes) onEvent({ type: 'log', level: 'warn', message: `${pair.id}: ${note}` });
      frameVals.forEach((values, frame) => frames.push({ clip: pair.id, system: 'pred', frame, values }));
      if (opts.baseline) {
        const gScores: Record<string, number> = {};
        for (const k of names) gScores[k] = mean(gtGtVals.map((v) => v[k]!));
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
        clips.push(...lseRows.filter((r) => r.system !== 'gt').map((r) => ({ ...r, pred: gtPath, gt: gtPath })));
      }

      // Worst frames by the first frame metric (PSNR if present), in the direction that metric declares
      const key = names[0];
      if (key) {
        const cmp = worseFirst(directionOf(directions, key));
        const order = frameVals
          .map((v, i) => ({ i, v: v[key]! }))
          .filter((x) => Number.isFinite(x.v))
          .sort((a, b) => cmp(a.v, b.v))
          .slice(0, opts.worstFrames ?? 4);
        for (const o of order) {
          worst.push({
            clip: pair.id,
            frame: o.i,
            metric: key,
            value: o.v,
            jpeg: await sideBySide(frameAt(evalPred, o.i), frameAt(evalGt, o.i), evalPred.width, evalPred.height),
          });
        }
      }
    }
    onEvent({ type: 'progress', stage: 'eval', done: pairs.length, total: pairs.length });
    onEvent({ type: 'stage-done', stage: 'eval', done: pairs.length, seconds: (performance.now() - t0) / 1000 });
  } finally {
    fidNet?.net.dispose();
    sync?.net.dispose();
    lpips?.dispose();
    await engine?.close().catch(() => undefined);
  }

  const summary = summarize(clips, frames, directions);
  if (fid) {
    const r = fid.compute();
    summary.pred = [...(summary.pred ?? []), { name: r.name, value: r.value, direction: r.direction, averagedOver: 'dataset', count: r.frames }];
    if (opts.baseline && summary.gt) {
      const g = fid.compute(true);
      summary.gt = [...summary.gt, { name: g.name, value: g.value, direction: g.direction, averagedOver: 'dataset', count: g.frames }];
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
      landmarkEngine: engineInfo,
      syncnet: sync?.identity,
      baselineShift: opts.baseline ? shift : undefined,
      deviations,
    },
    summary,
    clips,
    unmatched,
    lseWindowsPerSecond: lseSeconds > 0 ? lseWindows / lseSeconds : undefined,
    frames,
    worst,
  };
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

function directionOf(directions: Readonly<Record<string, MetricDirection>>, name: string): MetricDirection {
  const d = directions[name];
  if (!d) throw new DifftalkError('internal', `metric ${name} has no declared direction`);
  return d;
}

/**
 * Dataset-level scores per system: frame metrics as the mean over all frames; LSE as the mean over videos.
 * `directions` maps every full metric name to the direction its metric class declares.
 */
export function summarize(
  clips: readonly ClipResult[],
  frames: readonly FrameResult[],
  directions: Readonly<Record<string, MetricDirection>>,
): Record<string, MetricSummary[]> {
  const out: Record<string, MetricSummary[]> = {};
  const systems = [...new Set(clips.map((c) => c.system))];
  for (const sys of systems) {
    const rows: MetricSummary[] = [];
    const fr = frames.filter((f) => f.system === sys);
    const names = [...new Set(fr.flatMap((f) => Object.keys(f.values)))];
    for (const name of names) {
      const vals = fr.map((f) => f.values[name]!).filter((v) => Number.isFinite(v));
      rows.push({ name, value: mean(vals), direction: directionOf(directions, name), averagedOver: 'frames', count: vals.length });
    }
    const cl = clips.filter((c) => c.system === sys && c.lse);
    const lseNames = [...new Set(cl.flatMap((c) => Object.keys(c.scores).filter((k) => k.startsWith('lse-') || k.startsWith('av-offset'))))];
    for (const name of lseNames) {
      rows.push({ name, value: mean(cl.map((c) => c.scores[name]!)), direction: directionOf(directions, name), averagedOver: 'videos', count: cl.length });
    }
    out[sys] = rows;
  }
  return out;
}
