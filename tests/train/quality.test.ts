/**
 * Trained on a real clip, a sampled mouth region must beat honest baselines, and the model must read its conditions.
 *
 * Data: ../shared/data/media/WDA_AlexandriaOcasioCortez_000.mp4 prepared by `difftalk prep`'s pipeline (200 frames,
 * no test split), so the trainer holds out the last 20 % of the clip's frames (160…199) for validation and never trains
 * on them. We evaluate on those held-out frames. They are still from the SAME clip and speaker as the training frames:
 * this checks the trained pipeline on unseen frames, not generalisation to new people or new footage.
 *
 * Models: the tiny preset (32² faces, 3×8×8 latents, VQ ch_mult [1,1,2]) on wasm.
 * - First stage: `trainAutoencoder` 200 steps × batch 2, lr 3e-3 with cosine decay, `mouthWeight` 4 (L1 weight 5 inside
 *   the jaw polygon). The previous version of this test (vq ch_mult [1,2,4], 60 steps, plain L1) reached val L1 0.21 and
 *   its decoder could not tell one mouth from another: target reconstruction 17.32 dB vs the reference's mouth through
 *   it 17.28 dB on the mouth crop. (Scratch runs: plain L1 [1,2,4] at 300 steps 18.53 vs 17.02 dB; mouth-weighted [1,1,2] at 200 steps 21.3 vs 16.9.)
 * - LDM: `trainLdm` 500 steps × batch 16, lr 1e-3, with `normalizeConditions` (audio features and landmarks
 *   standardised with the training frames' mean/std; not in the reference). With raw conditions (log-mel ≈ −10 ± 4,
 *   landmarks ≈ 117 ± a few px) the condition encoders' outputs hardly varied across frames (std over frames 3e-4 for
 *   audio), training shrank the context, and samples with another frame's conditions were identical to 0.01 dB.
 *
 * Evaluation per held-out frame through the inference pipeline render uses (DiffTalkPipeline.fromCheckpoint: EMA UNet, pinned
 * first stage; pipelineInputs → prepare, sample, decode), as DiffTalk infers (scripts/inference.py): the jaw-polygon latent
 * mask (ground-truth latent kept outside it), the test-masked target (rows ≥ mask_row_test set to −1), the reference
 * frame of the dataset's ref_frame_index, the frame's audio and landmarks; decode with the first stage. PSNR (data
 * range 2 on [-1, 1] images, i.e. the usual 8-bit PSNR) against the ground-truth frame at the model's size, on the
 * mouth crop: the box of iBUG points 48–67 (stored landmarks_68) scaled to 32 px, widened by 25 % of its size per side.
 *   (a) the DDIM sample (10 steps, 2 noise seeds per frame);
 *   (b) baseline: the target frame with the reference frame's mouth crop pasted in (so its crop is the reference's);
 *   (c) the first stage's reconstruction of the target (upper bound for anything decoded by it);
 *   (d) control: the reference frame passed through the first stage (the paste baseline with the decoder's smoothing);
 *   (e) ablation: (a) with the audio AND landmarks of another held-out frame (160 + (f − 160 + 20) mod 40), everything
 *       else (latents, masks, reference, noise seeds) identical;
 *   (f) the same pair compared in latent space: MSE of the sampled latent to the target's latent on the generated cells;
 *   (e2) contrast ablation: as (e) but the partner is the held-out frame whose inner-lip opening (iBUG 62–66 over the
 *       36–45 eye-corner distance, from the frame's own landmarks) differs most — open mouths get a closed mouth's
 *       audio and vice versa (mean opening gap 0.13). The 39 conditioning landmarks exclude the mouth, so only the
 *       audio tells the model the opening. Also decoded without the codebook snap, as a diagnostic.
 * Denoising ablation: the EMA UNet's ε-MSE on the jaw-polygon latent cells of the held-out frames (20 timesteps
 * 25, 75, …, 975, seeded noise) with the frame's own conditions vs those of the frame 20 apart, as in (e), and vs the
 * contrast partner's, as in (e2).
 *
 * Asserted: (a) > (b); (a) > (d) + 1 dB; denoising ε-MSE with mismatched conditions > 1.015 × with the frame's own, and
 * own lower on > 55 % of the 800 frame×timestep pairs; with the contrast partner's conditions > 1.03 × and own lower on
 * > 60 %.
 *
 * Measured (2 shared CPU cores, machine otherwise near idle; 660–700 s per run: prep 7 s, autoencoder ~155 s, LDM
 * ~480 s, evaluation ~30 s), training seed 23 (default; identical on a rerun) / seed 7 (DIFFTALK_QUALITY_SEED=7):
 *   AE val L1 0.099 / 0.097; LDM loss 0.83 → 0.019 (val 0.019) / 0.83 → 0.012 (val 0.028);
 *   (a) 18.97 / 20.03 dB, (b) 15.58 / 15.58, (c) 19.59 / 21.63, (d) 17.05 / 16.68, (e) 19.01 / 20.01;
 *   (a) > (d) on 72/80 and 77/80 frame×seed pairs;
 *   (f) own 0.0262 vs mismatched 0.0269 (ratio 1.025, own closer on 46/80) / 0.0257 vs 0.0262 (1.019, 59/80);
 *   denoising ε-MSE own 0.0189 vs mismatched 0.0208 (ratio 1.098, own lower on 535/800) / 0.0166 vs 0.0173 (1.040, 485/800);
 *   contrast: denoising ε-MSE own 0.0189 vs 0.0233 (ratio 1.23, own lower on 533/800) / 0.0166 vs 0.0178 (1.07, 589/800);
 *   sampled jaw latents own 0.0262 vs 0.0285 (own closer on 46/80) / 0.0257 vs 0.0261 (52/80); (e2) 19.01 / 20.00 dB
 *   vs (a) 18.97 / 20.03 dB; decoded without quantisation (a) vs (e2) 20.12 vs 20.10 dB (seed 7).
 * What this shows, honestly:
 * - The sample beats the reference's mouth even after the same decoder (a − d = 1.9 / 3.4 dB): the inpainted mouth
 *   follows the TARGET frame, not the reference. But this gain can come from the target's visible context (the kept
 *   ground-truth latent around the jaw polygon — a few of its cells lie in the mouth box's upper margin — and the
 *   masked upper face), not necessarily from audio/landmarks.
 * - The model does read its audio+landmark conditions, and on held-out frames the true ones predict the jaw-region
 *   latents better than another frame's: the denoising ablation (4–10 % lower ε-MSE) is asserted.
 * - In the SAMPLES that effect is small: sampled jaw latents are only ~2 % closer to the target's with the true
 *   conditions, and after the quantised decode the mouth-crop PSNR does not change measurably ((a) ≈ (e) within
 *   0.05 dB, either sign), also for the contrast partner, and also without the codebook snap — so the quantiser is not
 *   what hides it. So this test does NOT show that the sampled mouth shape is driven by the audio; at this size
 *   and budget the sample is dominated by the visible context and the reference. Not asserted for that reason.
 * Tried and not better: an ε-loss weight on the jaw cells (5×) with lr 2e-3 + cosine (no condition effect at all);
 * 25 DDIM steps instead of 10 (same); LDM 300 instead of 500 steps (denoising ratio 1.03, sample effect ≈ 0).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { AOC_CLIP, MODELS, tmpDir } from '../helpers.js';
import { initBackend, tf } from '../../src/util/tf.js';
import { DEFAULT_PREP_CONFIG, runPrep } from '../../src/prep/pipeline.js';
import { DEFAULT_TRAIN } from '../../src/train/core.js';
import { trainAutoencoder } from '../../src/train/autoencoder.js';
import { DEFAULT_LDM, pipelineInputs, trainLdm } from '../../src/train/ldm.js';
import { latentJawMask } from '../../src/models/conditions.js';
import { buildLatentCache, datasetInfo, disposeBatch, makeLdmBatch, readConditions, sampleIndex, type SampleRef } from '../../src/train/data.js';
import { vqDecode, vqDecodeUnquantized, vqEncode } from '../../src/models/vq-f4.js';
import { DiffTalkPipeline, disposePrepared } from '../../src/models/pipeline.js';

// DIFFTALK_QUALITY_SEED changes the training seed (used to measure the spread quoted above).
const SEED = Number(process.env.DIFFTALK_QUALITY_SEED ?? 23);
const AE = { steps: 200, batchSize: 2, lr: 3e-3, mouthWeight: 4 };
const LDM = { steps: 500, batchSize: 16, lr: 1e-3 };
const SAMPLE_STEPS = 10;
const NOISE_SEEDS = 2;
const SHIFT = 20;
const HOLDOUT = DEFAULT_TRAIN.holdoutFraction;

/** Mouth box (iBUG 48–67) of a frame in model-image pixels: [x0, y0, x1, y1), widened by 25 % per side, clamped. */
function mouthBox(lm68: Float32Array, frameSize: number, imageSize: number): [number, number, number, number] {
  let x0 = Infinity,
    y0 = Infinity,
    x1 = -Infinity,
    y1 = -Infinity;
  for (let p = 48; p <= 67; p++) {
    const x = (lm68[2 * p]! * imageSize) / frameSize;
    const y = (lm68[2 * p + 1]! * imageSize) / frameSize;
    x0 = Math.min(x0, x);
    x1 = Math.max(x1, x);
    y0 = Math.min(y0, y);
    y1 = Math.max(y1, y);
  }
  const mx = 0.25 * (x1 - x0);
  const my = 0.25 * (y1 - y0);
  const c = (v: number) => Math.max(0, Math.min(imageSize, v));
  return [c(Math.floor(x0 - mx)), c(Math.floor(y0 - my)), c(Math.ceil(x1 + mx)), c(Math.ceil(y1 + my))];
}

/** Inner-lip opening of a frame: distance of iBUG 62 (upper inner lip) to 66 (lower inner lip) over the 36–45 eye-corner distance. */
function mouthOpening(lm68: Float32Array): number {
  const d = (a: number, b: number) => Math.hypot(lm68[2 * a]! - lm68[2 * b]!, lm68[2 * a + 1]! - lm68[2 * b + 1]!);
  return d(62, 66) / d(36, 45);
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

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const secs = (a: number, b: number) => `${((b - a) / 1000).toFixed(0)} s`;

test(
  'held-out frames of the training clip: a sampled mouth beats the reference mouth (pasted, and through the first stage), and its true audio+landmarks denoise the jaw latents better than mismatched ones (another frame, and the frame with the most different mouth opening)',
  { timeout: 2_400_000 },
  async (t) => {
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
    const aeRun = await trainAutoencoder({
      ...DEFAULT_TRAIN,
      dataset,
      out: ae,
      preset: 'tiny',
      seed: SEED,
      steps: AE.steps,
      batchSize: AE.batchSize,
      lr: AE.lr,
      lrSchedule: 'cosine',
      mouthWeight: AE.mouthWeight,
      checkpointEvery: AE.steps,
      validateEvery: AE.steps,
      sampleEvery: AE.steps,
    });
    const t2 = performance.now();
    const ldmRun = await trainLdm({
      ...DEFAULT_LDM,
      dataset,
      out: ldm,
      firstStage: ae,
      cacheDir,
      preset: 'tiny',
      seed: SEED,
      steps: LDM.steps,
      batchSize: LDM.batchSize,
      lr: LDM.lr,
      normalizeConditions: true,
      emaDecay: 0.999,
      checkpointEvery: LDM.steps,
      validateEvery: LDM.steps,
      sampleEvery: LDM.steps,
      sampleSteps: SAMPLE_STEPS,
    });
    const t3 = performance.now();
    assert.equal(ldmRun.trainSamples, 160); // frames 0…159: the last 20 % are held out and never trained on
    assert.ok(ldmRun.lastLoss < 0.2 * ldmRun.firstLoss, `LDM loss ${ldmRun.firstLoss} → ${ldmRun.lastLoss}`);

    // Evaluation frames: the held-out tail (frames ≥ floor(200 · 0.8)), as the trainer's validation split.
    const info = await datasetInfo(dataset);
    const clips = await readConditions(info, 'all');
    const evalSet = sampleIndex(clips).filter((s) => s.frame >= Math.floor(s.clip.frames * (1 - HOLDOUT)));
    assert.equal(evalSet.length, 40);
    const first = evalSet[0]!.frame;
    const mismatched = (s: SampleRef): SampleRef => ({ clip: s.clip, frame: first + ((s.frame - first + SHIFT) % evalSet.length) });
    // contrast partner: the held-out frame whose mouth opening (from its own landmarks) differs most from this frame's
    const opening = new Map(evalSet.map((s) => [s.frame, mouthOpening(s.clip.landmarks68.subarray(s.frame * 136, (s.frame + 1) * 136))]));
    const contrast = (s: SampleRef): SampleRef => {
      const o = opening.get(s.frame)!;
      let best = evalSet[0]!;
      for (const c of evalSet) if (Math.abs(opening.get(c.frame)! - o) > Math.abs(opening.get(best.frame)! - o)) best = c;
      return { clip: s.clip, frame: best.frame };
    };
    const meanOpeningGap = mean(evalSet.map((s) => Math.abs(opening.get(s.frame)! - opening.get(contrast(s).frame)!)));
    // the inference pipeline render uses: the checkpoint's model, its EMA UNet and its pinned first stage
    const loaded = await DiffTalkPipeline.fromCheckpoint(ldm);
    const pipe = loaded.pipeline;
    assert.ok(loaded.ema, 'the checkpoint has an EMA UNet');
    const { model, firstStage: fs, scheduler, config } = pipe;
    const ema = pipe.unet;
    assert.ok(config.conditionNorm, 'the checkpoint carries the condition standardisation');
    const S = config.imageSize;
    const cache = await buildLatentCache(info, clips, fs, S, cacheDir);
    const [lh] = cache.latentShape;

    const psnr = {
      sample: [] as number[],
      baseline: [] as number[],
      recon: [] as number[],
      refRecon: [] as number[],
      wrong: [] as number[],
      contrast: [] as number[],
      sampleUnq: [] as number[],
      contrastUnq: [] as number[],
    };
    const latent = { sample: [] as number[], wrong: [] as number[], contrast: [] as number[] };
    const P = S * S * 3;
    for (let i = 0; i < evalSet.length; i += 8) {
      const samples = evalSet.slice(i, i + 8);
      const inp = await pipelineInputs(pipe, samples, info);
      const batch = makeLdmBatch(samples, cache, info.audio);
      const wrong = makeLdmBatch(samples.map(mismatched), cache, info.audio);
      const opposite = makeLdmBatch(samples.map(contrast), cache, info.audio);
      const boxes = samples.map((s) => mouthBox(s.clip.landmarks68.subarray(s.frame * 136, (s.frame + 1) * 136), info.size, S));
      const score = (img: Float32Array, out: number[]) =>
        samples.forEach((_, j) => out.push(cropPsnr(img.subarray(j * P, (j + 1) * P), inp.gt[j]!, S, boxes[j]!)));
      // (a) and (e): one entry per frame and noise seed, frame-major
      const perSeed = { sample: [] as number[][], wrong: [] as number[][], contrast: [] as number[][] };
      const generated = tf.sub(1, inp.cond.mask); // 1 on the jaw-polygon cells that are sampled
      for (let k = 0; k < NOISE_SEEDS; k++) {
        /** Sample with these conditions; score the decoded mouth into `scores` (and, if given, the unquantised decode). */
        const sampleWith = async (audio: tf.Tensor4D, landmarks: tf.Tensor3D, latentErr: number[], scores: number[], unquantisedScores?: number[]) => {
          const z = pipe.sample({
            zGt: batch.z,
            zMasked: inp.cond.zMasked,
            zRef: batch.zRef,
            audio,
            landmarks,
            mask: inp.cond.mask,
            steps: SAMPLE_STEPS,
            seed: 7 + i + 1000 * k,
          });
          // (f) the sampled latent's MSE to the target's latent on the generated cells (before the quantised decode)
          latentErr.push(
            ...(tf
              .tidy(() => tf.div(tf.sum(tf.mul(tf.square(tf.sub(z, batch.z)), generated), [1, 2, 3]), tf.mul(tf.sum(generated, [1, 2, 3]), 3)))
              .dataSync() as Float32Array),
          );
          score(await pipe.decode(z), scores);
          // diagnostic: the same latent decoded without the codebook snap (not what render writes)
          if (unquantisedScores)
            score(tf.tidy(() => tf.clipByValue(vqDecodeUnquantized(fs.params, fs.config, z), -1, 1)).dataSync() as Float32Array, unquantisedScores);
          z.dispose();
        };
        await sampleWith(batch.audio, batch.landmarks, latent.sample, (perSeed.sample[k] = []), psnr.sampleUnq);
        await sampleWith(wrong.audio, wrong.landmarks, latent.wrong, (perSeed.wrong[k] = []));
        await sampleWith(opposite.audio, opposite.landmarks, latent.contrast, (perSeed.contrast[k] = []), psnr.contrastUnq);
      }
      generated.dispose();
      samples.forEach((_, j) => {
        for (let k = 0; k < NOISE_SEEDS; k++) {
          psnr.sample.push(perSeed.sample[k]![j]!);
          psnr.wrong.push(perSeed.wrong[k]![j]!);
          psnr.contrast.push(perSeed.contrast[k]![j]!);
        }
      });
      const stack = (imgs: Float32Array[]) => tf.tensor4d(Float32Array.from(imgs.flatMap((g) => [...g])), [samples.length, S, S, 3]);
      const reconOf = (imgs: Float32Array[]) =>
        tf.tidy(() => tf.clipByValue(vqDecode(fs.params, fs.config, vqEncode(fs.params, fs.config, stack(imgs))), -1, 1)).dataSync() as Float32Array;
      score(reconOf(inp.gt), psnr.recon);
      // (d) the reference's mouth passed through the first stage: the paste baseline with the same decoder blur as (a)
      score(reconOf(inp.ref), psnr.refRecon);
      // (b) the target with the reference's mouth crop pasted in — inside the box it is the reference frame
      samples.forEach((_, j) => psnr.baseline.push(cropPsnr(inp.ref[j]!, inp.gt[j]!, S, boxes[j]!)));
      disposePrepared(inp.cond);
      disposeBatch(batch);
      disposeBatch(wrong);
      disposeBatch(opposite);
    }
    const t4 = performance.now();

    // Denoising ablation on the held-out frames: ε-MSE on the jaw-polygon cells, own vs mismatched conditions.
    const batch = makeLdmBatch(evalSet, cache, info.audio);
    const wrong = makeLdmBatch(evalSet.map(mismatched), cache, info.audio);
    const opposite = makeLdmBatch(evalSet.map(contrast), cache, info.audio);
    const jaw = tf.tensor4d(
      Float32Array.from(
        evalSet.flatMap((s) => Array.from(latentJawMask(s.clip.landmarks68.subarray(s.frame * 136, (s.frame + 1) * 136), info.size, lh), (m) => 1 - m)),
      ),
      [evalSet.length, lh, lh, 1],
    );
    const ctxTrue = model.context(batch.audio, batch.landmarks);
    const ctxWrong = model.context(wrong.audio, wrong.landmarks);
    const ctxContrast = model.context(opposite.audio, opposite.landmarks);
    const mse = { true: [] as number[], wrong: [] as number[], contrast: [] as number[] };
    for (let k = 0; k < 20; k++) {
      const step = 25 + 50 * k;
      tf.tidy(() => {
        const noise = tf.randomNormal(batch.z.shape, 0, 1, 'float32', 100 + k) as tf.Tensor4D;
        const zt = scheduler.addNoise(batch.z, noise, Array(evalSet.length).fill(step));
        const ts = tf.fill([evalSet.length], step, 'int32') as tf.Tensor1D;
        const jawMse = (ctx: tf.Tensor3D) =>
          tf
            .div(
              tf.sum(tf.mul(tf.square(tf.sub(model.eps(zt, batch.zMasked, batch.zRef, ts, ctx, ema), noise)), jaw), [1, 2, 3]),
              tf.mul(tf.sum(jaw, [1, 2, 3]), 3),
            )
            .dataSync() as Float32Array;
        mse.true.push(...jawMse(ctxTrue));
        mse.wrong.push(...jawMse(ctxWrong));
        mse.contrast.push(...jawMse(ctxContrast));
      });
    }
    tf.dispose([jaw, ctxTrue, ctxWrong, ctxContrast]);
    disposeBatch(batch);
    disposeBatch(wrong);
    disposeBatch(opposite);
    const t5 = performance.now();

    const wins = (a: number[], b: number[], lower = false) => a.filter((v, k) => (lower ? v < b[k]! : v > b[k]!)).length;
    const ratio = mean(mse.wrong) / mean(mse.true);
    const latentRatio = mean(latent.wrong) / mean(latent.sample);
    const latentWins = wins(latent.sample, latent.wrong, true);
    t.diagnostic(
      `seed ${SEED}; prep ${secs(t0, t1)}; autoencoder ${AE.steps} steps (batch ${AE.batchSize}, lr ${AE.lr} cosine, mouthWeight ${AE.mouthWeight}) ${secs(t1, t2)}, L1 ${aeRun.firstLoss.toFixed(3)} → ${aeRun.lastLoss.toFixed(3)}, val L1 ${aeRun.valLoss?.toFixed(3)}`,
    );
    t.diagnostic(
      `ldm ${LDM.steps} steps (batch ${LDM.batchSize}, lr ${LDM.lr}, normalised conditions) ${secs(t2, t3)}, loss ${ldmRun.firstLoss.toFixed(3)} → ${ldmRun.lastLoss.toFixed(3)}, val ${ldmRun.valLoss?.toFixed(3)}; sampling eval ${secs(t3, t4)}, denoising eval ${secs(t4, t5)}; total ${secs(t0, t5)}`,
    );
    t.diagnostic(
      `mouth-crop PSNR, held-out frames 160–199 (${NOISE_SEEDS} noise seeds × ${SAMPLE_STEPS} DDIM steps): (a) sample ${mean(psnr.sample).toFixed(2)} dB, (b) reference-mouth paste ${mean(psnr.baseline).toFixed(2)} dB, (c) first-stage reconstruction ${mean(psnr.recon).toFixed(2)} dB, (d) reference through the first stage ${mean(psnr.refRecon).toFixed(2)} dB, (e) sample with mismatched audio+landmarks ${mean(psnr.wrong).toFixed(2)} dB`,
    );
    const perFrame = (xs: number[]) => xs.flatMap((v) => Array<number>(NOISE_SEEDS).fill(v));
    t.diagnostic(
      `(a) > (b) on ${wins(psnr.sample, perFrame(psnr.baseline))}, (a) > (d) on ${wins(psnr.sample, perFrame(psnr.refRecon))}, (a) > (e) on ${wins(psnr.sample, psnr.wrong)}/${psnr.sample.length} frame×seed pairs; (f) sampled jaw-cell latent MSE to the target's latent: own conditions ${mean(latent.sample).toFixed(4)}, mismatched ${mean(latent.wrong).toFixed(4)} (ratio ${latentRatio.toFixed(3)}, own lower on ${latentWins}/${latent.sample.length})`,
    );
    t.diagnostic(
      `contrast ablation (partner = the held-out frame whose inner-lip opening differs most; mean gap ${meanOpeningGap.toFixed(3)} of the eye-corner distance): (e2) sample PSNR ${mean(psnr.contrast).toFixed(2)} dB vs (a) ${mean(psnr.sample).toFixed(2)} dB, (a) > (e2) on ${wins(psnr.sample, psnr.contrast)}/${psnr.sample.length}; latent MSE own ${mean(latent.sample).toFixed(4)} vs ${mean(latent.contrast).toFixed(4)} (own lower on ${wins(latent.sample, latent.contrast, true)}/${latent.sample.length}); denoising ε-MSE own ${mean(mse.true).toFixed(4)} vs ${mean(mse.contrast).toFixed(4)} (own lower on ${wins(mse.true, mse.contrast, true)}/${mse.true.length}); decoded without quantisation: own ${mean(psnr.sampleUnq).toFixed(2)} vs contrast ${mean(psnr.contrastUnq).toFixed(2)} dB (own higher on ${wins(psnr.sampleUnq, psnr.contrastUnq)}/${psnr.sampleUnq.length})`,
    );
    t.diagnostic(
      `denoising: jaw-cell ε-MSE own ${mean(mse.true).toFixed(4)} vs mismatched ${mean(mse.wrong).toFixed(4)} conditions (ratio ${ratio.toFixed(3)}, own lower on ${wins(mse.true, mse.wrong, true)}/${mse.true.length})`,
    );
    model.dispose();
    ema.dispose();
    fs.params.dispose();
    assert.ok(mean(psnr.sample) > mean(psnr.baseline), `(a) ${mean(psnr.sample).toFixed(2)} dB ≤ (b) ${mean(psnr.baseline).toFixed(2)} dB`);
    assert.ok(mean(psnr.sample) > mean(psnr.refRecon) + 1, `(a) ${mean(psnr.sample).toFixed(2)} dB is not 1 dB above (d) ${mean(psnr.refRecon).toFixed(2)} dB`);
    const denoiseWins = wins(mse.true, mse.wrong, true);
    assert.ok(
      ratio > 1.015 && denoiseWins > 0.55 * mse.true.length,
      `ε-MSE with mismatched conditions is only ${ratio.toFixed(3)}× that with the frame's own (own lower on ${denoiseWins}/${mse.true.length})`,
    );
    const contrastRatio = mean(mse.contrast) / mean(mse.true);
    const contrastWins = wins(mse.true, mse.contrast, true);
    assert.ok(
      contrastRatio > 1.03 && contrastWins > 0.6 * mse.true.length,
      `ε-MSE with the contrast partner's conditions is only ${contrastRatio.toFixed(3)}× that with the frame's own (own lower on ${contrastWins}/${mse.true.length})`,
    );
    // (e), (e2) and (f) are reported, not asserted: see the header comment
  },
);
