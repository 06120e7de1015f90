/**
 * DiffTalk's conditional LDM (UNet + audio/landmark encoders) as a TrainableModel on cached first-stage latents; the
 * loop is core.ts. Loss = MSE(ε̂, ε) over the whole latent, t ~ U{0..T−1} (difftalk-reference.md §2.6);
 * AdamW(0.9, 0.999, wd 0.01), lr = base_lr × batch × accumulate (paper: 1e-6 × 8 × 8 GPUs = 6.4e-5), global grad-norm
 * clip 0.1, EMA on the UNet. Validation and sample grids use the EMA UNet (the reference monitors val/loss_simple_ema).
 */
import path from 'node:path';
import { tf } from '../util/tf.js';
import { DifftalkError } from '../util/errors.js';
import { silent } from '../util/events.js';
import { mulberry32 } from '../util/random.js';
import { AUDIO_CONTEXT, audioContext } from '../models/conditions.js';
import {
  buildLatentCache,
  conditionStats,
  datasetInfo,
  disposeBatch,
  makeLdmBatch,
  readConditions,
  readFrameImages,
  splitSamples,
  type DatasetInfo,
  type SampleRef,
} from './data.js';
import { loadFirstStage, loadPinnedFirstStage, pinFirstStage, type FirstStage, type FirstStagePin } from '../models/first-stage.js';
import { Params } from '../models/blocks.js';
import { DifftalkModel, PREFIX } from '../models/difftalk.js';
import { Ema } from './optim.js';
import { DiffTalkPipeline, disposePrepared, LM68_VALUES, type PipelineFrame, type Prepared } from '../models/pipeline.js';
import { resolveConfig, type DifftalkConfig } from '../models/presets.js';
import type { GridRow } from './report.js';
import { initFromTorch } from './init.js';
import { DdimScheduler } from '../models/schedulers/ddim.js';
import {
  BatchOrder,
  DEFAULT_TRAIN,
  hash,
  openRun,
  readScalar,
  runTraining,
  type CommonTrainOptions,
  type RunState,
  type TrainableModel,
  type TrainResult,
} from './core.js';

export interface TrainLdmOptions extends CommonTrainOptions {
  /** Autoencoder run / checkpoint, or LDM vq-f4 weights file. */
  firstStage: string;
  audioFeature?: string;
  emaDecay: number;
  /** DDIM steps for the sample grid. */
  sampleSteps: number;
  /** Latent cache folder (default <out>/latents). */
  cacheDir?: string;
  /**
   * Standardise audio features and landmarks with the training frames' per-dimension mean/std before their encoders
   * (saved in the config; see ConditionNorm). Default false: raw conditions, as the reference.
   */
  normalizeConditions?: boolean;
  /** A new run starts from this PyTorch DiffTalk checkpoint (reference state_dict names; see init.ts). */
  init?: string;
}

export const DEFAULT_LDM = { ...DEFAULT_TRAIN, emaDecay: 0.9999, sampleSteps: 50 };

/** state.json of an LDM run: the first stage pinned by content hash (first-stage.ts), the dataset it trained on. */
type LdmState = RunState<DifftalkConfig> & { firstStage?: FirstStagePin; dataset?: string; options: { audioFeature?: string } };

export async function trainLdm(o: TrainLdmOptions): Promise<TrainResult> {
  const onEvent = o.onEvent ?? silent;
  if (o.init !== undefined && o.resume) throw new DifftalkError('bad-flag', '--init starts a new run; a resumed run continues from its own checkpoint');
  if (o.init !== undefined && o.normalizeConditions)
    throw new DifftalkError('bad-flag', '--init with --normalize-conditions: the PyTorch weights were trained on raw conditions', {
      suggestion: 'drop --normalize-conditions',
    });
  const saved = await openRun<LdmState>(o, 'ldm');

  // data + first stage
  const info = await datasetInfo(o.dataset, saved?.state.options.audioFeature ?? o.audioFeature);
  const base = resolveConfig(o.preset, { winSize: info.audio.window, featureDim: info.audio.dim });
  // the first stage: pinned by hash (an autoencoder checkpoint is copied into the run, see first-stage.ts)
  let fs: FirstStage;
  let pin: FirstStagePin;
  if (saved) {
    if (!saved.state.firstStage) throw new DifftalkError('checkpoint-corrupt', `${saved.dir}/state.json does not name its first stage`);
    pin = saved.state.firstStage;
    fs = await loadPinnedFirstStage(o.out, pin, { vq: base.vq, imageSize: base.imageSize });
  } else {
    fs = await loadFirstStage(path.resolve(o.firstStage), { vq: base.vq, imageSize: base.imageSize });
    pin = await pinFirstStage(o.out, fs);
  }
  const config: DifftalkConfig = saved?.state.config ?? {
    ...base,
    vq: fs.config,
    imageSize: fs.imageSize,
    unet: { ...base.unet, imageSize: fs.imageSize / 2 ** (fs.config.chMult.length - 1) },
  };
  const clips = await readConditions(info, 'all', onEvent);
  const { train, val } = splitSamples(clips, o.holdoutFraction, o.valSamples, onEvent);
  if (!saved && o.normalizeConditions) config.conditionNorm = conditionStats(train, info.audio);
  const cache = await buildLatentCache(info, clips, fs, config.imageSize, o.cacheDir ?? path.join(o.out, 'latents'), { onEvent });

  // model, scheduler, EMA
  const model = new DifftalkModel(config, 'init', o.seed);
  const scheduler = new DdimScheduler(config.schedule);
  const ema = new Ema(model.unet.vars, o.emaDecay);
  const emaUnet = Params.view(model.unet.specs, ema.shadow);
  if (saved) {
    if (Boolean(o.normalizeConditions) !== Boolean(config.conditionNorm))
      onEvent({
        type: 'log',
        level: 'warn',
        message: `normalizeConditions = ${Boolean(o.normalizeConditions)} ignored: the run's saved config ${config.conditionNorm ? 'standardises' : 'does not standardise'} the conditions, and that is kept`,
      });
    model.load(saved.model, saved.dir);
    emaUnet.loadTorch(saved.model, { prefix: PREFIX.ema, source: saved.dir });
  }
  const pipe = new DiffTalkPipeline(model, emaUnet, fs);
  /** `--init`: weights (and the EMA, when the file has one) from a PyTorch DiffTalk checkpoint. */
  const initLdm = async (file: string): Promise<'keep-ema' | undefined> => {
    const r = await initFromTorch(file, model, emaUnet);
    ema.numUpdates = r.emaNumUpdates;
    onEvent({
      type: 'log',
      level: 'info',
      message: `initialised from ${file}: ${r.tensors} tensors${r.ema ? `, EMA after ${r.emaNumUpdates} updates` : ', EMA = weights'}`,
    });
    return r.ema ? 'keep-ema' : undefined;
  };

  const T = scheduler.numTrainTimesteps;
  const [lh, lw, lc] = cache.latentShape;
  const order = new BatchOrder(train.length, o.seed);
  const B = o.batchSize;
  const trainable: TrainableModel<DifftalkConfig> = {
    config,
    record: { firstStage: pin, dataset: path.resolve(o.dataset) },
    stage: 'train',
    describe: `LDM ${config.preset}: ${model.unet.count().toLocaleString('en')} UNet params, ${train.length} train / ${val.length} val frames`,
    curveTitle: `ldm loss (${config.preset})`,
    vars: model.trainable(),
    ema,
    batchSize: B,
    trainSamples: train.length,
    valSamples: val.length,
    loss(step, k) {
      const p0 = ((step - 1) * o.accumulate + k) * B;
      const samples = Array.from({ length: B }, (_, j) => train[order.index(p0 + j)]!);
      const rnd = mulberry32(hash(o.seed, 'micro', step, k));
      const ts = Array.from({ length: B }, () => Math.floor(rnd() * T));
      const batch = makeLdmBatch(samples, cache, info.audio);
      const noise = tf.randomNormal([B, lh, lw, lc], 0, 1, 'float32', hash(o.seed, 'noise', step, k)) as tf.Tensor4D;
      const zt = scheduler.addNoise(batch.z, noise, ts);
      const ctx = model.context(batch.audio, batch.landmarks);
      const eps = model.eps(zt, batch.zMasked, batch.zRef, tf.tensor1d(ts, 'int32'), ctx);
      const loss = tf.mean(tf.square(tf.sub(eps, noise))) as tf.Scalar;
      disposeBatch(batch);
      return loss;
    },
    validation: {
      metric: 'val/loss_simple_ema',
      async run() {
        if (!val.length) return NaN;
        let sum = 0;
        for (let i = 0; i < val.length; i += B) {
          const samples = val.slice(i, i + B);
          const rnd = mulberry32(hash(o.seed, 'val', i));
          const ts = samples.map(() => Math.floor(rnd() * T));
          sum += await readScalar(
            tf.tidy(() => {
              const batch = makeLdmBatch(samples, cache, info.audio);
              const noise = tf.randomNormal([samples.length, lh, lw, lc], 0, 1, 'float32', hash(o.seed, 'val-noise', i)) as tf.Tensor4D;
              const zt = scheduler.addNoise(batch.z, noise, ts);
              const eps = model.eps(zt, batch.zMasked, batch.zRef, tf.tensor1d(ts, 'int32'), model.context(batch.audio, batch.landmarks), emaUnet);
              return tf.sum(tf.mean(tf.square(tf.sub(eps, noise)), [1, 2, 3]));
            }),
          );
        }
        return sum / val.length;
      },
    },
    ...(o.init !== undefined ? { init: () => initLdm(o.init!) } : {}),
    sampleGrid: async () => ({
      rows: await ldmSampleRows(pipe, info, val.length ? val : train, o),
      title: 'LDM samples (EMA UNet, DDIM)',
    }),
    weights: async () =>
      new Map([
        ...(await model.unet.toTorchAsync(PREFIX.unet)),
        ...(await model.audioNet.toTorchAsync(PREFIX.audio)),
        ...(await model.audioAtt.toTorchAsync(PREFIX.audioAtt)),
        ...(await model.ldmNet.toTorchAsync(PREFIX.ldm)),
        ...(await emaUnet.toTorchAsync(PREFIX.ema)),
      ]),
    dispose() {
      model.dispose();
      ema.dispose();
      fs.params.dispose();
    },
  };
  return (await runTraining(o, 'ldm', saved, trainable)).result;
}

/**
 * Dataset frames as inputs of the inference pipeline: target images, reference images (the clip's ref_frame_index
 * frame) and, per frame, what `DiffTalkPipeline.prepare` needs (landmarks, test-time mask row, audio context of
 * `audioFrom(sample)`, by default the frame's own).
 */
export async function pipelineInputs(
  pipe: DiffTalkPipeline,
  samples: readonly SampleRef[],
  info: DatasetInfo,
  audioFrom: (s: SampleRef, i: number) => SampleRef = (s) => s,
): Promise<{ gt: Float32Array[]; ref: Float32Array[]; cond: Prepared }> {
  const S = pipe.config.imageSize;
  const wanted = new Map<string, Set<number>>();
  for (const s of samples) {
    const set = wanted.get(s.clip.id) ?? new Set<number>();
    set.add(s.frame);
    set.add(s.clip.refFrameIndex[s.frame]!);
    wanted.set(s.clip.id, set);
  }
  const images = await readFrameImages(info, wanted, S);
  const image = (id: string, f: number) => {
    const img = images.get(`${id}/${f}`);
    if (!img) throw new DifftalkError('dataset-mismatch', `clip '${id}' frame ${f} has conditions but no image row in the shards`);
    return img;
  };
  const gt = samples.map((s) => image(s.clip.id, s.frame));
  const ref = samples.map((s) => image(s.clip.id, s.clip.refFrameIndex[s.frame]!));
  const aw = AUDIO_CONTEXT * info.audio.window * info.audio.dim;
  const frames: PipelineFrame[] = samples.map((s, i) => {
    const a = audioFrom(s, i);
    const audio = new Float32Array(aw);
    audioContext(a.clip, a.frame, info.audio.window, info.audio.dim, audio, 0);
    return {
      image: gt[i]!,
      landmarks68: s.clip.landmarks68.subarray(s.frame * LM68_VALUES, (s.frame + 1) * LM68_VALUES),
      maskRow: s.clip.maskRowTest[s.frame]!,
      audio,
    };
  });
  return { gt, ref, cond: pipe.prepare(frames, info.size) };
}

/**
 * The LDM sample grid, through the inference pipeline with the EMA UNet: one row per frame,
 * reference | masked input | sample | target | sample with another frame's audio (does the mouth follow the audio?).
 */
async function ldmSampleRows(pipe: DiffTalkPipeline, info: DatasetInfo, pool: readonly SampleRef[], o: TrainLdmOptions): Promise<GridRow[]> {
  const samples = pool.slice(0, Math.min(4, pool.length));
  const shift = Math.max(1, Math.floor(pool.length / 2));
  const other = (_: SampleRef, i: number) => pool[(i + shift) % pool.length]!;
  const own = await pipelineInputs(pipe, samples, info);
  const swapped = await pipelineInputs(pipe, samples, info, other);
  const zRef = pipe.encode(own.ref);
  const sampleOf = async (cond: Prepared) => {
    const z = pipe.sample({ ...cond, zRef, steps: o.sampleSteps, seed: o.seed });
    const img = await pipe.decode(z);
    z.dispose();
    return img;
  };
  const a = await sampleOf(own.cond);
  const b = await sampleOf(swapped.cond);
  tf.dispose(zRef);
  disposePrepared(own.cond);
  disposePrepared(swapped.cond);
  const S = pipe.config.imageSize;
  const P = S * S * 3;
  return samples.map((s, i) => ({
    label: `${s.clip.id} frame ${s.frame}\nlast cell: audio of frame ${other(s, i).frame}`,
    cells: [
      { title: 'reference', rgb: own.ref[i]!, size: S },
      { title: 'masked', rgb: own.cond.masked[i]!, size: S },
      { title: 'sample', rgb: a.slice(i * P, (i + 1) * P), size: S },
      { title: 'target', rgb: own.gt[i]!, size: S },
      { title: "another frame's audio", rgb: b.slice(i * P, (i + 1) * P), size: S },
    ],
  }));
}
