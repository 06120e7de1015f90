/**
 * LossScaler (src/train/loss-scale.ts) against torch.cuda.amp.GradScaler's documented update rule, by hand:
 * defaults init 65536, growth 2, backoff 0.5, interval 2000; an inf/NaN step is skipped and halves the scale and
 * resets the good-step count; `interval` good steps in a row double it; the state (config included) round-trips
 * through JSON as state.json stores it; a corrupt saved state is one clear error.
 * (The scaler inside the training loop on the GPU, and its state through a real checkpoint: tests/gpu/mixed-train.test.ts.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GRAD_SCALER, LossScaler } from '../../src/train/loss-scale.js';
import { DifftalkError } from '../../src/util/errors.js';

test('loss scaler: GradScaler defaults', () => {
  assert.deepEqual(GRAD_SCALER, { init: 65536, growth: 2, backoff: 0.5, interval: 2000 });
  const s = new LossScaler();
  assert.equal(s.scale, 65536);
  assert.equal(s.goodSteps, 0);
});

test('loss scaler: an overflow skips the step, halves the scale and restarts the growth count', () => {
  const s = new LossScaler({ interval: 3 });
  assert.equal(s.update(true), true);
  assert.equal(s.update(true), true);
  assert.equal(s.goodSteps, 2);
  assert.equal(s.update(false), false, 'skip');
  assert.equal(s.scale, 32768);
  assert.equal(s.goodSteps, 0);
  assert.equal(s.update(false), false);
  assert.equal(s.scale, 16384);
  assert.equal(s.skipped, 2);
});

test('loss scaler: the scale doubles after `interval` good steps in a row, not before', () => {
  const s = new LossScaler({ init: 1024, interval: 3 });
  s.update(true);
  s.update(true);
  assert.equal(s.scale, 1024);
  s.update(true);
  assert.equal(s.scale, 2048, 'third good step');
  assert.equal(s.goodSteps, 0);
  for (let i = 0; i < 2; i++) s.update(true);
  s.update(false);
  assert.equal(s.scale, 1024, 'two good steps then an overflow: no growth, then backoff');
  for (let i = 0; i < 3; i++) s.update(true);
  assert.equal(s.scale, 2048);
});

test('loss scaler: the state round-trips through JSON (as in state.json), config included', () => {
  const a = new LossScaler({ init: 4096, interval: 5, growth: 4, backoff: 0.25 });
  a.update(false);
  a.update(true);
  a.update(true);
  const b = new LossScaler();
  b.load(JSON.parse(JSON.stringify(a.state())));
  assert.deepEqual(b.state(), { config: { init: 4096, growth: 4, backoff: 0.25, interval: 5 }, scale: 1024, goodSteps: 2, skipped: 1 });
  for (let i = 0; i < 3; i++) b.update(true);
  assert.equal(b.scale, 4096, 'grows ×4 after 5 good steps in all (2 before the save, 3 after)');
});

test('loss scaler: a corrupt saved state or a bad config is one clear error', () => {
  const s = new LossScaler();
  for (const bad of [
    { scale: -1, goodSteps: 0, config: GRAD_SCALER },
    { scale: 1, goodSteps: 0.5, config: GRAD_SCALER },
    { scale: 1, goodSteps: 0, config: { ...GRAD_SCALER, backoff: 2 } },
    null,
  ]) {
    assert.throws(
      () => s.load(bad as never),
      (e: unknown) => e instanceof DifftalkError && e.code === 'checkpoint-corrupt',
    );
  }
  assert.throws(
    () => new LossScaler({ growth: 1 }),
    (e: unknown) => e instanceof DifftalkError && e.code === 'bad-flag',
  );
});
