/**
 * Training data from a prepared dataset (Arrow shards, schema v1): per-frame conditions, decoded face images and the
 * on-disk cache of first-stage latents, so the UNet step never re-encodes.
 *
 * Per sample (difftalk-reference.md §1.2):
 * - target x: the stored frame resized (bicubic) to the model's imageSize, x/127.5 − 1;
 * - masked target: the same with every row ≥ mask_row_train (nose tip, pt 30; scaled to imageSize) set to −1;
 * - reference: the frame `ref_frame_index` of the same clip (fixed at prep time), unmasked;
 * - audio: the 8 neighbouring frames' feature windows i−4 … i+3 of the chosen `audio_<name>` column, zero where
 *   outside the clip (AD-NeRF's alignment; the reference code does not say which 8 frames it used) → (8, window, dim);
 * - landmarks: iBUG-68 points 0–3 and 13–47 scaled to 256-px coordinates (raw, not normalised) → (39, 2).
 * Frames whose face_status is not 'ok' (NaN landmarks, mask rows −1) are dropped with a 'dropped' event.
 */
import { mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { tf } from '../util/tf.js';
import { DifftalkError } from '../util/errors.js';
import { silent, type OnEvent } from '../util/events.js';
import { exists, sha256, writeFileAtomic, writeJsonAtomic } from '../util/fs.js';
import { iterateRows, listShards } from '../dataset/shard-reader.js';
import { datasetInfo, type DatasetInfo } from '../dataset/info.js';
import { decodeGtImage } from '../dataset/dataset.js';
import { AUDIO_CONTEXT, audioContext, LANDMARK_FRAME, maskRowsBelow, scaleMaskRow } from '../models/conditions.js';
import { CONDITION_POINTS } from '../models/ldm-net.js';
import type { Params } from '../models/blocks.js';
import type { ConditionNorm } from '../models/presets.js';
import { vqEncode, type VqConfig } from '../models/vq-f4.js';
import { LM68_VALUES } from '../face/ibug68.js';

/** One clip's conditions, in memory (images are decoded on demand). */
export interface ClipConditions {
  id: string;
  split: string;
  frames: number;
  /** Row-major frames × window × dim. */
  audio: Float32Array;
  /** frames × 78 (39 points, 256-px coordinates). */
  landmarks: Float32Array;
  /** frames × 136 (iBUG-68 in stored-frame pixels), for masks at render time. */
  landmarks68: Float32Array;
  maskRowTrain: Int32Array;
  maskRowTest: Int32Array;
  refFrameIndex: Int32Array;
  /** 1 where the face is usable. */
  ok: Uint8Array;
}

/** Read every clip's conditions (no images) for the given split ('all' for both). */
export async function readConditions(info: DatasetInfo, split: 'train' | 'test' | 'all', onEvent: OnEvent = silent): Promise<ClipConditions[]> {
  const columns = ['clip_id', 'frame_index', 'face_status', 'landmarks_68', 'mask_row_train', 'mask_row_test', 'ref_frame_index', 'split', info.audio.column];
  const byClip = new Map<
    string,
    { split: string; rows: Map<number, { a: Float32Array; lm: Float32Array; mt: number; ms: number; ref: number; ok: boolean }> }
  >();
  for await (const rb of iterateRows(info.dir, { columns, ...(split === 'all' ? {} : { split }) })) {
    const b = rb.batch;
    let clip = byClip.get(rb.clipId);
    if (!clip) byClip.set(rb.clipId, (clip = { split: rb.split, rows: new Map() }));
    const col = (n: string) => b.getChild(n)!;
    for (let i = 0; i < b.numRows; i++) {
      const fi = col('frame_index').get(i) as number;
      clip.rows.set(fi, {
        a: Float32Array.from(col(info.audio.column).get(i).toArray() as Float32Array),
        lm: Float32Array.from(col('landmarks_68').get(i).toArray() as Float32Array),
        mt: col('mask_row_train').get(i) as number,
        ms: col('mask_row_test').get(i) as number,
        ref: col('ref_frame_index').get(i) as number,
        ok: col('face_status').get(i) === 'ok',
      });
    }
  }
  const win = info.audio.window * info.audio.dim;
  const scale = LANDMARK_FRAME / info.size;
  const out: ClipConditions[] = [];
  for (const [id, c] of byClip) {
    const n = Math.max(...c.rows.keys()) + 1;
    if (c.rows.size !== n) throw new DifftalkError('dataset-corrupt', `clip ${id} has ${c.rows.size} rows but frame indices up to ${n - 1}`);
    const cc: ClipConditions = {
      id,
      split: c.split,
      frames: n,
      audio: new Float32Array(n * win),
      landmarks: new Float32Array(n * 78),
      landmarks68: new Float32Array(n * LM68_VALUES),
      maskRowTrain: new Int32Array(n),
      maskRowTest: new Int32Array(n),
      refFrameIndex: new Int32Array(n),
      ok: new Uint8Array(n),
    };
    let dropped = 0;
    for (const [fi, r] of c.rows) {
      cc.audio.set(r.a, fi * win);
      cc.landmarks68.set(r.lm, fi * LM68_VALUES);
      CONDITION_POINTS.forEach((p, j) => {
        cc.landmarks[fi * 78 + 2 * j] = r.lm[2 * p]! * scale;
        cc.landmarks[fi * 78 + 2 * j + 1] = r.lm[2 * p + 1]! * scale;
      });
      cc.maskRowTrain[fi] = r.mt;
      cc.maskRowTest[fi] = r.ms;
      cc.refFrameIndex[fi] = r.ref;
      const ok = r.ok && r.mt >= 0 && r.ref >= 0 && r.ref < n && r.lm.every(Number.isFinite);
      cc.ok[fi] = ok ? 1 : 0;
      if (!ok) dropped++;
    }
    if (dropped)
      onEvent({
        type: 'dropped',
        stage: 'train-data',
        id,
        reason: 'no-face',
        message: `${dropped} of ${n} frames of ${id} have no usable face and are not trained on`,
      });
    out.push(cc);
  }
  return out;
}

/** Decoded frames of a clip (imageSize² RGB, [-1, 1]) by frame index, streamed shard by shard. */
export async function* iterateClipImages(
  info: DatasetInfo,
  imageSize: number,
  opts: { split?: 'train' | 'test'; clips?: string[] } = {},
): AsyncGenerator<{ clipId: string; frameIndex: number; image: Float32Array }> {
  for await (const rb of iterateRows(info.dir, { columns: ['clip_id', 'frame_index', 'image', 'split'], ...opts })) {
    const b = rb.batch;
    for (let i = 0; i < b.numRows; i++) {
      const frameIndex = b.getChild('frame_index')!.get(i) as number;
      yield {
        clipId: rb.clipId,
        frameIndex,
        image: await decodeGtImage(b.getChild('image')!.get(i) as Uint8Array, { clipId: rb.clipId, index: frameIndex }, imageSize),
      };
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Latent cache

export interface ClipLatents {
  /** frames × latentSize: the pre-quantisation latent of each frame. */
  z: Float32Array;
  /** frames × latentSize: the latent of the training-masked frame. */
  zMasked: Float32Array;
}

export interface LatentCache {
  dir: string;
  key: string;
  latentShape: [number, number, number];
  clips: Map<string, ClipLatents>;
}

/**
 * The cache file of a clip: named by the sha256 of its id, never by the id itself (a clip id is untrusted shard
 * content; `../../x` must not become a path outside the cache folder).
 */
export function latentFileName(clipId: string): string {
  return `${sha256(clipId).slice(0, 32)}.f32`;
}

function mismatch(c: ClipConditions, what: string): DifftalkError {
  return new DifftalkError('dataset-mismatch', `clip '${c.id}': the shards' image rows (${what}) do not match its condition rows (${c.frames} frames)`, {
    suggestion: 'dataset.json and the shards disagree; rerun `difftalk prep` into a new folder',
  });
}

/** Identity of the dataset content for cache keys: shard names and sizes. */
async function datasetFingerprint(dir: string): Promise<string> {
  const shards = await listShards(dir);
  const parts: string[] = [];
  for (const s of shards) parts.push(`${s.shard}:${(await stat(path.join(dir, s.shard))).size}`);
  return sha256(parts.join('\n'));
}

/**
 * Encode every frame (and its training-masked copy) of the given clips with the frozen first stage, once, into
 * `<cacheDir>/<key>/<clip>.f32` (z then zMasked, float32 little-endian). The key covers the first-stage weights id,
 * the image size and the dataset's shards, so a changed input never reuses stale latents. Bounded memory: one batch of
 * decoded frames at a time; the cached latents themselves are kept in memory (3·(s/4)² floats per frame and copy).
 */
export async function buildLatentCache(
  info: DatasetInfo,
  clips: readonly ClipConditions[],
  vq: { params: Params; config: VqConfig; id: string },
  imageSize: number,
  cacheDir: string,
  opts: { batchSize?: number; onEvent?: OnEvent } = {},
): Promise<LatentCache> {
  const onEvent = opts.onEvent ?? silent;
  const f = 2 ** (vq.config.chMult.length - 1);
  const latentShape: [number, number, number] = [imageSize / f, imageSize / f, vq.config.embedDim];
  const L = latentShape[0] * latentShape[1] * latentShape[2];
  const key = sha256(JSON.stringify({ v: 1, vq: vq.id, imageSize, data: await datasetFingerprint(info.dir) })).slice(0, 16);
  const dir = path.join(cacheDir, key);
  await mkdir(dir, { recursive: true });
  const cache: LatentCache = { dir, key, latentShape, clips: new Map() };
  const todo: ClipConditions[] = [];
  for (const c of clips) {
    const file = path.join(dir, latentFileName(c.id));
    if (await exists(file)) {
      const buf = await readFile(file);
      if (buf.byteLength === c.frames * L * 2 * 4) {
        const all = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4).slice();
        cache.clips.set(c.id, { z: all.subarray(0, c.frames * L), zMasked: all.subarray(c.frames * L) });
        continue;
      }
    }
    todo.push(c);
  }
  if (!todo.length) {
    onEvent({ type: 'log', level: 'info', message: `latent cache ${key}: all ${clips.length} clips cached` });
    return cache;
  }
  const bs = opts.batchSize ?? 8;
  const total = todo.reduce((s, c) => s + c.frames, 0);
  onEvent({ type: 'stage-start', stage: 'latent-cache', total, unit: 'frames' });
  const t0 = performance.now();
  let done = 0;
  const byId = new Map(todo.map((c) => [c.id, c]));
  const buffers = new Map(todo.map((c) => [c.id, new Float32Array(c.frames * L * 2)]));
  let pend: { clip: ClipConditions; fi: number; img: Float32Array; masked: Float32Array }[] = [];
  const filled = new Map(todo.map((c) => [c.id, new Uint8Array(c.frames)]));
  const flush = async () => {
    if (!pend.length) return;
    const n = pend.length;
    const P = imageSize * imageSize * 3;
    const input = new Float32Array(2 * n * P);
    pend.forEach((p, j) => {
      input.set(p.img, 2 * j * P);
      input.set(p.masked, (2 * j + 1) * P);
    });
    const zs = tf.tidy(() => vqEncode(vq.params, vq.config, tf.tensor4d(input, [2 * n, imageSize, imageSize, 3])));
    const data = (await zs.data()) as Float32Array;
    zs.dispose();
    pend.forEach((p, j) => {
      filled.get(p.clip.id)![p.fi] = 1;
      const buf = buffers.get(p.clip.id)!;
      buf.set(data.subarray(2 * j * L, (2 * j + 1) * L), p.fi * L);
      buf.set(data.subarray((2 * j + 1) * L, (2 * j + 2) * L), p.clip.frames * L + p.fi * L);
    });
    done += n;
    onEvent({ type: 'progress', stage: 'latent-cache', done, total });
    pend = [];
  };
  for await (const fr of iterateClipImages(info, imageSize, { clips: [...byId.keys()] })) {
    const clip = byId.get(fr.clipId);
    if (!clip) continue;
    if (!Number.isInteger(fr.frameIndex) || fr.frameIndex < 0 || fr.frameIndex >= clip.frames) throw mismatch(clip, `frame ${fr.frameIndex}`);
    const row = clip.maskRowTrain[fr.frameIndex]!;
    const masked = row >= 0 ? maskRowsBelow(fr.image, imageSize, scaleMaskRow(row, info.size, imageSize)) : fr.image;
    pend.push({ clip, fi: fr.frameIndex, img: fr.image, masked });
    if (pend.length >= bs) await flush();
  }
  await flush();
  // every frame must have come from the shards (a manifest/shard mismatch would otherwise train on all-zero latents)
  for (const c of todo) {
    const got = filled.get(c.id)!.reduce((a, b) => a + b, 0);
    if (got !== c.frames) throw mismatch(c, `${got} of ${c.frames} frames`);
  }
  for (const c of todo) {
    const buf = buffers.get(c.id)!;
    await writeFileAtomic(path.join(dir, latentFileName(c.id)), new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
    cache.clips.set(c.id, { z: buf.subarray(0, c.frames * L), zMasked: buf.subarray(c.frames * L) });
  }
  await writeJsonAtomic(path.join(dir, 'cache.json'), { key, vq: vq.id, imageSize, latentShape, clips: clips.map((c) => c.id) });
  onEvent({ type: 'stage-done', stage: 'latent-cache', done, seconds: (performance.now() - t0) / 1000 });
  return cache;
}

// ---------------------------------------------------------------------------------------------------------------
// Batches

export interface SampleRef {
  clip: ClipConditions;
  frame: number;
}

/** Every usable frame of the given clips. */
export function sampleIndex(clips: readonly ClipConditions[]): SampleRef[] {
  const out: SampleRef[] = [];
  for (const clip of clips) for (let f = 0; f < clip.frames; f++) if (clip.ok[f]) out.push({ clip, frame: f });
  return out;
}

export interface LdmBatch {
  /** (B, h, w, 3) target latent. */
  z: tf.Tensor4D;
  /** (B, h, w, 3) latent of the masked target. */
  zMasked: tf.Tensor4D;
  /** (B, h, w, 3) latent of the reference frame. */
  zRef: tf.Tensor4D;
  /** (B, 8, window, dim). */
  audio: tf.Tensor4D;
  /** (B, 39, 2). */
  landmarks: tf.Tensor3D;
}

export function makeLdmBatch(samples: readonly SampleRef[], cache: LatentCache, audio: { window: number; dim: number }): LdmBatch {
  const [h, w, c] = cache.latentShape;
  const L = h * w * c;
  const B = samples.length;
  const z = new Float32Array(B * L);
  const zm = new Float32Array(B * L);
  const zr = new Float32Array(B * L);
  const aw = AUDIO_CONTEXT * audio.window * audio.dim;
  const a = new Float32Array(B * aw);
  const lm = new Float32Array(B * 78);
  samples.forEach((s, i) => {
    const lat = cache.clips.get(s.clip.id);
    if (!lat) throw new DifftalkError('internal', `clip ${s.clip.id} is not in the latent cache`);
    const ref = s.clip.refFrameIndex[s.frame]!;
    z.set(lat.z.subarray(s.frame * L, (s.frame + 1) * L), i * L);
    zm.set(lat.zMasked.subarray(s.frame * L, (s.frame + 1) * L), i * L);
    zr.set(lat.z.subarray(ref * L, (ref + 1) * L), i * L);
    audioContext(s.clip, s.frame, audio.window, audio.dim, a, i * aw);
    lm.set(s.clip.landmarks.subarray(s.frame * 78, (s.frame + 1) * 78), i * 78);
  });
  return {
    z: tf.tensor4d(z, [B, h, w, c]),
    zMasked: tf.tensor4d(zm, [B, h, w, c]),
    zRef: tf.tensor4d(zr, [B, h, w, c]),
    audio: tf.tensor4d(a, [B, AUDIO_CONTEXT, audio.window, audio.dim]),
    landmarks: tf.tensor3d(lm, [B, 39, 2]),
  };
}

/**
 * Per-dimension mean and std of the conditions over some frames (the training frames): audio over every window row of
 * each frame's own features, landmarks per coordinate of the 39 condition points. The std has a floor (1e-3 for audio,
 * 0.5 px for landmarks) so a coordinate that never moves is not blown up.
 */
export function conditionStats(samples: readonly SampleRef[], audio: { window: number; dim: number }): ConditionNorm {
  const { window, dim } = audio;
  const stats = (rows: Float32Array[], n: number, floor: number) => {
    const sum = new Float64Array(n);
    const sq = new Float64Array(n);
    let count = 0;
    for (const r of rows) {
      for (let i = 0; i < r.length; i++) {
        sum[i % n]! += r[i]!;
        sq[i % n]! += r[i]! * r[i]!;
      }
      count += r.length / n;
    }
    const mean = Array.from(sum, (v) => v / count);
    const std = Array.from(sq, (v, i) => Math.max(floor, Math.sqrt(Math.max(0, v / count - mean[i]! ** 2))));
    return { mean, std };
  };
  const a = stats(
    samples.map((s) => s.clip.audio.subarray(s.frame * window * dim, (s.frame + 1) * window * dim)),
    dim,
    1e-3,
  );
  const l = stats(
    samples.map((s) => s.clip.landmarks.subarray(s.frame * 78, (s.frame + 1) * 78)),
    78,
    0.5,
  );
  return { audioMean: a.mean, audioStd: a.std, landmarkMean: l.mean, landmarkStd: l.std };
}

export function disposeBatch(b: LdmBatch): void {
  tf.dispose([b.z, b.zMasked, b.zRef, b.audio, b.landmarks]);
}

/** Decode selected frames (clip id → frame indices) at imageSize; key `${clip}/${frame}`. */
export async function readFrameImages(
  info: DatasetInfo,
  wanted: ReadonlyMap<string, ReadonlySet<number>>,
  imageSize: number,
): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for await (const rb of iterateRows(info.dir, { columns: ['clip_id', 'frame_index', 'image', 'split'], clips: [...wanted.keys()] })) {
    const set = wanted.get(rb.clipId);
    if (!set) continue;
    const b = rb.batch;
    for (let i = 0; i < b.numRows; i++) {
      const fi = b.getChild('frame_index')!.get(i) as number;
      if (set.has(fi))
        out.set(`${rb.clipId}/${fi}`, await decodeGtImage(b.getChild('image')!.get(i) as Uint8Array, { clipId: rb.clipId, index: fi }, imageSize));
    }
  }
  return out;
}

/** Split usable frames into train and validation sets (test split, or a held-out tail of each train clip). */
export function splitSamples(clips: ClipConditions[], holdout: number, valCount: number, onEvent: OnEvent): { train: SampleRef[]; val: SampleRef[] } {
  const trainClips = clips.filter((c) => c.split === 'train');
  const testClips = clips.filter((c) => c.split === 'test');
  let train: SampleRef[];
  let val: SampleRef[];
  if (testClips.length) {
    train = sampleIndex(trainClips);
    val = sampleIndex(testClips);
  } else {
    onEvent({
      type: 'log',
      level: 'warn',
      message: `dataset has no test clips: holding out the last ${Math.round(holdout * 100)}% of each train clip's frames for validation`,
    });
    const all = sampleIndex(trainClips);
    const cut = (s: SampleRef) => s.frame >= Math.floor(s.clip.frames * (1 - holdout));
    train = all.filter((s) => !cut(s));
    val = all.filter(cut);
  }
  if (!train.length)
    throw new DifftalkError('dataset-empty', 'no usable training frames', {
      suggestion: 'check the dataset with `difftalk prep` (faces found, train split not empty)',
    });
  if (val.length > valCount) {
    const step = val.length / valCount;
    val = Array.from({ length: valCount }, (_, i) => val[Math.floor(i * step)]!);
  }
  return { train, val };
}

export { datasetInfo, type DatasetInfo };
