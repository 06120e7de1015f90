/**
 * pipeline: `difftalk prep` end to end. Wires the stage modules of src/prep (over the media, face, audio and dataset layers) in order, per clip:
 *   source (download | local file) → crop box (HDTF box | face tracking) → cut/crop/normalise (clip.ts)
 *   → decode frames → landmarks → audio features → reference frames → encode images → Arrow shards (+ preview)
 * The clip is the unit of work and of resume: `<out>/work/<clip>/status.json` is written last, after the clip's shards
 * were renamed into place, so a rerun (also after SIGKILL) skips finished or dropped clips and redoes the rest.
 * dataset.json is rebuilt from all status files at the end. Nothing here prints; progress goes through onEvent.
 */
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import PQueue from 'p-queue';
import { DifftalkError, errorMessage } from '../util/errors.js';
import { silent, type OnEvent } from '../util/events.js';
import { exists, readJson, sha256, writeJsonAtomic } from '../util/fs.js';
import { VERSION } from '../util/version.js';
import { parseHdtfAnnotations, type HdtfSubset, type HdtfSummary } from './annotations.js';
import { createAudioFeature, parseAudioFeatureSpec } from '../audio/index.js';
import { computeAudioFeatures, type AudioFeatureRequest } from './audio-stage.js';
import { prepareClip, removePreparedClip, scaleHdtfBox } from '../media/clip.js';
import { trackCropBox } from '../face/crop-track.js';
import { buildDatasetManifest, writeDatasetManifest, type DatasetClip, type DatasetManifest } from '../dataset/manifest.js';
import { downloadVideos, videoKey, type DownloadResult } from './download.js';
import { runFramePass } from './frame-pass.js';
import { probeMedia, type MediaInfo } from '../media/probe.js';
import { clipsFromInputs, partitionClips } from './inputs.js';
import { createLandmarkEngine, EnginePool, parallelEngines, type LandmarkEngineName, type LandmarkerInfo } from '../face/landmarks/index.js';
import { PREVIEW_CELLS, writePreview } from './preview.js';
import { difftalkReferenceSampler, type NoCandidatePolicy } from '../dataset/reference.js';
import { maskRowsFromLandmarks68, writeClipShards, type ImageFormat, type ShardMetadata } from '../dataset/shard-writer.js';
import { readSplitFile, resolveSplits, type Split } from '../dataset/split.js';
import type { Box, ClipSpec } from '../media/types.js';
import type { DropReason, StageResult } from '../util/result.js';
import type { LandmarkEngine } from '../face/types.js';

/** Where the clips come from. */
export type PrepSource =
  { kind: 'hdtf'; dir: string; subsets?: HdtfSubset[]; limit?: number } | { kind: 'input'; paths: string[]; cropRatio?: number; limit?: number };

/** Everything that determines the data (recorded in prep-config.json and dataset.json). */
export interface PrepConfig {
  size: 256 | 512;
  imageFormat: ImageFormat;
  jpegQuality: number;
  shardRows: number;
  landmarker: LandmarkEngineName;
  faceModel?: string;
  smoothing: string;
  maxBadFrameFraction: number;
  /** Audio feature specs as given on the command line (`mfcc`, `mel:nMels=64`, `onnx:model=enc.onnx`). */
  audioFeatures: string[];
  /** Window (feature frames per video frame) per feature name; default per feature (audio/windows.ts). */
  audioWindows: Record<string, number>;
  seed: number;
  referencePolicy: NoCandidatePolicy;
  testFraction: number;
  splitFile?: string;
  allowIdentityLeak: boolean;
}

export interface PrepRunOptions {
  out: string;
  /** Array jobs: this worker prepares clips k with k mod count == index (of the sorted clip list). */
  shard?: { index: number; count: number };
  concurrency: number;
  retries: number;
  /** Retry downloads the ledger records as unavailable, and clips dropped in an earlier run. */
  retryFailed: boolean;
  preview: boolean;
  /** Frames decoded at once per clip (default: as many as fit in 128 MiB); results do not depend on it. */
  chunkFrames?: number;
  /** Keep each clip's normalised video and audio (work/<clip>/) after the clip is finished; default: delete them. */
  keepWork?: boolean;
  /** Clips prepared at the same time (default 2), each with its own landmark engine (mediapipe; tfjs has one). */
  clipWorkers?: number;
  onEvent?: OnEvent;
}

/** Errors that stop the whole run (environment or configuration), as opposed to dropping one clip. */
const FATAL_CODES = new Set(['tool-missing', 'bad-option', 'bad-flag', 'bad-argument', 'model-missing', 'backend-unavailable', 'onnx-unavailable']);

export const DEFAULT_PREP_CONFIG: PrepConfig = {
  size: 256,
  imageFormat: 'jpeg',
  jpegQuality: 95,
  shardRows: 1000,
  landmarker: 'mediapipe',
  smoothing: 'savgol:5',
  maxBadFrameFraction: 0.2,
  audioFeatures: ['mfcc', 'mel'],
  audioWindows: {},
  seed: 23,
  referencePolicy: 'drop-clip',
  testFraction: 0.2,
  allowIdentityLeak: false,
};

export interface StageTiming {
  stage: string;
  /** Busy seconds of the stage summed over clips (clips overlap, so stages can add up to more than the wall time). */
  seconds: number;
  frames: number;
  framesPerSecond: number;
}

export interface PrepResult {
  out: string;
  manifest: string;
  clips: { total: number; done: number; dropped: number; skippedAsFinished: number };
  frames: number;
  dropReasons: Partial<Record<DropReason, number>>;
  splits: DatasetManifest['splits'];
  stages: StageTiming[];
  wallSeconds: number;
  framesPerSecond: number;
  hdtf?: HdtfSummary;
}

/** Per-clip record, written last: the clip's resume marker. */
interface ClipStatus extends DatasetClip {
  seconds?: Record<string, number>;
}

const STATUS_FILE = 'status.json';
const CONFIG_FILE = 'prep-config.json';

const round3 = (x: number) => Math.round(x * 1000) / 1000;
const workDirOf = (out: string, id: string) => path.join(out, 'work', id);

async function loadClips(source: PrepSource, onEvent: OnEvent): Promise<{ clips: ClipSpec[]; hdtf?: HdtfSummary }> {
  if (source.kind === 'hdtf') {
    const manifest = await parseHdtfAnnotations(source.dir, { subsets: source.subsets });
    for (const issue of manifest.issues) onEvent({ type: 'log', level: 'debug', message: `annotations: ${JSON.stringify(issue)}` });
    const s = manifest.summary;
    onEvent({
      type: 'log',
      level: 'info',
      message: `annotations: ${s.rows} clip rows, ${s.usable} usable, ${s.unusable} unusable (${
        Object.entries(s.byReason)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ') || 'none'
      }); ${manifest.issues.length} quirks/issues recorded`,
    });
    let clips = manifest.clips;
    if (source.limit !== undefined) clips = takeUsable(clips, source.limit);
    return { clips, hdtf: s };
  }
  let clips = await clipsFromInputs(source.paths, { cropRatio: source.cropRatio });
  if (source.limit !== undefined) clips = clips.slice(0, source.limit);
  return { clips };
}

/** The first `limit` usable clips (file order); unusable rows before them are kept so their drop reasons are recorded. */
function takeUsable(clips: ClipSpec[], limit: number): ClipSpec[] {
  const out: ClipSpec[] = [];
  let usable = 0;
  for (const c of clips) {
    if (!c.unusable) {
      if (usable >= limit) break;
      usable++;
    }
    out.push(c);
  }
  return out;
}

/** The data-determining config as stored: the prep config plus what the engines resolved. */
function storedConfig(config: PrepConfig, extra: Record<string, unknown>): Record<string, unknown> {
  const { faceModel: _faceModel, splitFile: _splitFile, ...rest } = config;
  return { ...rest, fps: 25, audioSampleRate: 16000, ...extra };
}

/** Refuse to mix two different configurations in one output folder (nothing is overwritten silently). */
async function checkConfig(out: string, stored: Record<string, unknown>): Promise<void> {
  const file = path.join(out, CONFIG_FILE);
  if (await exists(file)) {
    const prev = await readJson<Record<string, unknown>>(file);
    const differing = Object.keys({ ...prev, ...stored }).filter((k) => JSON.stringify(prev[k]) !== JSON.stringify(stored[k]));
    if (differing.length > 0) {
      throw new DifftalkError(
        'config-mismatch',
        `${out} was prepared with different settings (${differing.join(', ')}); its shards would mix two configurations`,
        { suggestion: 'use a new --out folder, or rerun with the settings recorded in prep-config.json' },
      );
    }
    return;
  }
  await writeJsonAtomic(file, stored);
}

/** Prepare a dataset. Resumable; see the module comment. */
export async function runPrep(source: PrepSource, config: PrepConfig, run: PrepRunOptions): Promise<PrepResult> {
  const onEvent = run.onEvent ?? silent;
  const t0 = performance.now();
  const out = path.resolve(run.out);
  await mkdir(out, { recursive: true });

  // 1. Clip list, splits (on the full list, so array workers agree), partition.
  const { clips: allClips, hdtf } = await loadClips(source, onEvent);
  if (allClips.length === 0) throw new DifftalkError('no-clips', 'no clips to prepare');
  const splitFile = config.splitFile ? await readSplitFile(config.splitFile) : undefined;
  const { splits, method: splitMethod } = resolveSplits(allClips, {
    testFraction: config.testFraction,
    seed: config.seed,
    splitFile,
    allowIdentityLeak: config.allowIdentityLeak,
  });
  const clips = run.shard ? partitionClips(allClips, run.shard.index, run.shard.count) : allClips;

  // 2. Engines and data-determining config (checked against an earlier run in the same folder).
  const requests: AudioFeatureRequest[] = [];
  for (const spec of config.audioFeatures) {
    const extractor = await createAudioFeature(parseAudioFeatureSpec(spec));
    requests.push({ extractor, window: config.audioWindows[extractor.name] });
  }
  const sampler = difftalkReferenceSampler({ seed: config.seed, policy: config.referencePolicy });
  const splitFileHash = config.splitFile ? sha256(await readFile(config.splitFile)) : undefined;
  // Landmark engines, started on first use: one per clip worker (each MediaPipe engine is its own Chromium), so the
  // landmark passes of different clips run at the same time; one for tfjs (see parallelEngines). An engine is
  // stateful (VIDEO-mode tracking): one user at a time, and every user resets it.
  const clipWorkers = run.clipWorkers ?? 2;
  const engines = new EnginePool(
    () => createLandmarkEngine({ engine: config.landmarker, faceModel: config.faceModel }),
    parallelEngines(config.landmarker, clipWorkers),
  );
  const withEngine = <T>(fn: (engine: LandmarkEngine, info: LandmarkerInfo) => Promise<T>): Promise<T> => engines.use(fn);

  const timings = new Map<string, { seconds: number; frames: number }>();
  const addTiming = (stage: string, seconds: number, frames: number): void => {
    const t = timings.get(stage) ?? { seconds: 0, frames: 0 };
    t.seconds += seconds;
    t.frames += frames;
    timings.set(stage, t);
  };
  const timed = async <T>(stage: string, frames: number, fn: () => Promise<T>): Promise<T> => {
    const s = performance.now();
    try {
      return await fn();
    } finally {
      addTiming(stage, (performance.now() - s) / 1000, frames);
    }
  };

  let skipped = 0;
  let landmarkerInfo: LandmarkerInfo | undefined;
  let shardMetadata: ShardMetadata | undefined;
  try {
    // 3. What is left to do (resume): clips without a status file (or dropped ones, with retryFailed).
    const pending: ClipSpec[] = [];
    for (const clip of clips) {
      const statusFile = path.join(workDirOf(out, clip.id), STATUS_FILE);
      if (await exists(statusFile)) {
        const st = await readJson<ClipStatus>(statusFile);
        if (st.status === 'done' || !run.retryFailed) {
          skipped++;
          continue;
        }
      }
      pending.push(clip);
    }
    if (skipped > 0) onEvent({ type: 'log', level: 'info', message: `resuming: ${skipped} clips already finished or dropped, ${pending.length} to do` });

    const finish = async (clip: ClipSpec, status: Omit<ClipStatus, 'id' | 'identity' | 'subset' | 'split' | 'source'>) => {
      const record: ClipStatus = {
        id: clip.id,
        identity: clip.identity,
        ...(clip.subset ? { subset: clip.subset } : {}),
        source: clip.file ? path.basename(clip.file) : clip.video,
        split: splits.get(clip.id) as Split,
        ...status,
        notes: [...(clip.notes ?? []), ...status.notes],
      };
      await writeJsonAtomic(path.join(workDirOf(out, clip.id), STATUS_FILE), record);
      // The status file is the clip's completion mark: from here on its work media are not needed to resume.
      if (!run.keepWork) await removePreparedClip(workDirOf(out, clip.id), clip.id);
      if (record.status === 'dropped') {
        onEvent({ type: 'dropped', stage: 'prep', id: clip.id, reason: record.drop_reason ?? 'clip-failed', message: record.drop_message ?? '' });
      }
    };
    const dropClip = (clip: ClipSpec, reason: DropReason, message: string, frames = 0) =>
      finish(clip, { status: 'dropped', frames, shards: [], drop_reason: reason, drop_message: message, notes: [] });

    // 4. Unusable annotation rows are recorded as dropped right away.
    const todo: ClipSpec[] = [];
    for (const clip of pending) {
      if (clip.unusable) await dropClip(clip, clip.unusable.reason, clip.unusable.message);
      else todo.push(clip);
    }

    // 5. Downloads (HDTF): one per video, in parallel, resumable (download.ts keeps a ledger).
    let downloads = new Map<string, DownloadResult>();
    const needDownload = todo.filter((c) => !c.file && c.url);
    if (needDownload.length > 0) {
      downloads = await timed('download', 0, () =>
        downloadVideos(needDownload, {
          dir: path.join(out, 'downloads'),
          concurrency: run.concurrency,
          retries: run.retries,
          retryFailed: run.retryFailed,
          onEvent,
        }),
      );
    }

    // 6. Per clip: crop → clip → frames → landmarks → audio → references → images → shards.
    onEvent({ type: 'stage-start', stage: 'clips', total: todo.length, unit: 'clips' });
    const tClips = performance.now();
    let n = 0;
    const queue = new PQueue({ concurrency: clipWorkers });
    let fatal: unknown;
    for (const clip of todo) {
      void queue
        .add(async () => {
          if (fatal) return;
          try {
            const result = await prepareOne(clip);
            if (!result.ok) await dropClip(clip, result.reason, result.message);
          } catch (e) {
            // Configuration and environment errors (missing tools, bad flags) stop the run; everything else drops the clip.
            if (e instanceof DifftalkError && FATAL_CODES.has(e.code)) {
              fatal ??= e;
              queue.clear();
              return;
            }
            await dropClip(clip, 'clip-failed', errorMessage(e));
          }
          onEvent({ type: 'progress', stage: 'clips', done: ++n, total: todo.length, detail: clip.id });
        })
        .catch((e: unknown) => {
          fatal ??= e; // e.g. the disk is full: writing a status file failed
          queue.clear();
        });
    }
    await queue.onIdle();
    if (fatal) throw fatal;
    onEvent({ type: 'stage-done', stage: 'clips', done: n, seconds: (performance.now() - tClips) / 1000 });

    async function prepareOne(clip: ClipSpec): Promise<StageResult<null>> {
      const work = workDirOf(out, clip.id);
      // Source file.
      let sourceFile: string;
      if (clip.file) sourceFile = clip.file;
      else {
        const d = downloads.get(videoKey(clip));
        if (!d) return { ok: false, reason: 'download-failed', message: `no download for ${videoKey(clip)}` };
        if (!d.ok) return d;
        sourceFile = d.value.file;
      }
      // The source, probed once for the crop and clip stages.
      let source: MediaInfo;
      try {
        source = await probeMedia(sourceFile);
      } catch (e) {
        if (e instanceof DifftalkError && e.code === 'video-corrupt') return { ok: false, reason: 'video-corrupt', message: e.message };
        throw e;
      }
      // Crop box in source pixels.
      let crop: Box;
      const notes: string[] = [];
      let clamped = false;
      if (clip.crop) {
        const fitted = scaleHdtfBox(clip.crop, source.width, source.height);
        crop = fitted.box;
        clamped = fitted.clamped;
        notes.push(...fitted.notes);
      } else {
        const tracked = await withEngine((eng) =>
          timed('crop-track', 0, () => trackCropBox(sourceFile, eng, { ratio: clip.cropRatio ?? 1.2, sourceInfo: source, onEvent })),
        );
        if (!tracked.ok) return tracked;
        crop = tracked.value;
        clamped = tracked.value.clamped;
        notes.push(
          ...tracked.value.notes,
          `crop from face tracking: ${tracked.value.framesWithFace}/${tracked.value.framesAnalysed} analysed frames had a face`,
        );
      }
      // Cut, crop, normalise.
      const prepared = await timed('clip', 0, () =>
        prepareClip(clip, sourceFile, work, { size: config.size, crop, clamped, notes, sourceInfo: source, onEvent }),
      );
      if (!prepared.ok) return prepared;
      const p = prepared.value;
      const frameCount = p.frameCount;
      timings.get('clip')!.frames += frameCount;
      // References first: cheap, and a too-short clip should not cost a landmark pass.
      const refs = sampler.sample(clip.id, frameCount);
      if (!refs.ok) return refs;
      // One pass over the frames in bounded chunks: landmarks, encoded images, preview frames (frame-pass.ts).
      const { pass, info } = await withEngine(async (eng, info) => ({
        info,
        pass: await runFramePass(eng, p, {
          image: { format: config.imageFormat, quality: config.jpegQuality },
          landmarks: { smoothing: config.smoothing, maxBadFrameFraction: config.maxBadFrameFraction, onEvent, id: clip.id },
          chunkFrames: run.chunkFrames,
          previewCells: run.preview ? PREVIEW_CELLS : 0,
        }),
      }));
      for (const stage of ['decode', 'landmarks', 'encode'] as const) addTiming(stage, pass.seconds[stage], frameCount);
      const lm = pass.landmarks;
      const images = pass.images;
      landmarkerInfo = info;
      if (!lm.ok) return lm;
      if (images.length !== lm.value.status.length) {
        return { ok: false, reason: 'clip-failed', message: `${images.length} images encoded for ${lm.value.status.length} landmarked frames` };
      }
      const audio = await timed('audio', frameCount, () => computeAudioFeatures(p.audio, frameCount, p.fps, requests, onEvent));
      if (!audio.ok) return audio;
      const masks = maskRowsFromLandmarks68(lm.value.lm68, config.size);
      shardMetadata = {
        fps: p.fps,
        size: config.size,
        imageFormat: config.imageFormat,
        jpegQuality: config.imageFormat === 'jpeg' ? config.jpegQuality : undefined,
        landmarker: { engine: info.engine, model: path.basename(info.model), sha256: info.sha256, smoothing: lm.value.smoothing },
        audioFeatures: audio.value.map(({ windows: _w, ...meta }) => meta),
        reference: sampler.params,
      };
      const written = await timed('shards', frameCount, () =>
        writeClipShards(
          out,
          {
            clipId: clip.id,
            split: splits.get(clip.id) as Split,
            fps: p.fps,
            images,
            faceStatus: lm.value.status,
            faceScore: lm.value.scores,
            landmarks478: lm.value.smoothed,
            landmarks478Raw: lm.value.raw,
            landmarks68: lm.value.lm68,
            maskRowTrain: masks.train,
            maskRowTest: masks.test,
            audio: audio.value.map((a) => ({ name: a.name, windows: a.windows })),
            refFrameIndex: refs.value,
          },
          { maxRows: config.shardRows, metadata: shardMetadata! },
        ),
      );
      if (run.preview) {
        await timed('preview', 0, () =>
          writePreview(
            pass.preview.frames,
            { mesh: lm.value.smoothed, lm68: lm.value.lm68, status: lm.value.status },
            path.join(out, 'previews', `${clip.id}.png`),
            { frameNumbers: pass.preview.frameNumbers },
          ),
        );
      }
      await finish(clip, {
        status: 'done',
        frames: frameCount,
        shards: written.files,
        notes: [...p.notes, ...(lm.value.badFrames.length ? [`${lm.value.badFrames.length} frames without exactly one face`] : [])],
        stats: {
          crop: p.crop,
          crop_clamped: p.clamped,
          jitter_raw_px: round3(lm.value.jitter.raw),
          jitter_smoothed_px: round3(lm.value.jitter.smoothed),
          bad_frames: lm.value.badFrames.length,
          source_width: p.sourceWidth,
          source_height: p.sourceHeight,
        },
      });
      return { ok: true, value: null };
    }
  } finally {
    await engines.close();
  }

  // 7. dataset.json from every status file of this worker's clips.
  const records: DatasetClip[] = [];
  for (const clip of clips) {
    const f = path.join(workDirOf(out, clip.id), STATUS_FILE);
    if (await exists(f)) {
      const { seconds: _s, ...rec } = await readJson<ClipStatus>(f);
      records.push(rec);
    }
  }
  const stored = storedConfig(config, {
    landmarkerResolved: landmarkerInfo ? { ...landmarkerInfo, model: path.basename(landmarkerInfo.model) } : undefined,
    audioFeaturesResolved: requests.map((r) => ({ name: r.extractor.name, params: r.extractor.params })),
    reference: sampler.params,
    split: { method: splitMethod, testFraction: config.testFraction, seed: config.seed, splitFileSha256: splitFileHash },
    source: source.kind === 'hdtf' ? { kind: 'hdtf', subsets: source.subsets ?? ['RD', 'WDA', 'WRA'] } : { kind: 'input' },
  });
  await checkConfig(out, { ...stored, landmarkerResolved: undefined });
  const manifest = buildDatasetManifest({
    config: stored,
    clips: records,
    toolVersion: VERSION,
    job: { shard: run.shard ?? null, concurrency: run.concurrency },
  });
  const manifestFile = await writeDatasetManifest(out, manifest);

  const wallSeconds = (performance.now() - t0) / 1000;
  const stages: StageTiming[] = [...timings.entries()].map(([stage, t]) => ({
    stage,
    seconds: t.seconds,
    frames: t.frames,
    framesPerSecond: t.seconds > 0 ? t.frames / t.seconds : 0,
  }));
  const framesThisRun = timings.get('shards')?.frames ?? 0;
  return {
    out,
    manifest: manifestFile,
    clips: { total: clips.length, done: manifest.totals.done, dropped: manifest.totals.dropped, skippedAsFinished: skipped },
    frames: manifest.totals.frames,
    dropReasons: manifest.drop_reasons,
    splits: manifest.splits,
    stages,
    wallSeconds,
    framesPerSecond: wallSeconds > 0 ? framesThisRun / wallSeconds : 0,
    ...(hdtf ? { hdtf } : {}),
  };
}
