import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IBUG68_FROM_MESH, goodRuns, jitter, parseSmoothing, smoothSequence, toIbug68 } from '../../src/face/landmarks/index.js';
import { DifftalkError } from '../../src/util/errors.js';

test('parseSmoothing: accepted specs and a clear error otherwise', () => {
  assert.deepEqual(parseSmoothing('none'), { kind: 'none' });
  assert.deepEqual(parseSmoothing('savgol:5'), { kind: 'savgol', window: 5, order: 2 });
  assert.deepEqual(parseSmoothing('ema:0.5'), { kind: 'ema', alpha: 0.5 });
  for (const bad of ['savgol:4', 'savgol:1', 'ema:0', 'ema:1.5', 'gauss:3', '']) {
    assert.throws(
      () => parseSmoothing(bad),
      (e: unknown) => e instanceof DifftalkError && e.code === 'bad-smoothing',
      bad,
    );
  }
});

test('goodRuns splits at bad frames', () => {
  assert.deepEqual(goodRuns([true, true, false, true, false, false, true]), [
    [0, 2],
    [3, 4],
    [6, 7],
  ]);
  assert.deepEqual(goodRuns([]), []);
});

test('savgol:5 interior weights are the classical Savitzky–Golay coefficients (-3, 12, 17, 12, -3)/35', () => {
  // reference: Savitzky & Golay (1964), quadratic/cubic smoothing, 5 points; tolerance 1e-6 (float32)
  const n = 9;
  const good = new Array<boolean>(n).fill(true);
  const impulse = new Float32Array(n);
  impulse[4] = 1;
  const out = smoothSequence(impulse, 1, good, 'savgol:5');
  const expected = [-3, 12, 17, 12, -3].map((c) => c / 35);
  for (let k = 0; k < 5; k++) assert.ok(Math.abs(out[2 + k]! - expected[4 - k]!) < 1e-6, `tap ${k}: ${out[2 + k]}`);
});

test('savgol reproduces quadratics exactly, also at run ends (reference: exact polynomial, tolerance 1e-3)', () => {
  const n = 12;
  const data = new Float32Array(n * 2);
  for (let t = 0; t < n; t++) {
    data[t * 2] = 3 + 2 * t - 0.25 * t * t;
    data[t * 2 + 1] = -7 + 0.5 * t;
  }
  const out = smoothSequence(data, 2, new Array<boolean>(n).fill(true), 'savgol:7');
  for (let i = 0; i < data.length; i++) assert.ok(Math.abs(out[i]! - data[i]!) < 1e-3, `${i}: ${out[i]} vs ${data[i]}`);
});

test('smoothing never crosses a bad frame; bad frames come out NaN', () => {
  const n = 10;
  const data = new Float32Array(n).fill(1);
  for (let t = 5; t < n; t++) data[t] = 100; // a jump hidden behind bad frame 4
  data[4] = 1e6;
  const goodArr = Array.from({ length: n }, (_, t) => t !== 4);
  for (const spec of ['savgol:5', 'ema:0.3', 'none']) {
    const out = smoothSequence(data, 1, goodArr, spec);
    assert.ok(Number.isNaN(out[4]!), spec);
    for (let t = 0; t < 4; t++) assert.ok(Math.abs(out[t]! - 1) < 1e-4, `${spec} t=${t}: ${out[t]}`);
    for (let t = 5; t < n; t++) assert.ok(Math.abs(out[t]! - 100) < 1e-3, `${spec} t=${t}: ${out[t]}`);
  }
});

test('ema is zero-phase: a symmetric bump stays centred (reference: exact symmetry, tolerance 1e-4)', () => {
  const n = 21;
  const data = new Float32Array(n);
  data[10] = 10;
  const out = smoothSequence(data, 1, new Array<boolean>(n).fill(true), 'ema:0.4');
  let best = 0;
  for (let t = 1; t < n; t++) if (out[t]! > out[best]!) best = t;
  assert.equal(best, 10);
  for (let k = 1; k <= 3; k++) assert.ok(Math.abs(out[10 - k]! - out[10 + k]!) < 0.05 * out[10]!, `k=${k}`);
});

/** A synthetic 478-point "face" moved by a similarity transform per frame, plus optional noise. */
function movingFace(frames: number, noise: number, seed = 1): Float32Array {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
  const base = new Float32Array(478 * 3);
  for (let i = 0; i < 478; i++) {
    base[i * 3] = 100 + 60 * Math.cos(i * 0.7) + (i % 13);
    base[i * 3 + 1] = 120 + 70 * Math.sin(i * 1.3) - (i % 7);
  }
  const out = new Float32Array(frames * 478 * 3);
  for (let f = 0; f < frames; f++) {
    const ang = 0.02 * f;
    const sc = 1 + 0.01 * f;
    const tx = 3 * f;
    const ty = -2 * f;
    for (let i = 0; i < 478; i++) {
      const x = base[i * 3]! - 128;
      const y = base[i * 3 + 1]! - 128;
      out[(f * 478 + i) * 3] = 128 + sc * (Math.cos(ang) * x - Math.sin(ang) * y) + tx + noise * rnd();
      out[(f * 478 + i) * 3 + 1] = 128 + sc * (Math.sin(ang) * x + Math.cos(ang) * y) + ty + noise * rnd();
    }
  }
  return out;
}

test('jitter removes global similarity motion: a rigidly moving face has ~0 jitter (tolerance 1e-3 px)', () => {
  const pts = movingFace(20, 0);
  const j = jitter(pts, new Array<boolean>(20).fill(true));
  assert.ok(j < 1e-3, `jitter ${j}`);
});

test('jitter measures per-point noise and skips bad frames', () => {
  // reference: i.i.d. uniform noise in [-a, a] per coordinate (a = 1): the difference of two frames has a median
  // norm of 1.01·a (numpy simulation, 200k samples); the similarity fit over 18 points absorbs a little of it;
  // tolerance 0.55–1.05
  const pts = movingFace(60, 1);
  const good = new Array<boolean>(60).fill(true);
  const j = jitter(pts, good);
  assert.ok(j > 0.55 && j < 1.05, `jitter ${j}`);
  assert.ok(
    Number.isNaN(
      jitter(
        pts,
        good.map((_, i) => i % 2 === 0),
      ),
    ),
    'no consecutive good pair → NaN',
  );
  const smoothed = smoothSequence(pts, 478 * 3, good, 'savgol:9');
  assert.ok(jitter(smoothed, good) < j / 2, 'smoothing reduces jitter');
});

test('iBUG-68 map: 68 distinct mesh vertices, NaN passes through', () => {
  assert.equal(IBUG68_FROM_MESH.length, 68);
  assert.equal(new Set(IBUG68_FROM_MESH).size, 68);
  for (const i of IBUG68_FROM_MESH) assert.ok(i >= 0 && i < 468);
  const pts = new Float32Array(478 * 3).map((_, k) => k);
  const lm = toIbug68(pts);
  assert.equal(lm[30 * 2], 4 * 3);
  assert.equal(lm[33 * 2 + 1], 2 * 3 + 1);
  assert.ok(toIbug68(new Float32Array(478 * 3).fill(Number.NaN)).every(Number.isNaN));
  assert.ok(toIbug68(new Float32Array(0)).every(Number.isNaN));
});
