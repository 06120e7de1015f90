/**
 * Training loops, top to bottom like nanoGPT's train.py: options → data → models → optimizer → loop
 * (seeded batch, loss, clipped AdamW step, EMA, validation, samples, checkpoint).
 *
 * - `trainLdm`: DiffTalk's conditional LDM (UNet + audio/landmark encoders) on cached first-stage latents.
 *   Loss = MSE(ε̂, ε) over the whole latent, t ~ U{0..T−1} (difftalk-reference.md §2.6); AdamW(0.9, 0.999, wd 0.01),
 *   lr = base_lr × batch × accumulate (paper: 1e-6 × 8 × 8 GPUs = 6.4e-5), global grad-norm clip 0.1, EMA on the UNet.
 * - `trainAutoencoder`: the VQ first stage on a dataset's frames (see its comment for what differs from VQGAN).
 *
 * Randomness is a pure function of (seed, step): the batch order (per-epoch permutations), timesteps and noise.
 * With weights, EMA and AdamW moments restored bit-exactly, `resume` continues exactly where the run stopped.
 */
import { mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { tf } from '../util/tf.js';
import { DifftalkError } from '../util/errors.js';
import { silent, type OnEvent } from '../util/events.js';
import { exists, writeFileAtomic, writeJsonAtomic } from '../util/fs.js';
import { ckptName, loadCheckpoint, resolveCheckpoint, resumeCheckpoint, RUN_MARKER, saveCheckpoint, sweepRunTemp } from '../models/checkpoint.js';
import { AUDIO_CONTEXT, audioContext } from '../models/conditions.js';
import {
  buildLatentCache,
  conditionStats,
  datasetInfo,
  disposeBatch,
  makeLdmBatch,
  readConditions,
  readFrameImages,
  sampleIndex,
  iterateClipImages,
  type ClipConditions,
  type DatasetInfo,
  type SampleRef,
} from './data.js';
import { loadFirstStage, loadPinnedFirstStage, pinFirstStage, type FirstStage, type FirstStagePin } from '../models/first-stage.js';
import { jawPolygon, rasterizeMask } from '../face/masks.js';
import { Params, stopGradient } from '../models/blocks.js';
import { mulberry32 } from '../util/random.js';
import { DifftalkModel, PREFIX } from '../models/difftalk.js';
import { vqDecode, vqDecodeUnquantized, vqEncode, vqParamSpecs } from '../models/vq-f4.js';
import { AdamW, clipGradNorm, Ema, gradNormSq, sumTensors, TORCH_ADAMW, type AdamWConfig } from './optim.js';
import { DiffTalkPipeline, disposePrepared, LM68_VALUES, type PipelineFrame, type Prepared } from '../models/pipeline.js';
import { resolveConfig, type DifftalkConfig, type PresetName } from '../models/presets.js';
import { lossCurveSvg, sampleGridPng, type CurvePoint, type GridRow } from './report.js';
import { DdimScheduler } from '../models/schedulers/ddim.js';
import { initFromTorch } from './init.js';

export interface CommonTrainOptions {
  dataset: string;
  out: string;
  preset: PresetName;
  /** Optimizer steps to reach (absolute; a resumed run continues up to it). */
  steps: number;
  batchSize: number;
  accumulate: number;
  /** Per-sample learning rate; lr = baseLr × batchSize × accumulate unless `lr` is given. */
  baseLr: number;
  lr?: number;
  /** Learning-rate schedule over `steps`: 'constant' (default, as the reference) or 'cosine' (decay to 5 % of lr at the last step). */
  lrSchedule?: 'constant' | 'cosine';
  weightDecay: number;
  gradClip: number;
  seed: number;
  checkpointEvery: number;
  keepLast: number;
  validateEvery: number;
  /** Validation samples (fixed set). */
  valSamples: number;
  /** When the dataset has no test clips: the last fraction of each train clip's frames is held out instead. */
  holdoutFraction: number;
  sampleEvery: number;
  resume: boolean;
  /** With `resume`: continue from this checkpoint (a ckpt-* folder, or a step of this run) instead of latest.json. */
  resumeFrom?: string;
  /** Write into a non-empty --out folder that difftalk did not create. */
  force?: boolean;
  onEvent?: OnEvent;
  /** Stop cleanly (after the current step, with a checkpoint). */
  signal?: AbortSignal;
}

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

export const DEFAULT_TRAIN: Omit<CommonTrainOptions, 'dataset' | 'out'> = {
  preset: 'paper',
  steps: 100_000,
  batchSize: 8,
  accumulate: 1,
  baseLr: 1e-6,
  weightDecay: 0.01,
  gradClip: 0.1,
  seed: 23,
  checkpointEvery: 1000,
  keepLast: 3,
  validateEvery: 1000,
  valSamples: 32,
  holdoutFraction: 0.2,
  sampleEvery: 5000,
  resume: false,
};

export const DEFAULT_LDM = { ...DEFAULT_TRAIN, emaDecay: 0.9999, sampleSteps: 50 };

export interface TrainResult {
  out: string;
  checkpoint: string;
  step: number;
  startStep: number;
  lr: number;
  /** Mean train loss over the first and the last `window` steps run in this call. */
  firstLoss: number;
  lastLoss: number;
  valLoss?: number;
  msPerStep: number;
  samplesPerSecond: number;
  trainSamples: number;
  valSamples: number;
}

/** The result both loops return: losses summarised over the first/last `w` steps of this call. */
function trainResult(
  o: { out: string },
  r: {
    lastCkpt?: string;
    step: number;
    startStep: number;
    lr: number;
    losses: readonly number[];
    valLoss?: number;
    seconds: number;
    samplesPerStep: number;
    trainSamples: number;
    valSamples: number;
  },
): TrainResult {
  const ran = r.step - r.startStep;
  const w = Math.max(1, Math.min(10, Math.floor(r.losses.length / 4)));
  return {
    out: o.out,
    checkpoint: r.lastCkpt ?? '',
    step: r.step,
    startStep: r.startStep,
    lr: r.lr,
    firstLoss: meanOf(r.losses.slice(0, w)),
    lastLoss: meanOf(r.losses.slice(-w)),
    valLoss: r.valLoss,
    msPerStep: ran ? (r.seconds * 1000) / ran : NaN,
    samplesPerSecond: ran ? (ran * r.samplesPerStep) / r.seconds : NaN,
    trainSamples: r.trainSamples,
    valSamples: r.valSamples,
  };
}

interface RunState {
  kind: 'ldm' | 'autoencoder';
  version: 1;
  step: number;
  seed: number;
  config: DifftalkConfig;
  options: Record<string, unknown>;
  optimizer: { config: AdamWConfig; step: number };
  ema?: { decay: number; numUpdates: number };
  firstStage?: FirstStagePin;
  dataset: string;
  history: CurvePoint[];
  valHistory: CurvePoint[];
}

// ---------------------------------------------------------------------------------------------------------------
// Shared helpers

function hash(...parts: (string | number)[]): number {
  let h = 2166136261;
  for (const ch of parts.join('|')) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
  return h;
}

/** Batch order: sample positions p = step·B + j walk through per-epoch seeded permutations. */
class BatchOrder {
  private perms = new Map<number, Uint32Array>();
  constructor(
    private readonly n: number,
    private readonly seed: number,
  ) {}
  index(p: number): number {
    const epoch = Math.floor(p / this.n);
    let perm = this.perms.get(epoch);
    if (!perm) {
      perm = new Uint32Array(this.n).map((_, i) => i);
      const rnd = mulberry32(hash(this.seed, 'epoch', epoch));
      for (let i = this.n - 1; i > 0; i--) {
        const j = Math.floor(rnd() * (i + 1));
        [perm[i], perm[j]] = [perm[j]!, perm[i]!];
      }
      this.perms.clear();
      this.perms.set(epoch, perm);
    }
    return perm[p - epoch * this.n]!;
  }
}

/**
 * Prepare the run folder; returns the checkpoint to resume from. Resume policy (one for every trainer): --resume needs an
 * intact latest.json (or --resume-from), else an error that says how to recover — never a silent restart at step 0.
 * A fresh run refuses a folder holding a run, and a non-empty folder difftalk did not create unless `force`; it marks
 * the folder as a difftalk run. Temp files of killed runs are swept on resume.
 */
async function checkRunDir(o: CommonTrainOptions, kind: RunState['kind'], onEvent: OnEvent): Promise<string | undefined> {
  const out = o.out;
  if (o.resumeFrom !== undefined && !o.resume) throw new DifftalkError('bad-flag', '--resume-from needs --resume');
  if (o.resume) {
    const ckpt = await resumeCheckpoint(out, o.resumeFrom);
    const swept = await sweepRunTemp(out);
    if (swept.length) onEvent({ type: 'log', level: 'info', message: `removed ${swept.length} temporary file(s) of an interrupted run: ${swept.join(', ')}` });
    return ckpt;
  }
  const ckpt = await resolveCheckpoint(out).catch(() => path.join(out, 'latest.json'));
  if (ckpt) {
    throw new DifftalkError('run-exists', `${out} already holds a training run (${path.basename(ckpt)})`, {
      suggestion: 'pass --resume to continue it, or choose a new --out folder',
    });
  }
  const entries = await readdir(out).catch(() => [] as string[]);
  if (entries.length && !entries.includes(RUN_MARKER) && !o.force)
    throw new DifftalkError('out-not-empty', `${out} is not empty and was not created by difftalk`, {
      suggestion: 'choose a new --out folder, or pass --force to write into it anyway',
    });
  await mkdir(out, { recursive: true });
  if (!(await exists(path.join(out, RUN_MARKER)))) await writeJsonAtomic(path.join(out, RUN_MARKER), { createdBy: 'difftalk', kind });
  return undefined;
}

/**
 * One optimizer step over `accumulate` micro-batches: mean loss, clipped global-norm gradients, AdamW update.
 * The step's only device read is one async read of (loss, grad norm²), which the NaN stop and clipping need.
 */
async function optimizerStep(
  vars: Map<string, tf.Variable>,
  opt: AdamW,
  accumulate: number,
  clip: number,
  micro: (k: number) => () => tf.Scalar,
): Promise<{ loss: number; gradNorm: number }> {
  const byVarName = new Map([...vars].map(([n, v]) => [v.name, n]));
  const list = [...vars.values()];
  let sum = new Map<string, tf.Tensor>();
  const lossParts: tf.Scalar[] = [];
  for (let k = 0; k < accumulate; k++) {
    const { value, grads } = tf.variableGrads(micro(k), list);
    lossParts.push(value);
    for (const [vn, g] of Object.entries(grads)) {
      const n = byVarName.get(vn)!;
      const scaled = accumulate > 1 ? tf.div(g, accumulate) : g;
      if (scaled !== g) g.dispose();
      const prev = sum.get(n);
      if (prev) {
        sum.set(n, tf.add(prev, scaled));
        prev.dispose();
        scaled.dispose();
      } else sum.set(n, scaled);
    }
  }
  const stats = tf.tidy(() => tf.stack([tf.div(sumTensors(lossParts), accumulate), gradNormSq(sum)]));
  tf.dispose(lossParts);
  const read = await stats.data();
  stats.dispose();
  const loss = read[0]!;
  if (!Number.isFinite(loss)) {
    tf.dispose([...sum.values()]);
    return { loss, gradNorm: NaN };
  }
  const clipped = clipGradNorm(sum, clip, Math.sqrt(read[1]!));
  sum = clipped.grads;
  if (Number.isFinite(clipped.norm)) opt.apply(sum);
  tf.dispose([...sum.values()]);
  return { loss, gradNorm: clipped.norm };
}

function diverged(step: number, loss: number, lastCkpt: string | undefined): DifftalkError {
  return new DifftalkError('train-diverged', `loss became ${loss} at step ${step}; training stopped without saving this step`, {
    suggestion: lastCkpt
      ? `the last good checkpoint is ${lastCkpt}; lower --lr or --grad-clip and rerun with --resume`
      : 'lower --lr; no checkpoint was written yet',
  });
}

/** Options a resumed run should keep, with the value to assume when one is missing (runs saved before it existed, or a trainer without it). */
const RESUME_OPTIONS: Record<string, unknown> = {
  lr: undefined,
  lrSchedule: 'constant',
  batchSize: undefined,
  accumulate: undefined,
  weightDecay: undefined,
  gradClip: undefined,
  emaDecay: undefined,
  mouthWeight: 0,
};

/**
 * On --resume the run continues with the options given now; an option that differs from the ones the run was started
 * with is legal (e.g. a lower lr) but changes the run, so each one is reported as a warning, never silently.
 */
function warnChangedOptions(saved: Record<string, unknown>, now: Record<string, unknown>, onEvent: OnEvent): void {
  for (const [k, dflt] of Object.entries(RESUME_OPTIONS)) {
    const a = saved[k] ?? dflt;
    const b = now[k] ?? dflt;
    if (a !== b) onEvent({ type: 'log', level: 'warn', message: `resuming with ${k} = ${String(b)}; the run was started with ${String(a)}` });
  }
}

/** The learning rate of optimizer step `step` (1-based) of a run of `steps` steps: a pure function, so resume is exact. */
export function scheduledLr(lr: number, step: number, steps: number, schedule: CommonTrainOptions['lrSchedule'] = 'constant'): number {
  if (schedule !== 'cosine' || steps <= 1) return lr;
  const p = Math.min(1, (step - 1) / (steps - 1));
  return lr * (0.05 + 0.95 * 0.5 * (1 + Math.cos(Math.PI * p)));
}

/** One turn of the event loop (setImmediate), so SIGTERM/SIGINT handlers run between steps. */
const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Read a scalar tensor asynchronously and dispose it. */
async function readScalar(t: tf.Tensor): Promise<number> {
  const v = (await t.data())[0]!;
  t.dispose();
  return v;
}

function meanOf(xs: readonly number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
}

async function writeCurve(out: string, state: RunState): Promise<void> {
  await writeFileAtomic(
    path.join(out, 'loss.svg'),
    lossCurveSvg({ train: state.history, validation: state.valHistory }, `${state.kind} loss (${state.config.preset})`),
  );
}

/** Split usable frames into train and validation sets (test split, or a held-out tail of each train clip). */
function splitSamples(clips: ClipConditions[], holdout: number, valCount: number, onEvent: OnEvent): { train: SampleRef[]; val: SampleRef[] } {
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

// ---------------------------------------------------------------------------------------------------------------
// LDM

export async function trainLdm(o: TrainLdmOptions): Promise<TrainResult> {
  const onEvent = o.onEvent ?? silent;
  // 1. run folder, resume state
  if (o.init !== undefined && o.resume) throw new DifftalkError('bad-flag', '--init starts a new run; a resumed run continues from its own checkpoint');
  if (o.init !== undefined && o.normalizeConditions)
    throw new DifftalkError('bad-flag', '--init with --normalize-conditions: the PyTorch weights were trained on raw conditions', {
      suggestion: 'drop --normalize-conditions',
    });
  const resumeFrom = await checkRunDir(o, 'ldm', onEvent);
  const saved = resumeFrom ? await loadCheckpoint<RunState>(resumeFrom, { optimizer: true }) : undefined;
  if (saved && saved.state.kind !== 'ldm') throw new DifftalkError('run-exists', `${o.out} holds a '${saved.state.kind}' run, not an LDM run`);

  // 2. data + first stage
  const info = await datasetInfo(o.dataset, (saved?.state.options.audioFeature as string | undefined) ?? o.audioFeature);
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

  // 3. model, scheduler, optimizer, EMA
  const model = new DifftalkModel(config, 'init', o.seed);
  const scheduler = new DdimScheduler(config.schedule);
  const lr = o.lr ?? o.baseLr * o.batchSize * o.accumulate;
  const vars = model.trainable();
  const opt = new AdamW({ ...TORCH_ADAMW, lr, weightDecay: o.weightDecay }, vars);
  const ema = new Ema(model.unet.vars, o.emaDecay);
  const state: RunState = saved?.state ?? {
    kind: 'ldm',
    version: 1,
    step: 0,
    seed: o.seed,
    config,
    options: { ...o, onEvent: undefined, signal: undefined, lr },
    optimizer: { config: opt.config, step: 0 },
    ema: { decay: o.emaDecay, numUpdates: 0 },
    firstStage: pin,
    dataset: path.resolve(o.dataset),
    history: [],
    valHistory: [],
  };
  if (saved) {
    warnChangedOptions(saved.state.options, { ...o, lr }, onEvent);
    if (Boolean(o.normalizeConditions) !== Boolean(config.conditionNorm))
      onEvent({
        type: 'log',
        level: 'warn',
        message: `normalizeConditions = ${Boolean(o.normalizeConditions)} ignored: the run's saved config ${config.conditionNorm ? 'standardises' : 'does not standardise'} the conditions, and that is kept`,
      });
    model.load(saved.model, saved.dir);
    Params.view(model.unet.specs, ema.shadow).loadTorch(saved.model, { prefix: PREFIX.ema, source: saved.dir });
    ema.numUpdates = state.ema!.numUpdates;
    opt.load(saved.optimizer!, state.optimizer.step);
    onEvent({ type: 'log', level: 'info', message: `resuming ${o.out} from step ${state.step}` });
  } else if (o.init !== undefined) {
    const init = await initFromTorch(o.init, model, Params.view(model.unet.specs, ema.shadow));
    ema.numUpdates = init.emaNumUpdates;
    state.ema = { decay: o.emaDecay, numUpdates: ema.numUpdates };
    onEvent({
      type: 'log',
      level: 'info',
      message: `initialised from ${o.init}: ${init.tensors} tensors${init.ema ? `, EMA after ${init.emaNumUpdates} updates` : ', EMA = weights'}`,
    });
  }
  // Validation/samples use the EMA UNet, as the reference monitors val/loss_simple_ema.
  const emaUnet = Params.view(model.unet.specs, ema.shadow);
  const pipe = new DiffTalkPipeline(model, emaUnet, fs);

  const saveNow = async (): Promise<string> => {
    state.optimizer.step = opt.step;
    state.ema = { decay: o.emaDecay, numUpdates: ema.numUpdates };
    const tensors = new Map([
      ...(await model.unet.toTorchAsync(PREFIX.unet)),
      ...(await model.audioNet.toTorchAsync(PREFIX.audio)),
      ...(await model.audioAtt.toTorchAsync(PREFIX.audioAtt)),
      ...(await model.ldmNet.toTorchAsync(PREFIX.ldm)),
      ...(await emaUnet.toTorchAsync(PREFIX.ema)),
    ]);
    const dir = await saveCheckpoint(o.out, state, tensors, await opt.state(), { keepLast: o.keepLast });
    await writeCurve(o.out, state);
    onEvent({ type: 'log', level: 'info', message: `checkpoint ${dir}` });
    return dir;
  };

  const T = scheduler.numTrainTimesteps;
  const [lh, lw, lc] = cache.latentShape;
  const order = new BatchOrder(train.length, o.seed);
  const B = o.batchSize;
  const microLoss = (step: number, k: number) => () => {
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
  };

  const validate = async (): Promise<number> => {
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
  };

  const startStep = state.step;
  const losses: number[] = [];
  let lastCkpt: string | undefined = saved?.dir;
  let valLoss: number | undefined;
  const t0 = performance.now();
  onEvent({
    type: 'log',
    level: 'info',
    message: `LDM ${config.preset}: ${model.unet.count().toLocaleString('en')} UNet params, ${train.length} train / ${val.length} val frames, lr ${lr}`,
  });
  onEvent({ type: 'stage-start', stage: 'train', total: o.steps, unit: 'steps' });
  while (state.step < o.steps) {
    await yieldToEventLoop(); // a step's reads may resolve as microtasks: let signal handlers run
    if (o.signal?.aborted) break;
    const step = state.step + 1;
    const ts0 = performance.now();
    opt.config.lr = scheduledLr(lr, step, o.steps, o.lrSchedule);
    const { loss, gradNorm } = await optimizerStep(vars, opt, o.accumulate, o.gradClip, (k) => microLoss(step, k));
    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) throw diverged(step, Number.isFinite(loss) ? gradNorm : loss, lastCkpt);
    ema.update();
    state.step = step;
    state.history.push({ step, value: loss });
    losses.push(loss);
    const dt = (performance.now() - ts0) / 1000;
    onEvent({ type: 'metric', name: 'train/loss', value: loss, step });
    onEvent({ type: 'metric', name: 'train/lr', value: opt.config.lr, step });
    onEvent({ type: 'metric', name: 'train/grad_norm', value: gradNorm, step });
    onEvent({ type: 'metric', name: 'train/samples_per_s', value: (B * o.accumulate) / dt, step });
    onEvent({ type: 'progress', stage: 'train', done: step, total: o.steps, detail: `loss ${loss.toFixed(4)}` });
    if (step % o.validateEvery === 0 || step === o.steps) {
      valLoss = await validate();
      if (Number.isFinite(valLoss)) {
        state.valHistory.push({ step, value: valLoss });
        onEvent({ type: 'metric', name: 'val/loss_simple_ema', value: valLoss, step });
      }
    }
    if (step % o.sampleEvery === 0 || step === o.steps) await writeLdmSamples(o.out, step, pipe, info, val.length ? val : train, o);
    if (step % o.checkpointEvery === 0 || step === o.steps) lastCkpt = await saveNow();
  }
  // stopped early (signal): save the step reached, so --resume continues from it
  if (state.step > startStep && !lastCkpt?.endsWith(ckptName(state.step))) lastCkpt = await saveNow();
  const seconds = (performance.now() - t0) / 1000;
  onEvent({ type: 'stage-done', stage: 'train', done: state.step, seconds });
  const result = trainResult(o, {
    lastCkpt,
    step: state.step,
    startStep,
    lr,
    losses,
    valLoss,
    seconds,
    samplesPerStep: B * o.accumulate,
    trainSamples: train.length,
    valSamples: val.length,
  });
  model.dispose();
  ema.dispose();
  opt.dispose();
  fs.params.dispose();
  return result;
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

/** A labelled sample grid (report.ts sampleGridPng): written to <out>/samples/step-N.png and sent as an image event. */
async function writeGrid(out: string, step: number, rows: GridRow[], onEvent: OnEvent, title: string): Promise<void> {
  const file = path.join(out, 'samples', `step-${String(step).padStart(8, '0')}.png`);
  const png = await sampleGridPng(rows, { title: `${title}, step ${step}` });
  await writeFileAtomic(file, png);
  onEvent({ type: 'image', name: 'samples', step, png: new Uint8Array(png), caption: title });
}

/**
 * The LDM sample grid, through the inference pipeline with the EMA UNet: one row per frame,
 * reference | masked input | sample | target | sample with another frame's audio (does the mouth follow the audio?).
 */
async function writeLdmSamples(
  out: string,
  step: number,
  pipe: DiffTalkPipeline,
  info: DatasetInfo,
  pool: readonly SampleRef[],
  o: TrainLdmOptions,
): Promise<void> {
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
  const rows: GridRow[] = samples.map((s, i) => ({
    label: `${s.clip.id} frame ${s.frame}\nlast cell: audio of frame ${other(s, i).frame}`,
    cells: [
      { title: 'reference', rgb: own.ref[i]!, size: S },
      { title: 'masked', rgb: own.cond.masked[i]!, size: S },
      { title: 'sample', rgb: a.slice(i * P, (i + 1) * P), size: S },
      { title: 'target', rgb: own.gt[i]!, size: S },
      { title: "another frame's audio", rgb: b.slice(i * P, (i + 1) * P), size: S },
    ],
  }));
  await writeGrid(out, step, rows, o.onEvent ?? silent, 'LDM samples (EMA UNet, DDIM)');
}

// ---------------------------------------------------------------------------------------------------------------
// Autoencoder

/**
 * Train the VQ first stage (encoder, codebook, decoder) on a dataset's frames at the preset's imageSize.
 * Loss = |x − x̂|₁ + ‖sg(z) − z_q‖² + 0.25·‖z − sg(z_q)‖² (VQGAN's reconstruction + codebook + commitment terms).
 * Not included: VQGAN's LPIPS perceptual term and patch discriminator — this trainer is for small experiments and
 * tests; for the paper setup load LDM's released vq-f4 instead. The codebook is initialised from encoder outputs of
 * the first batch (avoids dead codes with few steps). Frames are decoded once and kept in memory.
 */
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
  const resumeFrom = await checkRunDir(o, 'autoencoder', onEvent);
  const saved = resumeFrom ? await loadCheckpoint<RunState>(resumeFrom, { optimizer: true }) : undefined;
  if (saved && saved.state.kind !== 'autoencoder') throw new DifftalkError('run-exists', `${o.out} holds a '${saved.state.kind}' run, not an autoencoder run`);
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
  const lr = o.lr ?? o.baseLr * o.batchSize * o.accumulate;
  const opt = new AdamW({ ...TORCH_ADAMW, lr, weightDecay: o.weightDecay }, params.vars);
  const state: RunState = saved?.state ?? {
    kind: 'autoencoder',
    version: 1,
    step: 0,
    seed: o.seed,
    config,
    options: { ...o, onEvent: undefined, signal: undefined, lr },
    optimizer: { config: opt.config, step: 0 },
    dataset: path.resolve(o.dataset),
    history: [],
    valHistory: [],
  };
  const P = S * S * 3;
  const stack = (arr: readonly Float32Array[]) => {
    const out = new Float32Array(arr.length * P);
    arr.forEach((a, i) => out.set(a, i * P));
    return tf.tensor4d(out, [arr.length, S, S, 3]);
  };
  if (saved) {
    warnChangedOptions(saved.state.options, { ...o, lr }, onEvent);
    params.loadTorch(saved.model, { source: saved.dir });
    opt.load(saved.optimizer!, state.optimizer.step);
  } else {
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
  }
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
  const startStep = state.step;
  const losses: number[] = [];
  let lastCkpt: string | undefined = saved?.dir;
  let valLoss: number | undefined;
  const saveNow = async () => {
    state.optimizer.step = opt.step;
    const dir = await saveCheckpoint(o.out, state, await params.toTorchAsync(), await opt.state(), { keepLast: o.keepLast });
    await writeCurve(o.out, state);
    return dir;
  };
  const validate = async () => {
    if (!valImgs.length) return NaN;
    let s = 0;
    for (let i = 0; i < valImgs.length; i += B) {
      const chunk = valImgs.slice(i, i + B);
      s += await readScalar(
        tf.tidy(() => tf.mean(tf.abs(tf.sub(stack(chunk), vqDecode(params, config.vq, vqEncode(params, config.vq, stack(chunk)))))).mul(chunk.length)),
      );
    }
    return s / valImgs.length;
  };
  const t0 = performance.now();
  onEvent({
    type: 'log',
    level: 'info',
    message: `autoencoder ${config.preset}: ${params.count().toLocaleString('en')} params, ${trainImgs.length} train / ${valImgs.length} val frames, lr ${lr}`,
  });
  onEvent({ type: 'stage-start', stage: 'train-autoencoder', total: o.steps, unit: 'steps' });
  while (state.step < o.steps) {
    await yieldToEventLoop(); // a step's reads may resolve as microtasks: let signal handlers run
    if (o.signal?.aborted) break;
    const step = state.step + 1;
    const ts0 = performance.now();
    opt.config.lr = scheduledLr(lr, step, o.steps, o.lrSchedule);
    const { loss, gradNorm } = await optimizerStep(params.vars, opt, o.accumulate, o.gradClip, (k) => () => {
      const p0 = ((step - 1) * o.accumulate + k) * B;
      const idx = Array.from({ length: B }, (_, j) => order.index(p0 + j));
      let weights: tf.Tensor4D | undefined;
      if (trainWeights) {
        const w = new Float32Array(B * S * S);
        idx.forEach((i, j) => w.set(trainWeights[i]!, j * S * S));
        weights = tf.tensor4d(w, [B, S, S, 1]);
      }
      return lossOf(stack(idx.map((i) => trainImgs[i]!)), weights);
    });
    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) throw diverged(step, Number.isFinite(loss) ? gradNorm : loss, lastCkpt);
    state.step = step;
    state.history.push({ step, value: loss });
    losses.push(loss);
    const dt = (performance.now() - ts0) / 1000;
    onEvent({ type: 'metric', name: 'train/loss', value: loss, step });
    onEvent({ type: 'metric', name: 'train/lr', value: opt.config.lr, step });
    onEvent({ type: 'metric', name: 'train/grad_norm', value: gradNorm, step });
    onEvent({ type: 'metric', name: 'train/samples_per_s', value: (B * o.accumulate) / dt, step });
    onEvent({ type: 'progress', stage: 'train-autoencoder', done: step, total: o.steps, detail: `loss ${loss.toFixed(4)}` });
    if (step % o.validateEvery === 0 || step === o.steps) {
      valLoss = await validate();
      if (Number.isFinite(valLoss)) {
        state.valHistory.push({ step, value: valLoss });
        onEvent({ type: 'metric', name: 'val/l1_quantized', value: valLoss, step });
      }
    }
    if ((step % o.sampleEvery === 0 || step === o.steps) && valImgs.length) {
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
      await writeGrid(o.out, step, rows, onEvent, 'autoencoder reconstructions');
    }
    if (step % o.checkpointEvery === 0 || step === o.steps) lastCkpt = await saveNow();
  }
  // stopped early (signal): save the step reached, so --resume continues from it
  if (state.step > startStep && !lastCkpt?.endsWith(ckptName(state.step))) lastCkpt = await saveNow();
  const seconds = (performance.now() - t0) / 1000;
  onEvent({ type: 'stage-done', stage: 'train-autoencoder', done: state.step, seconds });
  params.dispose();
  opt.dispose();
  return trainResult(o, {
    lastCkpt,
    step: state.step,
    startStep,
    lr,
    losses,
    valLoss,
    seconds,
    samplesPerStep: B * o.accumulate,
    trainSamples: trainImgs.length,
    valSamples: valImgs.length,
  });
}
