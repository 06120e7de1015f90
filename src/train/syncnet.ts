/**
 * Train a SyncNet-style lip-sync expert (`difftalk train syncnet`): the SyncNet v2 architecture and inputs
 * (5 face frames 224×224 BGR 0–255 ↔ 13×20 MFCC window), trained from scratch with the contrastive loss of
 * Chung & Zisserman (2016) on in-sync vs off-sync pairs:
 *   L = y·d² + (1 − y)·max(0, margin − d)²,  d = ‖v − a‖₂ (the same Euclidean distance LSE uses).
 * Positives pair video window i with audio window i; negatives pair it with audio window j of the same clip,
 * |j − i| ≥ minShift frames (a random earlier/later offset), or with another clip's audio when the clip is too short.
 *
 * Data (design, see docs/commands/eval.md): a prepared dataset's Arrow shards — frames from `image` (resized to 224
 * if needed), audio from the stored `audio_mfcc` column: its 20-frame window for frame i+2 is exactly SyncNet's
 * window 4i…4i+19 of the 5-frame clip i…i+4 (windows.ts) — or raw videos (face crops by the SyncNet crop rule from
 * landmarks, MFCC recomputed from the audio track), so the expert sees the same crops `difftalk eval` gives it.
 *
 * Training runs on the one loop (core.ts: AdamW without weight decay = Adam, no gradient clipping, lr constant) in
 * the one checkpoint format and resume policy of every trainer (../models/checkpoint.ts): `<out>/ckpt-<step>/` with
 * model.safetensors (PyTorch state_dict names/layout, BatchNorm statistics included; metadata with the config and
 * `difftalk.trained_by = difftalk`), optimizer.safetensors and state.json, then `<out>/latest.json`. Each step's
 * batch is drawn from hash(seed, step), so a resumed run gives the same losses and weights as an uninterrupted one.
 * Scores computed with these weights are always labelled as "trained by difftalk" (syncnet-weights.ts).
 */
import path from 'node:path';
import { mfcc } from '../audio/mfcc.js';
import { loadAudio16k } from '../audio/wav.js';
import { decodeFrames } from '../media/frames.js';
import { decodeGtFrame } from '../dataset/dataset.js';
import { iterateRows, listShards, openShard } from '../dataset/shard-reader.js';
import type { LandmarkEngine } from '../face/types.js';
import { DifftalkError } from '../util/errors.js';
import { silent, type OnEvent } from '../util/events.js';
import { sha256File } from '../util/fs.js';
import { tf } from '../util/tf.js';
import type { TensorData } from '../weights/torch.js';
import { applyCropTrack, meshBox, syncnetCropTrack } from '../face/sync-crop.js';
import { syncScoresFromEmbeddings, type SyncScores } from '../metrics/lse.js';
import { mulberry32 } from '../util/random.js';
import {
  packLipWindows,
  SyncNet,
  SYNCNET_MFCC_DIM,
  SYNCNET_MFCC_WINDOW,
  SYNCNET_SIZE,
  syncnetParamShapes,
  type NamedTensor,
  type SyncNetConfig,
} from '../models/syncnet.js';
import { hash, openRun, runTraining, type RunState, type TrainableModel, type TrainResult } from './core.js';

/** One clip ready for SyncNet: 224×224 RGB face crops and one 13×20 MFCC window per 5-frame video window. */
export interface SyncClip {
  id: string;
  frames: Uint8Array[];
  /** windows × 13 × 20 (coefficient rows, time columns), the audio of video window i at row i. */
  audio: Float32Array;
  windows: number;
}

const AUDIO_WIN = SYNCNET_MFCC_DIM * SYNCNET_MFCC_WINDOW;

/** Audio windows 4i…4i+19 from an MFCC sequence (frames × 13), for n video windows. */
export function audioWindowsFromMfcc(m: ArrayLike<number>, mfccFrames: number, n: number): Float32Array {
  const out = new Float32Array(n * AUDIO_WIN);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < SYNCNET_MFCC_DIM; c++) {
      for (let t = 0; t < SYNCNET_MFCC_WINDOW; t++) {
        const f = 4 * i + t;
        out[i * AUDIO_WIN + c * SYNCNET_MFCC_WINDOW + t] = f < mfccFrames ? m[f * SYNCNET_MFCC_DIM + c]! : 0;
      }
    }
  }
  return out;
}

/**
 * A clip from a video file: landmarks → SyncNet crop rule → 224² crops; audio via ffmpeg at 16 kHz → MFCC.
 * `audioFile` overrides the audio source (default: the video's own track).
 */
export async function syncClipFromVideo(
  video: string,
  engine: LandmarkEngine,
  opts: { id?: string; audioFile?: string; maxFrames?: number } = {},
): Promise<SyncClip> {
  const frames = await decodeFrames(video, opts.maxFrames ? { count: opts.maxFrames } : {});
  await engine.reset();
  const lms = await engine.detect(frames);
  const track = syncnetCropTrack(lms.map(meshBox), video);
  const crops = applyCropTrack(frames, track, SYNCNET_SIZE);
  const audio = await loadAudio16k(opts.audioFile ?? video);
  const m = mfcc(audio.samples, audio.sampleRate);
  const n = Math.max(0, Math.min(crops.length, Math.floor(audio.samples.length / 640)) - 4);
  if (n < 1) throw new DifftalkError('too-short', `${video}: fewer than 5 frames with audio`);
  return { id: opts.id ?? path.basename(video).replace(/\.[^.]+$/, ''), frames: crops, audio: audioWindowsFromMfcc(m.data, m.frames, n), windows: n };
}

/** Clips from a prepared dataset (frames from `image`, audio windows from `audio_mfcc` of frame i+2). */
export async function syncClipsFromDataset(dir: string, opts: { split?: 'train' | 'test'; maxClips?: number } = {}): Promise<SyncClip[]> {
  const shards = await listShards(dir);
  if (shards.length === 0) throw new DifftalkError('dataset-empty', `${dir} has no shards`);
  const first = await openShard(path.join(dir, shards[0]!.shard));
  const meta = first.metadata;
  await first.close();
  const feat = meta.audioFeatures.find((a) => a.name === 'mfcc');
  if (!feat || feat.window !== SYNCNET_MFCC_WINDOW || feat.dim !== SYNCNET_MFCC_DIM || feat.rate !== 100 || meta.fps !== 25) {
    throw new DifftalkError('dataset-incompatible', `${dir}: SyncNet training needs 25 fps and an audio_mfcc column with window 20, dim 13 at 100 Hz`, {
      suggestion: 'prepare the dataset with the mfcc audio feature (its default window is 20), or train from videos with --video',
    });
  }
  const byClip = new Map<string, { frames: Map<number, Uint8Array>; mfcc: Map<number, Float32Array> }>();
  for await (const rb of iterateRows(dir, { split: opts.split, columns: ['clip_id', 'frame_index', 'image', feat.column] })) {
    if (opts.maxClips && !byClip.has(rb.clipId) && byClip.size >= opts.maxClips) continue;
    const entry = byClip.get(rb.clipId) ?? { frames: new Map(), mfcc: new Map() };
    byClip.set(rb.clipId, entry);
    const idx = rb.batch.getChild('frame_index')!;
    const img = rb.batch.getChild('image')!;
    const au = rb.batch.getChild(feat.column)!;
    for (let r = 0; r < rb.batch.numRows; r++) {
      const k = idx.get(r) as number;
      const bytes = img.get(r) as Uint8Array;
      entry.frames.set(k, (await decodeGtFrame(bytes, { clipId: rb.clipId, index: k }, SYNCNET_SIZE)).rgb);
      const w = au.get(r) as { toArray(): Float32Array } | Float32Array;
      entry.mfcc.set(k, w instanceof Float32Array ? w : Float32Array.from(w.toArray()));
    }
  }
  const clips: SyncClip[] = [];
  for (const [id, e] of byClip) {
    const count = e.frames.size;
    const frames: Uint8Array[] = [];
    for (let k = 0; k < count; k++) {
      const f = e.frames.get(k);
      if (!f) throw new DifftalkError('dataset-corrupt', `${dir}: clip ${id} lacks frame ${k}`);
      frames.push(f);
    }
    const n = count - 4;
    if (n < 1) continue;
    const audio = new Float32Array(n * AUDIO_WIN);
    for (let i = 0; i < n; i++) {
      const w = e.mfcc.get(i + 2)!; // window × dim (time-major) → dim × window
      for (let t = 0; t < SYNCNET_MFCC_WINDOW; t++)
        for (let c = 0; c < SYNCNET_MFCC_DIM; c++) audio[i * AUDIO_WIN + c * SYNCNET_MFCC_WINDOW + t] = w[t * SYNCNET_MFCC_DIM + c]!;
    }
    clips.push({ id, frames, audio, windows: n });
  }
  if (clips.length === 0) throw new DifftalkError('dataset-empty', `${dir}: no clip with at least 5 frames`);
  return clips;
}

function packAudioRows(clip: SyncClip, rows: readonly number[]): Float32Array {
  const out = new Float32Array(rows.length * AUDIO_WIN);
  rows.forEach((r, b) => out.set(clip.audio.subarray(r * AUDIO_WIN, (r + 1) * AUDIO_WIN), b * AUDIO_WIN));
  return out;
}

/** Embeddings of every window of a clip, with audio windows shifted by `audioShift` (zero vectors outside). */
export async function clipEmbeddings(net: SyncNet, clip: SyncClip, batch = 8): Promise<{ lip: Float32Array; aud: Float32Array; windows: number; dim: number }> {
  const dim = net.config.embedDim;
  const n = clip.windows;
  const lip = new Float32Array(n * dim);
  const aud = new Float32Array(n * dim);
  for (let i = 0; i < n; i += batch) {
    const idx = Array.from({ length: Math.min(batch, n - i) }, (_, k) => i + k);
    const xv = packLipWindows(clip.frames, idx);
    const xa = tf.tensor4d(packAudioRows(clip, idx), [idx.length, SYNCNET_MFCC_DIM, SYNCNET_MFCC_WINDOW, 1]);
    const ev = net.forwardLip(xv);
    const ea = net.forwardAud(xa);
    lip.set(await ev.data(), i * dim);
    aud.set(await ea.data(), i * dim);
    tf.dispose([xv, xa, ev, ea]);
  }
  return { lip, aud, windows: n, dim };
}

/** A clip restricted to windows [from, to) (frames from … to+3). */
export function sliceClip(clip: SyncClip, from: number, to: number): SyncClip {
  const a = Math.max(0, from);
  const b = Math.min(clip.windows, to);
  if (b - a < 1) throw new DifftalkError('bad-argument', `empty window range ${from}..${to} of ${clip.id}`);
  return { id: `${clip.id}[${a}:${b}]`, frames: clip.frames.slice(a, b + 4), audio: clip.audio.slice(a * AUDIO_WIN, b * AUDIO_WIN), windows: b - a };
}

/** A copy of a clip whose audio is moved by `shift` video frames (audio window i ← i + shift; zeros outside). */
export function shiftAudio(clip: SyncClip, shift: number): SyncClip {
  const audio = new Float32Array(clip.audio.length);
  for (let i = 0; i < clip.windows; i++) {
    const j = i + shift;
    if (j >= 0 && j < clip.windows) audio.set(clip.audio.subarray(j * AUDIO_WIN, (j + 1) * AUDIO_WIN), i * AUDIO_WIN);
  }
  return { ...clip, id: `${clip.id}(audio${shift >= 0 ? '+' : ''}${shift})`, audio };
}

/** LSE scores (calc_pdist over ±15 shifts) of a clip. */
export async function clipSyncScores(net: SyncNet, clip: SyncClip): Promise<SyncScores> {
  return syncScoresFromEmbeddings(await clipEmbeddings(net, clip));
}

export interface SyncTrainOptions {
  out: string;
  clips: SyncClip[];
  /** Description of where the clips came from (recorded in state.json). */
  dataSource: string;
  steps?: number;
  batch?: number;
  lr?: number;
  width?: number;
  embedDim?: number;
  margin?: number;
  /** Smallest |shift| (frames) of an off-sync pair. Default 5. */
  minShift?: number;
  seed?: number;
  checkpointEvery?: number;
  /** Checkpoints kept (default 3, as every trainer). */
  keepLast?: number;
  /**
   * Continue the run in `out` (core.ts resume policy: latest.json or `resumeFrom`); `steps` is the total to reach. The
   * run's network config is kept; its clips must equal the checkpoint's; a changed option (lr, batch…) is a warning.
   */
  resume?: boolean;
  /** With `resume`: continue from this checkpoint (a ckpt-* folder, or a step of this run) instead of latest.json. */
  resumeFrom?: string;
  /** Write into a non-empty `out` folder that difftalk did not create. */
  force?: boolean;
  onEvent?: OnEvent;
  /** Stop cleanly (after the current step, with a checkpoint). */
  signal?: AbortSignal;
}

/** Names of the trainable parameters, in SyncNet.trainableVariables() order. */
function trainableNames(config: SyncNetConfig): string[] {
  return syncnetParamShapes(config)
    .map(([n]) => n)
    .filter((n) => !n.endsWith('num_batches_tracked') && !n.includes('running_'));
}

/** The loop's result, plus the checkpoint's state.json, the sha256 of its model.safetensors and the whole loss history. */
export interface SyncTrainResult extends TrainResult {
  json: string;
  sha256: string;
  steps: number;
  config: SyncNetConfig;
  finalLoss: number;
  /** Train loss of every step of the run (from step 1, across resumes). */
  losses: number[];
  seconds: number;
  backend: string;
}

/** state.json of a SyncNet run (RunState plus what describes the weights to whoever scores with them). */
type SyncState = RunState<SyncNetConfig> & { trained_by: 'difftalk'; architecture: string; data: string; clips: Array<{ id: string; windows: number }> };

/** Train the expert; returns the last checkpoint. The caller selects the tfjs backend first (initBackend). */
export async function trainSyncNet(opts: SyncTrainOptions): Promise<SyncTrainResult> {
  const onEvent = opts.onEvent ?? silent;
  const steps = opts.steps ?? 1000;
  const batch = opts.batch ?? 16;
  const lr = opts.lr ?? 1e-4;
  const asked: SyncNetConfig = {
    width: opts.width ?? 1,
    embedDim: opts.embedDim ?? (opts.width && opts.width !== 1 ? Math.max(16, Math.round(1024 * opts.width)) : 1024),
  };
  const margin = opts.margin ?? 20;
  const minShift = opts.minShift ?? 5;
  const seed = opts.seed ?? 0;
  if (!(steps >= 1 && batch >= 2 && lr > 0 && asked.width > 0 && margin > 0)) {
    throw new DifftalkError('bad-option', `invalid training options (steps ${steps}, batch ${batch}, lr ${lr}, width ${asked.width}, margin ${margin})`);
  }
  const clips = opts.clips.filter((c) => c.windows >= 1);
  if (clips.length === 0) throw new DifftalkError('no-data', 'no training clip has a 5-frame window');
  const every = opts.checkpointEvery ?? Math.max(1, Math.min(steps, 500));
  const core = {
    out: opts.out,
    steps,
    batchSize: batch,
    accumulate: 1,
    baseLr: lr,
    lr,
    lrSchedule: 'constant' as const,
    weightDecay: 0, // Adam, as SyncNet was trained
    gradClip: Number.MAX_VALUE, // no clipping
    seed,
    checkpointEvery: every,
    keepLast: opts.keepLast ?? 3,
    validateEvery: steps,
    sampleEvery: steps,
    resume: opts.resume ?? false,
    resumeFrom: opts.resumeFrom,
    force: opts.force,
    onEvent,
    signal: opts.signal,
    width: asked.width,
    embedDim: asked.embedDim,
    margin,
    minShift,
  };
  const saved = await openRun<SyncState>(core, 'syncnet');
  const clipIds = clips.map((c) => ({ id: c.id, windows: c.windows }));
  const config = saved?.state.config ?? asked;
  if (saved) {
    if (JSON.stringify(saved.state.clips) !== JSON.stringify(clipIds))
      throw new DifftalkError(
        'resume-mismatch',
        `--resume: the clips are ${JSON.stringify(clipIds)} but the run was trained on ${JSON.stringify(saved.state.clips)}`,
        {
          suggestion: 'resume with the same data as the original run',
        },
      );
    if (JSON.stringify(config) !== JSON.stringify(asked))
      onEvent({
        type: 'log',
        level: 'warn',
        message: `width ${asked.width}, embedding ${asked.embedDim} ignored: the run's saved network (width ${config.width}, embedding ${config.embedDim}) is kept`,
      });
  }
  const net = saved ? SyncNet.fromTensors(namedFloat32(saved.model, saved.dir), config, { trainable: true }) : SyncNet.init(config, seed);
  const names = trainableNames(config);
  const list = net.trainableVariables();
  if (list.length !== names.length) throw new DifftalkError('internal', `SyncNet has ${list.length} trainable variables for ${names.length} names`);
  const vars = new Map(names.map((n, i) => [n, list[i]!]));

  /** Batch of optimizer step `step`: even rows in sync (audio window i), odd rows off sync (|j − i| ≥ minShift, or another clip). */
  const drawBatch = (step: number): { v: tf.Tensor4D; a: tf.Tensor4D; y: tf.Tensor1D } => {
    const rand = mulberry32(hash(seed, 'sync', step));
    const vRows: Array<{ clip: SyncClip; i: number }> = [];
    const aRows: Array<{ clip: SyncClip; j: number }> = [];
    const ys: number[] = [];
    for (let b = 0; b < batch; b++) {
      const clip = clips[Math.floor(rand() * clips.length)]!;
      const i = Math.floor(rand() * clip.windows);
      const positive = b % 2 === 0;
      vRows.push({ clip, i });
      if (positive) {
        aRows.push({ clip, j: i });
      } else {
        const options: number[] = [];
        for (let j = 0; j < clip.windows; j++) if (Math.abs(j - i) >= minShift) options.push(j);
        if (options.length > 0) aRows.push({ clip, j: options[Math.floor(rand() * options.length)]! });
        else {
          const other = clips.length > 1 ? clips[(clips.indexOf(clip) + 1 + Math.floor(rand() * (clips.length - 1))) % clips.length]! : clip;
          if (other === clip)
            throw new DifftalkError('no-data', `clip ${clip.id} is too short for off-sync pairs (needs > ${minShift} windows) and there is no other clip`);
          aRows.push({ clip: other, j: Math.floor(rand() * other.windows) });
        }
      }
      ys.push(positive ? 1 : 0);
    }
    const vParts = vRows.map((r) => packLipWindows(r.clip.frames, [r.i]));
    const v = tf.concat(vParts) as tf.Tensor4D;
    tf.dispose(vParts);
    const aData = new Float32Array(batch * AUDIO_WIN);
    aRows.forEach((r, b) => aData.set(r.clip.audio.subarray(r.j * AUDIO_WIN, (r.j + 1) * AUDIO_WIN), b * AUDIO_WIN));
    return { v, a: tf.tensor4d(aData, [batch, SYNCNET_MFCC_DIM, SYNCNET_MFCC_WINDOW, 1]), y: tf.tensor1d(ys) };
  };

  const t0 = performance.now();
  const trainable: TrainableModel<SyncNetConfig> = {
    config,
    record: {
      trained_by: 'difftalk',
      architecture:
        config.width === 1 && config.embedDim === 1024
          ? 'syncnet_v2 (SyncNetModel.S(1024))'
          : `syncnet_v2 layout at width ${config.width}, embedding ${config.embedDim} (reduced, not the published size)`,
      loss: 'contrastive: y·d² + (1−y)·max(0, margin − d)², d = euclidean distance of the embeddings',
      data: opts.dataSource,
      clips: clipIds,
      backend: tf.getBackend(),
    },
    stage: 'train-syncnet',
    describe: `SyncNet width ${config.width}, embedding ${config.embedDim}: ${clips.length} clip(s), ${clips.reduce((a, c) => a + c.windows, 0)} windows, batch ${batch}`,
    curveTitle: `SyncNet contrastive loss (width ${config.width})`,
    vars,
    batchSize: batch,
    trainSamples: clips.reduce((a, c) => a + c.windows, 0),
    valSamples: 0,
    loss(step) {
      const { v, a, y } = drawBatch(step);
      const ev = net.forwardLip(v, true);
      const ea = net.forwardAud(a, true);
      const d = tf.sqrt(tf.sum(tf.square(tf.sub(ev, ea)), 1).add(1e-8));
      const pos = tf.mul(y, tf.square(d));
      const neg = tf.mul(tf.sub(1, y), tf.square(tf.relu(tf.sub(margin, d))));
      return tf.mean(tf.add(pos, neg)) as tf.Scalar;
    },
    async weights() {
      const tensors = new Map<string, TensorData>();
      for (const [k, t] of await net.stateDict()) tensors.set(k, { dtype: 'float32', shape: [...t.shape], data: t.data });
      return tensors;
    },
    weightsMetadata: (step) => ({
      'difftalk.trained_by': 'difftalk',
      'difftalk.syncnet_config': JSON.stringify(config),
      'difftalk.step': String(step),
      'difftalk.seed': String(seed),
    }),
    dispose: () => net.dispose(),
  };
  const { result, state } = await runTraining(core, 'syncnet', saved, trainable);
  const losses = state.history.map((h) => h.value);
  const model = result.checkpoint ? path.join(result.checkpoint, 'model.safetensors') : '';
  return {
    ...result,
    json: result.checkpoint ? path.join(result.checkpoint, 'state.json') : '',
    sha256: model ? await sha256File(model) : '',
    steps: result.step,
    config,
    finalLoss: losses[losses.length - 1] ?? NaN,
    losses,
    seconds: (performance.now() - t0) / 1000,
    backend: tf.getBackend(),
  };
}

/** A checkpoint's tensors as SyncNet.fromTensors takes them (float32 only: anything else is a corrupt checkpoint). */
function namedFloat32(tensors: ReadonlyMap<string, TensorData>, source: string): Map<string, NamedTensor> {
  const named = new Map<string, NamedTensor>();
  for (const [k, t] of tensors) {
    if (!(t.data instanceof Float32Array)) throw new DifftalkError('checkpoint-corrupt', `${source}: ${k} is ${t.dtype}, expected float32`);
    named.set(k, { shape: t.shape, data: t.data });
  }
  return named;
}
