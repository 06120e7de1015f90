/**
 * Log-mel spectrogram (default 80 bins at 16 kHz, 25 ms periodic Hann window, 10 ms hop = 100 Hz, nfft 512).
 *
 * Definition (the formulas are librosa's `filters.mel(htk=False, norm='slaney')` and `stft` power spectrum;
 * checked against tests/reference/mel_reference.py, a numpy implementation written from those formulas):
 * - samples (int16 units) are scaled to [−1, 1] by /32768; no pre-emphasis;
 * - frames: PSF framing (see framing.ts), i.e. frame j = samples [j·hop, j·hop+win) zero-padded at the end, so mel and
 *   mfcc frames have the same count and timestamps (unlike librosa's center=True, which shifts frames by win/2);
 * - periodic Hann window of win samples (scipy.signal.get_window('hann', win)), FFT of nfft points, power |X|²;
 * - Slaney mel scale (linear below 1 kHz, log above) and Slaney area normalisation 2/(f[i+2]−f[i]);
 * - natural log of max(mel power, 1e-10).
 */
import { DifftalkError } from '../util/errors.js';
import { realFft } from './fft.js';
import { defaultNfft, frameCount, readFrame, roundHalfUp } from './framing.js';
import { linspaceAt, sparsify } from './mfcc.js';

export interface MelOptions {
  /** Mel bins. Default 80. */
  nMels?: number;
  /** Window length in seconds. Default 0.025. */
  winlen?: number;
  /** Hop in seconds. Default 0.01. */
  winstep?: number;
  /** FFT size (power of two). Default: smallest power of two ≥ window (512 at 16 kHz). */
  nfft?: number;
  /** Lowest filter edge in Hz. Default 0. */
  fmin?: number;
  /** Highest filter edge in Hz. Default sampleRate/2. */
  fmax?: number;
  /** Floor applied before the log. Default 1e-10. */
  logFloor?: number;
}

export type ResolvedMelOptions = Required<MelOptions>;

export interface MelResult {
  /** frames × nMels, row-major, float64. */
  data: Float64Array;
  frames: number;
  dim: number;
  rate: number;
}

export function resolveMelOptions(sampleRate: number, opts: MelOptions = {}): ResolvedMelOptions {
  const winlen = opts.winlen ?? 0.025;
  const r: ResolvedMelOptions = {
    nMels: opts.nMels ?? 80,
    winlen,
    winstep: opts.winstep ?? 0.01,
    nfft: opts.nfft ?? defaultNfft(sampleRate, winlen),
    fmin: opts.fmin ?? 0,
    fmax: opts.fmax ?? sampleRate / 2,
    logFloor: opts.logFloor ?? 1e-10,
  };
  const bad = (msg: string): never => {
    throw new DifftalkError('bad-audio-params', `mel: ${msg}`);
  };
  if (!(Number.isFinite(sampleRate) && sampleRate > 0)) bad(`sample rate must be positive, got ${sampleRate}`);
  if (!Number.isInteger(r.nMels) || r.nMels < 1) bad(`nMels must be a positive integer, got ${r.nMels}`);
  if (!(r.winlen > 0) || !(r.winstep > 0)) bad('winlen and winstep must be positive');
  if (roundHalfUp(r.winstep * sampleRate) < 1) bad('winstep is shorter than one sample');
  if (roundHalfUp(r.winlen * sampleRate) > r.nfft) bad(`window (${roundHalfUp(r.winlen * sampleRate)} samples) is longer than nfft ${r.nfft}`);
  if (!(r.fmin >= 0 && r.fmin < r.fmax && r.fmax <= sampleRate / 2)) bad(`need 0 <= fmin < fmax <= sampleRate/2, got ${r.fmin}..${r.fmax}`);
  if (!(r.logFloor > 0)) bad('logFloor must be positive');
  return r;
}

const F_SP = 200 / 3;
const MIN_LOG_HZ = 1000;
const MIN_LOG_MEL = MIN_LOG_HZ / F_SP;
const LOGSTEP = Math.log(6.4) / 27;

/** librosa.hz_to_mel(htk=False) (Slaney). */
export function hzToMelSlaney(hz: number): number {
  return hz >= MIN_LOG_HZ ? MIN_LOG_MEL + Math.log(hz / MIN_LOG_HZ) / LOGSTEP : hz / F_SP;
}

/** librosa.mel_to_hz(htk=False) (Slaney). */
export function melToHzSlaney(mel: number): number {
  return mel >= MIN_LOG_MEL ? MIN_LOG_HZ * Math.exp(LOGSTEP * (mel - MIN_LOG_MEL)) : F_SP * mel;
}

/** librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False, norm='slaney'): nMels × (nfft/2+1), row-major. */
export function slaneyMelFilterbank(sampleRate: number, nfft: number, nMels: number, fmin = 0, fmax = sampleRate / 2): Float64Array {
  const bins = Math.floor(nfft / 2) + 1;
  const fftFreq = new Float64Array(bins);
  for (let k = 0; k < bins; k++) fftFreq[k] = linspaceAt(0, sampleRate / 2, bins, k);
  const lo = hzToMelSlaney(fmin);
  const hi = hzToMelSlaney(fmax);
  const melF = new Float64Array(nMels + 2);
  for (let i = 0; i < nMels + 2; i++) melF[i] = melToHzSlaney(linspaceAt(lo, hi, nMels + 2, i));
  const w = new Float64Array(nMels * bins);
  for (let i = 0; i < nMels; i++) {
    const d0 = melF[i + 1]! - melF[i]!;
    const d1 = melF[i + 2]! - melF[i + 1]!;
    const enorm = 2 / (melF[i + 2]! - melF[i]!);
    for (let k = 0; k < bins; k++) {
      const lower = -(melF[i]! - fftFreq[k]!) / d0;
      const upper = (melF[i + 2]! - fftFreq[k]!) / d1;
      w[i * bins + k] = Math.max(0, Math.min(lower, upper)) * enorm;
    }
  }
  return w;
}

/** scipy.signal.get_window('hann', n) (periodic, fftbins=True). */
export function periodicHann(n: number): Float64Array {
  const w = new Float64Array(n);
  for (let i = 0; i < n; i++) w[i] = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / n);
  return w;
}

/** Log-mel spectrogram of int16-unit samples (definition at the top of this file). */
export function logMel(samples: ArrayLike<number>, sampleRate: number, opts: MelOptions = {}): MelResult {
  const o = resolveMelOptions(sampleRate, opts);
  if (samples.length === 0) throw new DifftalkError('empty-audio', 'mel: the audio has no samples');
  const win = roundHalfUp(o.winlen * sampleRate);
  const hop = roundHalfUp(o.winstep * sampleRate);
  const fft = realFft(o.nfft);
  const bins = fft.bins;
  const filters = sparsify(slaneyMelFilterbank(sampleRate, o.nfft, o.nMels, o.fmin, o.fmax), o.nMels, bins);
  const hann = periodicHann(win);
  const signal = new Float64Array(samples.length);
  for (let i = 0; i < samples.length; i++) signal[i] = samples[i]! / 32768;
  const frames = frameCount(signal.length, win, hop);
  const out = new Float64Array(frames * o.nMels);
  const frame = new Float64Array(win);
  const pspec = new Float64Array(bins);
  for (let j = 0; j < frames; j++) {
    readFrame(signal, j, win, hop, frame);
    for (let i = 0; i < win; i++) frame[i] = frame[i]! * hann[i]!;
    fft.power(frame, pspec);
    for (let m = 0; m < o.nMels; m++) {
      const { start, weights } = filters[m]!;
      let s = 0;
      for (let i = 0; i < weights.length; i++) s += pspec[start + i]! * weights[i]!;
      out[j * o.nMels + m] = Math.log(Math.max(s, o.logFloor));
    }
  }
  return { data: out, frames, dim: o.nMels, rate: sampleRate / hop };
}
