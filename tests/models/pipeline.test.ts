/**
 * DiffTalkPipeline.fromCheckpoint on a tiny random LDM run whose first stage is pinned the way `difftalk train ldm`
 * pins it (pinFirstStage: a copy in <run>/first-stage, run-relative path, sha256):
 * - it loads from another cwd after the autoencoder run it came from is gone (before: state.json stored the path as the
 *   user gave it, so a relative path or a pruned autoencoder checkpoint broke render and resume);
 * - prepare builds the conditions as the DiffTalk reference does (masked rows = −1 from the scaled nose-tip row, the 39
 *   condition points × 256/frameSize), checked against values computed here from the definitions; sample + decode give
 *   n·S²·3 finite values in [−1, 1];
 * - a tampered pinned copy is 'first-stage-changed'; a first-stage path in state.json that leaves the run is
 *   'checkpoint-corrupt' (a checkpoint string never becomes an arbitrary path).
 * About 10 s on wasm on an idle machine.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { tmpDir } from '../helpers.js';
import { initBackend, tf } from '../../src/util/tf.js';
import { saveCheckpoint } from '../../src/models/checkpoint.js';
import { Params } from '../../src/models/blocks.js';
import { DifftalkModel, PREFIX } from '../../src/models/difftalk.js';
import { vqParamSpecs } from '../../src/models/vq-f4.js';
import { resolveConfig } from '../../src/models/presets.js';
import { loadFirstStage, pinFirstStage } from '../../src/models/first-stage.js';
import { DiffTalkPipeline, disposePrepared, LM68_VALUES } from '../../src/models/pipeline.js';
import { AUDIO_CONTEXT } from '../../src/models/conditions.js';
import { CONDITION_POINTS } from '../../src/models/ldm-net.js';
import { DifftalkError } from '../../src/util/errors.js';

const FRAME = 256; // pixel frame of the landmarks and mask rows (a 256-px dataset)

test('pipeline from a checkpoint with a pinned first stage: another cwd, the autoencoder run gone; prepare, sample, decode', async () => {
  await initBackend('wasm');
  const dir = tmpDir('difftalk-pipeline-');
  const config = resolveConfig('tiny', { winSize: 16, featureDim: 80 });
  const aeRun = path.join(dir, 'ae');
  const vq = new Params(vqParamSpecs(config.vq), 'init', 5, { trainable: false });
  await saveCheckpoint(aeRun, { kind: 'autoencoder', version: 1, step: 1, seed: 5, config }, vq.toTorch(), undefined);
  vq.dispose();
  const ldmRun = path.join(dir, 'ldm');
  await mkdir(ldmRun);
  const fs = await loadFirstStage(aeRun, { vq: config.vq, imageSize: config.imageSize });
  const pin = await pinFirstStage(ldmRun, fs);
  fs.params.dispose();
  assert.equal(pin.path, 'first-stage');
  const model = new DifftalkModel(config, 'init', 7);
  const tensors = model.toTensors();
  for (const [n, t] of model.unet.toTorch(PREFIX.ema)) tensors.set(n, t);
  model.dispose();
  const state = { kind: 'ldm', version: 1, step: 1, seed: 7, config, options: {}, firstStage: pin, history: [], valHistory: [] };
  const ckpt = await saveCheckpoint(ldmRun, state, tensors, undefined);
  await rm(aeRun, { recursive: true });
  const cwd = process.cwd();
  process.chdir(path.join(dir, '..'));
  try {
    const loaded = await DiffTalkPipeline.fromCheckpoint(path.relative(process.cwd(), ldmRun));
    const pipe = loaded.pipeline;
    assert.ok(loaded.ema);
    const S = config.imageSize;
    const n = 2;
    const lm = (i: number) => Float32Array.from({ length: LM68_VALUES }, (_, j) => 60 + ((j * 37 + i * 11) % 140));
    const frames = Array.from({ length: n }, (_, i) => ({
      image: Float32Array.from({ length: S * S * 3 }, (_, j) => Math.sin(j * 0.01 + i)),
      landmarks68: lm(i),
      maskRow: 128 + 16 * i,
      audio: Float32Array.from({ length: AUDIO_CONTEXT * 16 * 80 }, (_, j) => Math.cos(j * 0.001 + i)),
    }));
    const cond = pipe.prepare(frames, FRAME);
    // masked target: rows ≥ floor(maskRow · S / FRAME) are −1, the rest the image (DiffTalk's test-time mask)
    frames.forEach((f, i) => {
      const row = Math.floor((f.maskRow * S) / FRAME);
      for (let y = 0; y < S; y++)
        for (let x = 0; x < S; x++)
          for (let c = 0; c < 3; c++) {
            const k = (y * S + x) * 3 + c;
            assert.equal(cond.masked[i]![k], y >= row ? -1 : f.image[k], `frame ${i} y ${y}`);
          }
    });
    // condition landmarks: the 39 points in 256-px coordinates
    const lms = (await cond.landmarks.data()) as Float32Array;
    frames.forEach((f, i) =>
      CONDITION_POINTS.forEach((p, j) => {
        assert.ok(Math.abs(lms[i * 78 + 2 * j]! - (f.landmarks68[2 * p]! * 256) / FRAME) < 1e-4);
        assert.ok(Math.abs(lms[i * 78 + 2 * j + 1]! - (f.landmarks68[2 * p + 1]! * 256) / FRAME) < 1e-4);
      }),
    );
    assert.deepEqual(cond.audio.shape, [n, AUDIO_CONTEXT, 16, 80]);
    const zRef = pipe.encode(frames.map((f) => f.image));
    const z = pipe.sample({ ...cond, zRef, steps: 2, seed: 3 });
    const img = await pipe.decode(z);
    assert.equal(img.length, n * S * S * 3);
    assert.ok(img.every((v) => Number.isFinite(v) && v >= -1 && v <= 1));
    disposePrepared(cond);
    tf.dispose([zRef, z]);
    pipe.dispose();
  } finally {
    process.chdir(cwd);
  }
  // a tampered pinned copy
  const pinned = path.join(ldmRun, 'first-stage', 'model.safetensors');
  const bytes = await readFile(pinned);
  bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 1, bytes.length - 1);
  await writeFile(pinned, bytes);
  await assert.rejects(DiffTalkPipeline.fromCheckpoint(ldmRun), (e: unknown) => e instanceof DifftalkError && e.code === 'first-stage-changed');
  // a first-stage path that leaves the run
  const stateFile = path.join(ckpt, 'state.json');
  const s = JSON.parse(await readFile(stateFile, 'utf8'));
  s.firstStage.path = '../ae';
  await writeFile(stateFile, JSON.stringify(s));
  await assert.rejects(DiffTalkPipeline.fromCheckpoint(ldmRun), (e: unknown) => e instanceof DifftalkError && e.code === 'checkpoint-corrupt');
});
