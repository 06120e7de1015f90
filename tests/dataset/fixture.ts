/**
 * Shared inputs of the dataset tests: real frames (the first frames of the HDTF sample clip, ffmpeg area scaling to
 * size², rgb24), shard metadata as prep writes it (a formula landmarker, the DiffTalk reference sampler), a clip's
 * shard input with constant landmarks and audio, and a one-clip dataset folder.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { Message } from 'apache-arrow';
import { buildDatasetManifest, writeDatasetManifest, type DatasetClip } from '../../src/dataset/manifest.js';
import { difftalkReferenceSampler } from '../../src/dataset/reference.js';
import {
  encodeFrames,
  maskRowsFromLandmarks68,
  writeClipShards,
  type AudioFeatureMetadata,
  type ClipShardInput,
  type ShardMetadata,
} from '../../src/dataset/shard-writer.js';
import { LM68_VALUES } from '../../src/face/ibug68.js';
import { MESH_FLOATS } from '../../src/face/landmarks/clip.js';
import type { RgbFrames } from '../../src/media/types.js';
import { AOC_CLIP, ffmpegRgb } from '../helpers.js';

/** The first `count` frames of the AOC clip at size² (ffmpeg area scaling). */
export async function aocFrames(count: number, size: number): Promise<RgbFrames> {
  const data = await ffmpegRgb(AOC_CLIP, { frames: count, vf: `scale=${size}:${size}:flags=area` });
  assert.equal(data.length, count * size * size * 3);
  return { width: size, height: size, count, data };
}

/** Shard metadata for test shards of `size`² JPEG q95 frames with the given audio feature columns. */
export function testShardMetadata(size: number, audioFeatures: AudioFeatureMetadata[]): ShardMetadata {
  return {
    fps: 25,
    size,
    imageFormat: 'jpeg',
    jpegQuality: 95,
    landmarker: { engine: 'test-formula', model: 'none', sha256: '0'.repeat(64), smoothing: { kind: 'none' } },
    audioFeatures,
    reference: difftalkReferenceSampler({ seed: 23, policy: 'farthest' }).params,
    toolVersion: '0.0.0-test',
  };
}

/** A clip's shard input: `images` (one per frame) with constant landmarks, audio windows of 0.5 and DiffTalk references. */
export function testClipInput(clipId: string, images: Uint8Array[], size: number, audio: { name: string; window: number; dim: number }): ClipShardInput {
  const n = images.length;
  const refs = difftalkReferenceSampler({ seed: 23, policy: 'farthest' }).sample(clipId, n);
  assert.ok(refs.ok);
  const lm68 = new Float32Array(n * LM68_VALUES).fill(size / 2);
  const masks = maskRowsFromLandmarks68(lm68, size);
  return {
    clipId,
    split: 'train',
    fps: 25,
    images,
    faceStatus: Array.from({ length: n }, () => 'ok'),
    faceScore: new Float32Array(n).fill(1),
    landmarks478: new Float32Array(n * MESH_FLOATS).fill(1),
    landmarks478Raw: new Float32Array(n * MESH_FLOATS).fill(1),
    landmarks68: lm68,
    maskRowTrain: masks.train,
    maskRowTest: masks.test,
    audio: [{ name: audio.name, windows: { data: new Float32Array(n * audio.window * audio.dim).fill(0.5), frames: n, window: audio.window, dim: audio.dim } }],
    refFrameIndex: refs.value,
  };
}

/** A dataset folder with one clip of `n` real frames at size² (JPEG q95, one shard), dataset.json included. */
export async function writeTestDataset(dir: string, clipId: string, n: number, size: number): Promise<{ meta: ShardMetadata; shard: string }> {
  const audio = { name: 'mfcc', window: 4, dim: 13 };
  const meta = testShardMetadata(size, [{ ...audio, column: 'audio_mfcc', rate: 100, params: {} }]);
  const images = await encodeFrames(await aocFrames(n, size), { format: 'jpeg', quality: 95 });
  const res = await writeClipShards(dir, testClipInput(clipId, images, size, audio), { maxRows: 1000, metadata: meta });
  const clip: DatasetClip = { id: clipId, identity: clipId, split: 'train', status: 'done', frames: n, shards: res.files, notes: [] };
  await writeDatasetManifest(dir, buildDatasetManifest({ config: {}, clips: [clip] }));
  return { meta, shard: path.join(dir, res.files[0]!) };
}

/** The (only) record batch message of a shard: where its flatbuffer lies. */
export function batchMessage(bytes: Buffer): { start: number; length: number } {
  const footerLength = bytes.readInt32LE(bytes.length - 10);
  // The first record batch follows the schema message: find the continuation markers after the 8-byte head.
  let at = 8;
  for (;;) {
    assert.equal(bytes.readInt32LE(at), -1, 'continuation marker');
    const length = bytes.readInt32LE(at + 4);
    const m = Message.decode(bytes.subarray(at + 8, at + 8 + length));
    if (m.isRecordBatch()) return { start: at + 8, length };
    at += 8 + length + m.bodyLength;
    assert.ok(at < bytes.length - 10 - footerLength, 'a record batch message');
  }
}

/**
 * A copy of `bytes` whose record batch flatbuffer has the int64 `from` replaced by `to` at the one place where the
 * decoded message changes as `changed` says (found by trying each occurrence and decoding it back).
 */
export function patchBatch(bytes: Buffer, from: number, to: number, changed: (m: Message) => boolean): Buffer {
  const { start, length } = batchMessage(bytes);
  const needle = Buffer.alloc(8);
  needle.writeBigInt64LE(BigInt(from));
  for (let k = start; k + 8 <= start + length; k++) {
    if (!bytes.subarray(k, k + 8).equals(needle)) continue;
    const copy = Buffer.from(bytes);
    copy.writeBigInt64LE(BigInt(to), k);
    const m = Message.decode(copy.subarray(start, start + length));
    if (changed(m)) return copy;
  }
  throw new Error(`no int64 ${from} to patch`);
}
