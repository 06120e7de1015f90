/**
 * The one training loop every model trains on (LDM, autoencoder, SyncNet), top to bottom like nanoGPT's train.py:
 * run folder and resume state → the model (built by its trainer, see TrainableModel) → AdamW → loop
 * (micro-batch losses, accumulated and clipped gradients, lr schedule, EMA, NaN stop, validation, sample grid,
 * checkpoint, stop signal) → result. What differs between models lives with the model: its trainable variables, its
 * loss of micro-batch k of step s, its validation and its sample grid.
 *
 * Randomness is a pure function of (seed, step, micro-batch): a model draws its batch and noise from `hash(seed, …)`,
 * never from a sequential generator, so with weights, EMA and AdamW moments restored bit-exactly, a resumed run
 * continues exactly where the run stopped (checkpoint format and resume policy: ../models/checkpoint.ts).
 */
import { mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { tf } from '../util/tf.js';
import { DifftalkError } from '../util/errors.js';
import { silent, type OnEvent } from '../util/events.js';
import { exists, writeFileAtomic, writeJsonAtomic } from '../util/fs.js';
import { mulberry32 } from '../util/random.js';
import type { TensorData } from '../weights/torch.js';
import {
  ckptName,
  loadCheckpoint,
  resolveCheckpoint,
  resumeCheckpoint,
  RUN_MARKER,
  saveCheckpoint,
  sweepRunTemp,
  type SavedCheckpoint,
} from '../models/checkpoint.js';
import type { PresetName } from '../models/presets.js';
import { setKernelPrecision, type Precision } from '../models/kernels/program.js';
import { LossScaler, type LossScaleConfig, type LossScaleState } from './loss-scale.js';
import { AdamW, clipGradNorm, gradNormSq, sumTensors, TORCH_ADAMW, type AdamWConfig, type Ema } from './optim.js';
import { lossCurveSvg, sampleGridPng, type CurvePoint, type GridRow } from './report.js';

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
  /**
   * Arithmetic of the run (resolved by the command from --precision, see models/kernels resolvePrecision): 'fp32'
   * (default), or 'mixed' (webgpu with shader-f16: f16 GEMM and attention operands, f32 accumulation, f32 master weights and AdamW
   * state, dynamic loss scaling).
   */
  precision?: Precision;
  /** With 'mixed': the loss scaler's config (default torch GradScaler's: init 65536, growth 2, backoff 0.5, interval 2000). */
  lossScale?: Partial<LossScaleConfig>;
  onEvent?: OnEvent;
  /** Stop cleanly (after the current step, with a checkpoint). */
  signal?: AbortSignal;
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

/** What the loop needs of the options (the dataset and preset are the trainers' business). */
export type CoreOptions = Omit<CommonTrainOptions, 'dataset' | 'preset' | 'holdoutFraction' | 'valSamples'> & { emaDecay?: number };

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
  /** The run's precision; with 'mixed', the loss scale reached and the steps skipped for inf/NaN gradients in this call. */
  precision: Precision;
  lossScale?: number;
  skippedSteps?: number;
}

export type TrainKind = 'ldm' | 'autoencoder' | 'syncnet';

/** state.json of every checkpoint (the model's own records, e.g. the LDM's first-stage pin, beside these fields). */
export interface RunState<C = unknown> {
  kind: TrainKind;
  version: 1;
  step: number;
  seed: number;
  config: C;
  options: Record<string, unknown>;
  optimizer: { config: AdamWConfig; step: number };
  ema?: { decay: number; numUpdates: number };
  /** The precision the last save was made under; with 'mixed', the loss scaler's state (restored on resume). */
  precision?: Precision;
  lossScale?: LossScaleState;
  history: CurvePoint[];
  valHistory: CurvePoint[];
}

/** A model as the loop trains it; built by its trainer (from the checkpoint when resuming). */
export interface TrainableModel<C = unknown> {
  /** The run's model config (saved in state.json; a resumed run rebuilds from the saved one). */
  readonly config: C;
  /** Records kept in state.json beside RunState's fields (first-stage pin, dataset, data description…). */
  readonly record: Record<string, unknown>;
  /** Progress stage name, and the line logged before the first step. */
  readonly stage: string;
  readonly describe: string;
  readonly curveTitle: string;
  /** Trainable variables by name (AdamW's moments are saved under these names). */
  readonly vars: Map<string, tf.Variable>;
  /** Updated by the loop after each optimizer step; its counter is saved in state.json, its weights are the model's to save. */
  readonly ema?: Ema;
  /** Samples per micro-batch, and the sizes of the train and validation sets (for the result). */
  readonly batchSize: number;
  readonly trainSamples: number;
  readonly valSamples: number;
  /**
   * A fresh run only, before the first step (not on resume): data-dependent initialisation (the autoencoder's
   * codebook) or weights loaded from elsewhere. The loop then restarts the EMA from the initialised weights, unless
   * init returns `keep-ema` (it set the EMA itself, from a checkpoint that carries one).
   */
  init?(): Promise<void | 'keep-ema'>;
  /** Loss of micro-batch `micro` of optimizer step `step` (1-based); runs inside tf.variableGrads, pure of (seed, step, micro). */
  loss(step: number, micro: number): tf.Scalar;
  /** Validation loss (NaN: no validation set) and the metric name it is reported under. */
  readonly validation?: { metric: string; run(): Promise<number> };
  /** The sample grid of step `step` (undefined: none this time). */
  sampleGrid?(step: number): Promise<{ rows: GridRow[]; title: string } | undefined>;
  /** Everything model.safetensors holds (weights, EMA, BatchNorm statistics), and its safetensors metadata. */
  weights(): Promise<Map<string, TensorData>>;
  readonly weightsMetadata?: (step: number) => Record<string, string>;
  dispose(): void;
}

export function hash(...parts: (string | number)[]): number {
  let h = 2166136261;
  for (const ch of parts.join('|')) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
  return h;
}

/** Batch order: sample positions p = step·B + j walk through per-epoch seeded permutations. */
export class BatchOrder {
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

const KIND_LABEL: Record<TrainKind, string> = { ldm: 'an LDM', autoencoder: 'an autoencoder', syncnet: 'a SyncNet' };

/**
 * Prepare the run folder and load the checkpoint to resume from. Resume policy (one for every trainer): --resume needs
 * an intact latest.json (or --resume-from), else an error that says how to recover — never a silent restart at step 0.
 * A fresh run refuses a folder holding a run, and a non-empty folder difftalk did not create unless `force`; it marks
 * the folder as a difftalk run. Temp files of killed runs are swept on resume. A checkpoint of another kind is refused.
 */
export async function openRun<S extends RunState = RunState>(o: CoreOptions, kind: TrainKind): Promise<SavedCheckpoint<S> | undefined> {
  const out = o.out;
  const onEvent = o.onEvent ?? silent;
  if (o.resumeFrom !== undefined && !o.resume) throw new DifftalkError('bad-flag', '--resume-from needs --resume');
  if (o.resume) {
    const ckpt = await resumeCheckpoint(out, o.resumeFrom);
    const swept = await sweepRunTemp(out);
    if (swept.length) onEvent({ type: 'log', level: 'info', message: `removed ${swept.length} temporary file(s) of an interrupted run: ${swept.join(', ')}` });
    const saved = await loadCheckpoint<S>(ckpt, { optimizer: true });
    if (saved.state.kind !== kind) throw new DifftalkError('run-exists', `${out} holds a '${saved.state.kind}' run, not ${KIND_LABEL[kind]} run`);
    return saved;
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
 * With a loss scaler (mixed precision) each micro-batch's loss is multiplied by the scale before backprop and the
 * gradients divided by it (with the 1/accumulate); the same read tells whether they are finite: if not, the update is
 * skipped (`skipped`) and the scaler backs off. A non-finite loss is divergence in either precision.
 */
async function optimizerStep(
  vars: Map<string, tf.Variable>,
  opt: AdamW,
  accumulate: number,
  clip: number,
  micro: (k: number) => () => tf.Scalar,
  scaler?: LossScaler,
): Promise<{ loss: number; gradNorm: number; skipped: boolean }> {
  const byVarName = new Map([...vars].map(([n, v]) => [v.name, n]));
  const list = [...vars.values()];
  let sum = new Map<string, tf.Tensor>();
  const lossParts: tf.Scalar[] = [];
  const scale = scaler?.scale ?? 1;
  const divisor = accumulate * scale;
  for (let k = 0; k < accumulate; k++) {
    const f = micro(k);
    const { value, grads } = tf.variableGrads(scaler ? () => tf.mul(f(), scale) : f, list);
    lossParts.push(value);
    for (const [vn, g] of Object.entries(grads)) {
      const n = byVarName.get(vn)!;
      const scaled = divisor !== 1 ? tf.div(g, divisor) : g;
      if (scaled !== g) g.dispose();
      const prev = sum.get(n);
      if (prev) {
        sum.set(n, tf.add(prev, scaled));
        prev.dispose();
        scaled.dispose();
      } else sum.set(n, scaled);
    }
  }
  const stats = tf.tidy(() => tf.stack([tf.div(sumTensors(lossParts), divisor), gradNormSq(sum)]));
  tf.dispose(lossParts);
  const read = await stats.data();
  stats.dispose();
  const loss = read[0]!;
  if (!Number.isFinite(loss)) {
    tf.dispose([...sum.values()]);
    return { loss, gradNorm: NaN, skipped: false };
  }
  const norm = Math.sqrt(read[1]!);
  if (scaler && !scaler.update(Number.isFinite(norm))) {
    tf.dispose([...sum.values()]);
    return { loss, gradNorm: norm, skipped: true };
  }
  const clipped = clipGradNorm(sum, clip, norm);
  sum = clipped.grads;
  if (Number.isFinite(clipped.norm)) opt.apply(sum);
  tf.dispose([...sum.values()]);
  return { loss, gradNorm: clipped.norm, skipped: false };
}

function diverged(step: number, loss: number, lastCkpt: string | undefined, precision: Precision): DifftalkError {
  const mixed = precision === 'mixed' ? ' (or use --precision fp32: under mixed, activations beyond f16 range overflow)' : '';
  return new DifftalkError('train-diverged', `loss became ${loss} at step ${step}; training stopped without saving this step`, {
    suggestion: lastCkpt
      ? `the last good checkpoint is ${lastCkpt}; lower --lr or --grad-clip${mixed} and rerun with --resume`
      : `lower --lr${mixed}; no checkpoint was written yet`,
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
  precision: 'fp32',
  margin: undefined,
  minShift: undefined,
  seed: undefined,
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
export async function readScalar(t: tf.Tensor): Promise<number> {
  const v = (await t.data())[0]!;
  t.dispose();
  return v;
}

function meanOf(xs: readonly number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
}

/** A labelled sample grid (report.ts sampleGridPng): written to <out>/samples/step-N.png and sent as an image event. */
async function writeGrid(out: string, step: number, rows: GridRow[], onEvent: OnEvent, title: string): Promise<void> {
  const file = path.join(out, 'samples', `step-${String(step).padStart(8, '0')}.png`);
  const png = await sampleGridPng(rows, { title: `${title}, step ${step}` });
  await writeFileAtomic(file, png);
  onEvent({ type: 'image', name: 'samples', step, png: new Uint8Array(png), caption: title });
}

/**
 * Train `model` (built by `build` from the checkpoint `openRun` returned, or fresh) to `o.steps` optimizer steps.
 * Returns the result and the run state (history included) as last saved.
 */
export async function runTraining<C>(
  o: CoreOptions,
  kind: TrainKind,
  saved: SavedCheckpoint<RunState<C>> | undefined,
  model: TrainableModel<C>,
): Promise<{ result: TrainResult; state: RunState<C> }> {
  const onEvent = o.onEvent ?? silent;
  const B = model.batchSize;
  const lr = o.lr ?? o.baseLr * B * o.accumulate;
  const opt = new AdamW({ ...TORCH_ADAMW, lr, weightDecay: o.weightDecay }, model.vars);
  const precision: Precision = o.precision ?? 'fp32';
  const scaler = precision === 'mixed' ? new LossScaler(o.lossScale) : undefined;
  const previousPrecision = setKernelPrecision(precision);
  try {
    const state: RunState<C> = saved?.state ?? {
      kind,
      version: 1,
      step: 0,
      seed: o.seed,
      config: model.config,
      options: { ...o, onEvent: undefined, signal: undefined, lr },
      optimizer: { config: opt.config, step: 0 },
      ...(model.ema ? { ema: { decay: model.ema.decay, numUpdates: 0 } } : {}),
      ...model.record,
      history: [],
      valHistory: [],
    };
    if (saved) {
      warnChangedOptions(saved.state.options, { ...o, lr }, onEvent);
      if (model.ema) model.ema.numUpdates = saved.state.ema?.numUpdates ?? 0;
      opt.load(saved.optimizer!, saved.state.optimizer.step);
      if (scaler && saved.state.lossScale) scaler.load(saved.state.lossScale);
      onEvent({ type: 'log', level: 'info', message: `resuming ${o.out} from step ${state.step}` });
    } else if (model.init) {
      // the EMA starts from the initialised weights, unless init set it too (a checkpoint that carries one)
      if ((await model.init()) !== 'keep-ema') model.ema?.reset();
    }

    const saveNow = async (): Promise<string> => {
      state.optimizer.step = opt.step;
      if (model.ema) state.ema = { decay: model.ema.decay, numUpdates: model.ema.numUpdates };
      state.precision = precision;
      if (scaler) state.lossScale = scaler.state();
      else delete state.lossScale;
      const dir = await saveCheckpoint(o.out, state, await model.weights(), await opt.state(), {
        keepLast: o.keepLast,
        metadata: model.weightsMetadata?.(state.step),
      });
      await writeFileAtomic(path.join(o.out, 'loss.svg'), lossCurveSvg({ train: state.history, validation: state.valHistory }, model.curveTitle));
      onEvent({ type: 'log', level: 'info', message: `checkpoint ${dir}` });
      return dir;
    };

    const startStep = state.step;
    const losses: number[] = [];
    let lastCkpt: string | undefined = saved?.dir;
    let valLoss: number | undefined;
    const skippedBefore = scaler?.skipped ?? 0;
    const t0 = performance.now();
    const scaleNote = scaler
      ? `, loss scale ${scaler.scale} (×${scaler.config.growth} every ${scaler.config.interval} good steps, ×${scaler.config.backoff} on inf/NaN)`
      : '';
    onEvent({ type: 'log', level: 'info', message: `${model.describe}, lr ${lr}, precision ${precision}${scaleNote}` });
    onEvent({ type: 'stage-start', stage: model.stage, total: o.steps, unit: 'steps' });
    while (state.step < o.steps) {
      await yieldToEventLoop(); // a step's reads may resolve as microtasks: let signal handlers run
      if (o.signal?.aborted) break;
      const step = state.step + 1;
      const ts0 = performance.now();
      opt.config.lr = scheduledLr(lr, step, o.steps, o.lrSchedule);
      const scaleUsed = scaler?.scale;
      const { loss, gradNorm, skipped } = await optimizerStep(model.vars, opt, o.accumulate, o.gradClip, (k) => () => model.loss(step, k), scaler);
      if (!Number.isFinite(loss) || (!skipped && !Number.isFinite(gradNorm)))
        throw diverged(step, Number.isFinite(loss) ? gradNorm : loss, lastCkpt, precision);
      if (skipped)
        onEvent({
          type: 'log',
          level: 'info',
          message: `step ${step}: inf/NaN gradients at loss scale ${scaleUsed}; update skipped, scale now ${scaler!.scale}`,
        });
      model.ema?.update();
      state.step = step;
      state.history.push({ step, value: loss });
      losses.push(loss);
      const dt = (performance.now() - ts0) / 1000;
      onEvent({ type: 'metric', name: 'train/loss', value: loss, step });
      onEvent({ type: 'metric', name: 'train/lr', value: opt.config.lr, step });
      if (!skipped) onEvent({ type: 'metric', name: 'train/grad_norm', value: gradNorm, step });
      if (scaler) onEvent({ type: 'metric', name: 'train/loss_scale', value: scaler.scale, step });
      onEvent({ type: 'metric', name: 'train/samples_per_s', value: (B * o.accumulate) / dt, step });
      onEvent({ type: 'progress', stage: model.stage, done: step, total: o.steps, detail: `loss ${loss.toFixed(4)}` });
      if (model.validation && (step % o.validateEvery === 0 || step === o.steps)) {
        valLoss = await model.validation.run();
        if (Number.isFinite(valLoss)) {
          state.valHistory.push({ step, value: valLoss });
          onEvent({ type: 'metric', name: model.validation.metric, value: valLoss, step });
        }
      }
      if (model.sampleGrid && (step % o.sampleEvery === 0 || step === o.steps)) {
        const grid = await model.sampleGrid(step);
        if (grid) await writeGrid(o.out, step, grid.rows, onEvent, grid.title);
      }
      if (step % o.checkpointEvery === 0 || step === o.steps) lastCkpt = await saveNow();
    }
    // stopped early (signal): save the step reached, so --resume continues from it
    if (state.step > startStep && !lastCkpt?.endsWith(ckptName(state.step))) lastCkpt = await saveNow();
    const seconds = (performance.now() - t0) / 1000;
    onEvent({ type: 'stage-done', stage: model.stage, done: state.step, seconds });
    const ran = state.step - startStep;
    const w = Math.max(1, Math.min(10, Math.floor(losses.length / 4)));
    const result: TrainResult = {
      out: o.out,
      checkpoint: lastCkpt ?? '',
      step: state.step,
      startStep,
      lr,
      firstLoss: meanOf(losses.slice(0, w)),
      lastLoss: meanOf(losses.slice(-w)),
      valLoss,
      msPerStep: ran ? (seconds * 1000) / ran : NaN,
      samplesPerSecond: ran ? (ran * B * o.accumulate) / seconds : NaN,
      trainSamples: model.trainSamples,
      valSamples: model.valSamples,
      precision,
      ...(scaler ? { lossScale: scaler.scale, skippedSteps: scaler.skipped - skippedBefore } : {}),
    };
    return { result, state };
  } finally {
    setKernelPrecision(previousPrecision);
    opt.dispose();
    model.dispose();
  }
}
