/**
 * Trained on a real clip, a sampled mouth region must beat an honest baseline (see the caveat below).
 *
 * Data: ../shared/data/media/WDA_AlexandriaOcasioCortez_000.mp4 prepared by `difftalk prep`'s pipeline (200 frames,
 * no test split), so the trainer holds out the last 20 % of the clip's frames (160…199) for validation and never trains
 * on them. We evaluate on those held-out frames. They are still from the SAME clip and speaker as the training frames:
 * this is an in-sample check of the trained pipeline, not a measure of generalisation to new people or new footage.
 *
 * Models: the tiny preset (32² faces, 3×8×8 latents) on wasm — the first stage (`trainAutoencoder`) then the LDM
 * (`trainLdm`), a few minutes of CPU in all.
 *
 * Evaluation per held-out frame, as DiffTalk infers (scripts/inference.py): `generate()` with the jaw-polygon latent
 * mask (ground-truth latent kept outside it), the test-masked target (rows ≥ mask_row_test set to −1), the reference
 * frame of the dataset's ref_frame_index, the frame's audio and landmarks; decode with the first stage. Then PSNR
 * (data range 2 on [-1, 1] images, i.e. the usual 8-bit PSNR) against the ground-truth frame at the model's size, on the
 * mouth crop: the box of iBUG points 48–67 (stored landmarks_68) scaled to 32 px, widened by 25 % of its size per side.
 *   (a) the DDIM sample;
 *   (b) baseline: the target frame with the reference frame's mouth crop pasted in (so its crop is the reference's);
 *   (c) the first stage's reconstruction of the target (upper bound for anything decoded by it);
 *   (d) control: the reference frame passed through the first stage (the paste baseline with the decoder's smoothing).
 * Asserted: mean PSNR (a) > (b). The numbers are printed with t.diagnostic.
 *
 * Measured (this configuration, 245 s in all on 2 shared cores): AE val L1 0.208; LDM loss 0.83 → 0.043 (val 0.041);
 * (a) 17.27 dB, (b) 15.49 dB, (c) 17.32 dB, (d) 17.28 dB; (a) > (b) on 33/40 frames; LDM 150 steps gave the same (a).
 * READ THIS CAVEAT: (a) ≈ (c) ≈ (d). At 32² after a few minutes the first stage is a smooth approximation of the face
 * (val L1 0.21, 256 codes) that cannot tell one mouth shape from another, and the sample beats the sharp pasted reference
 * mouth by being as smooth as the decoder — not by a demonstrably better mouth shape. So this test shows that the trained
 * pipeline inpaints a plausible, in-place mouth region that beats the naive paste; it does NOT show audio/landmark
 * conditioning beyond the reference frame (that needs (a) > (d), i.e. a far better first stage than fits in the CI
 * budget). Also, the 8×8 latent jaw mask is coarse: a few latent cells inside the mouth box (its upper margin) keep the
 * ground-truth latent, which favours (a). A 64² preset was not tried: the autoencoder step is ~4× slower there.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { AOC_CLIP, MODELS, tmpDir } from '../helpers.js';
import { initBackend, tf } from '../../src/util/tf.js';
import { DEFAULT_PREP_CONFIG, runPrep } from '../../src/preprocess/pipeline.js';
import { DEFAULT_LDM, DEFAULT_TRAIN, ldmSampleInputs, trainAutoencoder, trainLdm } from '../../src/train/loop.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { buildLatentCache, datasetInfo, disposeBatch, makeLdmBatch, readConditions, sampleIndex } from '../../src/train/data.js';
import { loadFirstStage } from '../../src/train/first-stage.js';
import { Params } from '../../src/train/models/blocks.js';
import { DifftalkModel, PREFIX } from '../../src/train/models/difftalk.js';
import { unetParamSpecs } from '../../src/train/models/unet.js';
import { vqDecode, vqEncode } from '../../src/train/models/vq-f4.js';
import { generate } from '../../src/train/pipeline.js';
import { PRESETS, type DifftalkConfig } from '../../src/train/presets.js';
import { DdimScheduler } from '../../src/train/schedulers/ddim.js';

// Budget (2 shared CPU cores, wasm): autoencoder 60 steps × batch 2 ≈ 160 s, LDM 100 steps × batch 16 ≈ 120 s.
const AE_STEPS = 60;
const AE_BATCH = 2;
const AE_LR = 3e-3;
const LDM_STEPS = 100;
const SAMPLE_STEPS = 10;
const HOLDOUT = DEFAULT_TRAIN.holdoutFraction;

/** Mouth box (iBUG 48–67) of a frame in model-image pixels: [x0, y0, x1, y1), widened by 25 % per side, clamped. */
function mouthBox(lm68: Float32Array, frameSize: number, imageSize: number): [number, number, number, number] {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (let p = 48; p <= 67; p++) {
    const x = (lm68[2 * p]! * imageSize) / frameSize;
    const y = (lm68[2 * p + 1]! * imageSize) / frameSize;
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  const mx = 0.25 * (x1 - x0);
  const my = 0.25 * (y1 - y0);
  const c = (v: number) => Math.max(0, Math.min(imageSize, v));
  return [c(Math.floor(x0 - mx)), c(Math.floor(y0 - my)), c(Math.ceil(x1 + mx)), c(Math.ceil(y1 + my))];
}

/** PSNR (dB) of two HWC images in [-1, 1] over a box (peak-to-peak 2). */
function cropPsnr(a: Float32Array, b: Float32Array, size: number, box: readonly number[]): number {
  const [x0, y0, x1, y1] = box as [number, number, number, number];
  let se = 0;
  let n = 0;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      for (let ch = 0; ch < 3; ch++) {
        const i = (y * size + x) * 3 + ch;
        se += (a[i]! - b[i]!) ** 2;
        n++;
      }
    }
  }
  return 10 * Math.log10(4 / (se / n));
}

test('a sampled mouth (held-out frames of the training clip) beats pasting the reference frame\'s mouth', { timeout: 1_500_000 }, async (t) => {
  const work = tmpDir('difftalk-quality-');
  const dataset = path.join(work, 'ds');
  const ae = path.join(work, 'ae');
  const ldm = path.join(work, 'ldm');
  const cacheDir = path.join(work, 'latents');
  await initBackend('wasm');
  const t0 = performance.now();
  const prep = await runPrep(
    { kind: 'input', paths: [AOC_CLIP] },
    { ...DEFAULT_PREP_CONFIG, audioFeatures: ['mel'], faceModel: path.join(MODELS, 'fm478md.task'), testFraction: 0 },
    { out: dataset, concurrency: 1, retries: 0, retryFailed: false, preview: false },
  );
  assert.equal(prep.frames, 200);
  const t1 = performance.now();
  const aeRun = await trainAutoencoder({ ...DEFAULT_TRAIN, dataset, out: ae, preset: 'tiny', steps: AE_STEPS, batchSize: AE_BATCH, lr: AE_LR, checkpointEvery: AE_STEPS, validateEvery: AE_STEPS, sampleEvery: AE_STEPS });
  const t2 = performance.now();
  const ldmRun = await trainLdm({
    ...DEFAULT_LDM, dataset, out: ldm, firstStage: ae, cacheDir, preset: 'tiny', steps: LDM_STEPS, batchSize: 16, lr: 1e-3,
    emaDecay: 0.999, checkpointEvery: LDM_STEPS, validateEvery: LDM_STEPS, sampleEvery: LDM_STEPS, sampleSteps: SAMPLE_STEPS,
  });
  const t3 = performance.now();
  assert.equal(ldmRun.trainSamples, 160); // frames 0…159: the last 20 % are held out and never trained on

  // Evaluation frames: the held-out tail (frames ≥ floor(200 · 0.8)), as the trainer's validation split.
  const info = await datasetInfo(dataset);
  const clips = await readConditions(info, 'all');
  const evalSet = sampleIndex(clips).filter((s) => s.frame >= Math.floor(s.clip.frames * (1 - HOLDOUT)));
  assert.equal(evalSet.length, 40);
  const fs = await loadFirstStage(ae, PRESETS.tiny);
  const saved = await loadCheckpoint<{ config: DifftalkConfig }>(ldm);
  const config = saved.state.config;
  const S = config.imageSize;
  const model = new DifftalkModel(config, 'init');
  model.load(saved.model, saved.dir);
  const ema = new Params(unetParamSpecs(config.unet), 'init', 0, { trainable: false });
  ema.loadTorch(saved.model, { prefix: PREFIX.ema, source: saved.dir });
  const cache = await buildLatentCache(info, clips, fs, S, cacheDir);
  const scheduler = new DdimScheduler(config.schedule);

  const psnr = { sample: [] as number[], baseline: [] as number[], recon: [] as number[], refRecon: [] as number[] };
  for (let i = 0; i < evalSet.length; i += 8) {
    const samples = evalSet.slice(i, i + 8);
    const inp = await ldmSampleInputs(samples, info, fs, cache, S);
    const batch = makeLdmBatch(samples, cache, info.audio);
    const z = generate(model, scheduler, { zGt: batch.z, zMasked: inp.zMaskedTest, zRef: batch.zRef, audio: batch.audio, landmarks: batch.landmarks, mask: inp.mask, steps: SAMPLE_STEPS, seed: 7 + i, unet: ema });
    const P = S * S * 3;
    const gtT = tf.tensor4d(Float32Array.from(inp.gt.flatMap((g) => [...g])), [samples.length, S, S, 3]);
    const sample = tf.tidy(() => tf.clipByValue(vqDecode(fs.params, fs.config, z), -1, 1)).dataSync() as Float32Array;
    const refT = tf.tensor4d(Float32Array.from(inp.ref.flatMap((g) => [...g])), [samples.length, S, S, 3]);
    const reconOf = (x: tf.Tensor4D) => tf.tidy(() => tf.clipByValue(vqDecode(fs.params, fs.config, vqEncode(fs.params, fs.config, x)), -1, 1)).dataSync() as Float32Array;
    const recon = reconOf(gtT);
    const refRecon = reconOf(refT);
    samples.forEach((s, j) => {
      const box = mouthBox(s.clip.landmarks68.subarray(s.frame * 136, (s.frame + 1) * 136), info.size, S);
      const gt = inp.gt[j]!;
      psnr.sample.push(cropPsnr(sample.subarray(j * P, (j + 1) * P), gt, S, box));
      // baseline: the target with the reference's mouth crop pasted in — inside the box it is the reference frame
      psnr.baseline.push(cropPsnr(inp.ref[j]!, gt, S, box));
      psnr.recon.push(cropPsnr(recon.subarray(j * P, (j + 1) * P), gt, S, box));
      // (d) the reference's mouth passed through the first stage: the paste baseline with the same decoder blur as (a)
      psnr.refRecon.push(cropPsnr(refRecon.subarray(j * P, (j + 1) * P), gt, S, box));
    });
    tf.dispose([z, gtT, refT, inp.zMaskedTest, inp.mask]);
    disposeBatch(batch);
  }
  const t4 = performance.now();
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const wins = psnr.sample.filter((v, k) => v > psnr.baseline[k]!).length;
  t.diagnostic(`prep ${((t1 - t0) / 1000).toFixed(0)} s; autoencoder ${AE_STEPS} steps (batch ${AE_BATCH}, lr ${AE_LR}) ${((t2 - t1) / 1000).toFixed(0)} s, L1 ${aeRun.firstLoss.toFixed(3)} → ${aeRun.lastLoss.toFixed(3)}, val L1 ${aeRun.valLoss?.toFixed(3)}`);
  t.diagnostic(`ldm ${LDM_STEPS} steps (batch 16) ${((t3 - t2) / 1000).toFixed(0)} s, loss ${ldmRun.firstLoss.toFixed(3)} → ${ldmRun.lastLoss.toFixed(3)}, val ${ldmRun.valLoss?.toFixed(3)}; eval (${evalSet.length} frames, ${SAMPLE_STEPS} DDIM steps) ${((t4 - t3) / 1000).toFixed(0)} s`);
  t.diagnostic(`mouth-crop PSNR on held-out frames 160–199: (a) sample ${mean(psnr.sample).toFixed(2)} dB, (b) reference-mouth paste ${mean(psnr.baseline).toFixed(2)} dB, (c) first-stage reconstruction ${mean(psnr.recon).toFixed(2)} dB, (d) reference mouth through the first stage ${mean(psnr.refRecon).toFixed(2)} dB; sample beats baseline on ${wins}/${evalSet.length} frames`);
  model.dispose();
  ema.dispose();
  fs.params.dispose();
  assert.ok(mean(psnr.sample) > mean(psnr.baseline), `sample ${mean(psnr.sample).toFixed(2)} dB ≤ baseline ${mean(psnr.baseline).toFixed(2)} dB`);
});
