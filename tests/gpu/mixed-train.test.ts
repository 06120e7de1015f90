/**
 * The training loop (src/train/core.ts runTraining) under --precision mixed on this machine's adapter (CI: lavapipe),
 * on a toy model small enough to reason about by hand: linear regression W ∈ R^{48×16}, loss mean((X·W − Y)²) over a
 * fixed batch X ∈ [-1, 1)^{64×48}, Y = X·W* (W* also in [-1, 1)), W = 0 at start. Its gradient Xᵀ·dP goes through
 * the mixed matmul kernel, whose operand dP = scale·(P − Y)/512 is rounded to f16, so with the loss scale started at
 * 2^24 (max |Y| ≈ 7) the first steps overflow f16 for real.
 * Asserts:
 * - an overflowing step is skipped: the next step's loss is bit-identical (same batch, weights untouched) and AdamW's
 *   step count does not advance; the scale after every step equals a hand replay of GradScaler's rule (×0.5 on each
 *   skip, ×2 after `interval` = 3 good steps in a row); once the scale fits, the loss falls;
 * - the loss-scale state goes through the checkpoint: a run stopped at step 4 and resumed to 8 ends with the same
 *   scale, growth count and loss as the uninterrupted run (bit-identical: weights and moments are saved exactly and
 *   the kernels are deterministic);
 * - with a scale that never overflows (1024), mixed follows fp32: every step's loss within 1e-2 relative (f16
 *   operands: ~3e-4 relative per product, see mixed.test.ts, compounded over 8 Adam steps).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { mixedUnavailable } from '../../src/models/kernels/index.js';
import { DEFAULT_TRAIN, openRun, runTraining, type CoreOptions, type RunState, type TrainableModel } from '../../src/train/core.js';
import { LossScaler } from '../../src/train/loss-scale.js';
import type { ProgressEvent } from '../../src/util/events.js';
import { initBackend, tf } from '../../src/util/tf.js';
import type { TensorData } from '../../src/weights/torch.js';
import { tmpDir } from '../helpers.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';

let unavailable: string | undefined;
try {
  await initBackend('webgpu');
  unavailable = mixedUnavailable();
} catch (e) {
  unavailable = `no WebGPU adapter here (${(e as Error).message}); .ci/run installs Mesa ≥ 25 lavapipe`;
}

function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

const [N, D, O] = [64, 48, 16];
const X = values(N * D, 5);
const WSTAR = values(D * O, 9);
const Y = new Float32Array(N * O);
for (let n = 0; n < N; n++) for (let o = 0; o < O; o++) for (let d = 0; d < D; d++) Y[n * O + o]! += X[n * D + d]! * WSTAR[d * O + o]!;

function toy(saved?: Map<string, TensorData>): TrainableModel<{ toy: true }> {
  const w = tf.variable(saved ? tf.tensor2d(saved.get('w')!.data as Float32Array, [D, O]) : tf.zeros([D, O]), true, 'toy_w');
  const x = tf.tensor2d(X, [N, D]);
  const y = tf.tensor2d(Y, [N, O]);
  return {
    config: { toy: true },
    record: {},
    stage: 'toy',
    describe: 'toy regression',
    curveTitle: 'toy',
    vars: new Map([['w', w]]),
    batchSize: N,
    trainSamples: N,
    valSamples: 0,
    loss: () => tf.mean(tf.square(tf.sub(tf.matMul(x, w), y))) as tf.Scalar,
    weights: async () => new Map([['w', { dtype: 'float32', shape: [D, O], data: (await w.data()) as Float32Array }]]),
    dispose: () => tf.dispose([w, x, y]),
  };
}

interface Run {
  losses: number[];
  scales: number[];
  skipped: number[];
  result: Awaited<ReturnType<typeof runTraining>>['result'];
  state: RunState;
}

async function train(out: string, steps: number, extra: Partial<CoreOptions>): Promise<Run> {
  const losses: number[] = [];
  const scales: number[] = [];
  const skipped: number[] = [];
  const onEvent = (e: ProgressEvent) => {
    if (e.type === 'metric' && e.name === 'train/loss') losses.push(e.value);
    if (e.type === 'metric' && e.name === 'train/loss_scale') scales.push(e.value);
    if (e.type === 'log' && /update skipped/.test(e.message)) skipped.push(Number(/^step (\d+)/.exec(e.message)![1]));
  };
  const o: CoreOptions = {
    ...DEFAULT_TRAIN,
    out,
    steps,
    batchSize: N,
    lr: 0.05,
    weightDecay: 0,
    gradClip: 1e9,
    checkpointEvery: 1000,
    validateEvery: 1000,
    sampleEvery: 1000,
    onEvent,
    ...extra,
  };
  const saved = await openRun<RunState<{ toy: true }>>(o, 'autoencoder');
  const { result, state } = await runTraining(o, 'autoencoder', saved, toy(saved?.model));
  return { losses, scales, skipped, result, state };
}

const OVERFLOW = { init: 2 ** 24, interval: 3 };

test('mixed training: overflow skips the step and backs off, good steps grow the scale (GradScaler rule), the loss falls', async (t) => {
  if (unavailable) return t.skip(unavailable);
  const r = await train(path.join(tmpDir('difftalk-mixed-'), 'run'), 8, { precision: 'mixed', lossScale: OVERFLOW });
  t.diagnostic(`losses ${r.losses.map((l) => l.toPrecision(4)).join(' ')}; scales ${r.scales.join(' ')}; skipped ${r.skipped.join(',')}`);
  assert.equal(r.result.precision, 'mixed');
  assert.ok(r.skipped.includes(1), 'loss scale 2^24 overflows f16 at step 1');
  assert.ok(r.skipped.length < 8, 'the scale came down to where steps run');
  assert.equal(r.result.skippedSteps, r.skipped.length);
  const replay = new LossScaler(OVERFLOW);
  for (let s = 1; s <= 8; s++) {
    replay.update(!r.skipped.includes(s));
    assert.equal(r.scales[s - 1], replay.scale, `scale after step ${s}`);
  }
  for (const s of r.skipped) if (s < 8) assert.equal(r.losses[s], r.losses[s - 1], `step ${s} skipped: step ${s + 1} sees the same weights`);
  assert.equal(r.state.optimizer.step, 8 - r.skipped.length, "AdamW's step count counts applied updates only");
  assert.deepEqual(r.state.lossScale, replay.state());
  assert.equal(r.state.precision, 'mixed');
  assert.ok(r.losses[7]! < 0.5 * r.losses[0]!, `loss falls: ${r.losses[0]} → ${r.losses[7]}`);
});

test('mixed training: the loss-scale state goes through the checkpoint; stop at 4 + resume to 8 = 8 straight', async (t) => {
  if (unavailable) return t.skip(unavailable);
  const work = tmpDir('difftalk-mixed-resume-');
  const straight = await train(path.join(work, 'straight'), 8, { precision: 'mixed', lossScale: OVERFLOW });
  const out = path.join(work, 'resumed');
  const first = await train(out, 4, { precision: 'mixed', lossScale: OVERFLOW, checkpointEvery: 1 });
  const saved = JSON.parse(readFileSync(path.join(out, 'ckpt-00000004', 'state.json'), 'utf8')) as RunState;
  assert.deepEqual(saved.lossScale, first.state.lossScale);
  // resumed without the lossScale option: the saved state (config included) is what counts
  const second = await train(out, 8, { precision: 'mixed', resume: true });
  assert.equal(second.result.startStep, 4);
  assert.deepEqual(second.state.lossScale, straight.state.lossScale);
  assert.deepEqual([...first.losses, ...second.losses], straight.losses);
  assert.deepEqual([...first.scales, ...second.scales], straight.scales);
});

test('mixed training without overflow follows fp32 within 1e-2 relative per step', async (t) => {
  if (unavailable) return t.skip(unavailable);
  const work = tmpDir('difftalk-mixed-fp32-');
  const mixed = await train(path.join(work, 'mixed'), 8, { precision: 'mixed', lossScale: { init: 1024 } });
  const fp32 = await train(path.join(work, 'fp32'), 8, { precision: 'fp32' });
  assert.equal(mixed.skipped.length, 0);
  assert.equal(fp32.result.precision, 'fp32');
  assert.equal(fp32.state.lossScale, undefined);
  assert.equal(fp32.scales.length, 0);
  const worst = Math.max(...mixed.losses.map((l, i) => Math.abs(l - fp32.losses[i]!) / fp32.losses[i]!));
  t.diagnostic(`worst relative loss difference ${worst.toExponential(2)} (fp32 ${fp32.losses[0]} → ${fp32.losses[7]})`);
  assert.ok(worst < 1e-2, `worst ${worst}`);
  assert.ok(worst > 0, 'mixed differs from fp32 at all (f16 operands)');
});
