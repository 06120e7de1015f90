/**
 * DiffTalk's noise schedule and DDIM discretisation against ../shared/data/fixtures/expected.json `schedule`
 * (values from the reference register_schedule / make_ddim_timesteps; tolerance 1e-12 relative, float64 math).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { FIXTURES } from '../helpers.js';
import { tf, initBackend } from '../../src/util/tf.js';
import { DdimScheduler } from '../../src/models/schedulers/ddim.js';
import { DIFFTALK_SCHEDULE } from '../../src/models/presets.js';

const fx = JSON.parse(readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8')).schedule;
const close = (a: number, b: number, rel = 1e-12) => assert.ok(Math.abs(a - b) <= rel * Math.abs(b), `${a} vs ${b}`);

test('betas and alphas_cumprod match the reference schedule', () => {
  const s = new DdimScheduler(DIFFTALK_SCHEDULE);
  close(s.betas[0]!, fx.betas_0);
  close(s.betas[999]!, fx.betas_999);
  close(s.alphasCumprod[0]!, fx.alphas_cumprod_0);
  close(s.alphasCumprod[499]!, fx.alphas_cumprod_499, 1e-10);
  close(s.alphasCumprod[999]!, fx.alphas_cumprod_999, 1e-9);
});

test('200 uniform DDIM steps are 1, 6, …, 996 (fixture lists range(0,1000,5) before LDM adds 1)', () => {
  const s = new DdimScheduler(DIFFTALK_SCHEDULE);
  const ts = s.setTimesteps(200);
  assert.equal(ts.length, 200);
  assert.deepEqual(
    ts.slice(-5).reverse(),
    fx.ddim_200_timesteps_first5.map((t: number) => t + 1),
  );
  assert.equal(ts[0], 996);
});

test('step inverts addNoise when given the true noise, and a reloaded config steps identically', async () => {
  await initBackend('cpu');
  const s = new DdimScheduler(DIFFTALK_SCHEDULE);
  s.setTimesteps(50);
  const x0 = tf.randomNormal([2, 4, 4, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
  const eps = tf.randomNormal([2, 4, 4, 3], 0, 1, 'float32', 2) as tf.Tensor4D;
  const t = s.timesteps[10]!;
  const xt = s.addNoise(x0, eps, t);
  const { predOriginal, prevSample } = s.step(eps, t, xt);
  // x̂₀ recovers x0 up to float32 rounding (1e-4 abs)
  assert.ok(tf.max(tf.abs(tf.sub(predOriginal, x0))).dataSync()[0]! < 1e-4);
  // with the true noise, x_prev is exactly q(x_prev | x0) with the same noise (1e-4 abs)
  const expectPrev = s.addNoise(x0, eps, s.timesteps[11]!);
  assert.ok(tf.max(tf.abs(tf.sub(prevSample, expectPrev))).dataSync()[0]! < 1e-4);
  const s2 = DdimScheduler.fromConfig(JSON.parse(JSON.stringify(s.config)));
  s2.setTimesteps(50);
  assert.deepEqual(s2.step(eps, t, xt).prevSample.dataSync(), prevSample.dataSync());
});
