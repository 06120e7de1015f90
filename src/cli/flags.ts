/**
 * Flags shared by several commands: the TensorFlow.js backend, checked numbers, and the options common to the training
 * commands (`train autoencoder`, `train ldm`) with their mapping to the loops' options, so every command spells and
 * checks them the same way.
 */
import { Flags, type Interfaces } from '@oclif/core';
import type { CommonTrainOptions } from '../train/core.js';
import type { PresetName } from '../models/presets.js';
import { DifftalkError } from '../util/errors.js';
import { DEFAULT_LOG_EVERY } from './progress.js';

/**
 * A numeric flag value checked against a range (`gt`: exclusive lower bound, `ge`/`le`: inclusive bounds); NaN and
 * non-numbers fail too. One clear error naming the flag otherwise.
 */
export function numberFlag(name: string, v: string, range: { gt?: number; ge?: number; le?: number }): number {
  const x = Number(v);
  const { gt, ge, le } = range;
  if (Number.isFinite(x) && (gt === undefined || x > gt) && (ge === undefined || x >= ge) && (le === undefined || x <= le)) return x;
  let want: string;
  if (ge !== undefined && le !== undefined) want = `a number in [${ge}, ${le}]`;
  else if (gt === 0 && le === undefined) want = 'a positive number';
  else want = `a number ${[gt !== undefined && `> ${gt}`, ge !== undefined && `≥ ${ge}`, le !== undefined && `≤ ${le}`].filter(Boolean).join(' and ')}`;
  throw new DifftalkError('bad-flag', `--${name} must be ${want}, got ${v}`);
}

/** A flag value that must be a finite number > 0 (`--lr 1e-3`). */
export const positiveNumber = (name: string, v: string): number => numberFlag(name, v, { gt: 0 });

/** A flag value that must be a finite number ≥ 0. */
export const nonNegativeNumber = (name: string, v: string): number => numberFlag(name, v, { ge: 0 });

export const backendFlag = (defaultBackend: 'auto' | 'wasm' = 'auto') =>
  Flags.option({
    options: ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'] as const,
    default: defaultBackend,
    summary: 'TensorFlow.js backend: webgpu on a GPU, wasm on a CPU, cpu only as a slow reference.',
    description:
      'webgpu: any Vulkan GPU through the npm `webgpu` package (Dawn); prints the adapter, its features and limits. ' +
      'wasm: the fast CPU backend (use it on machines without a GPU). tensorflow: tfjs-node[-gpu] if installed (CUDA 11). ' +
      'cpu: plain JavaScript reference, orders of magnitude slower than wasm (only for checks). ' +
      'auto: tensorflow → webgpu (hardware adapters only, not lavapipe) → wasm → cpu, and says what it picked and why.',
  })();

/** `--precision` (train, render): resolved after the backend starts by models/kernels resolvePrecision. */
export const precisionFlag = () =>
  Flags.option({
    options: ['auto', 'fp32', 'mixed'] as const,
    default: 'auto',
    summary: 'Arithmetic: fp32, or mixed (webgpu with shader-f16: f16 matmul/conv operands, f32 sums, f32 weights, dynamic loss scaling).',
    description:
      'auto: mixed where the backend is webgpu and the adapter offers shader-f16, fp32 elsewhere; the choice is printed and in --json. ' +
      'mixed on another backend is an error (exit 2).',
  })();

/** Flags of the first-stage and LDM trainers; `defaults` are the command's own defaults. */
export function commonTrainFlags(defaults: {
  preset: PresetName;
  steps: number;
  batch: number;
  baseLr: number;
  seed: number;
  checkpointEvery: number;
  validateEvery: number;
  sampleEvery: number;
}) {
  return {
    data: Flags.directory({ summary: 'Prepared dataset folder (difftalk prep --out).', required: true }),
    out: Flags.directory({ summary: 'Run folder.', required: true }),
    preset: Flags.option({ options: ['paper', 'small', 'tiny'] as const, default: defaults.preset })(),
    steps: Flags.integer({ min: 1, default: defaults.steps, summary: 'Optimizer steps to reach (with --resume: the total, not more steps).' }),
    batch: Flags.integer({ min: 1, default: defaults.batch }),
    accumulate: Flags.integer({ min: 1, default: 1, summary: 'Gradient accumulation micro-batches per optimizer step.' }),
    'base-lr': Flags.string({ default: String(defaults.baseLr), summary: 'Per-sample learning rate: lr = base-lr × batch × accumulate.' }),
    lr: Flags.string({ summary: 'Absolute learning rate (overrides the base-lr rule).' }),
    'lr-schedule': Flags.option({
      options: ['constant', 'cosine'] as const,
      default: 'constant',
      summary: 'constant (the reference) or cosine decay to 5 % of lr at --steps.',
    })(),
    seed: Flags.integer({ default: defaults.seed }),
    'checkpoint-every': Flags.integer({ min: 1, default: defaults.checkpointEvery }),
    'validate-every': Flags.integer({ min: 1, default: defaults.validateEvery }),
    'sample-every': Flags.integer({ min: 1, default: defaults.sampleEvery }),
    resume: Flags.boolean({ default: false, summary: 'Continue the run in --out from latest.json; --steps is the total to reach.' }),
    backend: backendFlag(),
    precision: precisionFlag(),
    'log-every': logEveryFlag(),
  };
}

/** Progress-line period off a TTY and under --json (every trainer). */
export const logEveryFlag = () =>
  Flags.integer({ min: 1, default: DEFAULT_LOG_EVERY, summary: 'Without a terminal (logs, CI) or with --json: one progress line / event every N steps.' });

/** What `this.parse` returns for the common trainer flags. */
type ParsedCommonFlags = Interfaces.InferredFlags<ReturnType<typeof commonTrainFlags>>;

/** The parsed common flags as loop options (the rest of CommonTrainOptions comes from the loop's defaults). */
export function commonTrainOptions(
  f: ParsedCommonFlags,
): Pick<
  CommonTrainOptions,
  | 'dataset'
  | 'out'
  | 'preset'
  | 'steps'
  | 'batchSize'
  | 'accumulate'
  | 'baseLr'
  | 'lr'
  | 'lrSchedule'
  | 'seed'
  | 'checkpointEvery'
  | 'validateEvery'
  | 'sampleEvery'
  | 'resume'
> {
  return {
    dataset: f.data,
    out: f.out,
    preset: f.preset,
    steps: f.steps,
    batchSize: f.batch,
    accumulate: f.accumulate,
    baseLr: positiveNumber('base-lr', f['base-lr']),
    lr: f.lr === undefined ? undefined : positiveNumber('lr', f.lr),
    lrSchedule: f['lr-schedule'],
    seed: f.seed,
    checkpointEvery: f['checkpoint-every'],
    validateEvery: f['validate-every'],
    sampleEvery: f['sample-every'],
    resume: f.resume,
  };
}
