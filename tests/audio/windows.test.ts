import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { createAudioFeature } from '../../src/audio/registry.js';
import { computeAudioFeatures } from '../../src/prep/audio-stage.js';
import { mfcc } from '../../src/audio/mfcc.js';
import { loadAudio16k, readWav } from '../../src/audio/wav.js';
import { DEFAULT_WINDOWS, frameWindows, windowStart } from '../../src/audio/windows.js';
import type { FeatureSequence } from '../../src/audio/types.js';
import { DifftalkError } from '../../src/util/errors.js';
import { runTool } from '../../src/util/exec.js';
import type { ProgressEvent } from '../../src/util/events.js';
import { AOC_CLIP, MEDIA, tmpDir } from '../helpers.js';

test('window placement reproduces SyncNet: MFCC 4i…4i+19 for the 5-frame clip i…i+4 (reference: eval-metrics.md §4; exact)', () => {
  assert.equal(DEFAULT_WINDOWS.mfcc, 20);
  assert.equal(DEFAULT_WINDOWS.mel, 16);
  for (let i = 0; i < 50; i++) {
    assert.equal(windowStart(i + 2, 25, 100, 20), 4 * i); // centred on the clip's middle frame i+2
    assert.equal(windowStart(i, 25, 100, 16), 4 * i - 6); // mel: 4k−6 … 4k+9, centred on (k+0.5)/25 s
  }
  // 50 Hz encoder features (wav2vec2-like), odd window: centre 2k+1, start 2k+1−2.5 rounded half up → 2k−1
  assert.equal(windowStart(10, 25, 50, 5), 19);
});

test('frameWindows on jfk.wav MFCC: shape, exact copies, zero padding at both ends, variation over speech', async () => {
  const wav = await readWav(path.join(MEDIA, 'jfk.wav'));
  const m = mfcc(wav.samples, wav.sampleRate);
  const seq: FeatureSequence = { data: Float32Array.from(m.data), frames: m.frames, dim: m.dim, rate: m.rate };
  const videoFrames = 275; // 11 s at 25 fps
  const w = frameWindows(seq, videoFrames, 25, 20);
  assert.deepEqual([w.frames, w.window, w.dim, w.data.length], [275, 20, 13, 275 * 20 * 13]);
  const win = (k: number) => w.data.subarray(k * 260, (k + 1) * 260);
  // frame 10 → MFCC rows 32..51
  assert.deepEqual(win(10), seq.data.subarray(32 * 13, 52 * 13));
  // frame 0 → rows −8..11: 8 zero rows, then rows 0..11
  assert.ok(
    win(0)
      .subarray(0, 8 * 13)
      .every((v) => v === 0),
  );
  assert.deepEqual(win(0).subarray(8 * 13), seq.data.subarray(0, 12 * 13));
  // frame 274 → rows 1088..1107, rows ≥ 1099 do not exist → last 9 rows zero
  assert.deepEqual(win(274).subarray(0, 11 * 13), seq.data.subarray(1088 * 13, 1099 * 13));
  assert.ok(
    win(274)
      .subarray(11 * 13)
      .every((v) => v === 0),
  );
  // windows vary over time on real speech: the mean of c1 over each window has a large spread across frames,
  // and consecutive windows (shifted by 4 rows) differ
  const means: number[] = [];
  for (let k = 0; k < videoFrames; k++) {
    let s = 0;
    for (let r = 0; r < 20; r++) s += win(k)[r * 13 + 1]!;
    means.push(s / 20);
  }
  const mu = means.reduce((a, b) => a + b, 0) / means.length;
  const sd = Math.sqrt(means.reduce((a, b) => a + (b - mu) ** 2, 0) / means.length);
  assert.ok(sd > 1, `std of windowed c1 means = ${sd}`);
  let differ = 0;
  for (let k = 1; k < videoFrames; k++) if (win(k).some((v, i) => v !== win(k - 1)[i])) differ++;
  assert.equal(differ, videoFrames - 1);
});

test('frameWindows validates its arguments', () => {
  const seq: FeatureSequence = { data: new Float32Array(10), frames: 10, dim: 1, rate: 100 };
  assert.throws(() => frameWindows(seq, -1, 25, 20), DifftalkError);
  assert.throws(() => frameWindows(seq, 5, 0, 20), DifftalkError);
  assert.throws(() => frameWindows(seq, 5, 25, 0), DifftalkError);
  assert.equal(frameWindows(seq, 0, 25, 20).data.length, 0);
});

test('computeAudioFeatures on the AOC clip: mfcc and mel windows for 200 frames at 25 fps, schema metadata, speech varies', async () => {
  const events: ProgressEvent[] = [];
  const extractors = [await createAudioFeature('mfcc'), await createAudioFeature({ name: 'mel' })];
  const r = await computeAudioFeatures(
    AOC_CLIP,
    200,
    25,
    extractors.map((extractor) => ({ extractor })),
    (e) => events.push(e),
  );
  assert.ok(r.ok);
  const [mf, mel] = r.value;
  assert.deepEqual([mf!.name, mf!.column, mf!.window, mf!.dim, mf!.rate], ['mfcc', 'audio_mfcc', 20, 13, 100]);
  assert.deepEqual([mel!.name, mel!.column, mel!.window, mel!.dim, mel!.rate], ['mel', 'audio_mel', 16, 80, 100]);
  assert.deepEqual([mf!.windows.frames, mf!.windows.data.length], [200, 200 * 20 * 13]);
  assert.deepEqual([mel!.windows.frames, mel!.windows.data.length], [200, 200 * 16 * 80]);
  assert.equal(mf!.params.reference, 'python_speech_features 0.6.1 mfcc');
  assert.equal(mf!.params.nfft, 'auto');
  assert.equal(mel!.params.nMels, 80);
  // the stage reads the mp4 through ffmpeg (16 kHz mono): frame 100's window is MFCC rows 392..411 of that audio
  const audio = await loadAudio16k(AOC_CLIP);
  const ref = Float32Array.from(mfcc(audio.samples, 16000).data.subarray(392 * 13, 412 * 13));
  assert.deepEqual(mf!.windows.data.subarray(100 * 260, 101 * 260), ref);
  const stride = 16 * 80;
  const mid = mel!.windows.data.subarray(100 * stride, 101 * stride);
  const early = mel!.windows.data.subarray(20 * stride, 21 * stride);
  assert.ok(
    mid.some((v, i) => Math.abs(v - early[i]!) > 1),
    'mel windows change over time',
  );
  assert.ok(events.some((e) => e.type === 'metric' && e.name === 'audio.mfcc.realtime_factor' && e.value > 1));
  // the same extractor twice is a configuration error
  await assert.rejects(computeAudioFeatures(AOC_CLIP, 200, 25, [{ extractor: extractors[0]! }, { extractor: extractors[0]! }]), DifftalkError);
});

test('computeAudioFeatures: a clip without audio is a no-audio drop; an unreadable WAV is a clip-failed drop', async () => {
  const dir = tmpDir();
  const silent = path.join(dir, 'no-audio.mp4');
  await runTool('ffmpeg', ['-nostdin', '-v', 'error', '-i', AOC_CLIP, '-t', '1', '-an', '-c:v', 'copy', silent]);
  const mf = await createAudioFeature('mfcc');
  const r = await computeAudioFeatures(silent, 25, 25, [{ extractor: mf }]);
  assert.equal(r.ok, false);
  if (!r.ok) assert.equal(r.reason, 'no-audio');
  const bad = path.join(dir, 'bad.wav');
  await writeFile(bad, Buffer.from('RIFF\x00\x00\x00\x00WAVEjunk', 'latin1'));
  const r2 = await computeAudioFeatures(bad, 25, 25, [{ extractor: mf }]);
  assert.equal(r2.ok, false);
  if (!r2.ok) {
    assert.equal(r2.reason, 'clip-failed');
    assert.match(r2.message, /no fmt chunk/);
  }
});
