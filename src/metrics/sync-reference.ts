/**
 * LSE with syncnet_python's own preprocessing (`difftalk eval --sync-crop reference`; run_pipeline.py then
 * SyncNetInstance.evaluate, ../shared/docs/eval-metrics.md §4):
 * 1. ffmpeg `-qscale:v 2 -async 1 -r 25` → video.avi (MPEG-4 part 2), then `-qscale:v 2 -threads 1 -f image2`
 *    → %06d.jpg frames and `-ac 1 -vn -acodec pcm_s16le -ar 16000` → audio.wav (the exact commands of run_pipeline.py);
 * 2. S3FD on every decoded JPEG (scale 0.25, conf_th 0.9, NMS 0.1: models/s3fd.ts);
 * 3. one shot (no PySceneDetect), track_shot, interpolation, size/length filters (face/reference-crop.ts);
 * 4. crop_video: median-smoothed box, pad 110, crop, resize 224 (face/sync-crop.ts);
 * 5. the crops go through an MPEG-4 "XVID" avi and back to JPEG frames (ffmpeg `-f image2`, default quality), as
 *    SyncNetInstance.evaluate reads the crop file; the track's audio is samples [first·640, (last+1)·640) of audio.wav;
 * 6. SyncNet scores per track (metrics/lse.ts SyncStream); the clip's value is the mean over its tracks (LatentSync's
 *    rule; syncnet_python prints one line per track).
 * Differences left (docs/commands/eval.md): the crop avi is written by ffmpeg's mpeg4 encoder (tag XVID, its default
 * quality) instead of OpenCV's VideoWriter; JPEGs are decoded by libvips/libjpeg-turbo (sharp) instead of OpenCV;
 * cv2.resize's 11-bit fixed-point weights are computed in floating point (±1 level); the audio segment is cut by sample
 * index instead of `ffmpeg -ss %.3f -to %.3f`; no scene detection.
 */
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { loadAudio16k, type AudioData } from '../audio/wav.js';
import { referenceCropTrack, trackFaces, type FaceTrack, type ReferenceTrackOptions, type TrackingResult } from '../face/reference-crop.js';
import { applyCropTrack } from '../face/sync-crop.js';
import type { S3fd } from '../models/s3fd.js';
import { SYNCNET_SIZE, type SyncEmbedder } from '../models/syncnet.js';
import { DifftalkError } from '../util/errors.js';
import { silent, type OnEvent } from '../util/events.js';
import { runTool, spawnToolStream } from '../util/exec.js';
import { SAMPLES_PER_VIDEO_FRAME, SyncStream, type SyncScores } from './lse.js';

/** Frames and audio of run_pipeline.py's first step. */
export interface ReferenceFrames {
  /** The JPEG frames, in order. */
  files: string[];
  width: number;
  height: number;
  /** audio.wav from video.avi, when the input has audio. */
  audio?: AudioData;
}

/** The input of step 1: a video file, or raw RGB frames (streamed to ffmpeg as rawvideo at `fps`). */
export type ReferenceInput =
  { kind: 'file'; file: string; hasAudio: boolean } | { kind: 'raw'; width: number; height: number; fps: number; frames: AsyncIterable<Uint8Array> };

/** run_pipeline.py's ffmpeg steps into `work` (a folder this module owns). */
export async function referenceFrames(input: ReferenceInput, work: string): Promise<ReferenceFrames> {
  const avi = path.join(work, 'video.avi');
  const framesDir = path.join(work, 'frames');
  await mkdir(framesDir, { recursive: true });
  if (input.kind === 'file') {
    await runTool('ffmpeg', ['-v', 'error', '-y', '-i', `file:${path.resolve(input.file)}`, '-qscale:v', '2', '-async', '1', '-r', '25', avi]);
  } else {
    const args = ['-v', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${input.width}x${input.height}`, '-r', String(input.fps), '-i', '-'];
    const enc = spawnToolStream('ffmpeg', [...args, '-qscale:v', '2', '-r', '25', avi]);
    try {
      for await (const f of input.frames) await enc.write(f);
    } catch (e) {
      await enc.kill();
      throw e;
    }
    await enc.end();
  }
  await runTool('ffmpeg', ['-v', 'error', '-y', '-i', avi, '-qscale:v', '2', '-threads', '1', '-f', 'image2', path.join(framesDir, '%06d.jpg')]);
  const files = (await readdir(framesDir))
    .filter((f) => /^\d{6}\.jpg$/.test(f))
    .sort()
    .map((f) => path.join(framesDir, f));
  if (files.length === 0) throw new DifftalkError('no-frames', 'the reference SyncNet pipeline decoded no frames');
  const meta = await sharp(files[0]!).metadata();
  let audio: AudioData | undefined;
  if (input.kind === 'file' && input.hasAudio) {
    const wav = path.join(work, 'audio.wav');
    await runTool('ffmpeg', ['-v', 'error', '-y', '-i', avi, '-ac', '1', '-vn', '-acodec', 'pcm_s16le', '-ar', '16000', wav]);
    audio = await loadAudio16k(wav);
  }
  return { files, width: meta.width!, height: meta.height!, audio };
}

/** One JPEG frame as RGB uint8 (cv2.imread's pixels, in RGB order). */
export async function readJpegRgb(file: string): Promise<{ data: Uint8Array; width: number; height: number }> {
  const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

/** S3FD boxes of every frame (inference_video). */
export async function detectFrames(
  net: S3fd,
  files: readonly string[],
  opts: { onEvent?: OnEvent; stage?: string } = {},
): Promise<Array<Array<{ x1: number; y1: number; x2: number; y2: number; score: number }>>> {
  const onEvent = opts.onEvent ?? silent;
  const stage = opts.stage ?? 's3fd';
  const t0 = performance.now();
  onEvent({ type: 'stage-start', stage, total: files.length, unit: 'frames' });
  const out = [];
  for (const [i, f] of files.entries()) {
    const img = await readJpegRgb(f);
    out.push(await net.detectFaces(img.data, img.width, img.height));
    onEvent({ type: 'progress', stage, done: i + 1, total: files.length });
  }
  onEvent({ type: 'stage-done', stage, done: files.length, seconds: (performance.now() - t0) / 1000 });
  return out;
}

/** crop_video's 224² crops of one track from the JPEG frames (RGB). */
export async function trackCrops(files: readonly string[], track: Pick<FaceTrack, 'frames' | 'boxes'>, size = SYNCNET_SIZE): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  let frameSize: { width: number; height: number } | undefined;
  let rects: ReturnType<typeof referenceCropTrack>['rects'] = [];
  for (const [k, f] of track.frames.entries()) {
    const img = await readJpegRgb(files[f]!);
    if (!frameSize) {
      frameSize = { width: img.width, height: img.height };
      rects = referenceCropTrack(track, frameSize).rects;
    }
    const crop = applyCropTrack({ width: img.width, height: img.height, count: 1, data: img.data }, { rects: [rects[k]!], interpolated: [] }, size);
    out.push(crop[0]!);
  }
  return out;
}

/**
 * The crop file round trip: 224² RGB crops → ffmpeg mpeg4 (tag XVID) avi at 25 fps → JPEG frames (`-f image2`,
 * default quality, as SyncNetInstance.evaluate extracts them) → RGB. `work` is a folder this module owns.
 */
export async function cropRoundTrip(crops: readonly Uint8Array[], work: string, size = SYNCNET_SIZE): Promise<Uint8Array[]> {
  const avi = path.join(work, 'crop.avi');
  const dir = path.join(work, 'crop-frames');
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const raw = Buffer.concat(crops.map((c) => Buffer.from(c.buffer, c.byteOffset, c.length)));
  await runTool(
    'ffmpeg',
    ['-v', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${size}x${size}`, '-r', '25', '-i', '-', '-c:v', 'mpeg4', '-vtag', 'XVID', avi],
    { input: raw },
  );
  await runTool('ffmpeg', ['-v', 'error', '-y', '-i', avi, '-threads', '1', '-f', 'image2', path.join(dir, '%06d.jpg')]);
  const files = (await readdir(dir)).filter((f) => f.endsWith('.jpg')).sort();
  const out: Uint8Array[] = [];
  for (const f of files) out.push((await readJpegRgb(path.join(dir, f))).data);
  return out;
}

export interface ReferenceTrackScore {
  first: number;
  last: number;
  detections: number;
  scores: SyncScores;
}

export interface ReferenceSyncResult {
  tracks: ReferenceTrackScore[];
  tracking: TrackingResult;
  /** Mean over tracks (undefined when no track was found: see `notes`). */
  scores?: SyncScores;
  /** The same crops scored with each of `alternates` (e.g. a shifted-audio baseline), mean over tracks. */
  alternateScores: Array<SyncScores | undefined>;
  notes: string[];
  frames: number;
}

export interface ReferenceSyncOptions extends ReferenceTrackOptions {
  /** Audio to score with instead of the input's own (16 kHz int16 units), e.g. the GT's or --audio. */
  audio?: AudioData;
  /** More audio tracks to score the same crops with (detection and cropping run once). */
  alternates?: readonly AudioData[];
  onEvent?: OnEvent;
  /** Where the temporary frames go (default: the OS temp folder); removed afterwards. */
  tmpRoot?: string;
}

/** SyncNet scores of one track's (round-tripped) crops with the audio of its frames [first, last]: samples [first·640, (last+1)·640). */
export async function scoreTrackCrops(net: SyncEmbedder, crops: readonly Uint8Array[], first: number, last: number, audio: AudioData): Promise<SyncScores> {
  const samples = audio.samples.subarray(Math.min(audio.samples.length, first * SAMPLES_PER_VIDEO_FRAME), (last + 1) * SAMPLES_PER_VIDEO_FRAME);
  const stream = new SyncStream(net, { samples, sampleRate: audio.sampleRate });
  await stream.push(crops);
  return stream.finish();
}

/** Mean of per-track scores (LatentSync's `fmean` over tracks); the mdist curve is averaged too. */
function meanScores(s: readonly SyncScores[]): SyncScores {
  const m = (f: (x: SyncScores) => number) => s.reduce((a, x) => a + f(x), 0) / s.length;
  return {
    lseD: m((x) => x.lseD),
    lseC: m((x) => x.lseC),
    offset: m((x) => x.offset),
    mdist: s[0]!.mdist.map((_, k) => m((x) => x.mdist[k]!)),
    windows: s.reduce((a, x) => a + x.windows, 0),
  };
}

/**
 * The whole reference pipeline on one video: detections, tracks, crops, JPEG round trip and SyncNet scores per
 * track. No track is not an error: `scores` is undefined and `notes` says why (no face, short or small tracks).
 */
export async function referenceSyncScores(
  input: ReferenceInput,
  nets: { s3fd: S3fd; syncnet: SyncEmbedder },
  opts: ReferenceSyncOptions = {},
): Promise<ReferenceSyncResult> {
  const work = await mkdtemp(path.join(opts.tmpRoot ?? os.tmpdir(), 'difftalk-syncref-'));
  try {
    const fr = await referenceFrames(input, work);
    const audio = opts.audio ?? fr.audio;
    if (!audio) {
      throw new DifftalkError('no-audio', 'the reference SyncNet pipeline needs audio: the input has none', {
        suggestion: 'pass --audio <wav> (the driving audio), or a video with its audio track',
      });
    }
    const dets = await detectFrames(nets.s3fd, fr.files, { onEvent: opts.onEvent });
    const tracking = trackFaces(dets, opts);
    const notes: string[] = [];
    const minTrack = opts.minTrack ?? 100;
    if (tracking.shotTooShort) notes.push(`reference SyncNet crop: ${fr.files.length} frames, fewer than min_track ${minTrack}: no face track (no LSE)`);
    else if (tracking.tracks.length === 0) {
      notes.push(
        `reference SyncNet crop: no face track (S3FD found faces in ${tracking.framesWithFaces}/${fr.files.length} frames; ` +
          `${tracking.dropped.short} track(s) of ≤ ${minTrack} detections, ${tracking.dropped.small} with mean face size ≤ ${opts.minFaceSize ?? 100} px): no LSE`,
      );
    } else if (tracking.tracks.length > 1) notes.push(`reference SyncNet crop: ${tracking.tracks.length} face tracks, LSE is their mean`);
    const tracks: ReferenceTrackScore[] = [];
    const alternates = opts.alternates ?? [];
    const alt: SyncScores[][] = alternates.map(() => []);
    for (const t of tracking.tracks) {
      const crops = await cropRoundTrip(await trackCrops(fr.files, t), work);
      const first = t.frames[0]!;
      const last = t.frames[t.frames.length - 1]!;
      tracks.push({ first, last, detections: t.detections, scores: await scoreTrackCrops(nets.syncnet, crops, first, last, audio) });
      for (const [k, a] of alternates.entries()) alt[k]!.push(await scoreTrackCrops(nets.syncnet, crops, first, last, a));
    }
    return {
      tracks,
      tracking,
      scores: tracks.length ? meanScores(tracks.map((t) => t.scores)) : undefined,
      alternateScores: alt.map((a) => (a.length ? meanScores(a) : undefined)),
      notes,
      frames: fr.files.length,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
