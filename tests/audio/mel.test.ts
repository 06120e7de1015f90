import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { hzToMelSlaney, logMel, melToHzSlaney, slaneyMelFilterbank } from '../../src/audio/mel.js';
import { readWav } from '../../src/audio/wav.js';
import { DifftalkError } from '../../src/util/errors.js';
import { MEDIA, ROOT } from '../helpers.js';

// Reference: tests/reference/audio_reference.py — a numpy implementation of librosa's filters.mel(htk=False,
// norm='slaney') formulas and of the documented log-mel definition, hand-run, output committed as audio_reference.json.
const REF = JSON.parse(readFileSync(path.join(ROOT, 'tests', 'reference', 'audio_reference.json'), 'utf8'));

test('slaney mel scale round-trips and is linear below 1 kHz (reference: librosa hz_to_mel formula; 1e-9)', () => {
  assert.ok(Math.abs(hzToMelSlaney(1000) - 15) < 1e-12);
  assert.ok(Math.abs(hzToMelSlaney(200 / 3) - 1) < 1e-12);
  for (const hz of [0, 50, 999, 1000, 4000, 8000]) assert.ok(Math.abs(melToHzSlaney(hzToMelSlaney(hz)) - hz) < 1e-9);
});

test('slaney filterbank 16 kHz / nfft 512 / 80 mels equals the numpy reference (1e-12 abs per weight)', () => {
  const ref = REF.mel_filterbank_16k_512_80 as {
    shape: number[];
    sum: number;
    row_sums: number[];
    nonzero_span: [number, number][];
    rows: Record<string, number[]>;
  };
  const fb = slaneyMelFilterbank(16000, 512, 80);
  assert.equal(fb.length, ref.shape[0]! * ref.shape[1]!);
  for (let i = 0; i < 80; i++) {
    const r = fb.subarray(i * 257, (i + 1) * 257);
    let s = 0;
    let first = -1;
    let last = -1;
    r.forEach((v, k) => {
      s += v;
      if (v !== 0) {
        if (first < 0) first = k;
        last = k;
      }
    });
    assert.ok(Math.abs(s - ref.row_sums[i]!) < 1e-12, `row ${i} sum`);
    assert.deepEqual([first, last], ref.nonzero_span[i], `row ${i} span`);
  }
  for (const [i, vals] of Object.entries(ref.rows)) vals.forEach((v, k) => assert.ok(Math.abs(fb[Number(i) * 257 + k]! - v) < 1e-12, `w[${i}][${k}]`));
});

interface Summary {
  shape: [number, number];
  sum: number;
  abs_sum: number;
  rows: Record<string, number[]>;
}

function check(m: { data: Float64Array; frames: number; dim: number }, ref: Summary, label: string): void {
  assert.deepEqual([m.frames, m.dim], ref.shape, label);
  let s = 0;
  let a = 0;
  for (const v of m.data) {
    s += v;
    a += Math.abs(v);
  }
  assert.ok(Math.abs(s - ref.sum) / Math.abs(ref.sum) < 1e-10, `${label} sum ${s} vs ${ref.sum}`);
  assert.ok(Math.abs(a - ref.abs_sum) / ref.abs_sum < 1e-10, `${label} abs sum`);
  for (const [r, vals] of Object.entries(ref.rows)) {
    vals.forEach((v, c) =>
      assert.ok(Math.abs(m.data[Number(r) * m.dim + c]! - v) < 1e-8, `${label} frame ${r} bin ${c}: ${m.data[Number(r) * m.dim + c]} vs ${v}`),
    );
  }
}

test('log-mel of jfk.wav equals the numpy reference (1e-8 abs per value, 1e-10 relative sums); 100 Hz, aligned with mfcc frames', async () => {
  const wav = await readWav(path.join(MEDIA, 'jfk.wav'));
  const m = logMel(wav.samples, wav.sampleRate);
  assert.equal(m.rate, 100);
  check(m, REF.log_mel_jfk, 'jfk 16k');
  // frame 0 is digital silence → every bin sits at the floor ln(1e-10)
  for (let c = 0; c < 80; c++) assert.equal(m.data[c], Math.log(1e-10));
  // other sample rate / nfft: 22.05 kHz, window round_half_up(551.25) = 551, hop round_half_up(220.5) = 221
  const m22 = logMel(wav.samples, 22050, { nfft: 1024 });
  check(m22, REF.log_mel_jfk_as_22050, 'jfk as 22.05k');
});

test('log-mel rejects bad options with DifftalkError', () => {
  assert.throws(
    () => logMel(new Float32Array(10), 16000, { nfft: 256 }),
    (e: unknown) => e instanceof DifftalkError && /longer than nfft/.test(e.message),
  );
  assert.throws(() => logMel(new Float32Array(10), 16000, { fmax: 9000 }), DifftalkError);
  assert.throws(
    () => logMel(new Float32Array(0), 16000),
    (e: unknown) => e instanceof DifftalkError && e.code === 'empty-audio',
  );
});
