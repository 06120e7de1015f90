import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { RealFft } from '../../src/audio/fft.js';
import { mfcc, psfFilterbank } from '../../src/audio/mfcc.js';
import { readWav } from '../../src/audio/wav.js';
import { DifftalkError } from '../../src/util/errors.js';
import { FIXTURES, MEDIA, ROOT } from '../helpers.js';

const sum = (a: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]!;
  return s;
};
const row = (m: { data: Float64Array; dim: number }, r: number): number[] => Array.from(m.data.subarray(r * m.dim, (r + 1) * m.dim));

interface Summary {
  shape: [number, number];
  sum: number;
  abs_sum: number;
  rows: Record<string, number[]>;
}
const REF = JSON.parse(readFileSync(path.join(ROOT, 'tests', 'reference', 'audio_reference.json'), 'utf8')) as Record<string, Summary>;

test('RealFft equals a direct float64 DFT (reference: naive O(n²) DFT; tolerance 1e-9 relative to the spectrum peak)', () => {
  for (const n of [2, 4, 8, 64, 512, 2048]) {
    const x = Float64Array.from({ length: n }, (_, i) => Math.sin(0.37 * i + 1) * 1000 + (i % 7) - 3);
    const fft = new RealFft(n);
    const re = new Float64Array(n / 2 + 1);
    const im = new Float64Array(n / 2 + 1);
    fft.forward(x, re, im);
    let peak = 0;
    const want: [number, number][] = [];
    for (let k = 0; k <= n / 2; k++) {
      let a = 0;
      let b = 0;
      for (let t = 0; t < n; t++) {
        a += x[t]! * Math.cos((2 * Math.PI * k * t) / n);
        b -= x[t]! * Math.sin((2 * Math.PI * k * t) / n);
      }
      want.push([a, b]);
      peak = Math.max(peak, Math.hypot(a, b));
    }
    for (let k = 0; k <= n / 2; k++) {
      assert.ok(Math.abs(re[k]! - want[k]![0]) <= 1e-9 * peak, `n=${n} re[${k}]`);
      assert.ok(Math.abs(im[k]! - want[k]![1]) <= 1e-9 * peak, `n=${n} im[${k}]`);
    }
  }
  assert.throws(
    () => new RealFft(400),
    (e: unknown) => e instanceof DifftalkError && e.code === 'bad-fft-size',
  );
});

test('mfcc on jfk.wav = python_speech_features 0.6.1 (reference: eval-metrics.md §4 golden values; 1e-6 abs per printed value, 1e-9 relative sum)', async () => {
  const wav = await readWav(path.join(MEDIA, 'jfk.wav'));
  assert.equal(wav.sampleRate, 16000);
  assert.equal(wav.samples.length, 176000);
  const m = mfcc(wav.samples, wav.sampleRate);
  assert.deepEqual([m.frames, m.dim], [1099, 13]);
  assert.equal(m.rate, 100);
  // frame 0 is digital silence: c0 = log(eps), the rest 0
  const f0 = row(m, 0);
  assert.ok(Math.abs(f0[0]! - -36.043653) < 1e-6);
  for (const v of f0.slice(1)) assert.ok(Math.abs(v) < 1e-9);
  const f100 = [
    18.255905, 17.012942, -31.54675, 1.362207, -18.115598, -8.625702, 17.640148, -16.053202, -10.535776, -14.03095, -19.281343, -4.302113, -16.87619,
  ];
  row(m, 100).forEach((v, c) => assert.ok(Math.abs(v - f100[c]!) < 1e-6, `frame 100 c${c}: ${v} vs ${f100[c]}`));
  const s = sum(m.data);
  assert.ok(Math.abs(s - -72383.28859) / 72383.28859 < 1e-9, `sum ${s}`);
});

test('mfcc on latentsync_demo1_audio.wav = PSF 0.6.1 (reference: eval-metrics.md §4; shape exact, sum 1e-9 relative)', async () => {
  const wav = await readWav(path.join(MEDIA, 'latentsync_demo1_audio.wav'));
  const m = mfcc(wav.samples, wav.sampleRate);
  assert.deepEqual([m.frames, m.dim], [959, 13]);
  const s = sum(m.data);
  assert.ok(Math.abs(s - -56504.44441) / 56504.44441 < 1e-9, `sum ${s}`);
});

test('mfcc on fixtures/syncnet_audio.wav = PSF 0.6.1 (reference: fixtures/expected.json syncnet.mfcc_*; 1e-10 abs per value, 1e-12 relative sum)', async () => {
  const exp = JSON.parse(readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8')).syncnet as {
    mfcc_shape: [number, number];
    mfcc_sum: number;
    mfcc_row10: number[];
  };
  const wav = await readWav(path.join(FIXTURES, 'syncnet_audio.wav'));
  const m = mfcc(wav.samples, wav.sampleRate);
  assert.deepEqual([m.frames, m.dim], exp.mfcc_shape);
  assert.ok(Math.abs(sum(m.data) - exp.mfcc_sum) / Math.abs(exp.mfcc_sum) < 1e-12);
  row(m, 10).forEach((v, c) => assert.ok(Math.abs(v - exp.mfcc_row10[c]!) < 1e-10, `row10 c${c}`));
});

test('mfcc at 44.1 kHz and 8 kHz (nfft auto 2048/256, half-up frame rounding) matches the numpy PSF-recipe reference (tests/reference/audio_reference.py; 1e-8 abs per value, 1e-10 relative sums)', async () => {
  const wav = await readWav(path.join(MEDIA, 'jfk.wav'));
  for (const [sr, key] of [
    [44100, 'mfcc_jfk_as_44100'],
    [8000, 'mfcc_jfk_as_8000'],
  ] as const) {
    const ref = REF[key]!;
    const m = mfcc(wav.samples, sr);
    assert.deepEqual([m.frames, m.dim], ref.shape, key);
    assert.ok(Math.abs(sum(m.data) - ref.sum) / Math.abs(ref.sum) < 1e-10, `${key} sum`);
    let abs = 0;
    for (const v of m.data) abs += Math.abs(v);
    assert.ok(Math.abs(abs - ref.abs_sum) / ref.abs_sum < 1e-10, `${key} abs sum`);
    for (const [r, vals] of Object.entries(ref.rows)) row(m, Number(r)).forEach((v, c) => assert.ok(Math.abs(v - vals[c]!) < 1e-8, `${key} row ${r} c${c}`));
  }
});

test('PSF filterbank: 26 triangles over 257 bins with floor-bin edges (reference: PSF get_filterbanks rule; exact)', () => {
  const fb = psfFilterbank(26, 512, 16000);
  assert.equal(fb.length, 26 * 257);
  // bin edges floor(513·mel2hz(linspace(0, hz2mel(8000), 28))/16000) = 0, 2, 4, 7, …, 231, 256 (numpy):
  // filter 0 = [0, 0.5, 1, 0.5, 0 …]; filter 25 rises over 209..231 and falls to 0 at 256
  assert.deepEqual(Array.from(fb.subarray(0, 5)), [0, 0.5, 1, 0.5, 0]);
  assert.equal(fb[25 * 257 + 231], 1);
  assert.equal(fb[25 * 257 + 255], 1 / 25);
  // the last filter ends at bin 256 (exclusive) → bin 256 is 0 in every filter
  for (let j = 0; j < 26; j++) assert.equal(fb[j * 257 + 256], 0);
});

test('mfcc edge cases: shorter than one frame, silence, bad options, empty input', () => {
  const short = mfcc(new Float32Array(100).fill(1000), 16000);
  assert.equal(short.frames, 1); // PSF: slen <= frame_len → one zero-padded frame
  const silent = mfcc(new Float32Array(16000), 16000);
  assert.equal(silent.frames, 99); // 1 + ceil((16000 − 400)/160)
  assert.ok(silent.data.every((v, i) => (i % 13 === 0 ? Math.abs(v - Math.log(2.220446049250313e-16)) < 1e-12 : Math.abs(v) < 1e-9)));
  assert.throws(
    () => mfcc(new Float32Array(0), 16000),
    (e: unknown) => e instanceof DifftalkError && e.code === 'empty-audio',
  );
  assert.throws(
    () => mfcc(new Float32Array(10), 16000, { highfreq: 9000 }),
    (e: unknown) => e instanceof DifftalkError && /highfreq/.test(e.message),
  );
  assert.throws(
    () => mfcc(new Float32Array(10), 16000, { nfft: 500 }),
    (e: unknown) => e instanceof DifftalkError && e.code === 'bad-fft-size',
  );
  assert.throws(() => mfcc(new Float32Array(10), 16000, { numcep: 27 }), DifftalkError);
});
