/**
 * clip-job: one clip of `difftalk prep`, from its source file to its Arrow shards, as a function of explicit inputs
 * (ClipJob) with an explicit output (the clip's status fields, or a drop reason). It holds no state between clips;
 * the only shared things it is handed are the landmark engine pool and the run's stage timings (sums).
 *   probe → crop box (HDTF box | face tracking) → cut/crop/normalise (media/clip.ts) → references → one frame pass
 *   (decode, landmarks, encoded images, preview frames) → audio features → Arrow shards (+ preview)
 * Nothing here prints; progress goes through onEvent. `clipStatus` turns the result into the clip's record, which the
 * caller writes last (status.json, the resume mark).
 */
import path from 'node:path';
import { DifftalkError } from '../util/errors.js';
import type { OnEvent } from '../util/events.js';
import type { StageResult } from '../util/result.js';
import { prepareClip, scaleHdtfBox } from '../media/clip.js';
import { probeMedia, type MediaInfo } from '../media/probe.js';
import type { Box, ClipSpec } from '../media/types.js';
import { trackCropBox } from '../face/crop-track.js';
import type { LandmarkerInfo } from '../face/landmarks/index.js';
import type { LandmarkEngine } from '../face/types.js';
import type { ReferenceSampler } from '../dataset/reference.js';
import { maskRowsFromLandmarks68, writeClipShards, type ShardMetadata } from '../dataset/shard-writer.js';
import type { Split } from '../dataset/split.js';
import type { ClipStats } from '../dataset/manifest.js';
import { computeAudioFeatures, type AudioFeatureRequest } from './audio-stage.js';
import { runFramePass } from './frame-pass.js';
import { PREVIEW_CELLS, writePreview } from './preview.js';
import type { PrepConfig } from './config.js';
import type { ClipStatus } from './folder.js';

/** Busy seconds and frames per stage, summed over the clips of a run (clips overlap). */
export class StageTimings {
  private readonly byStage = new Map<string, { seconds: number; frames: number }>();

  add(stage: string, seconds: number, frames: number): void {
    const t = this.byStage.get(stage) ?? { seconds: 0, frames: 0 };
    t.seconds += seconds;
    t.frames += frames;
    this.byStage.set(stage, t);
  }

  async timed<T>(stage: string, frames: number, fn: () => Promise<T>): Promise<T> {
    const s = performance.now();
    try {
      return await fn();
    } finally {
      this.add(stage, (performance.now() - s) / 1000, frames);
    }
  }

  entries(): [string, { seconds: number; frames: number }][] {
    return [...this.byStage.entries()];
  }

  frames(stage: string): number {
    return this.byStage.get(stage)?.frames ?? 0;
  }
}

/** Everything one clip job reads. */
export interface ClipJob {
  clip: ClipSpec;
  /** The clip's source video (a local file or the finished download). */
  sourceFile: string;
  /** The dataset folder (shards/, previews/) and the clip's work folder. */
  out: string;
  work: string;
  split: Split;
  config: Pick<PrepConfig, 'size' | 'imageFormat' | 'jpegQuality' | 'shardRows' | 'smoothing' | 'maxBadFrameFraction'>;
  chunkFrames?: number;
  preview: boolean;
  sampler: ReferenceSampler;
  requests: AudioFeatureRequest[];
  /** Runs `fn` with a landmark engine of the run's pool (one user at a time). */
  withEngine: <T>(fn: (engine: LandmarkEngine, info: LandmarkerInfo) => Promise<T>) => Promise<T>;
  timings: StageTimings;
  signal?: AbortSignal;
  onEvent: OnEvent;
}

/** What a finished clip job produced: the fields of its status record. */
export interface ClipJobOutput {
  frames: number;
  shards: string[];
  notes: string[];
  stats: ClipStats;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** Prepare one clip: its shards are written, or a drop reason is returned. Throws only for run-level errors. */
export async function runClipJob(job: ClipJob): Promise<StageResult<ClipJobOutput>> {
  const { clip, sourceFile, out, work, config, sampler, requests, withEngine, timings, onEvent } = job;
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
      timings.timed('crop-track', 0, () => trackCropBox(sourceFile, eng, { ratio: clip.cropRatio ?? 1.2, sourceInfo: source, onEvent })),
    );
    if (!tracked.ok) return tracked;
    crop = tracked.value;
    clamped = tracked.value.clamped;
    notes.push(...tracked.value.notes, `crop from face tracking: ${tracked.value.framesWithFace}/${tracked.value.framesAnalysed} analysed frames had a face`);
  }
  // Cut, crop, normalise.
  const prepared = await timings.timed('clip', 0, () =>
    prepareClip(clip, sourceFile, work, { size: config.size, crop, clamped, notes, sourceInfo: source, onEvent, signal: job.signal }),
  );
  if (!prepared.ok) return prepared;
  const p = prepared.value;
  const frameCount = p.frameCount;
  timings.add('clip', 0, frameCount);
  // References first: cheap, and a too-short clip should not cost a landmark pass.
  const refs = sampler.sample(clip.id, frameCount);
  if (!refs.ok) return refs;
  // One pass over the frames in bounded chunks: landmarks, encoded images, preview frames (frame-pass.ts).
  const { pass, info } = await withEngine(async (eng, info) => ({
    info,
    pass: await runFramePass(eng, p, {
      image: { format: config.imageFormat, quality: config.jpegQuality },
      landmarks: { smoothing: config.smoothing, maxBadFrameFraction: config.maxBadFrameFraction, onEvent, id: clip.id },
      chunkFrames: job.chunkFrames,
      previewCells: job.preview ? PREVIEW_CELLS : 0,
    }),
  }));
  for (const stage of ['decode', 'landmarks', 'encode'] as const) timings.add(stage, pass.seconds[stage], frameCount);
  const lm = pass.landmarks;
  const images = pass.images;
  if (!lm.ok) return lm;
  if (images.length !== lm.value.status.length) {
    return { ok: false, reason: 'clip-failed', message: `${images.length} images encoded for ${lm.value.status.length} landmarked frames` };
  }
  const audio = await timings.timed('audio', frameCount, () => computeAudioFeatures(p.audio, frameCount, p.fps, requests, onEvent));
  if (!audio.ok) return audio;
  const masks = maskRowsFromLandmarks68(lm.value.lm68, config.size);
  const shardMetadata: ShardMetadata = {
    fps: p.fps,
    size: config.size,
    imageFormat: config.imageFormat,
    jpegQuality: config.imageFormat === 'jpeg' ? config.jpegQuality : undefined,
    landmarker: { engine: info.engine, model: path.basename(info.model), sha256: info.sha256, smoothing: lm.value.smoothing },
    audioFeatures: audio.value.map(({ windows: _w, ...meta }) => meta),
    reference: sampler.params,
  };
  const written = await timings.timed('shards', frameCount, () =>
    writeClipShards(
      out,
      {
        clipId: clip.id,
        split: job.split,
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
      { maxRows: config.shardRows, metadata: shardMetadata },
    ),
  );
  if (job.preview) {
    await timings.timed('preview', 0, () =>
      writePreview(
        pass.preview.frames,
        { mesh: lm.value.smoothed, lm68: lm.value.lm68, status: lm.value.status },
        path.join(out, 'previews', `${clip.id}.png`),
        { frameNumbers: pass.preview.frameNumbers },
      ),
    );
  }
  return {
    ok: true,
    value: {
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
    },
  };
}

/** The clip's record (status.json, and its row of dataset.json) from its job's result: finished, or dropped with the reason. */
export function clipStatus(clip: ClipSpec, split: Split, result: StageResult<ClipJobOutput>): ClipStatus {
  const outcome: Omit<ClipStatus, 'id' | 'identity' | 'split'> = result.ok
    ? { status: 'done', ...result.value }
    : { status: 'dropped', frames: 0, shards: [], drop_reason: result.reason, drop_message: result.message, notes: [] };
  return {
    id: clip.id,
    identity: clip.identity,
    ...(clip.subset ? { subset: clip.subset } : {}),
    source: clip.file ? path.basename(clip.file) : clip.video,
    split,
    ...outcome,
    notes: [...(clip.notes ?? []), ...outcome.notes],
  };
}
