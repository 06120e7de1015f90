/**
 * The signal side of DeepSpeech 0.1.0 audio features as AD-NeRF computes them (data_util/deepspeech_features, after
 * VOCA): the network input before it, and the 16-row logit windows after it. The network itself (TensorFlow.js,
 * weights from the frozen graph) is src/models/deepspeech.ts; this module has no TensorFlow.
 *
 * Input (`deepspeechInput`): samples as int16 (AD-NeRF casts to np.int16, i.e. truncates); python_speech_features
 * `mfcc(signal, 16000, numcep=26)` with every other default (25 ms / 10 ms frames, 26 filters, nfft 512, pre-emphasis
 * 0.97, lifter 22, c0 = log energy) — the project's PSF-exact mfcc.ts; every second row kept (rows 0, 2, 4 …: 50 per
 * second); 9 zero rows of context prepended and appended; row t of the input = the 19 rows t … t+18 of that padded
 * array flattened (19 × 26 = 494 values); then ONE mean and ONE (population) standard deviation over the whole T × 494
 * array, zeros of the context included: x ← (x − mean) / std.
 *
 * Output (`deepspeechWindows`): the logits (T × 29, 50 rows per second) are resampled with np.interp onto
 * round(duration · 50) rows stamped k/50 (Python's round: halves to even) — the same stamps, so row k is logit row
 * min(k, T − 1); 8 zero rows are added at each end; window w (w = 0, 1, … while 2w < rows) is padded rows 2w … 2w+15,
 * i.e. logit rows 2w−8 … 2w+7: one 16 × 29 window per 25 fps video frame, flattened to 464 values.
 * DiffTalk's per-frame condition is then the 8 windows i−4 … i+3 (zero windows outside the clip): see
 * `DEEPSPEECH_FRAME_OFFSET` and src/audio/windows.ts.
 */
import { DifftalkError } from '../util/errors.js';
import { mfcc } from './mfcc.js';

export const DEEPSPEECH_SAMPLE_RATE = 16000;
export const DEEPSPEECH_NUMCEP = 26;
export const DEEPSPEECH_CONTEXT = 9;
/** Values per network input row: (2·9 + 1) · 26. */
export const DEEPSPEECH_INPUT_DIM = (2 * DEEPSPEECH_CONTEXT + 1) * DEEPSPEECH_NUMCEP;
/** Logit rows per second (every second 10 ms MFCC frame). */
export const DEEPSPEECH_LOGIT_RATE = 50;
export const DEEPSPEECH_CLASSES = 29;
/** Logit rows per window and the zero rows added at each end. */
export const DEEPSPEECH_WINDOW_ROWS = 16;
export const DEEPSPEECH_WINDOW_STRIDE = 2;
/** Windows per second (= the video rate AD-NeRF and DiffTalk assume). */
export const DEEPSPEECH_WINDOW_RATE = DEEPSPEECH_LOGIT_RATE / DEEPSPEECH_WINDOW_STRIDE;
/** DiffTalk's audio condition of frame i: windows i−4 … i+3. */
export const DEEPSPEECH_FRAMES = 8;
export const DEEPSPEECH_FRAME_OFFSET = -4;

export interface DeepSpeechInput {
  /** steps × DEEPSPEECH_INPUT_DIM, row-major, float32 (what the graph's float32 `input_node` receives). */
  data: Float32Array;
  steps: number;
  /** The mean and standard deviation that were removed (float64). */
  mean: number;
  std: number;
}

/** numpy's astype(np.int16) of an in-range float: truncation toward zero (values are clamped to the int16 range). */
function toInt16(x: number): number {
  const t = Math.trunc(x);
  return t > 32767 ? 32767 : t < -32768 ? -32768 : t;
}

/** The network input of a clip (see the module comment). `samples` in int16 units at 16 kHz. */
export function deepspeechInput(samples: ArrayLike<number>, sampleRate: number): DeepSpeechInput {
  if (sampleRate !== DEEPSPEECH_SAMPLE_RATE) {
    throw new DifftalkError('bad-audio-params', `deepspeech: the audio is ${sampleRate} Hz; DeepSpeech 0.1.0 takes 16 kHz`, {
      suggestion: 'resample to 16 kHz mono first (prep does; `ffmpeg -i in -ar 16000 -ac 1 out.wav`)',
    });
  }
  if (samples.length === 0) throw new DifftalkError('empty-audio', 'deepspeech: the audio has no samples');
  const ints = new Float64Array(samples.length);
  for (let i = 0; i < samples.length; i++) ints[i] = toInt16(samples[i]!);
  const m = mfcc(ints, sampleRate, { numcep: DEEPSPEECH_NUMCEP });
  const steps = Math.ceil(m.frames / 2);
  const C = DEEPSPEECH_NUMCEP;
  const padded = new Float64Array((steps + 2 * DEEPSPEECH_CONTEXT) * C);
  for (let t = 0; t < steps; t++) padded.set(m.data.subarray(2 * t * C, (2 * t + 1) * C), (t + DEEPSPEECH_CONTEXT) * C);
  const D = DEEPSPEECH_INPUT_DIM;
  const x = new Float64Array(steps * D);
  for (let t = 0; t < steps; t++) x.set(padded.subarray(t * C, t * C + D), t * D);
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += x[i]!;
  const mean = sum / x.length;
  let sq = 0;
  for (let i = 0; i < x.length; i++) sq += (x[i]! - mean) ** 2;
  const std = Math.sqrt(sq / x.length);
  if (!(std > 0)) throw new DifftalkError('empty-audio', 'deepspeech: the audio is constant (its MFCC have zero spread)');
  const data = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) data[i] = (x[i]! - mean) / std;
  return { data, steps, mean, std };
}

/** Python 3 round() of a non-negative float: halves to even. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Logit rows AD-NeRF keeps for `samples` samples: round(duration · 50). */
export function deepspeechRowCount(samples: number, sampleRate: number): number {
  return roundHalfEven((samples / sampleRate) * DEEPSPEECH_LOGIT_RATE);
}

export interface DeepSpeechWindows {
  /** windows × 16 × 29, row-major, float32. */
  data: Float32Array;
  windows: number;
}

/**
 * Logits (steps × 29) → one 16 × 29 window per 25 fps frame (see the module comment). `rows` is
 * deepspeechRowCount(samples, sampleRate): the logits are stretched or cut to it as np.interp does.
 */
export function deepspeechWindows(logits: Float32Array, steps: number, rows: number): DeepSpeechWindows {
  const K = DEEPSPEECH_CLASSES;
  if (steps < 1 || logits.length !== steps * K)
    throw new DifftalkError('bad-audio-params', `deepspeech: ${logits.length} logit values for ${steps} steps of ${K}`);
  const pad = DEEPSPEECH_WINDOW_ROWS / 2;
  const windows = Math.ceil(rows / DEEPSPEECH_WINDOW_STRIDE);
  const W = DEEPSPEECH_WINDOW_ROWS;
  const data = new Float32Array(windows * W * K);
  for (let w = 0; w < windows; w++) {
    for (let r = 0; r < W; r++) {
      const k = DEEPSPEECH_WINDOW_STRIDE * w + r - pad; // interpolated row index
      if (k < 0 || k >= rows) continue;
      const src = Math.min(k, steps - 1);
      data.set(logits.subarray(src * K, (src + 1) * K), (w * W + r) * K);
    }
  }
  return { data, windows };
}
