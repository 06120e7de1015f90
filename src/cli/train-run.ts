/**
 * What every model trainer command does around its library call: refuse a preset that cannot run on the backend
 * (before any work), record TensorBoard event files in the run folder, and print the end-of-run summary; and the
 * backend + --precision start that the trainers and render share (startBackend).
 */
import os from 'node:os';
import { describePrecision, resolvePrecision, type Precision, type PrecisionChoice } from '../models/kernels/index.js';
import { checkPresetFits, type PresetFit, type PresetName, type StepBackend } from '../models/presets.js';
import { tensorBoardSink } from '../train/tensorboard.js';
import type { TrainResult } from '../train/core.js';
import type { OnEvent } from '../util/events.js';
import { backendInfo, initBackend, type BackendInfo, type BackendName } from '../util/tf.js';
import { bestValidation, statsTap, summaryLines } from './progress.js';
import { stopSignals } from './stop-signals.js';

const STEP_BACKENDS: readonly string[] = ['tensorflow', 'webgpu', 'wasm', 'cpu'];

/**
 * Refuse (exit 2) a preset whose step does not fit the backend; `backend` is the one that started (or the one named,
 * checked before it starts). Host memory bounds the CPU backends; a GPU's memory is not known here.
 */
export function checkPreset(preset: PresetName, stages: readonly ('autoencoder' | 'ldm')[], backend: string, batch: number): PresetFit[] {
  if (!STEP_BACKENDS.includes(backend)) return [];
  const host = backend === 'webgpu' ? undefined : os.totalmem();
  return checkPresetFits(preset, stages, backend as StepBackend, batch, host);
}

/**
 * Start the backend (initBackend's header line: adapter, features, limits) and resolve --precision on it (a line
 * saying which precision and why); --precision mixed where it cannot run is an error (exit 2) before any work.
 */
export async function startBackend(
  backend: string,
  precision: string,
  onEvent: OnEvent,
): Promise<{ backend: string; precision: Precision; device?: GpuDevice }> {
  const started = await initBackend(backend as BackendName, onEvent);
  const p = resolvePrecision(precision as PrecisionChoice);
  onEvent({ type: 'log', level: 'info', message: describePrecision(p) });
  const info = backendInfo();
  const device = info?.adapter ? { adapter: info.adapter, features: info.features ?? [], limits: info.limits ?? {} } : undefined;
  return { backend: started, precision: p.precision, ...(device ? { device } : {}) };
}

/** The WebGPU adapter a command ran on (its name, features and limits): part of the --json result on webgpu. */
export type GpuDevice = Required<Pick<BackendInfo, 'adapter' | 'features' | 'limits'>>;

/** Run one trainer with TensorBoard files in `out` and return its result with the summary lines. */
export async function recordedRun<R extends TrainResult>(
  title: string,
  out: string,
  onEvent: OnEvent,
  next: string | undefined,
  run: (onEvent: OnEvent) => Promise<R>,
): Promise<{ result: R; summary: string[]; tensorboard?: string; seconds: number }> {
  const tap = statsTap(onEvent);
  const tb = tensorBoardSink(out, tap.onEvent);
  const t0 = performance.now();
  let result: R;
  try {
    result = await run(tb.onEvent);
  } finally {
    tb.close();
  }
  const seconds = (performance.now() - t0) / 1000;
  const summary = summaryLines({
    title,
    steps: result.step,
    startStep: result.startStep,
    seconds,
    finalTrainLoss: result.lastLoss,
    finalValLoss: result.valLoss,
    bestVal: bestValidation(tap.stats()),
    checkpoint: result.checkpoint,
    next,
  });
  const file = tb.file();
  if (file) summary.push(`  tensorboard --logdir ${out}`);
  return { result, summary, tensorboard: file, seconds };
}

/** The parts of a command that `stoppableRun` prints through. */
interface CommandOutput {
  log(message?: string): void;
  logToStderr(message?: string): void;
  jsonEnabled(): boolean;
}

/**
 * A trainer command's run: `recordedRun` under the stop signals (SIGTERM/SIGINT end the current step, the trainer saves
 * the step reached and returns), the summary printed; after a signal the exit code is 143/130 with the result (--json).
 */
export async function stoppableRun<R extends TrainResult>(
  cmd: CommandOutput,
  title: string,
  out: string,
  onEvent: OnEvent,
  next: string | undefined,
  run: (onEvent: OnEvent, signal: AbortSignal) => Promise<R>,
): Promise<R> {
  const stop = stopSignals();
  let recorded: Awaited<ReturnType<typeof recordedRun<R>>>;
  try {
    recorded = await recordedRun(title, out, onEvent, next, (ev) => run(ev, stop.signal));
  } finally {
    stop.dispose();
  }
  const { result, summary } = recorded;
  for (const l of summary) cmd.log(l);
  const code = stop.exitCode();
  if (code !== undefined) {
    if (!cmd.jsonEnabled()) cmd.logToStderr(`stopped by a signal at step ${result.step} (${result.checkpoint}); rerun with --resume to continue`);
    process.exitCode = code;
  }
  return result;
}
