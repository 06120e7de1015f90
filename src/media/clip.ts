/**
 * clip: stage 3 of `difftalk prep` — cut, crop, normalise. One ffmpeg pass per clip turns a source video into
 *   <workDir>/<id>.mkv   square size², constant 25 fps, FFVHuff lossless 4:4:4 intra-only in Matroska, no audio
 *   <workDir>/<id>.wav   16 kHz mono s16le PCM of exactly the same time range, exactly frames/25 s long
 *   <workDir>/<id>.clip.json   the PreparedClip record, written last: its presence marks the clip complete
 * Outputs are written under temp names and renamed into place only when ffmpeg succeeded and the result was verified,
 * so a rerun after a kill redoes the clip or skips it, never reads half a file. See docs/commands/prep-clip.md.
 */
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { DifftalkError, errorMessage } from '../util/errors.js';
import { silent, type OnEvent } from '../util/events.js';
import { exists, readJson, tempPathFor, writeJsonAtomic } from '../util/fs.js';
import { ExecError, runTool } from '../util/exec.js';
import { readWav } from '../audio/wav.js';
import { probeMedia, type MediaInfo } from './probe.js';
import { drop, ok, type StageResult } from '../util/result.js';
import type { Box, ClipSpec, PreparedClip } from './types.js';

/** Frame rate of every prepared clip (DiffTalk: "set all videos to 25 fps"). */
export const CLIP_FPS = 25;
/** Sample rate of the prepared audio. */
export const CLIP_AUDIO_RATE = 16_000;
/** Audio samples per video frame (16000 / 25). */
export const SAMPLES_PER_FRAME = CLIP_AUDIO_RATE / CLIP_FPS;
/** Intermediate video encoding (see docs/commands/prep-clip.md for why). */
export const CLIP_VIDEO_CODEC = { codec: 'ffvhuff', pred: 'plane', pixFmt: 'yuv444p', container: 'matroska', ext: 'mkv' } as const;
/** Scaler used for crop → size² (sws flags). */
export const CLIP_SCALER = 'lanczos+accurate_rnd+full_chroma_int';

export interface PrepareClipOptions {
  size: 256 | 512;
  fps?: 25;
  /** Crop box in pixels of the (display-oriented) source video: from scaleHdtfBox or trackCropBox. */
  crop: Box;
  /** Set when the box was already clamped by the caller (scaleHdtfBox / trackCropBox report it). */
  clamped?: boolean;
  /** probeMedia(source) when the caller already has it (saves an ffprobe run). */
  sourceInfo?: MediaInfo;
  /** Notes from the caller (annotation quirks, box clamping) carried into PreparedClip.notes. */
  notes?: string[];
  onEvent?: OnEvent;
  signal?: AbortSignal;
}

export interface FittedBox {
  box: Box;
  /** True when the box had to be shrunk or shifted to fit in the frame. */
  clamped: boolean;
  notes: string[];
}

const evenFloor = (v: number): number => 2 * Math.floor(v / 2);

/**
 * Make `box` a square with even integer x, y and side that lies inside a frameW×frameH frame: the side is
 * max(w, h), kept about the box centre; a side larger than the shorter frame edge is shrunk to it; a box
 * reaching outside the frame is shifted in (as ffmpeg's own crop filter does with x/y). Even coordinates make
 * the crop exact for 4:2:0 sources (ffmpeg would otherwise round x/y down to the chroma grid silently).
 */
export function fitSquareBox(box: Box, frameW: number, frameH: number): FittedBox {
  const notes: string[] = [];
  if (!(frameW >= 2 && frameH >= 2)) throw new DifftalkError('video-corrupt', `frame size ${frameW}x${frameH} is unusable`);
  if (!(box.w > 0 && box.h > 0) || ![box.x, box.y, box.w, box.h].every(Number.isFinite)) {
    throw new DifftalkError('annotation-invalid', `crop box ${JSON.stringify(box)} is empty or not a number`);
  }
  let clamped = false;
  const cx = box.x + box.w / 2;
  const cy = box.y + box.h / 2;
  let side = Math.max(box.w, box.h);
  if (Math.abs(box.w - box.h) > 1e-6) notes.push(`crop box ${fmt(box.w)}x${fmt(box.h)} made square (${fmt(side)})`);
  const maxSide = evenFloor(Math.min(frameW, frameH));
  side = Math.max(2, 2 * Math.round(side / 2));
  if (side > maxSide) {
    notes.push(`crop side ${side} larger than the ${frameW}x${frameH} frame: shrunk to ${maxSide}`);
    side = maxSide;
    clamped = true;
  }
  let x = evenFloor(Math.round(cx - side / 2));
  let y = evenFloor(Math.round(cy - side / 2));
  const sx = Math.min(Math.max(x, 0), evenFloor(frameW - side));
  const sy = Math.min(Math.max(y, 0), evenFloor(frameH - side));
  if (sx !== x || sy !== y) {
    notes.push(`crop box shifted by (${sx - x}, ${sy - y}) px to fit the ${frameW}x${frameH} frame`);
    clamped = true;
  }
  x = sx;
  y = sy;
  return { box: { x, y, w: side, h: side }, clamped, notes };
}

function fmt(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

/**
 * HDTF cropping method 1: the annotated box is in pixels of a frame `refHeight` tall (xx_resolution.txt);
 * scale it to the downloaded srcW×srcH video (by srcH / refHeight), keep it square and clamp it into the frame.
 * Throws DifftalkError 'annotation-invalid' when refHeight is 0 (KevinMcCarthy1) or the box is empty.
 */
export function scaleHdtfBox(crop: Box & { refHeight: number }, srcW: number, srcH: number): FittedBox {
  if (!(crop.refHeight > 0)) {
    throw new DifftalkError('annotation-invalid', `annotated resolution is ${crop.refHeight}: the crop box cannot be placed`);
  }
  const s = srcH / crop.refHeight;
  const scaled = { x: crop.x * s, y: crop.y * s, w: crop.w * s, h: crop.h * s };
  const fitted = fitSquareBox(scaled, srcW, srcH);
  if (s !== 1) fitted.notes.unshift(`crop box scaled x${s.toFixed(4)} from ${crop.refHeight}p to ${srcH}p`);
  return fitted;
}

interface ClipRecord {
  version: 1;
  params: { size: number; fps: number; crop: Box; startS?: number; endS?: number; source: string };
  /** Samples in the WAV (frames × 640 of the requested range). */
  audioSamples: number;
  clip: PreparedClip;
}

/** Output paths of a prepared clip in workDir. */
export function clipPaths(workDir: string, id: string): { video: string; audio: string; record: string } {
  const dir = path.resolve(workDir);
  return {
    video: path.join(dir, `${id}.${CLIP_VIDEO_CODEC.ext}`),
    audio: path.join(dir, `${id}.wav`),
    record: path.join(dir, `${id}.clip.json`),
  };
}

const SAFE_ID = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$/;

/** Delete a prepared clip's media and record (missing files are fine). */
export async function removePreparedClip(workDir: string, id: string): Promise<void> {
  if (!SAFE_ID.test(id)) return; // prepareClip never wrote anything for it
  const p = clipPaths(workDir, id);
  await rm(p.record, { force: true }); // the record first: without it the media are never taken as complete
  await Promise.all([rm(p.video, { force: true }), rm(p.audio, { force: true })]);
}

/**
 * Cut spec's time range out of `source`, crop `opts.crop`, scale to size², resample to 25 fps CFR, and write
 * the 16 kHz mono WAV of the same range, in one ffmpeg pass. Bad input becomes a drop reason:
 * 'video-corrupt' (unreadable, or far fewer frames decoded than the range holds), 'no-audio',
 * 'annotation-invalid' (range outside the video), 'unsafe-name' (id), 'clip-failed' (anything else).
 * Resumable: when the record and both outputs exist with the same parameters, the clip is not redone.
 */
export async function prepareClip(spec: ClipSpec, source: string, workDir: string, opts: PrepareClipOptions): Promise<StageResult<PreparedClip>> {
  const onEvent = opts.onEvent ?? silent;
  const fps = opts.fps ?? CLIP_FPS;
  if (fps !== CLIP_FPS) return drop('clip-failed', `fps ${fps} is not supported (prepared clips are ${CLIP_FPS} fps)`);
  if (opts.size !== 256 && opts.size !== 512) return drop('clip-failed', `size ${opts.size} is not 256 or 512`);
  if (!SAFE_ID.test(spec.id)) return drop('unsafe-name', `clip id ${JSON.stringify(spec.id)} is not a safe file name`);
  const out = clipPaths(workDir, spec.id);
  const abs = path.resolve(source);
  const params: ClipRecord['params'] = {
    size: opts.size,
    fps,
    crop: { x: opts.crop.x, y: opts.crop.y, w: opts.crop.w, h: opts.crop.h },
    startS: spec.startS,
    endS: spec.endS,
    source: path.basename(abs),
  };

  const done = await readCompleteRecord(out, params);
  if (done) {
    onEvent({ type: 'log', level: 'debug', message: `${spec.id}: prepared clip exists, skipped` });
    return ok(done);
  }

  let info: MediaInfo;
  try {
    info = opts.sourceInfo ?? (await probeMedia(abs));
  } catch (e) {
    if (e instanceof DifftalkError && e.code === 'video-corrupt') return drop('video-corrupt', e.message);
    if (e instanceof DifftalkError && e.code === 'tool-missing') throw e;
    return drop('clip-failed', `${spec.id}: probe failed: ${errorMessage(e)}`);
  }
  if (!(info.duration > 0)) return drop('video-corrupt', `${path.basename(abs)} has no duration: a still image or a damaged file`);
  if (!info.hasAudio) return drop('no-audio', `${path.basename(abs)} has no audio stream`);

  const notes = [...(opts.notes ?? [])];
  const start = spec.startS ?? 0;
  let end = spec.endS ?? info.duration;
  if (!(start >= 0) || !(end > start)) return drop('annotation-invalid', `time range ${start}-${end} s is empty`);
  if (start >= info.duration) {
    return drop('annotation-invalid', `clip starts at ${start} s but the video is ${info.duration.toFixed(3)} s long`);
  }
  if (end > info.duration) {
    if (spec.endS !== undefined) notes.push(`clip end ${end} s is past the video end ${info.duration.toFixed(3)} s: cut there`);
    end = info.duration;
  }
  const expected = Math.round((end - start) * fps);
  if (expected < 1) return drop('annotation-invalid', `time range ${start}-${end} s holds no frame at ${fps} fps`);
  const samples = expected * SAMPLES_PER_FRAME;

  let fitted: FittedBox;
  try {
    fitted = fitSquareBox(opts.crop, info.width, info.height);
  } catch (e) {
    return drop('annotation-invalid', `${spec.id}: ${errorMessage(e)}`);
  }
  notes.push(...fitted.notes);
  if (info.interlaced) notes.push('interlaced source: deinterlaced with bwdif (one frame per frame)');
  const crop = fitted.box;

  await mkdir(path.dirname(out.video), { recursive: true });
  const tmpVideo = tempPathFor(out.video);
  const tmpAudio = tempPathFor(out.audio);
  const t0 = performance.now();
  let framesDone = 0;
  onEvent({ type: 'stage-start', stage: 'clip', total: expected, unit: 'frames' });
  try {
    await runFfmpeg({
      source: abs,
      start,
      duration: end - start,
      wholeFile: spec.startS === undefined && spec.endS === undefined,
      crop,
      deinterlace: info.interlaced,
      size: opts.size,
      frames: expected,
      samples,
      video: tmpVideo,
      audio: tmpAudio,
      signal: opts.signal,
      onFrame: (n) => onEvent({ type: 'progress', stage: 'clip', done: n, total: expected, detail: spec.id }),
    });
    // Intra-only codec: one packet per frame, so counting packets (no decoding) counts frames.
    const v = await probeMedia(tmpVideo, { count: 'packets' });
    const a = await readWav(tmpAudio); // our own reader: the header must be plain 16 kHz mono PCM
    const frameCount = v.frameCount ?? 0;
    if (frameCount < expected - 1) {
      return drop('video-corrupt', `${spec.id}: decoded ${frameCount} of ${expected} frames from ${path.basename(abs)}: the file is truncated or damaged`);
    }
    if (frameCount !== expected) notes.push(`${frameCount} frames for a range of ${expected}`);
    const audioSeconds = a.samples.length / a.sampleRate;
    const gap = Math.abs(audioSeconds - frameCount / fps);
    if (a.sampleRate !== CLIP_AUDIO_RATE || a.channels !== 1 || gap > 1 / fps + 1e-6) {
      return drop(
        'clip-failed',
        `${spec.id}: audio is ${audioSeconds.toFixed(3)} s at ${a.sampleRate} Hz, ${a.channels} channels, for ${frameCount} frames (${(frameCount / fps).toFixed(3)} s)`,
      );
    }
    if (info.audio?.duration !== undefined && info.audio.duration + 0.1 < end) {
      notes.push(`source audio ends at ${info.audio.duration.toFixed(3)} s: padded with silence to the video length`);
    }
    const clip: PreparedClip = {
      video: out.video,
      audio: out.audio,
      fps,
      size: opts.size,
      frameCount,
      crop,
      sourceWidth: info.width,
      sourceHeight: info.height,
      clamped: Boolean(opts.clamped) || fitted.clamped,
      notes,
    };
    await rename(tmpVideo, out.video);
    await rename(tmpAudio, out.audio);
    await writeJsonAtomic(out.record, { version: 1, params, audioSamples: samples, clip } satisfies ClipRecord);
    framesDone = frameCount;
    return ok(clip);
  } catch (e) {
    if (e instanceof DifftalkError && e.code === 'tool-missing') throw e;
    const msg = errorMessage(e);
    if (/Invalid data found|moov atom not found|corrupt|Error while decoding/i.test(msg)) {
      return drop('video-corrupt', `${spec.id}: ${msg}`);
    }
    return drop('clip-failed', `${spec.id}: ${msg}`);
  } finally {
    onEvent({ type: 'stage-done', stage: 'clip', done: framesDone, seconds: (performance.now() - t0) / 1000 });
    await rm(tmpVideo, { force: true });
    await rm(tmpAudio, { force: true });
  }
}

async function readCompleteRecord(out: ReturnType<typeof clipPaths>, params: ClipRecord['params']): Promise<PreparedClip | undefined> {
  if (!(await exists(out.record))) return undefined;
  try {
    const rec = await readJson<ClipRecord>(out.record);
    if (rec.version !== 1 || JSON.stringify(rec.params) !== JSON.stringify(params)) return undefined;
    const [v, a] = await Promise.all([stat(out.video), stat(out.audio)]);
    if (v.size === 0 || a.size !== 44 + rec.audioSamples * 2) return undefined;
    return { ...rec.clip, video: out.video, audio: out.audio };
  } catch {
    return undefined;
  }
}

interface FfmpegJob {
  source: string;
  start: number;
  duration: number;
  wholeFile: boolean;
  crop: Box;
  deinterlace: boolean;
  size: number;
  frames: number;
  samples: number;
  video: string;
  audio: string;
  signal?: AbortSignal;
  onFrame: (frames: number) => void;
}

/**
 * The video filter chain: deinterlace (only for interlaced sources), 25 fps CFR (before the scaler, so dropped
 * frames cost nothing), crop, the scaler, square pixels, 4:4:4.
 */
export function clipVideoFilter(crop: Box, size: number, opts: { deinterlace?: boolean } = {}): string {
  return [
    ...(opts.deinterlace ? ['bwdif=mode=send_frame:parity=auto:deint=interlaced'] : []),
    `fps=fps=${CLIP_FPS}:start_time=0`,
    `crop=w=${crop.w}:h=${crop.h}:x=${crop.x}:y=${crop.y}:exact=1`,
    `scale=w=${size}:h=${size}:flags=${CLIP_SCALER}`,
    'setsar=1',
    `format=${CLIP_VIDEO_CODEC.pixFmt}`,
  ].join(',');
}

/** The audio filter chain: 16 kHz with gaps filled from t=0, mono s16, padded/trimmed to exactly `samples`. */
export function clipAudioFilter(samples: number): string {
  return [
    `aresample=${CLIP_AUDIO_RATE}:async=1:first_pts=0`,
    `aformat=sample_fmts=s16:sample_rates=${CLIP_AUDIO_RATE}:channel_layouts=mono`,
    `apad=whole_len=${samples}`,
    `atrim=end_sample=${samples}`,
  ].join(',');
}

/** The one cut/crop/normalise ffmpeg call: both outputs (video, audio) from one decode, through runTool (argument array). */
export function clipFfmpegArgs(job: Omit<FfmpegJob, 'onFrame' | 'signal'>): string[] {
  // Input options: -ss before -i seeks accurately when transcoding (frames before the point are decoded and
  // dropped); -t bounds both outputs to the same range.
  const input = ['-nostdin', '-y', ...(job.wholeFile ? [] : ['-ss', job.start.toFixed(6), '-t', job.duration.toFixed(6)]), '-i', job.source];
  const video = [
    '-map',
    '0:v:0',
    '-an',
    '-sn',
    '-dn',
    '-map_metadata',
    '-1',
    '-vf',
    clipVideoFilter(job.crop, job.size, { deinterlace: job.deinterlace }),
    '-frames:v',
    String(job.frames),
    '-c:v',
    CLIP_VIDEO_CODEC.codec,
    '-pred',
    CLIP_VIDEO_CODEC.pred,
    '-pix_fmt',
    CLIP_VIDEO_CODEC.pixFmt,
    '-fflags',
    '+bitexact',
    '-f',
    CLIP_VIDEO_CODEC.container,
    job.video,
  ];
  const audio = [
    '-map',
    '0:a:0',
    '-vn',
    '-sn',
    '-dn',
    '-map_metadata',
    '-1',
    '-af',
    clipAudioFilter(job.samples),
    '-c:a',
    'pcm_s16le',
    '-fflags',
    '+bitexact',
    '-f',
    'wav',
    job.audio,
  ];
  return [...input, ...video, ...audio];
}

async function runFfmpeg(job: FfmpegJob): Promise<void> {
  if (job.signal?.aborted) throw new DifftalkError('aborted', 'clip preparation aborted');
  let last = -1;
  try {
    await runTool('ffmpeg', clipFfmpegArgs(job), {
      signal: job.signal,
      onStderrLine: (line) => {
        const m = /frame=\s*(\d+)/.exec(line);
        if (m) {
          const n = Number(m[1]);
          if (n !== last) job.onFrame((last = n));
        }
      },
    });
  } catch (e) {
    if (job.signal?.aborted) throw new DifftalkError('aborted', 'clip preparation aborted');
    if (e instanceof ExecError) {
      const tail = e.stderr
        .trim()
        .split(/[\r\n]+/)
        .filter((l) => !/^\s*(frame|size)=/.test(l))
        .slice(-4)
        .join(' | ');
      throw new DifftalkError('exec-failed', `ffmpeg failed with exit ${e.exitCode ?? 'a signal'}${tail ? ` (${tail})` : ''}`);
    }
    throw e;
  }
}
