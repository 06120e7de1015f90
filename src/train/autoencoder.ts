/**
 * The VQ first stage (encoder, codebook, decoder) as a TrainableModel on a dataset's frames at the preset's imageSize;
 * the loop is core.ts. Loss = |x − x̂|₁ + ‖sg(z) − z_q‖² + 0.25·‖z − sg(z_q)‖² (VQGAN's reconstruction + codebook +
 * commitment terms). Not included: VQGAN's LPIPS perceptual term and patch discriminator — this trainer is for small
 * experiments and tests; for the paper setup load LDM's released vq-f4 instead. The codebook is initialised from
 * encoder outputs of a seeded batch (the init hook: avoids dead codes with few steps). Frames are decoded once and
 * kept in memory.
 */
import path from 'node:path';
import { tf } from '../util/tf.js';
import { DifftalkError } from '../util/errors.js';
import { silent } from '../util/events.js';
import { mulberry32 } from '../util/random.js';
import { datasetInfo, iterateClipImages, readConditions, splitSamples } from './data.js';
import { jawPolygon, rasterizeMask } from '../face/masks.js';
import { LM68_VALUES } from '../face/ibug68.js';
import { Params, stopGradient } from '../models/blocks.js';
import { vqDecode, vqDecodeUnquantized, vqEncode, vqParamSpecs } from '../models/vq-f4.js';
import { resolveConfig, type DifftalkConfig } from '../models/presets.js';
import type { GridRow } from './report.js';
import { BatchOrder, hash, openRun, readScalar, runTraining, type CommonTrainOptions, type RunState, type TrainableModel, type TrainResult } from './core.js';

export interface TrainAutoencoderOptions extends CommonTrainOptions {
  maxFrames?: number;
  /**
   * Extra weight of the L1 reconstruction term inside each frame's jaw polygon (iBUG 2…14 + 33, the region the LDM
   * inpaints): per-pixel weight 1 + mouthWeight there, 1 elsewhere, normalised to mean 1 per batch. 0 (default): plain
   * L1 as VQGAN. Small first stages otherwise spend their few steps on the large, easy areas and blur the mouth.
   */
  mouthWeight?: number;
}

export async function trainAutoencoder(o: TrainAutoencoderOptions): Promise<TrainResult> {
  const onEvent = o.onEvent ?? silent;
  const saved = await openRun<RunState<DifftalkConfig>>(o, 'autoencoder');
  const info = await datasetInfo(o.dataset);
  const config = saved?.state.config ?? resolveConfig(o.preset, { winSize: info.audio.window, featureDim: info.audio.dim });
  const S = config.imageSize;
  const clips = await readConditions(info, 'all', onEvent);
  const { train, val } = splitSamples(clips, o.holdoutFraction, o.valSamples, onEvent);
  const keep = new Set([...train, ...val].map((s) => `${s.clip.id}/${s.frame}`));
  const images = new Map<string, Float32Array>();
  for await (const f of iterateClipImages(info, S)) {
    const k = `${f.clipId}/${f.frameIndex}`;
    if (keep.has(k)) images.set(k, f.image);
  }
  for (const s of [...train, ...val])
    if (!images.has(`${s.clip.id}/${s.frame}`))
      throw new DifftalkError('dataset-mismatch', `clip '${s.clip.id}' frame ${s.frame} has conditions but no image row in the shards`, {
        suggestion: 'dataset.json and the shards disagree; rerun `difftalk prep` into a new folder',
      });
  const trainRefs = train.slice(0, o.maxFrames ?? Infinity);
  const trainImgs = trainRefs.map((s) => images.get(`${s.clip.id}/${s.frame}`)!);
  const mouthWeight = o.mouthWeight ?? 0;
  // per-pixel L1 weights (S², 1 + mouthWeight inside the jaw polygon), only when asked for
  const trainWeights = mouthWeight
    ? trainRefs.map((s) =>
        Float32Array.from(
          rasterizeMask(jawPolygon(s.clip.landmarks68.subarray(s.frame * LM68_VALUES, (s.frame + 1) * LM68_VALUES)), S, { scale: S / info.size }),
          (v) => (v ? 1 : 1 + mouthWeight),
        ),
      )
    : undefined;
  const valImgs = val.map((s) => images.get(`${s.clip.id}/${s.frame}`)!);

  const params = new Params(vqParamSpecs(config.vq), 'init', o.seed);
  if (saved) params.loadTorch(saved.model, { source: saved.dir });
  const P = S * S * 3;
  const stack = (arr: readonly Float32Array[]) => {
    const out = new Float32Array(arr.length * P);
    arr.forEach((a, i) => out.set(a, i * P));
    return tf.tensor4d(out, [arr.length, S, S, 3]);
  };
  const lossOf = (x: tf.Tensor4D, weights?: tf.Tensor4D) => {
    const z = vqEncode(params, config.vq, x);
    const e = params.get('quantize.embedding.weight') as unknown as tf.Tensor2D;
    const [b, h, w, d] = z.shape;
    const zf = z.reshape([-1, d]) as tf.Tensor2D;
    const idx = tf.argMin(
      tf.sub(tf.add(tf.sum(tf.square(zf), 1, true), tf.sum(tf.square(e), 1).reshape([1, -1])), tf.mul(tf.matMul(zf, e, false, true), 2)),
      1,
    );
    const codes = tf.matMul(tf.oneHot(idx, config.vq.nEmbed).toFloat(), e).reshape([b, h, w, d]); // one-hot matMul: gather's gradient kernel is missing on wasm
    const codebook = tf.mean(tf.square(tf.sub(codes, stopGradient(z))));
    const commit = tf.mean(tf.square(tf.sub(z, stopGradient(codes))));
    const zq = tf.add(z, stopGradient(tf.sub(codes, z))) as tf.Tensor4D; // straight-through estimator
    const err = tf.abs(tf.sub(x, vqDecodeUnquantized(params, config.vq, zq)));
    const rec = weights ? tf.div(tf.mean(tf.mul(err, weights)), tf.mean(weights)) : tf.mean(err);
    return tf.addN([rec, codebook, tf.mul(commit, 0.25)]) as tf.Scalar;
  };
  const order = new BatchOrder(trainImgs.length, o.seed);
  const B = o.batchSize;
  const trainable: TrainableModel<DifftalkConfig> = {
    config,
    record: { dataset: path.resolve(o.dataset) },
    stage: 'train-autoencoder',
    describe: `autoencoder ${config.preset}: ${params.count().toLocaleString('en')} params, ${trainImgs.length} train / ${valImgs.length} val frames`,
    curveTitle: `autoencoder loss (${config.preset})`,
    vars: params.vars,
    batchSize: B,
    trainSamples: trainImgs.length,
    valSamples: valImgs.length,
    async init() {
      // codebook init from encoder outputs of a seeded batch of frames
      const rnd = mulberry32(hash(o.seed, 'codebook'));
      const pick = Array.from({ length: Math.min(trainImgs.length, 16) }, () => trainImgs[Math.floor(rnd() * trainImgs.length)]!);
      const z = tf.tidy(() => vqEncode(params, config.vq, stack(pick)).reshape([-1, config.vq.embedDim]));
      const zs = (await z.data()) as Float32Array;
      const n = config.vq.nEmbed;
      const d = config.vq.embedDim;
      const cb = new Float32Array(n * d);
      for (let i = 0; i < n; i++) {
        const j = Math.floor(rnd() * (zs.length / d));
        for (let k = 0; k < d; k++) cb[i * d + k] = zs[j * d + k]! + (rnd() - 0.5) * 1e-3;
      }
      params.get('quantize.embedding.weight').assign(tf.tensor2d(cb, [n, d]));
      z.dispose();
    },
    loss(step, k) {
      const p0 = ((step - 1) * o.accumulate + k) * B;
      const idx = Array.from({ length: B }, (_, j) => order.index(p0 + j));
      let weights: tf.Tensor4D | undefined;
      if (trainWeights) {
        const w = new Float32Array(B * S * S);
        idx.forEach((i, j) => w.set(trainWeights[i]!, j * S * S));
        weights = tf.tensor4d(w, [B, S, S, 1]);
      }
      return lossOf(stack(idx.map((i) => trainImgs[i]!)), weights);
    },
    validation: {
      metric: 'val/l1_quantized',
      async run() {
        if (!valImgs.length) return NaN;
        let s = 0;
        for (let i = 0; i < valImgs.length; i += B) {
          const chunk = valImgs.slice(i, i + B);
          s += await readScalar(
            tf.tidy(() => tf.mean(tf.abs(tf.sub(stack(chunk), vqDecode(params, config.vq, vqEncode(params, config.vq, stack(chunk)))))).mul(chunk.length)),
          );
        }
        return s / valImgs.length;
      },
    },
    async sampleGrid() {
      if (!valImgs.length) return undefined;
      const chunk = valImgs.slice(0, 4);
      const rec = tf.tidy(() => tf.clipByValue(vqDecode(params, config.vq, vqEncode(params, config.vq, stack(chunk))), -1, 1));
      const d = (await rec.data()) as Float32Array;
      rec.dispose();
      const rows: GridRow[] = chunk.map((img, i) => ({
        label: `validation frame ${i}`,
        cells: [
          { title: 'target', rgb: img, size: S },
          { title: 'reconstruction', rgb: d.slice(i * P, (i + 1) * P), size: S },
        ],
      }));
      return { rows, title: 'autoencoder reconstructions' };
    },
    weights: () => params.toTorchAsync(),
    dispose: () => params.dispose(),
  };
  return (await runTraining(o, 'autoencoder', saved, trainable)).result;
}
