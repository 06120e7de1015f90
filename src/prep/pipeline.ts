/**
 * pipeline: `difftalk prep` end to end. Wires the stage modules of src/prep (over the media, face, audio and dataset layers) in order, per clip:
 *   source (download | local file) → crop box (HDTF box | face tracking) → cut/crop/normalise (clip.ts)
 *   → decode frames → landmarks → audio features → reference frames → encode images → Arrow shards (+ preview)
 * The clip is the unit of work and of resume: `<out>/work/<clip>/status.json` is written last, after the clip's shards
 * were renamed into place, so a rerun (also after SIGKILL) skips finished or dropped clips and redoes the rest.
 * dataset.json is rebuilt from all status files at the end. Nothing here prints; progress goes through onEvent.
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import PQueue from 'p-queue';
import { DifftalkError, errorMessage, isFatal } from '../util/errors.js';
import { parseSmoothing } from '../face/landmarks/smoothing.js';
import { silent, type OnEvent } from '../util/events.js';
import { checkOutputFolder, exists, readJson, sha256, sweepTempFiles, writeJsonAtomic } from '../util/fs.js';
import { VERSION } from '../util/version.js';
import { parseHdtfAnnotations, type HdtfSubset, type HdtfSummary } from './annotations.js';
import { createAudioFeature, parseAudioFeatureSpec } from '../audio/index.js';
import '../models/deepspeech.js'; // registers the 'deepspeech' audio feature (DeepSpeech 0.1.0 on tfjs)
import type { AudioFeatureRequest } from './audio-stage.js';
import { removePreparedClip } from '../media/clip.js';
import { buildDatasetManifest, writeDatasetManifest, type DatasetClip, type DatasetManifest } from '../dataset/manifest.js';
import { downloadVideos, videoKey, type DownloadResult } from './download.js';
import { clipsFromInputs, partitionClips } from './inputs.js';
import { createLandmarkEngine, EnginePool, parallelEngines, type LandmarkEngineName, type LandmarkerInfo } from '../face/landmarks/index.js';
import { runClipJob, StageTimings, type ClipJobOutput } from './clip-job.js';
import { difftalkReferenceSampler, type NoCandidatePolicy } from '../dataset/reference.js';
import type { ImageFormat } from '../dataset/shard-writer.js';
import { readSplitFile, resolveSplits, type Split } from '../dataset/split.js';
import type { ClipSpec } from '../media/types.js';
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
  /** Write into a non-empty folder difftalk did not create, or start over in a folder prepared with other settings. */
  force?: boolean;
  /** Largest video download accepted, in bytes (default DEFAULT_MAX_DOWNLOAD_BYTES). */
  maxDownloadBytes?: number;
  /** Stops the run (SIGTERM/SIGINT): the clips in progress are left to be redone, and runPrep throws 'interrupted'. */
  signal?: AbortSignal;
  onEvent?: OnEvent;
}

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

/** What prep writes that depends on the settings: removed by a --force restart (downloads/ is kept: it does not). */
const OWN_ENTRIES = [CONFIG_FILE, 'dataset.json', 'shards', 'work', 'previews'];

/**
 * Before any work: the output folder is empty, or was created by prep (prep-config.json); `force` allows anything else.
 * Temp files of earlier killed runs (`.<name>.<pid>.<hex>.tmp`, util/fs.ts) are swept.
 */
async function checkPrepFolder(out: string, force: boolean): Promise<void> {
  await checkOutputFolder(out, { marker: CONFIG_FILE, creator: 'difftalk prep', force, forceNote: 'files named like prep outputs are replaced' });
  await mkdir(out, { recursive: true });
  await sweepTempFiles(out, 3);
}

/**
 * Refuse to mix two configurations (settings, landmark model, set of inputs) in one output folder, before any work.
 * With `force` the earlier run's outputs are removed and the run starts over. Writes prep-config.json.
 */
async function checkConfig(out: string, stored: Record<string, unknown>, force: boolean): Promise<void> {
  const file = path.join(out, CONFIG_FILE);
  if (await exists(file)) {
    const prev = await readJson<Record<string, unknown>>(file);
    const differing = Object.keys({ ...prev, ...stored }).filter((k) => JSON.stringify(prev[k]) !== JSON.stringify(stored[k]));
    if (differing.length === 0) return;
    if (!force) {
      throw new DifftalkError(
        'config-mismatch',
        `${out} was prepared with different settings (${differing.join(', ')}); its shards would mix two configurations. Nothing was written`,
        { suggestion: 'use another --out folder, rerun with the settings recorded in prep-config.json, or --force to start this folder over' },
      );
    }
    for (const e of OWN_ENTRIES) await rm(path.join(out, e), { recursive: true, force: true });
  }
  await writeJsonAtomic(file, stored);
}

/** Throw 'interrupted' once the run's signal fired. */
function throwIfStopped(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    throw new DifftalkError('interrupted', `prep stopped by ${String(signal.reason ?? 'a signal')}; rerun the same command to resume`);
  }
}

/** The clip's source file: a local input, or its finished download. */
function sourceOf(clip: ClipSpec, downloads: Map<string, DownloadResult>): StageResult<string> {
  if (clip.file) return { ok: true, value: clip.file };
  const d = downloads.get(videoKey(clip));
  if (!d) return { ok: false, reason: 'download-failed', message: `no download for ${videoKey(clip)}` };
  return d.ok ? { ok: true, value: d.value.file } : d;
}

/** Prepare a dataset. Resumable; see the module comment. */
export async function runPrep(source: PrepSource, config: PrepConfig, run: PrepRunOptions): Promise<PrepResult> {
  const onEvent = run.onEvent ?? silent;
  const t0 = performance.now();
  const out = path.resolve(run.out);
  const stop = run.signal;
  await checkPrepFolder(out, run.force ?? false);
  parseSmoothing(config.smoothing); // a bad --smoothing fails here, not on every clip

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
  const closeEngines = () => void engines.close();
  stop?.addEventListener('abort', closeEngines, { once: true });

  const timings = new StageTimings();

  let skipped = 0;
  let stored: Record<string, unknown>;
  try {
    // Configuration, before any clip: the landmark engine starts (a model that cannot be loaded fails here), and
    // the settings, the landmark model and the set of inputs are checked against an earlier run in this folder.
    const landmarkerInfo = await withEngine(async (_e, info) => info);
    stored = storedConfig(config, {
      landmarkerResolved: { ...landmarkerInfo, model: path.basename(landmarkerInfo.model) },
      audioFeaturesResolved: requests.map((r) => ({ name: r.extractor.name, params: r.extractor.params })),
      reference: sampler.params,
      split: { method: splitMethod, testFraction: config.testFraction, seed: config.seed, splitFileSha256: splitFileHash },
      source: source.kind === 'hdtf' ? { kind: 'hdtf', subsets: source.subsets ?? ['RD', 'WDA', 'WRA'] } : { kind: 'input' },
      inputs: { clips: allClips.length, sha256: sha256(Buffer.from(allClips.map((c) => c.id).join('\n'))) },
    });
    await checkConfig(out, stored, run.force ?? false);
    throwIfStopped(stop);
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
      downloads = await timings.timed('download', 0, () =>
        downloadVideos(needDownload, {
          dir: path.join(out, 'downloads'),
          concurrency: run.concurrency,
          retries: run.retries,
          retryFailed: run.retryFailed,
          maxBytes: run.maxDownloadBytes,
          signal: stop,
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
          if (fatal || stop?.aborted) return;
          try {
            const source = sourceOf(clip, downloads);
            const result: StageResult<ClipJobOutput> = !source.ok
              ? source
              : await runClipJob({
                  clip,
                  sourceFile: source.value,
                  out,
                  work: workDirOf(out, clip.id),
                  split: splits.get(clip.id) as Split,
                  config,
                  chunkFrames: run.chunkFrames,
                  preview: run.preview,
                  sampler,
                  requests,
                  withEngine,
                  timings,
                  signal: stop,
                  onEvent,
                });
            // A clip that failed because the run was stopped is not dropped: no status file, the rerun redoes it.
            if (stop?.aborted) return;
            if (result.ok) await finish(clip, { status: 'done', ...result.value });
            else await dropClip(clip, result.reason, result.message);
          } catch (e) {
            if (stop?.aborted) return;
            // Configuration and environment errors (missing tools, bad flags) stop the run; everything else drops the clip.
            if (isFatal(e)) {
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
    const clearOnStop = () => queue.clear();
    stop?.addEventListener('abort', clearOnStop, { once: true });
    await queue.onIdle();
    stop?.removeEventListener('abort', clearOnStop);
    if (fatal) throw fatal;
    throwIfStopped(stop);
    onEvent({ type: 'stage-done', stage: 'clips', done: n, seconds: (performance.now() - tClips) / 1000 });
  } finally {
    stop?.removeEventListener('abort', closeEngines);
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
  throwIfStopped(stop);
  const manifest = buildDatasetManifest({
    config: stored,
    clips: records,
    toolVersion: VERSION,
    job: { shard: run.shard ?? null, concurrency: run.concurrency },
  });
  const manifestFile = await writeDatasetManifest(out, manifest);

  const wallSeconds = (performance.now() - t0) / 1000;
  const stages: StageTiming[] = timings.entries().map(([stage, t]) => ({
    stage,
    seconds: t.seconds,
    frames: t.frames,
    framesPerSecond: t.seconds > 0 ? t.frames / t.seconds : 0,
  }));
  const framesThisRun = timings.frames('shards');
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
