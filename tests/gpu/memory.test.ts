/**
 * Memory stays flat on --backend webgpu (in CI: lavapipe), and nothing on the GPU path switches the backend:
 * - `trainAutoencoder` and `trainLdm` (tiny, 2 steps, validation, sample grid and — for the LDM — DDIM sampling through
 *   the inference pipeline that `render` uses, at every step): tf.memory().numTensors and numBytes at step 2 equal
 *   those at step 1 (each step's validation and sampling run between the two readings, so a leak there shows too);
 * - the tfjs landmark engine (LMD, the SyncNet crops of eval) under eval --backend webgpu: it runs on webgpu (before, it
 *   switched the process to wasm, and the GPU networks loaded before it then failed on a synchronous read), its reads
 *   are asynchronous, tensors after 3 frames equal those after 1, and its points equal the wasm engine's within
 *   0.05 px (float32 summation order; measured below).
 * The eval networks' own memory checks are in eval-nets.test.ts.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { createLandmarkEngine } from '../../src/face/landmarks/index.js';
import { decodeFrames } from '../../src/media/frames.js';
import type { RgbFrames } from '../../src/media/types.js';
import { DEFAULT_PREP_CONFIG, runPrep } from '../../src/prep/pipeline.js';
import { trainAutoencoder } from '../../src/train/autoencoder.js';
import { DEFAULT_TRAIN } from '../../src/train/core.js';
import { DEFAULT_LDM, trainLdm } from '../../src/train/ldm.js';
import { runTool } from '../../src/util/exec.js';
import type { ProgressEvent } from '../../src/util/events.js';
import { initBackend, tf } from '../../src/util/tf.js';
import { AOC_CLIP, MODELS, tmpDir } from '../helpers.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';

let unavailable: string | undefined;
try {
  await initBackend('webgpu');
} catch (e) {
  unavailable = `no WebGPU adapter here (${(e as Error).message}); .ci/run installs Mesa ≥ 25 lavapipe`;
}

/** tf.memory() at each progress event of `stage` (a training step's, after its update). */
function memoryAt(stage: string): { seen: { tensors: number; bytes: number }[]; onEvent: (e: ProgressEvent) => void } {
  const seen: { tensors: number; bytes: number }[] = [];
  return {
    seen,
    onEvent: (e) => {
      if (e.type === 'progress' && e.stage === stage) seen.push({ tensors: tf.memory().numTensors, bytes: tf.memory().numBytes });
    },
  };
}

describe('webgpu: flat memory in training, sampling and landmarks', { timeout: 900_000 }, () => {
  const work = tmpDir('difftalk-gpu-mem-');
  const dataset = path.join(work, 'ds');
  const ae = path.join(work, 'ae');

  before(async () => {
    if (unavailable) return;
    // 5.2 s of the AOC clip (130 frames: DiffTalk's reference rule needs 122; fewer latents to cache on lavapipe)
    const clip = path.join(work, 'aoc5s.mp4');
    await runTool('ffmpeg', ['-v', 'error', '-i', AOC_CLIP, '-t', '5.2', '-c:v', 'libx264', '-crf', '18', '-c:a', 'aac', clip]);
    const prep = await runPrep(
      { kind: 'input', paths: [clip] },
      { ...DEFAULT_PREP_CONFIG, audioFeatures: ['mel'], faceModel: path.join(MODELS, 'fm478md.task'), testFraction: 0 },
      { out: dataset, concurrency: 1, retries: 0, retryFailed: false, preview: false },
    );
    assert.equal(prep.frames, 130);
    await initBackend('webgpu');
  });

  test('train autoencoder: tensors and bytes after step 2 (with validation and a sample grid after each step) equal step 1', async (t) => {
    if (unavailable) return t.skip(unavailable);
    const mem = memoryAt('train-autoencoder');
    const r = await trainAutoencoder({
      ...DEFAULT_TRAIN,
      onEvent: mem.onEvent,
      dataset,
      out: ae,
      preset: 'tiny',
      steps: 2,
      batchSize: 2,
      lr: 2e-3,
      checkpointEvery: 2,
      validateEvery: 1,
      sampleEvery: 1,
      precision: 'fp32',
    });
    assert.equal(r.step, 2);
    assert.equal(tf.getBackend(), 'webgpu');
    assert.equal(mem.seen.length, 2);
    assert.deepEqual(mem.seen[1], mem.seen[0], `memory after steps 1, 2: ${JSON.stringify(mem.seen)}`);
  });

  test('train ldm: the same, with DDIM sampling (the render pipeline) after each step', async (t) => {
    if (unavailable) return t.skip(unavailable);
    const mem = memoryAt('train');
    const r = await trainLdm({
      ...DEFAULT_LDM,
      onEvent: mem.onEvent,
      dataset,
      out: path.join(work, 'ldm'),
      firstStage: ae,
      cacheDir: path.join(work, 'latents'),
      preset: 'tiny',
      steps: 2,
      batchSize: 2,
      lr: 1e-3,
      checkpointEvery: 2,
      validateEvery: 1,
      sampleEvery: 1,
      sampleSteps: 2,
      precision: 'fp32',
    });
    assert.equal(r.step, 2);
    assert.equal(tf.getBackend(), 'webgpu');
    assert.equal(mem.seen.length, 2);
    assert.deepEqual(mem.seen[1], mem.seen[0], `memory after steps 1, 2: ${JSON.stringify(mem.seen)}`);
  });

  test('tfjs landmark engine: stays on webgpu, flat memory, same points as on wasm (0.05 px)', async (t) => {
    if (unavailable) return t.skip(unavailable);
    const frames = await decodeFrames(AOC_CLIP, { count: 3 });
    const one: RgbFrames = { ...frames, count: 1, data: frames.data.subarray(0, frames.width * frames.height * 3) };
    const points = async (backend: 'webgpu' | 'wasm') => {
      await initBackend(backend);
      const held = tf.zeros([2]); // a tensor of the caller's (eval's networks), on this backend
      const { engine } = await createLandmarkEngine({ engine: 'tfjs' });
      try {
        assert.equal(tf.getBackend(), backend, 'the engine runs on the chosen backend');
        await engine.detect(one);
        const afterOne = tf.memory().numTensors;
        await engine.reset();
        const lms = await engine.detect(frames);
        assert.equal(tf.memory().numTensors, afterOne, 'tensors after 3 frames equal those after 1');
        assert.deepEqual(Array.from(await held.data()), [0, 0], "the caller's tensor still reads");
        return lms;
      } finally {
        held.dispose();
        await engine.close();
      }
    };
    const gpu = await points('webgpu');
    const ref = await points('wasm');
    await initBackend('webgpu');
    let maxDiff = 0;
    for (let f = 0; f < ref.length; f++) {
      assert.equal(gpu[f]!.status, ref[f]!.status);
      assert.equal(ref[f]!.status, 'ok');
      for (let i = 0; i < ref[f]!.points.length; i++) maxDiff = Math.max(maxDiff, Math.abs(gpu[f]!.points[i]! - ref[f]!.points[i]!));
    }
    t.diagnostic(`max |webgpu − wasm| over 3 frames × 478 points: ${maxDiff.toExponential(2)} px`);
    assert.ok(maxDiff <= 0.05, `max point difference ${maxDiff} px`);
  });
});
