/**
 * pipeline: `difftalk prep` end to end, in stages:
 *   1. check before any work: the output folder (ownership, temp files), the flags, the clip plan (plan.ts), the
 *      audio features, the landmark engine (a face model that cannot be loaded fails here) and the settings, landmark
 *      model and inputs against the run that started the folder (folder.ts, prep-config.json);
 *   2. resume state: clips with a status file are finished (or dropped) and skipped;
 *   3. sources: unusable annotation rows are recorded as dropped, HDTF videos downloaded (download.ts);
 *   4. clip jobs (clip-job.ts), `clipWorkers` at a time, each from explicit inputs to its status record;
 *   5. dataset.json from every status file of this worker's clips and the stored configuration.
 * The clip is the unit of work and of resume: its status.json is written last, after its shards were renamed into
 * place, so a rerun (also after SIGKILL) skips finished or dropped clips and redoes the rest. A signal (run.signal)
 * stops the run between or inside clips without recording the clips in progress, and runPrep throws 'interrupted'.
 * Nothing here prints; progress goes through onEvent.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { DifftalkError, errorMessage, isFatal } from '../util/errors.js';
import { silent, type OnEvent } from '../util/events.js';
import { sha256 } from '../util/fs.js';
import type { StageResult, DropReason } from '../util/result.js';
import { VERSION } from '../util/version.js';
import { createAudioFeature, parseAudioFeatureSpec } from '../audio/index.js';
import '../models/deepspeech.js'; // registers the 'deepspeech' audio feature (DeepSpeech 0.1.0 on tfjs)
import { removePreparedClip } from '../media/clip.js';
import type { ClipSpec } from '../media/types.js';
import { createLandmarkEngine, EnginePool, parallelEngines, parseSmoothing } from '../face/landmarks/index.js';
import { buildDatasetManifest, writeDatasetManifest, type DatasetClip, type DatasetManifest } from '../dataset/manifest.js';
import { difftalkReferenceSampler, type ReferenceSampler } from '../dataset/reference.js';
import type { HdtfSummary } from './annotations.js';
import type { AudioFeatureRequest } from './audio-stage.js';
import { clipStatus, runClipJob, StageTimings, type ClipJob, type ClipJobOutput } from './clip-job.js';
import { storedConfig, type PrepConfig, type PrepSource } from './config.js';
import { downloadVideos, videoKey, type DownloadResult } from './download.js';
import { checkPrepFolder, checkStoredConfig, clipWorkDir, readClipStatus, writeClipStatus, type ClipStatus } from './folder.js';
import { planClips, type ClipPlan } from './plan.js';

export { DEFAULT_PREP_CONFIG, type PrepConfig, type PrepSource } from './config.js';

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

/** Prepare a dataset. Resumable; see the module comment. */
export async function runPrep(source: PrepSource, config: PrepConfig, run: PrepRunOptions): Promise<PrepResult> {
  const t0 = performance.now();
  const ctx = await checkBeforeWork(source, config, run);
  const engines = landmarkEngines(config, run);
  let stored: Record<string, unknown>;
  let skipped: number;
  try {
    stored = await checkConfiguration(ctx, source, engines);
    const resume = await resumeState(ctx);
    skipped = resume.skipped;
    const todo = await recordUnusable(ctx, resume.pending);
    const downloads = await fetchSources(ctx, todo);
    await runClipJobs(ctx, todo, downloads, engines);
  } finally {
    await engines.close();
  }
  const manifest = await finalizeDataset(ctx, stored);
  return summarize(ctx, manifest, skipped, (performance.now() - t0) / 1000);
}

/** What every stage of one run reads (set before any work, never changed after). */
interface RunContext {
  out: string;
  config: PrepConfig;
  run: PrepRunOptions;
  plan: ClipPlan;
  requests: AudioFeatureRequest[];
  sampler: ReferenceSampler;
  timings: StageTimings;
  signal?: AbortSignal;
  onEvent: OnEvent;
}

type Engines = Pick<EnginePool, 'use' | 'close'>;

/** Stage 1a: checks that start nothing heavy: the folder, --smoothing, the clip plan, the audio features. */
async function checkBeforeWork(source: PrepSource, config: PrepConfig, run: PrepRunOptions): Promise<RunContext> {
  const onEvent = run.onEvent ?? silent;
  const out = path.resolve(run.out);
  await checkPrepFolder(out, run.force ?? false);
  parseSmoothing(config.smoothing); // a bad --smoothing fails here, not on every clip
  const plan = await planClips(source, config, run.shard, onEvent);
  const requests: AudioFeatureRequest[] = [];
  for (const spec of config.audioFeatures) {
    const extractor = await createAudioFeature(parseAudioFeatureSpec(spec));
    requests.push({ extractor, window: config.audioWindows[extractor.name] });
  }
  const sampler = difftalkReferenceSampler({ seed: config.seed, policy: config.referencePolicy });
  return { out, config, run, plan, requests, sampler, timings: new StageTimings(), signal: run.signal, onEvent };
}

/**
 * Landmark engines, started on first use: one per clip worker (each MediaPipe engine is its own Chromium), so the
 * landmark passes of different clips run at the same time; one for tfjs (see parallelEngines). An engine is stateful
 * (VIDEO-mode tracking): one user at a time, and every user resets it. A signal closes them at once, so the clip jobs
 * in progress fail fast (and are not recorded).
 */
function landmarkEngines(config: PrepConfig, run: PrepRunOptions): Engines {
  const pool = new EnginePool(
    () => createLandmarkEngine({ engine: config.landmarker, faceModel: config.faceModel }),
    parallelEngines(config.landmarker, run.clipWorkers ?? 2),
  );
  const closeOnStop = () => void pool.close();
  run.signal?.addEventListener('abort', closeOnStop, { once: true });
  return {
    use: (fn) => pool.use(fn),
    close: async () => {
      run.signal?.removeEventListener('abort', closeOnStop);
      await pool.close();
    },
  };
}

/**
 * Stage 1b: the landmark engine starts (a model that cannot be loaded fails here), and the settings, the landmark
 * model and the set of inputs are checked against the run that started this folder (prep-config.json).
 */
async function checkConfiguration(ctx: RunContext, source: PrepSource, engines: Engines): Promise<Record<string, unknown>> {
  const { config, plan } = ctx;
  const landmarker = await engines.use(async (_e, info) => info);
  const stored = storedConfig(config, {
    landmarkerResolved: { ...landmarker, model: path.basename(landmarker.model) },
    audioFeaturesResolved: ctx.requests.map((r) => ({ name: r.extractor.name, params: r.extractor.params })),
    reference: ctx.sampler.params,
    split: {
      method: plan.splitMethod,
      testFraction: config.testFraction,
      seed: config.seed,
      splitFileSha256: config.splitFile ? sha256(await readFile(config.splitFile)) : undefined,
    },
    source: source.kind === 'hdtf' ? { kind: 'hdtf', subsets: source.subsets ?? ['RD', 'WDA', 'WRA'] } : { kind: 'input' },
    inputs: { clips: plan.all.length, sha256: sha256(Buffer.from(plan.all.map((c) => c.id).join('\n'))) },
  });
  await checkStoredConfig(ctx.out, stored, ctx.run.force ?? false);
  throwIfStopped(ctx.signal);
  return stored;
}

/** Stage 2: clips without a status file are pending (and dropped ones, with retryFailed). */
async function resumeState(ctx: RunContext): Promise<{ pending: ClipSpec[]; skipped: number }> {
  const pending: ClipSpec[] = [];
  for (const clip of ctx.plan.mine) {
    const st = await readClipStatus(ctx.out, clip.id);
    if (st === undefined || (st.status === 'dropped' && ctx.run.retryFailed)) pending.push(clip);
  }
  const skipped = ctx.plan.mine.length - pending.length;
  if (skipped > 0) ctx.onEvent({ type: 'log', level: 'info', message: `resuming: ${skipped} clips already finished or dropped, ${pending.length} to do` });
  return { pending, skipped };
}

/** Write a clip's record (its resume mark); then its work media are not needed any more. */
async function recordClip(ctx: RunContext, status: ClipStatus): Promise<void> {
  await writeClipStatus(ctx.out, status);
  if (!ctx.run.keepWork) await removePreparedClip(clipWorkDir(ctx.out, status.id), status.id);
  if (status.status === 'dropped') {
    ctx.onEvent({ type: 'dropped', stage: 'prep', id: status.id, reason: status.drop_reason ?? 'clip-failed', message: status.drop_message ?? '' });
  }
}

/** Stage 3a: unusable annotation rows are recorded as dropped right away; the rest is returned. */
async function recordUnusable(ctx: RunContext, pending: ClipSpec[]): Promise<ClipSpec[]> {
  for (const clip of pending) {
    if (clip.unusable) await recordClip(ctx, clipStatus(clip, ctx.plan.splitOf(clip.id), { ok: false, ...clip.unusable }));
  }
  return pending.filter((c) => !c.unusable);
}

/** Stage 3b: each clip's source file: a local input, or its download (HDTF: one per video, in parallel, resumable). */
async function fetchSources(ctx: RunContext, clips: ClipSpec[]): Promise<Map<string, StageResult<string>>> {
  const needDownload = clips.filter((c) => !c.file && c.url);
  let downloads = new Map<string, DownloadResult>();
  if (needDownload.length > 0) {
    downloads = await ctx.timings.timed('download', 0, () =>
      downloadVideos(needDownload, {
        dir: path.join(ctx.out, 'downloads'),
        concurrency: ctx.run.concurrency,
        retries: ctx.run.retries,
        retryFailed: ctx.run.retryFailed,
        maxBytes: ctx.run.maxDownloadBytes,
        signal: ctx.signal,
        onEvent: ctx.onEvent,
      }),
    );
  }
  const sources = new Map<string, StageResult<string>>();
  for (const clip of clips) {
    if (clip.file) sources.set(clip.id, { ok: true, value: clip.file });
    else {
      const d = downloads.get(videoKey(clip));
      sources.set(
        clip.id,
        !d ? { ok: false, reason: 'download-failed', message: `no download for ${videoKey(clip)}` } : d.ok ? { ok: true, value: d.value.file } : d,
      );
    }
  }
  return sources;
}

/** How one clip job ended for the run. */
type ClipOutcome = { kind: 'recorded'; status: ClipStatus } | { kind: 'stopped' } | { kind: 'fatal'; error: unknown };

/**
 * One clip: its job (clip-job.ts) from explicit inputs, then its record. A clip whose job failed because the run was
 * stopped is not recorded (no status file: the rerun redoes it); a fatal error (environment, configuration) stops the
 * run; any other error drops the clip.
 */
async function prepareClip(ctx: RunContext, clip: ClipSpec, source: StageResult<string>, engines: Engines): Promise<ClipOutcome> {
  const job = (sourceFile: string): ClipJob => ({
    clip,
    sourceFile,
    out: ctx.out,
    work: clipWorkDir(ctx.out, clip.id),
    split: ctx.plan.splitOf(clip.id),
    config: ctx.config,
    chunkFrames: ctx.run.chunkFrames,
    preview: ctx.run.preview,
    sampler: ctx.sampler,
    requests: ctx.requests,
    withEngine: (fn) => engines.use(fn),
    timings: ctx.timings,
    signal: ctx.signal,
    onEvent: ctx.onEvent,
  });
  let result: StageResult<ClipJobOutput>;
  try {
    result = source.ok ? await runClipJob(job(source.value)) : source;
  } catch (e) {
    if (ctx.signal?.aborted) return { kind: 'stopped' };
    if (isFatal(e)) return { kind: 'fatal', error: e };
    result = { ok: false, reason: 'clip-failed', message: errorMessage(e) };
  }
  if (ctx.signal?.aborted) return { kind: 'stopped' };
  const status = clipStatus(clip, ctx.plan.splitOf(clip.id), result);
  try {
    await recordClip(ctx, status);
  } catch (e) {
    return { kind: 'fatal', error: e }; // e.g. the disk is full: writing the status file failed
  }
  return { kind: 'recorded', status };
}

/** Stage 4: the clip jobs, `clipWorkers` at a time; no new clip starts after a fatal error or a signal. */
async function runClipJobs(ctx: RunContext, clips: ClipSpec[], sources: Map<string, StageResult<string>>, engines: Engines): Promise<void> {
  ctx.onEvent({ type: 'stage-start', stage: 'clips', total: clips.length, unit: 'clips' });
  const t = performance.now();
  const outcomes = await runWorkers(clips, ctx.run.clipWorkers ?? 2, {
    job: (clip) => prepareClip(ctx, clip, sources.get(clip.id)!, engines),
    halt: (o) => o.kind !== 'recorded',
    signal: ctx.signal,
    onDone: (o, done) => {
      if (o.kind === 'recorded') ctx.onEvent({ type: 'progress', stage: 'clips', done, total: clips.length, detail: o.status.id });
    },
  });
  const fatal = outcomes.find((o) => o.kind === 'fatal');
  if (fatal) throw fatal.error;
  throwIfStopped(ctx.signal);
  ctx.onEvent({ type: 'stage-done', stage: 'clips', done: outcomes.length, seconds: (performance.now() - t) / 1000 });
}

/**
 * Run `job` over `items`, `workers` at a time, in order. Once `halt` holds for an outcome, or the signal fired, no
 * further item starts (those running finish). Returns the outcomes of the items that ran, in the order they finished.
 */
async function runWorkers<T, R>(
  items: readonly T[],
  workers: number,
  opts: { job: (item: T) => Promise<R>; halt: (outcome: R) => boolean; signal?: AbortSignal; onDone?: (outcome: R, done: number) => void },
): Promise<R[]> {
  const outcomes: R[] = [];
  let next = 0;
  let halted = false;
  const worker = async (): Promise<void> => {
    while (!halted && !opts.signal?.aborted && next < items.length) {
      const outcome = await opts.job(items[next++]!);
      outcomes.push(outcome);
      opts.onDone?.(outcome, outcomes.length);
      if (opts.halt(outcome)) halted = true;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(workers, items.length)) }, worker));
  return outcomes;
}

/**
 * Stage 5: dataset.json from the status file of every clip of this worker (finished in this run or an earlier one)
 * and the stored configuration (which a finished rerun has checked equal, so every record of the earlier dataset.json
 * — the landmark model included — is kept).
 */
async function finalizeDataset(ctx: RunContext, stored: Record<string, unknown>): Promise<{ file: string; manifest: DatasetManifest }> {
  const records: DatasetClip[] = [];
  for (const clip of ctx.plan.mine) {
    const st = await readClipStatus(ctx.out, clip.id);
    if (st) {
      const { seconds: _s, ...rec } = st;
      records.push(rec);
    }
  }
  throwIfStopped(ctx.signal);
  const manifest = buildDatasetManifest({
    config: stored,
    clips: records,
    toolVersion: VERSION,
    job: { shard: ctx.run.shard ?? null, concurrency: ctx.run.concurrency },
  });
  return { file: await writeDatasetManifest(ctx.out, manifest), manifest };
}

function summarize(ctx: RunContext, written: { file: string; manifest: DatasetManifest }, skipped: number, wallSeconds: number): PrepResult {
  const { manifest } = written;
  const stages: StageTiming[] = ctx.timings.entries().map(([stage, t]) => ({
    stage,
    seconds: t.seconds,
    frames: t.frames,
    framesPerSecond: t.seconds > 0 ? t.frames / t.seconds : 0,
  }));
  return {
    out: ctx.out,
    manifest: written.file,
    clips: { total: ctx.plan.mine.length, done: manifest.totals.done, dropped: manifest.totals.dropped, skippedAsFinished: skipped },
    frames: manifest.totals.frames,
    dropReasons: manifest.drop_reasons,
    splits: manifest.splits,
    stages,
    wallSeconds,
    framesPerSecond: wallSeconds > 0 ? ctx.timings.frames('shards') / wallSeconds : 0,
    ...(ctx.plan.hdtf ? { hdtf: ctx.plan.hdtf } : {}),
  };
}

/** Throw 'interrupted' once the run's signal fired. */
function throwIfStopped(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    throw new DifftalkError('interrupted', `prep stopped by ${String(signal.reason ?? 'a signal')}; rerun the same command to resume`);
  }
}
