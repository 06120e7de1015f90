import cliProgress from 'cli-progress';
import type { OnEvent, ProgressEvent } from '../util/events.js';

export interface Renderer {
  onEvent: OnEvent;
  stop(): void;
}

/** Progress-line period of training stages (steps) when --log-every is not given. */
export const DEFAULT_LOG_EVERY = 10;
/** Smoothing of the displayed loss: exponential moving average with this weight on the past. */
const LOSS_EMA = 0.9;
/** Least time between two TTY redraws of a training bar (ms); the bar is redrawn from the step's event, not a timer. */
const REDRAW_MS = 100;

const isLoss = (name: string) => name === 'train/loss' || name === 'loss';
const isLr = (name: string) => name === 'train/lr' || name === 'lr';
const isRate = (name: string) => name === 'train/samples_per_s';
const isVal = (name: string) => name.startsWith('val/');

/** Human duration: 45 s, 3m05s, 1h02m. */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '-';
  const SECONDS_PER_MINUTE = 60;
  const SECONDS_PER_HOUR = 3600;
  if (s < SECONDS_PER_MINUTE) return `${s < 10 ? s.toFixed(1) : s.toFixed(0)} s`;
  const h = Math.floor(s / SECONDS_PER_HOUR);
  const m = Math.floor((s % SECONDS_PER_HOUR) / SECONDS_PER_MINUTE);
  const sec = Math.floor(s % SECONDS_PER_MINUTE);
  return h ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(sec).padStart(2, '0')}s`;
}

const num = (v: number | undefined, digits = 4) =>
  v === undefined || !Number.isFinite(v) ? '-' : Math.abs(v) < 1e-3 && v !== 0 ? v.toExponential(2) : v.toFixed(digits);

/**
 * What a training stage (a stage counted in 'steps') has shown so far: smoothed loss, lr, samples/s, the last and best
 * validation values, and the step rate of this run only (steps done since the stage started here, so a resumed run
 * reports its own rate).
 */
export class TrainStats {
  readonly t0 = performance.now();
  firstStep: number | undefined;
  step = 0;
  total: number | undefined;
  lossEma: number | undefined;
  lastLoss: number | undefined;
  lr: number | undefined;
  samplesPerSecond: number | undefined;
  val = new Map<string, { step: number; value: number; best: number; bestStep: number }>();

  constructor(total?: number) {
    this.total = total;
  }

  metric(name: string, value: number, step?: number): void {
    if (!Number.isFinite(value)) return;
    if (isLoss(name)) {
      this.lastLoss = value;
      this.lossEma = this.lossEma === undefined ? value : LOSS_EMA * this.lossEma + (1 - LOSS_EMA) * value;
    } else if (isLr(name)) this.lr = value;
    else if (isRate(name)) this.samplesPerSecond = value;
    else if (isVal(name)) {
      const v = this.val.get(name);
      const s = step ?? this.step;
      if (!v || value < v.best) this.val.set(name, { step: s, value, best: value, bestStep: s });
      else this.val.set(name, { ...v, step: s, value });
    }
  }

  progress(done: number, total?: number): void {
    if (this.firstStep === undefined) this.firstStep = done - 1;
    this.step = done;
    this.total = total ?? this.total;
  }

  /** Steps run in this process (not counting a resumed run's earlier steps). */
  get stepsRun(): number {
    return this.firstStep === undefined ? 0 : this.step - this.firstStep;
  }

  get seconds(): number {
    return (performance.now() - this.t0) / 1000;
  }

  get secondsPerStep(): number | undefined {
    return this.stepsRun > 0 ? this.seconds / this.stepsRun : undefined;
  }

  get etaSeconds(): number | undefined {
    const sps = this.secondsPerStep;
    return sps === undefined || this.total === undefined ? undefined : Math.max(0, this.total - this.step) * sps;
  }

  /** "loss 0.1234 | lr 1.00e-3 | 12.3 samples/s | 0.61 s/step | ETA 55 s" (fields not yet known are left out). */
  fields(): string {
    const parts = [`loss ${num(this.lossEma)}`];
    if (this.lr !== undefined) parts.push(`lr ${this.lr.toExponential(2)}`);
    if (this.samplesPerSecond !== undefined) parts.push(`${this.samplesPerSecond.toFixed(1)} samples/s`);
    const sps = this.secondsPerStep;
    if (sps !== undefined) parts.push(`${sps < 1 ? `${(sps * 1000).toFixed(0)} ms` : `${sps.toFixed(2)} s`}/step`);
    const eta = this.etaSeconds;
    if (eta !== undefined) parts.push(`ETA ${formatDuration(eta)}`);
    for (const [name, v] of this.val) parts.push(`${name} ${num(v.value)}`);
    return parts.join(' | ');
  }
}

/** Whether a stage is a training loop (its progress is counted in optimizer steps). */
const isTrainUnit = (unit: string | undefined) => unit === 'steps';

/**
 * --json: one JSON object per event on stderr, so stdout stays the command's final result. A training stage's step
 * events (progress, train metrics) are passed every `logEvery` steps and at its last step; validation metrics and
 * every other event always.
 */
export function jsonLinesRenderer(stream: NodeJS.WritableStream = process.stderr, logEvery = DEFAULT_LOG_EVERY): Renderer {
  const trainStages = new Map<string, number | undefined>();
  const keepStep = (step: number, total: number | undefined) => step % logEvery === 0 || step === total || step === 1;
  let lastTotal: number | undefined;
  return {
    onEvent: (e) => {
      if (e.type === 'stage-start' && isTrainUnit(e.unit)) {
        trainStages.set(e.stage, e.total);
        lastTotal = e.total;
      }
      if (e.type === 'progress' && trainStages.has(e.stage) && !keepStep(e.done, e.total ?? trainStages.get(e.stage))) return;
      if (e.type === 'metric' && trainStages.size && e.step !== undefined && !isVal(e.name) && !keepStep(e.step, lastTotal)) return;
      // an image event carries its PNG's size, not its bytes (the PNG is in the run folder and the TensorBoard file)
      const line = e.type === 'image' ? { type: e.type, name: e.name, step: e.step, caption: e.caption, pngBytes: e.png.length } : e;
      stream.write(`${JSON.stringify({ ...line, t: Date.now() })}\n`);
    },
    stop: () => {},
  };
}

/**
 * A stage's rate: "12.3/s", or the time per item when that reads better than "0.0/s" (a slow step on a software GPU):
 * "26.0 s/clip". '-' before anything is done.
 */
export function rateText(done: number, seconds: number, unit: string): string {
  if (!(done > 0) || !(seconds > 0)) return '-';
  const perSecond = done / seconds;
  if (perSecond >= 1) return `${perSecond.toFixed(1)}/s`;
  return `${(seconds / done).toFixed(1)} s/${unit.replace(/s$/, '') || 'item'}`;
}

/**
 * Human output: one bar per running stage with count, rate and ETA (cli-progress), plus log and drop lines. A training
 * stage (unit 'steps') shows smoothed loss, lr, samples/s, step time and ETA and is redrawn at every step.
 * Without a TTY (CI logs) bars are replaced by a line per stage start/finish, and a training stage writes one line
 * every `logEvery` steps (and at its first and last step).
 */
export function barRenderer(stream: NodeJS.WriteStream = process.stderr, logLevel: 'info' | 'debug' = 'info', logEvery = DEFAULT_LOG_EVERY): Renderer {
  const tty = Boolean(stream.isTTY);
  const multi = tty
    ? new cliProgress.MultiBar(
        {
          stream,
          clearOnComplete: false,
          hideCursor: true,
          format: ' {stage} |{bar}| {value}/{total} {unit} | {rate} | ETA {eta_formatted} {detail}',
          etaBuffer: 50,
          fps: 5,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  const trainFormat = ' {stage} |{bar}| {value}/{total} {unit} | {detail}';
  const bars = new Map<string, { bar?: cliProgress.SingleBar; t0: number; unit: string; total?: number; train?: TrainStats }>();
  let current: TrainStats | undefined;
  let lastDraw = 0;
  const line = (s: string) => (multi ? multi.log(`${s}\n`) : stream.write(`${s}\n`));
  const fields = (stage: string, done: number, unit: string, t0: number, detail = '') => ({
    stage: stage.padEnd(12),
    unit,
    rate: rateText(done, (performance.now() - t0) / 1000, unit),
    detail,
  });
  const onEvent = (e: ProgressEvent) => {
    switch (e.type) {
      case 'stage-start': {
        const t0 = performance.now();
        const unit = e.unit ?? 'items';
        const train = isTrainUnit(e.unit) ? new TrainStats(e.total) : undefined;
        if (train) current = train;
        const bar = multi?.create(e.total ?? 0, 0, fields(e.stage, 0, unit, t0), train ? { format: trainFormat } : undefined);
        bars.set(e.stage, { bar, t0, unit, total: e.total, train });
        if (!multi) line(`> ${e.stage}${e.total !== undefined ? ` (${e.total} ${unit})` : ''}`);
        break;
      }
      case 'progress': {
        const b = bars.get(e.stage);
        if (!b) break;
        if (e.total !== undefined && b.bar && e.total !== b.total) b.bar.setTotal(e.total);
        b.total = e.total ?? b.total;
        if (b.train) {
          b.train.progress(e.done, e.total);
          const detail = b.train.fields();
          if (b.bar) {
            b.bar.update(e.done, { ...fields(e.stage, e.done, b.unit, b.t0), detail });
            const now = performance.now();
            // The training loop may hold the event loop for a whole step, so cli-progress's timer cannot redraw.
            if (now - lastDraw >= REDRAW_MS || e.done === b.total) {
              lastDraw = now;
              multi?.update();
            }
          } else if (e.done % logEvery === 0 || e.done === b.total || b.train.stepsRun === 1) {
            line(`  ${e.stage} step ${e.done}${b.total !== undefined ? `/${b.total}` : ''} | ${detail}`);
          }
        } else b.bar?.update(e.done, fields(e.stage, e.done, b.unit, b.t0, e.detail));
        break;
      }
      case 'stage-done': {
        const b = bars.get(e.stage);
        // A training stage counts the steps run here (e.done is the absolute step, which includes a resumed run's).
        const done = b?.train ? b.train.stepsRun : e.done;
        const rate = rateText(done, e.seconds, b?.unit ?? '');
        if (b?.bar) {
          b.bar.setTotal(Math.max(e.done, b.total ?? 0));
          b.bar.update(e.done, { ...fields(e.stage, e.done, b.unit, b.t0), detail: b.train?.fields() ?? '' });
          b.bar.stop();
        } else {
          const upTo = b?.train && done !== e.done ? ` (to step ${e.done})` : '';
          line(`< ${e.stage}: ${done} ${b?.unit ?? ''}${upTo} in ${e.seconds.toFixed(1)} s (${rate})`);
        }
        bars.delete(e.stage);
        break;
      }
      case 'dropped':
        line(`! ${e.stage}: dropped ${e.id} (${e.reason}): ${e.message}`);
        break;
      case 'log':
        if (e.level !== 'debug' || logLevel === 'debug') line(`${e.level === 'warn' ? 'warning: ' : ''}${e.message}`);
        break;
      case 'metric':
        current?.metric(e.name, e.value, e.step);
        if (logLevel === 'debug') line(`${e.name}=${e.value}${e.step !== undefined ? ` @${e.step}` : ''}`);
        break;
      case 'image':
        if (logLevel === 'debug') line(`image ${e.name} @${e.step}`);
        break;
    }
  };
  return { onEvent, stop: () => multi?.stop() };
}

/** The end-of-run summary of a training run, as lines for the terminal. */
export interface TrainSummary {
  title: string;
  steps: number;
  startStep: number;
  seconds: number;
  finalTrainLoss?: number;
  finalValLoss?: number;
  bestVal?: { name: string; value: number; step: number };
  checkpoint: string;
  next?: string;
}

export function summaryLines(s: TrainSummary): string[] {
  const ran = s.steps - s.startStep;
  const lines = [
    `${s.title}: ${ran} steps${s.startStep ? ` (resumed at ${s.startStep}, now at ${s.steps})` : ''} in ${formatDuration(s.seconds)}` +
      (ran > 0 ? ` (${formatDuration(s.seconds / ran)}/step)` : ''),
    `  final train loss ${num(s.finalTrainLoss)}${s.finalValLoss !== undefined ? ` | validation loss ${num(s.finalValLoss)}` : ''}` +
      (s.bestVal ? ` | best validation ${num(s.bestVal.value)} (${s.bestVal.name} @ step ${s.bestVal.step})` : ''),
    `  checkpoint ${s.checkpoint}`,
  ];
  if (s.next) lines.push(`  next: ${s.next}`);
  return lines;
}

/** An event sink that keeps {@link TrainStats} for the summary (best validation value) beside the renderer. */
export function statsTap(next: OnEvent): { onEvent: OnEvent; stats: () => TrainStats | undefined } {
  let stats: TrainStats | undefined;
  return {
    onEvent: (e) => {
      if (e.type === 'stage-start' && isTrainUnit(e.unit)) stats = new TrainStats(e.total);
      else if (e.type === 'progress' && stats) stats.progress(e.done, e.total);
      else if (e.type === 'metric' && stats) stats.metric(e.name, e.value, e.step);
      next(e);
    },
    stats: () => stats,
  };
}

/** The best (lowest) validation value a run showed, if any. */
export function bestValidation(stats: TrainStats | undefined): TrainSummary['bestVal'] {
  let best: TrainSummary['bestVal'];
  for (const [name, v] of stats?.val ?? []) if (!best || v.best < best.value) best = { name, value: v.best, step: v.bestStep };
  return best;
}
