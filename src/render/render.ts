/**
 * `difftalk render`: drive a person video with a speech track through a trained DiffTalk checkpoint.
 *
 *  1. checkpoint (EMA UNet when saved) + its first stage; the audio feature it was trained on (from the training
 *     dataset's metadata, or --audio-feature when that dataset is gone);
 *  2. the person video through prep's stages: face-tracking crop box (trackCropBox, ratio 1.2), cut/crop/normalise to
 *     the dataset's frame size at 25 fps (prepareClip), landmarks (landmarkClip);
 *  3. the driving audio (any file ffmpeg reads) → features → one window per output frame, frames = ⌈duration·25⌉;
 *     the video is looped ping-pong (or wrapped) / trimmed to that count (paste.ts sourceFrameIndex);
 *  4. per output frame, as DiffTalk's inference (difftalk-reference.md §3): target = the frame resized (bicubic) to the
 *     model's image size, masked target = rows ≥ pt 33 set to −1, reference = the first frame (or with `progressive` the
 *     previous generated frame, the paper's variant), 39 landmarks in 256-px coordinates, audio frames i−4 … i+3;
 *     latent mask = jaw polygon (train/data.ts latentJawMask); DDIM masked inpainting (models/pipeline.ts generate)
 *     → quantised decode → clamp → uint8;
 *  5. the jaw region of each generated crop is pasted back into the original-resolution frame with a feathered edge
 *     (paste.ts), `chunk` frames at a time, streamed as raw RGB into one ffmpeg process that encodes H.264 and muxes the
 *     driving audio as AAC, cut to the audio's duration; written to a temp file beside `out`, then renamed.
 * Frames where the landmarker found no single face are copied from the source unchanged (counted in the result).
 */
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { tf } from '../util/tf.js';
import { DifftalkError, errorMessage } from '../util/errors.js';
import { silent, type OnEvent } from '../util/events.js';
import { exists } from '../util/fs.js';
import { runTool, spawnToolStream, type StreamingProcess } from '../util/exec.js';
import { createAudioFeature, parseAudioFeatureSpec } from '../audio/registry.js';
import { loadAudio16k } from '../audio/wav.js';
import { frameWindows } from '../audio/windows.js';
import { CLIP_FPS, prepareClip } from '../media/clip.js';
import { trackCropBox } from '../face/crop-track.js';
import { decodeFrames } from '../media/frames.js';
import { createLandmarkEngine, landmarkClip, type LandmarkEngineName } from '../face/landmarks/index.js';
import { maskRows } from '../face/masks.js';
import { probeMedia } from '../media/probe.js';
import type { AudioFeatureExtractor } from '../audio/types.js';
import type { Box, PreparedClip } from '../media/types.js';
import { datasetInfo } from '../dataset/info.js';
import { audioContext, AUDIO_CONTEXT } from '../models/conditions.js';
import '../models/deepspeech.js'; // registers the 'deepspeech' audio feature
import type { FirstStage } from '../models/first-stage.js';
import { DiffTalkPipeline, disposePrepared, LM68_VALUES, type PipelineFrame } from '../models/pipeline.js';
import type { DifftalkConfig } from '../models/presets.js';
import { setKernelPrecision, type Precision } from '../models/kernels/program.js';
import { FEATHER_FRACTION, jawAlpha, pasteFace, sourceFrameIndex, type LoopMode } from './paste.js';

export interface RenderOptions {
  /** LDM run folder (latest.json) or checkpoint folder. */
  checkpoint: string;
  /** Person video (any resolution/frame rate; needs one visible face). */
  video: string;
  /** Driving speech: any file ffmpeg can decode. */
  audio: string;
  /** Output .mp4. */
  out: string;
  /** DDIM steps (reference inference: 200). */
  steps: number;
  /** Reference = previous generated frame instead of the first frame. */
  progressive: boolean;
  seed: number;
  /** Output frames per generate() batch and per decode/paste/encode chunk (bounded memory). */
  chunk: number;
  loop: LoopMode;
  force: boolean;
  landmarker: LandmarkEngineName;
  faceModel?: string;
  /** Audio feature spec when the checkpoint's dataset is not available (`mel`, `mfcc`, `mel:nMels=29` ...). */
  audioFeature?: string;
  /** Prepared frame size (256 | 512) when the checkpoint's dataset is not available; default 256. */
  prepSize?: 256 | 512;
  /** Crop enlargement around the tracked face (HDTF crop_ratio), default 1.2 as prep --input. */
  cropRatio?: number;
  /** Feather width in source pixels (default 4% of the crop side). */
  feather?: number;
  /** Keep the work folder (prepared clip) next to the output. */
  keepWork?: boolean;
  /** Arithmetic of the sampler's matmuls/convs (resolved by the command from --precision; default 'fp32'). */
  precision?: Precision;
  onEvent?: OnEvent;
  /**
   * Called for each generated output frame with the model-size face it produced (RGB bytes, size² × 3) and the
   * reference image it was sampled with (HWC, [-1, 1]) — for inspection tools and tests (--progressive chains them).
   */
  onFrame?: (frame: RenderedFace) => void;
}

/** One generated face of the render loop (see RenderOptions.onFrame). */
export interface RenderedFace {
  /** Output frame index. */
  index: number;
  size: number;
  face: Uint8Array;
  reference: Float32Array;
}

export const DEFAULT_RENDER = {
  steps: 50,
  progressive: false,
  seed: 23,
  chunk: 32,
  loop: 'pingpong' as LoopMode,
  force: false,
  landmarker: 'mediapipe' as LandmarkEngineName,
};

export interface RenderResult {
  out: string;
  frames: number;
  /** Output duration (= the driving audio's). */
  seconds: number;
  /** Output frames per wall-clock second of the generation+paste+encode loop; totalSeconds is the whole call. */
  framesPerSecond: number;
  totalSeconds: number;
  checkpoint: string;
  checkpointStep: number;
  /** sha256 of the checkpoint's model.safetensors. */
  checkpointId: string;
  steps: number;
  progressive: boolean;
  loop: LoopMode;
  sourceFrames: number;
  framesWithoutFace: number;
  crop: Box;
  imageSize: number;
  audioFeature: { name: string; window: number; dim: number };
  featherPx: number;
  ema: boolean;
}

/** The checkpoint's pipeline and what render reports about it. */
type LoadedModel = Awaited<ReturnType<typeof DiffTalkPipeline.fromCheckpoint>> & { config: DifftalkConfig; fs: FirstStage };

async function loadModel(checkpoint: string): Promise<LoadedModel> {
  const r = await DiffTalkPipeline.fromCheckpoint(checkpoint);
  return { ...r, config: r.pipeline.config, fs: r.pipeline.firstStage };
}

/**
 * The audio extractor the checkpoint was trained with: the training dataset's feature metadata (name, params,
 * window), re-created and checked to record the same params; or, when that dataset is not available, `spec`.
 */
async function resolveAudioFeature(
  m: LoadedModel,
  spec: string | undefined,
  prepSize: 256 | 512 | undefined,
): Promise<{ extractor: AudioFeatureExtractor; window: number; size: 256 | 512 }> {
  const want = m.config.audio;
  const datasetDir = m.state.dataset;
  let extractor: AudioFeatureExtractor;
  let size: 256 | 512 = prepSize ?? 256;
  if (datasetDir && (await exists(datasetDir)) && !spec) {
    const info = await datasetInfo(datasetDir, m.state.options.audioFeature as string | undefined, { crossCheck: false });
    if (info.size === 256 || info.size === 512) size = prepSize ?? info.size;
    if (info.audio.window !== want.winSize) {
      throw new DifftalkError(
        'audio-feature-mismatch',
        `dataset feature ${info.audio.name} has windows of ${info.audio.window} frames, the model expects ${want.winSize}`,
      );
    }
    extractor = await extractorFromMetadata(info.audio);
  } else if (spec) {
    extractor = await createAudioFeature(parseAudioFeatureSpec(spec));
  } else {
    throw new DifftalkError(
      'audio-feature-unknown',
      `the checkpoint's training dataset ${datasetDir ?? '(not recorded)'} is not available, so its audio feature is unknown`,
      {
        suggestion: `pass --audio-feature with the spec used at prep time (the model expects windows of ${want.winSize} × ${want.featureDim})`,
      },
    );
  }
  return { extractor, window: want.winSize, size };
}

/**
 * Re-create an audio feature extractor from the metadata a dataset recorded for it (name + params). The recorded
 * params include descriptive entries (reference, scale, input ...) and 'auto' values that are not options: those
 * the factory rejects are left out, and the re-created extractor must record exactly the same params.
 */
export async function extractorFromMetadata(meta: { name: string; params: Record<string, string | number | boolean> }): Promise<AudioFeatureExtractor> {
  const params: Record<string, unknown> = Object.fromEntries(Object.entries(meta.params).filter(([, v]) => v !== 'auto'));
  let extractor: AudioFeatureExtractor;
  for (;;) {
    try {
      extractor = await createAudioFeature({ name: meta.name, ...params });
      break;
    } catch (e) {
      const k = e instanceof DifftalkError && e.code === 'bad-audio-params' ? /unknown parameter '([^']+)'/.exec(e.message)?.[1] : undefined;
      if (!k || !(k in params)) throw e;
      delete params[k];
    }
  }
  const norm = (o: object) => JSON.stringify(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
  if (norm(extractor.params) !== norm(meta.params)) {
    throw new DifftalkError(
      'audio-feature-mismatch',
      `cannot re-create the training audio feature '${meta.name}' from the recorded parameters ${JSON.stringify(meta.params)}`,
      {
        suggestion: 'pass --audio-feature with the spec used at prep time',
      },
    );
  }
  return extractor;
}

/** Source video at 25 fps CFR for frame-indexed decoding (the source itself when it already is). */
async function source25(video: string, fps: number, work: string): Promise<string> {
  if (Math.abs(fps - CLIP_FPS) < 1e-3) return video;
  const out = path.join(work, 'source-25fps.mkv');
  await runTool('ffmpeg', [
    '-nostdin',
    '-v',
    'error',
    '-y',
    '-i',
    path.resolve(video),
    '-map',
    '0:v:0',
    '-vf',
    `fps=${CLIP_FPS}`,
    '-c:v',
    'libx264',
    '-qp',
    '0',
    '-preset',
    'ultrafast',
    '-g',
    '25',
    out,
  ]);
  return out;
}

/** A copy of the person video with a silent track when it has none (prepareClip needs an audio stream). */
async function withAudioTrack(video: string, hasAudio: boolean, work: string): Promise<string> {
  if (hasAudio) return video;
  const out = path.join(work, 'person-with-silence.mkv');
  await runTool('ffmpeg', [
    '-nostdin',
    '-v',
    'error',
    '-y',
    '-i',
    path.resolve(video),
    '-f',
    'lavfi',
    '-i',
    'anullsrc=r=16000:cl=mono',
    '-map',
    '0:v:0',
    '-map',
    '1:a:0',
    '-c:v',
    'copy',
    '-c:a',
    'pcm_s16le',
    '-shortest',
    out,
  ]);
  return out;
}

/** Frames [lo, hi] of a video (inclusive), as one RgbFrames. */
async function frameRange(video: string, lo: number, hi: number) {
  const f = await decodeFrames(video, { start: lo, count: hi - lo + 1 });
  if (f.count < hi - lo + 1) throw new DifftalkError('video-corrupt', `${path.basename(video)}: decoded ${f.count} of frames ${lo}…${hi}`);
  return f;
}

async function resizeRgb(data: Uint8Array, w: number, h: number, size: number): Promise<Uint8Array> {
  const buf = await sharp(data, { raw: { width: w, height: h, channels: 3 } })
    .resize(size, size, { kernel: 'cubic', fit: 'fill' })
    .raw()
    .toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

const toUnit = (u: Uint8Array): Float32Array => Float32Array.from(u, (v) => v / 127.5 - 1);

export async function renderVideo(o: RenderOptions): Promise<RenderResult> {
  const previous = setKernelPrecision(o.precision ?? 'fp32');
  try {
    return await renderAt(o);
  } finally {
    setKernelPrecision(previous);
  }
}

async function renderAt(o: RenderOptions): Promise<RenderResult> {
  const onEvent = o.onEvent ?? silent;
  const t0 = performance.now();
  if (!Number.isInteger(o.steps) || o.steps < 1) throw new DifftalkError('bad-flag', `--steps must be a positive integer, got ${o.steps}`);
  if (!Number.isInteger(o.chunk) || o.chunk < 1) throw new DifftalkError('bad-flag', `--chunk must be a positive integer, got ${o.chunk}`);
  const out = path.resolve(o.out);
  if (!o.force && (await exists(out)))
    throw new DifftalkError('output-exists', `${out} already exists`, { suggestion: 'pass --force to replace it, or choose another -o' });
  if (!(await exists(o.video))) throw new DifftalkError('file-missing', `person video ${o.video} not found`);
  if (!(await exists(o.audio))) throw new DifftalkError('file-missing', `driving audio ${o.audio} not found`);

  // 1. checkpoint, first stage, audio feature
  const m = await loadModel(o.checkpoint);
  const work = path.join(path.dirname(out), `.${path.basename(out)}.render-${process.pid}`);
  let encoder: StreamingProcess | undefined;
  const tmpOut = path.join(path.dirname(out), `.${path.basename(out, path.extname(out))}.tmp-${process.pid}.mp4`);
  try {
    const feat = await resolveAudioFeature(m, o.audioFeature, o.prepSize);
    const S = m.config.imageSize;
    onEvent({
      type: 'log',
      level: 'info',
      message: `checkpoint ${m.dir} (step ${m.step}, ${m.ema ? 'EMA' : 'raw'} UNet), ${S}² faces, audio ${feat.extractor.name} ×${feat.window}`,
    });

    // 2. driving audio → per-output-frame windows
    let audio;
    try {
      audio = await loadAudio16k(o.audio);
    } catch (e) {
      throw new DifftalkError('audio-unreadable', `cannot read driving audio ${o.audio}: ${errorMessage(e)}`, {
        suggestion: 'pass a speech file ffmpeg can decode (wav, mp3, m4a, a video with sound ...)',
      });
    }
    const seconds = audio.samples.length / audio.sampleRate;
    const nOut = Math.ceil(seconds * CLIP_FPS - 1e-9);
    const seq = await feat.extractor.extract(audio.samples, audio.sampleRate);
    if (seq.dim !== m.config.audio.featureDim) {
      throw new DifftalkError(
        'audio-feature-mismatch',
        `audio feature ${feat.extractor.name} gives ${seq.dim} values per frame, the model expects ${m.config.audio.featureDim}`,
      );
    }
    const windows = frameWindows(seq, nOut, CLIP_FPS, feat.window);
    const audioClip = { frames: nOut, audio: windows.data };

    // 3. person video: crop box, normalised clip, landmarks
    await mkdir(work, { recursive: true });
    const info = await probeMedia(o.video).catch((e: unknown) => {
      throw e instanceof DifftalkError && e.code === 'tool-missing'
        ? e
        : new DifftalkError('video-corrupt', `cannot read person video ${o.video}: ${errorMessage(e)}`);
    });
    const { engine } = await createLandmarkEngine({ engine: o.landmarker, faceModel: o.faceModel });
    let prepared: PreparedClip;
    let lm68: Float32Array;
    let faceOk: boolean[];
    try {
      const tracked = await trackCropBox(o.video, engine, { ratio: o.cropRatio ?? 1.2, onEvent });
      if (!tracked.ok)
        throw new DifftalkError(tracked.reason, `person video ${o.video}: ${tracked.message}`, {
          suggestion: 'render needs a video with one clearly visible face',
        });
      const person = await withAudioTrack(o.video, info.hasAudio, work);
      const clip = await prepareClip({ id: 'person', identity: 'person', video: 'person', clipIndex: 0, file: person }, person, work, {
        size: feat.size,
        crop: tracked.value,
        clamped: tracked.value.clamped,
        onEvent,
      });
      if (!clip.ok) throw new DifftalkError(clip.reason, `person video ${o.video}: ${clip.message}`);
      prepared = clip.value;
      const frames = await decodeFrames(prepared.video);
      const lm = await landmarkClip(engine, frames, { onEvent, id: 'person' });
      if (!lm.ok)
        throw new DifftalkError(lm.reason === 'too-many-bad-frames' ? 'no-face' : lm.reason, `person video ${o.video}: ${lm.message}`, {
          suggestion: 'render needs a video with one clearly visible face in most frames',
        });
      lm68 = lm.value.lm68;
      faceOk = lm.value.status.map((s, i) => s === 'ok' && maskRows(lm68.subarray(i * LM68_VALUES, (i + 1) * LM68_VALUES)) !== null);
    } finally {
      await engine.close().catch(() => undefined);
    }
    const size = prepared.size;
    const src = await source25(o.video, info.fps, work);
    const srcFrames = src === o.video ? info.frameCount : (await probeMedia(src, { count: 'frames' })).frameCount;
    const nSrc = Math.min(prepared.frameCount, srcFrames ?? prepared.frameCount);
    const crop = prepared.crop;
    const feather = o.feather ?? Math.max(1, Math.round(crop.w * FEATHER_FRACTION));
    const W = prepared.sourceWidth;
    const H = prepared.sourceHeight;

    // 4. encoder: raw RGB frames on stdin + the driving audio → H.264/AAC mp4
    await rm(tmpOut, { force: true });
    encoder = spawnToolStream('ffmpeg', [
      '-nostdin',
      '-v',
      'error',
      '-y',
      '-f',
      'rawvideo',
      '-pix_fmt',
      'rgb24',
      '-s',
      `${W}x${H}`,
      '-framerate',
      String(CLIP_FPS),
      '-i',
      'pipe:0',
      '-i',
      `file:${path.resolve(o.audio)}`,
      '-map',
      '0:v:0',
      '-map',
      '1:a:0',
      '-vf',
      'pad=ceil(iw/2)*2:ceil(ih/2)*2',
      '-c:v',
      'libx264',
      '-preset',
      'medium',
      '-crf',
      '18',
      '-pix_fmt',
      'yuv420p',
      '-c:a',
      'aac',
      '-b:a',
      '128k',
      '-ar',
      '48000',
      '-t',
      seconds.toFixed(6),
      '-movflags',
      '+faststart',
      '-f',
      'mp4',
      tmpOut,
    ]);

    // 5. generation loop
    const pipe = m.pipeline;
    const P = S * S * 3;
    const first = await frameRange(prepared.video, 0, 0);
    let ref = toUnit(await resizeRgb(first.data, size, size, S));
    let zRefFixed: tf.Tensor4D | undefined = o.progressive ? undefined : pipe.encode([ref]);
    let framesWithoutFace = 0;
    const tLoop = performance.now();
    onEvent({ type: 'stage-start', stage: 'render', total: nOut, unit: 'frames' });
    const batch = o.progressive ? 1 : o.chunk;
    for (let c0 = 0; c0 < nOut; c0 += o.chunk) {
      const ks = Array.from({ length: Math.min(o.chunk, nOut - c0) }, (_, j) => c0 + j);
      const srcIdx = ks.map((k) => sourceFrameIndex(k, nSrc, o.loop));
      const lo = Math.min(...srcIdx);
      const hi = Math.max(...srcIdx);
      const faces = await frameRange(prepared.video, lo, hi);
      const full = await frameRange(src, lo, hi);
      const fullBytes = W * H * 3;
      const faceBytes = size * size * 3;
      const outFrames = ks.map((_, j) => full.data.slice((srcIdx[j]! - lo) * fullBytes, (srcIdx[j]! - lo + 1) * fullBytes));
      const todo = ks.map((_, j) => j).filter((j) => faceOk[srcIdx[j]!]);
      framesWithoutFace += ks.length - todo.length;
      for (let b0 = 0; b0 < todo.length; b0 += batch) {
        const js = todo.slice(b0, b0 + batch);
        const n = js.length;
        const aw = AUDIO_CONTEXT * feat.window * seq.dim;
        const frames: PipelineFrame[] = [];
        for (const j of js) {
          const s = srcIdx[j]!;
          const l68 = lm68.subarray(s * LM68_VALUES, (s + 1) * LM68_VALUES);
          const audio = new Float32Array(aw);
          audioContext(audioClip, ks[j]!, feat.window, seq.dim, audio, 0);
          frames.push({
            image: toUnit(await resizeRgb(faces.data.subarray((s - lo) * faceBytes, (s - lo + 1) * faceBytes), size, size, S)),
            landmarks68: l68,
            maskRow: maskRows(l68)!.test,
            audio,
          });
        }
        const cond = pipe.prepare(frames, size);
        const refUsed = ref;
        const zRef = zRefFixed ? tf.tidy(() => tf.tile(zRefFixed!, [n, 1, 1, 1]) as tf.Tensor4D) : pipe.encode([ref]);
        const z = pipe.sample({ ...cond, zRef, steps: o.steps, seed: o.seed + ks[js[0]!]! });
        const gen = await pipe.decode(z);
        disposePrepared(cond);
        tf.dispose([zRef, z]);
        for (let i = 0; i < n; i++) {
          const j = js[i]!;
          const s = srcIdx[j]!;
          const g = gen.subarray(i * P, (i + 1) * P);
          const u8 = Uint8Array.from(g, (v) => Math.round((v + 1) * 127.5));
          o.onFrame?.({ index: ks[j]!, size: S, face: u8, reference: refUsed });
          if (o.progressive) ref = toUnit(u8);
          const face = await resizeRgb(u8, S, S, crop.w);
          pasteFace(outFrames[j]!, W, H, face, crop, jawAlpha(lm68.subarray(s * LM68_VALUES, (s + 1) * LM68_VALUES), size, crop.w, feather));
          onEvent({
            type: 'progress',
            stage: 'render',
            done: c0 + j + 1,
            total: nOut,
            detail: `${(((c0 + j + 1) * 1000) / (performance.now() - tLoop)).toFixed(2)} frames/s`,
          });
        }
      }
      for (const fr of outFrames) await encoder.write(fr);
      onEvent({
        type: 'progress',
        stage: 'render',
        done: c0 + ks.length,
        total: nOut,
        detail: `${(((c0 + ks.length) * 1000) / (performance.now() - tLoop)).toFixed(2)} frames/s`,
      });
    }
    zRefFixed?.dispose();
    zRefFixed = undefined;
    await encoder.end();
    encoder = undefined;
    const loopSeconds = (performance.now() - tLoop) / 1000;
    onEvent({ type: 'stage-done', stage: 'render', done: nOut, seconds: loopSeconds });
    if (framesWithoutFace)
      onEvent({
        type: 'log',
        level: 'warn',
        message: `${framesWithoutFace} of ${nOut} output frames had no single face in the source frame and were copied unchanged`,
      });
    if (!o.force && (await exists(out)))
      throw new DifftalkError('output-exists', `${out} appeared while rendering; not replaced`, { suggestion: 'pass --force to replace it' });
    await rename(tmpOut, out);
    const fps = nOut / loopSeconds;
    onEvent({ type: 'metric', name: 'render/frames_per_s', value: fps });
    return {
      out,
      frames: nOut,
      seconds,
      framesPerSecond: fps,
      totalSeconds: (performance.now() - t0) / 1000,
      checkpoint: m.dir,
      checkpointStep: m.step,
      checkpointId: m.id,
      steps: o.steps,
      progressive: o.progressive,
      loop: o.loop,
      sourceFrames: nSrc,
      framesWithoutFace,
      crop,
      imageSize: S,
      audioFeature: { name: feat.extractor.name, window: feat.window, dim: seq.dim },
      featherPx: feather,
      ema: m.ema,
    };
  } finally {
    if (encoder) await encoder.kill();
    await rm(tmpOut, { force: true });
    if (!o.keepWork) await rm(work, { recursive: true, force: true });
    m.pipeline.dispose();
  }
}
