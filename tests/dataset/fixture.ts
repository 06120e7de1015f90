/**
 * Shared inputs of the dataset tests: real frames (the first frames of the HDTF sample clip, ffmpeg area scaling to
 * size², rgb24) and shard metadata as prep writes it (a formula landmarker, the DiffTalk reference sampler).
 */
import assert from 'node:assert/strict';
import { difftalkReferenceSampler } from '../../src/dataset/reference.js';
import type { AudioFeatureMetadata, ShardMetadata } from '../../src/dataset/shard-writer.js';
import type { RgbFrames } from '../../src/media/types.js';
import { runTool } from '../../src/util/exec.js';
import { AOC_CLIP } from '../helpers.js';

/** The first `count` frames of the AOC clip at size² (ffmpeg area scaling). */
export async function aocFrames(count: number, size: number): Promise<RgbFrames> {
  const { stdout } = await runTool('ffmpeg', [
    '-v',
    'error',
    '-nostdin',
    '-i',
    AOC_CLIP,
    '-frames:v',
    String(count),
    '-vf',
    `scale=${size}:${size}:flags=area`,
    '-f',
    'rawvideo',
    '-pix_fmt',
    'rgb24',
    'pipe:1',
  ]);
  assert.equal(stdout.length, count * size * size * 3);
  return { width: size, height: size, count, data: new Uint8Array(stdout) };
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
