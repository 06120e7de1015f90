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
 * Checkpoints: `<out>/syncnet-step<N>.safetensors` (PyTorch state_dict names/layout, metadata with the config and
 * `difftalk.trained_by = difftalk`), `<out>/syncnet-step<N>.optim.safetensors` (Adam first/second moments by parameter
 * name, TF layout) + `<out>/syncnet-step<N>.json` (config, losses, Adam step and bias-correction accumulators, number of
 * sampler draws), then `<out>/latest.json`; all atomic, latest.json last. Seeded. `resume` continues from latest.json
 * exactly: the weights, the Adam state and the sampler position are restored, so the steps after the resume point give
 * the same losses as an uninterrupted run (on the same backend).
 * Scores computed with these weights are always labelled as "trained by difftalk" (syncnet-weights.ts).
 */
import path from 'node:path';
import { mkdir } from 'node:fs/promises';
import { mfcc } from '../audio/mfcc.js';
import { loadAudio16k } from '../audio/wav.js';
import { decodeFrames } from '../media/frames.js';
import { decodeGtFrame } from '../dataset/dataset.js';
import { iterateRows, listShards, openShard } from '../dataset/shard-reader.js';
import type { LandmarkEngine } from '../face/types.js';
import { DifftalkError } from '../util/errors.js';
import { silent, type OnEvent } from '../util/events.js';
import { exists, readJson, sha256File, writeJsonAtomic } from '../util/fs.js';
import { tf } from '../util/tf.js';
import { readSafetensors, writeSafetensors } from '../weights/safetensors.js';
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
  /** Description of where the clips came from (recorded in the checkpoint JSON). */
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
  /**
   * Continue from `<out>/latest.json` (weights, Adam moments and step, sampler position). The run's settings (width,
   * embedding, batch, lr, margin, minShift, seed) and clips must equal the checkpoint's; `steps` is the total to reach.
   */
  resume?: boolean;
  onEvent?: OnEvent;
}

/** What a checkpoint JSON records for `resume` (beside the descriptive fields). */
export interface SyncTrainResumeState {
  step: number;
  /** `<name>.optim.safetensors`: `m.<param>` / `v.<param>` Adam moments (TF layout), sha256 in `optimizerSha256`. */
  optimizer: string;
  optimizerSha256: string;
  /** Adam's update count and its float32 bias-correction accumulators β1^(t+1), β2^(t+1) as tfjs holds them. */
  adamIterations: number;
  adamAccBeta1: number;
  adamAccBeta2: number;
  /** Number of values drawn from the seeded sampler so far (replayed on resume). */
  rngDraws: number;
}

interface AdamInternals {
  accBeta1?: tf.Variable;
  accBeta2?: tf.Variable;
}

function adamAccumulators(opt: tf.AdamOptimizer): { accBeta1: tf.Variable; accBeta2: tf.Variable } {
  const o = opt as unknown as AdamInternals;
  if (!(o.accBeta1 instanceof tf.Variable) || !(o.accBeta2 instanceof tf.Variable)) {
    throw new DifftalkError(
      'internal',
      'this TensorFlow.js version has no AdamOptimizer.accBeta1/accBeta2: optimizer state cannot be checkpointed for --resume',
    );
  }
  return { accBeta1: o.accBeta1, accBeta2: o.accBeta2 };
}

/** Names of the trainable parameters, in SyncNet.trainableVariables() order (the order Adam's moments follow). */
function trainableNames(config: SyncNetConfig): string[] {
  return syncnetParamShapes(config)
    .map(([n]) => n)
    .filter((n) => !n.endsWith('num_batches_tracked') && !n.includes('running_'));
}

export interface SyncTrainResult {
  checkpoint: string;
  json: string;
  sha256: string;
  steps: number;
  config: SyncNetConfig;
  finalLoss: number;
  losses: number[];
  seconds: number;
  backend: string;
}

interface CheckpointJson {
  config: SyncNetConfig;
  step: number;
  seed: number;
  batch: number;
  lr: number;
  margin: number;
  minShift: number;
  clips: Array<{ id: string; windows: number }>;
  losses: number[];
  weights: { file: string; sha256: string };
  resume?: SyncTrainResumeState;
}

/** Read `<out>/latest.json` and everything it points at, checking hashes and that the run's settings match. */
async function loadResumeState(
  out: string,
  run: { config: SyncNetConfig; batch: number; lr: number; margin: number; minShift: number; seed: number; clips: SyncClip[] },
): Promise<{ net: SyncNet; moments: Map<string, TensorData>; state: SyncTrainResumeState; losses: number[] }> {
  const latestFile = path.join(out, 'latest.json');
  if (!(await exists(latestFile)))
    throw new DifftalkError('no-checkpoint', `--resume: ${latestFile} does not exist`, {
      suggestion: 'train without --resume first, or pass the --out folder of an earlier run',
    });
  const latest = await readJson<{ json: string }>(latestFile);
  const info = await readJson<CheckpointJson>(path.join(out, latest.json));
  if (!info.resume) {
    throw new DifftalkError('not-resumable', `${path.join(out, latest.json)} has no optimizer state (written before --resume existed)`, {
      suggestion: 'start a new run in another --out folder',
    });
  }
  const want = {
    config: run.config,
    batch: run.batch,
    lr: run.lr,
    margin: run.margin,
    minShift: run.minShift,
    seed: run.seed,
    clips: run.clips.map((c) => ({ id: c.id, windows: c.windows })),
  };
  const have = { config: info.config, batch: info.batch, lr: info.lr, margin: info.margin, minShift: info.minShift, seed: info.seed, clips: info.clips };
  for (const k of Object.keys(want) as Array<keyof typeof want>) {
    if (JSON.stringify(want[k]) !== JSON.stringify(have[k])) {
      throw new DifftalkError(
        'resume-mismatch',
        `--resume: ${k} is ${JSON.stringify(want[k])} but the checkpoint was trained with ${JSON.stringify(have[k])}`,
        {
          suggestion: 'resume with the same data and options as the original run',
        },
      );
    }
  }
  const wFile = path.join(out, info.weights.file);
  const oFile = path.join(out, info.resume.optimizer);
  for (const [f, sha] of [
    [wFile, info.weights.sha256],
    [oFile, info.resume.optimizerSha256],
  ] as const) {
    if (!(await exists(f)) || (await sha256File(f)) !== sha)
      throw new DifftalkError('checkpoint-corrupt', `--resume: ${f} is missing or does not match its recorded sha256`);
  }
  const named = new Map<string, NamedTensor>();
  for (const [k, t] of (await readSafetensors(wFile)).tensors) {
    if (!(t.data instanceof Float32Array)) throw new DifftalkError('checkpoint-corrupt', `${wFile}: ${k} is ${t.dtype}, expected float32`);
    named.set(k, { shape: t.shape, data: t.data });
  }
  const moments = (await readSafetensors(oFile)).tensors;
  for (const n of trainableNames(run.config)) {
    for (const k of [`m.${n}`, `v.${n}`]) {
      if (!(moments.get(k)?.data instanceof Float32Array))
        throw new DifftalkError('checkpoint-corrupt', `${oFile}: Adam moment ${k} is missing or not float32`);
    }
  }
  const net = SyncNet.fromTensors(named, run.config, { trainable: true });
  return { net, moments, state: info.resume, losses: info.losses.slice(0, info.resume.step) };
}

/** Train the expert; returns the last checkpoint. The caller selects the tfjs backend first (initBackend). */
export async function trainSyncNet(opts: SyncTrainOptions): Promise<SyncTrainResult> {
  const onEvent = opts.onEvent ?? silent;
  const steps = opts.steps ?? 1000;
  const batch = opts.batch ?? 16;
  const lr = opts.lr ?? 1e-4;
  const config: SyncNetConfig = {
    width: opts.width ?? 1,
    embedDim: opts.embedDim ?? (opts.width && opts.width !== 1 ? Math.max(16, Math.round(1024 * opts.width)) : 1024),
  };
  const margin = opts.margin ?? 20;
  const minShift = opts.minShift ?? 5;
  const seed = opts.seed ?? 0;
  const every = opts.checkpointEvery ?? Math.max(1, Math.min(steps, 500));
  if (!(steps >= 1 && batch >= 2 && lr > 0 && config.width > 0 && margin > 0)) {
    throw new DifftalkError('bad-option', `invalid training options (steps ${steps}, batch ${batch}, lr ${lr}, width ${config.width}, margin ${margin})`);
  }
  const clips = opts.clips.filter((c) => c.windows >= 1);
  if (clips.length === 0) throw new DifftalkError('no-data', 'no training clip has a 5-frame window');
  await mkdir(opts.out, { recursive: true });
  const rng = mulberry32(seed ^ 0x5eed);
  let rngDraws = 0;
  const rand = (): number => {
    rngDraws++;
    return rng();
  };
  const optimizer = tf.train.adam(lr);
  const losses: number[] = [];
  let startStep = 0;
  let net: SyncNet;
  if (opts.resume) {
    const r = await loadResumeState(opts.out, { config, batch, lr, margin, minShift, seed, clips });
    if (r.state.step >= steps) {
      r.net.dispose();
      optimizer.dispose();
      throw new DifftalkError('bad-option', `${opts.out} is already at step ${r.state.step}; --steps ${steps} leaves nothing to do`, {
        suggestion: `pass --steps greater than ${r.state.step}`,
      });
    }
    net = r.net;
    const vars = net.trainableVariables();
    const names = trainableNames(config);
    const m = names.map((n, i) => ({ name: `${n}/m`, tensor: tf.tensor(r.moments.get(`m.${n}`)!.data as Float32Array, vars[i]!.shape) }));
    const v = names.map((n, i) => ({ name: `${n}/v`, tensor: tf.tensor(r.moments.get(`v.${n}`)!.data as Float32Array, vars[i]!.shape) }));
    const iter = tf.scalar(r.state.adamIterations, 'int32');
    await optimizer.setWeights([{ name: 'iter', tensor: iter }, ...m, ...v]);
    tf.dispose([iter, ...m.map((x) => x.tensor), ...v.map((x) => x.tensor)]);
    // setWeights recomputes β^(t+1) with pow(); the uninterrupted run multiplied in float32 step by step, so restore
    // the accumulators it actually held (bit-exact).
    const acc = adamAccumulators(optimizer);
    acc.accBeta1.assign(tf.scalar(r.state.adamAccBeta1));
    acc.accBeta2.assign(tf.scalar(r.state.adamAccBeta2));
    for (let k = 0; k < r.state.rngDraws; k++) rand();
    losses.push(...r.losses);
    startStep = r.state.step;
    onEvent({ type: 'log', level: 'info', message: `resuming ${opts.out} at step ${startStep}` });
  } else {
    net = SyncNet.init(config, seed);
  }
  const t0 = performance.now();
  let ckpt = { checkpoint: '', json: '', sha256: '' };

  const drawBatch = (): { v: tf.Tensor4D; a: tf.Tensor4D; y: tf.Tensor1D } => {
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

  const save = async (step: number): Promise<void> => {
    const base = path.join(opts.out, `syncnet-step${String(step).padStart(6, '0')}`);
    const tensors = new Map<string, TensorData>();
    for (const [k, t] of await net.stateDict()) tensors.set(k, { dtype: 'float32', shape: [...t.shape], data: t.data });
    await writeSafetensors(`${base}.safetensors`, tensors, {
      'difftalk.trained_by': 'difftalk',
      'difftalk.syncnet_config': JSON.stringify(config),
      'difftalk.step': String(step),
      'difftalk.seed': String(seed),
    });
    const sha = await sha256File(`${base}.safetensors`);
    const names = trainableNames(config);
    const opt = await optimizer.getWeights();
    const moments = opt.slice(1);
    if (moments.length !== 2 * names.length) throw new DifftalkError('internal', `Adam holds ${moments.length} moments for ${names.length} parameters`);
    const optTensors = new Map<string, TensorData>();
    for (let k = 0; k < moments.length; k++) {
      const t = moments[k]!.tensor;
      optTensors.set(`${k < names.length ? 'm' : 'v'}.${names[k % names.length]}`, {
        dtype: 'float32',
        shape: [...t.shape],
        data: (await t.data()) as Float32Array,
      });
    }
    const iterT = opt[0]!.tensor;
    const acc = adamAccumulators(optimizer);
    const adamState = {
      adamIterations: (await iterT.data())[0]!,
      adamAccBeta1: (await acc.accBeta1.data())[0]!,
      adamAccBeta2: (await acc.accBeta2.data())[0]!,
    };
    iterT.dispose();
    await writeSafetensors(`${base}.optim.safetensors`, optTensors, {
      'difftalk.step': String(step),
      'difftalk.optimizer': 'tfjs Adam moments (m.<param>, v.<param>), TF layout',
    });
    const optSha = await sha256File(`${base}.optim.safetensors`);
    const info = {
      trained_by: 'difftalk',
      architecture:
        config.width === 1 && config.embedDim === 1024
          ? 'syncnet_v2 (SyncNetModel.S(1024))'
          : `syncnet_v2 layout at width ${config.width}, embedding ${config.embedDim} (reduced, not the published size)`,
      config,
      step,
      seed,
      batch,
      lr,
      margin,
      minShift,
      loss: 'contrastive: y·d² + (1−y)·max(0, margin − d)², d = euclidean distance of the embeddings',
      data: opts.dataSource,
      clips: clips.map((c) => ({ id: c.id, windows: c.windows })),
      losses,
      backend: tf.getBackend(),
      weights: { file: path.basename(`${base}.safetensors`), sha256: sha },
      resume: { step, optimizer: path.basename(`${base}.optim.safetensors`), optimizerSha256: optSha, ...adamState, rngDraws } satisfies SyncTrainResumeState,
      created: new Date().toISOString(),
    };
    await writeJsonAtomic(`${base}.json`, info);
    await writeJsonAtomic(path.join(opts.out, 'latest.json'), {
      checkpoint: path.basename(`${base}.safetensors`),
      json: path.basename(`${base}.json`),
      step,
      sha256: sha,
    });
    ckpt = { checkpoint: `${base}.safetensors`, json: `${base}.json`, sha256: sha };
    onEvent({ type: 'log', level: 'info', message: `checkpoint ${ckpt.checkpoint} (step ${step})` });
  };

  try {
    onEvent({ type: 'stage-start', stage: 'train-syncnet', total: steps, unit: 'steps' });
    for (let step = startStep + 1; step <= steps; step++) {
      const { v, a, y } = drawBatch();
      const lossT = optimizer.minimize(
        () =>
          tf.tidy(() => {
            const ev = net.forwardLip(v, true);
            const ea = net.forwardAud(a, true);
            const d = tf.sqrt(tf.sum(tf.square(tf.sub(ev, ea)), 1).add(1e-8));
            const pos = tf.mul(y, tf.square(d));
            const neg = tf.mul(tf.sub(1, y), tf.square(tf.relu(tf.sub(margin, d))));
            return tf.mean(tf.add(pos, neg)) as tf.Scalar;
          }),
        true,
        net.trainableVariables(),
      );
      const loss = (await lossT!.data())[0]!;
      tf.dispose([v, a, y, lossT!]);
      if (!Number.isFinite(loss)) throw new DifftalkError('training-diverged', `loss became ${loss} at step ${step}`, { suggestion: 'lower --lr' });
      losses.push(loss);
      onEvent({ type: 'metric', name: 'loss', value: loss, step });
      onEvent({ type: 'progress', stage: 'train-syncnet', done: step, total: steps, detail: `loss ${loss.toFixed(4)}` });
      if (step % every === 0 || step === steps) await save(step);
    }
    onEvent({ type: 'stage-done', stage: 'train-syncnet', done: steps, seconds: (performance.now() - t0) / 1000 });
  } finally {
    optimizer.dispose();
    net.dispose();
  }
  return { ...ckpt, steps, config, finalLoss: losses[losses.length - 1]!, losses, seconds: (performance.now() - t0) / 1000, backend: tf.getBackend() };
}
