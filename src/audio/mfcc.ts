/**
 * MFCC identical to python_speech_features 0.6.1 `mfcc(signal, samplerate)` with its defaults (the front end of
 * SyncNet's LSE-D/LSE-C; ../shared/docs/eval-metrics.md §4): pre-emphasis 0.97; rectangular frames of
 * round_half_up(0.025·sr) samples every round_half_up(0.01·sr) (400/160 at 16 kHz → 100 Hz), zero-padded at the end;
 * nfft = smallest power of two ≥ frame length (512 at 16 kHz); power spectrum |rfft|²/nfft; 26 triangular mel filters
 * over 0..sr/2 with PSF's `floor((nfft+1)·mel2hz/sr)` bin rule; zeros → float64 eps; natural log; DCT-II (ortho);
 * first 13; lifter 22; c0 := log(frame energy). Everything in float64. Input: raw int16-unit samples (no scaling),
 * exactly what scipy.io.wavfile.read hands PSF.
 */
import { DifftalkError } from '../util/errors.js';
import { realFft } from './fft.js';
import { defaultNfft, frameCount, readFrame, roundHalfUp } from './framing.js';

export interface MfccOptions {
  /** Analysis window length in seconds (PSF winlen). Default 0.025. */
  winlen?: number;
  /** Hop in seconds (PSF winstep). Default 0.01. */
  winstep?: number;
  /** Cepstral coefficients kept. Default 13. */
  numcep?: number;
  /** Mel filters. Default 26. */
  nfilt?: number;
  /** FFT size (power of two). Default: PSF calculate_nfft (512 at 16 kHz). */
  nfft?: number;
  /** Lowest filter edge in Hz. Default 0. */
  lowfreq?: number;
  /** Highest filter edge in Hz. Default sampleRate/2. */
  highfreq?: number;
  /** Pre-emphasis coefficient; 0 disables. Default 0.97. */
  preemph?: number;
  /** Lifter L; ≤ 0 disables. Default 22. */
  ceplifter?: number;
  /** Replace c0 by log(frame energy). Default true. */
  appendEnergy?: boolean;
}

/** Options with every default filled in for a sample rate. */
export type ResolvedMfccOptions = Required<MfccOptions>;

/** frames × dim, row-major, float64 (PSF's own dtype). */
export interface MfccResult {
  data: Float64Array;
  frames: number;
  dim: number;
  /** Feature frames per second: sampleRate / hop samples (100 at 16 kHz). */
  rate: number;
}

/** numpy.finfo(float).eps, PSF's replacement for zero energies. */
export const FLOAT64_EPS = 2.220446049250313e-16;

export function resolveMfccOptions(sampleRate: number, opts: MfccOptions = {}): ResolvedMfccOptions {
  const winlen = opts.winlen ?? 0.025;
  const r: ResolvedMfccOptions = {
    winlen,
    winstep: opts.winstep ?? 0.01,
    numcep: opts.numcep ?? 13,
    nfilt: opts.nfilt ?? 26,
    nfft: opts.nfft ?? defaultNfft(sampleRate, winlen),
    lowfreq: opts.lowfreq ?? 0,
    highfreq: opts.highfreq || sampleRate / 2,
    preemph: opts.preemph ?? 0.97,
    ceplifter: opts.ceplifter ?? 22,
    appendEnergy: opts.appendEnergy ?? true,
  };
  const bad = (msg: string): never => {
    throw new DifftalkError('bad-audio-params', `mfcc: ${msg}`);
  };
  if (!(Number.isFinite(sampleRate) && sampleRate > 0)) bad(`sample rate must be positive, got ${sampleRate}`);
  if (!(r.winlen > 0) || !(r.winstep > 0)) bad('winlen and winstep must be positive');
  if (roundHalfUp(r.winstep * sampleRate) < 1) bad('winstep is shorter than one sample');
  if (!Number.isInteger(r.nfilt) || r.nfilt < 1) bad(`nfilt must be a positive integer, got ${r.nfilt}`);
  if (!Number.isInteger(r.numcep) || r.numcep < 1 || r.numcep > r.nfilt) bad(`numcep must be 1..nfilt, got ${r.numcep}`);
  if (r.highfreq > sampleRate / 2) bad(`highfreq ${r.highfreq} is greater than samplerate/2`);
  if (!(r.lowfreq >= 0 && r.lowfreq < r.highfreq)) bad(`lowfreq must be in [0, highfreq), got ${r.lowfreq}`);
  return r;
}

export const hz2mel = (hz: number): number => 2595 * Math.log10(1 + hz / 700);
export const mel2hz = (mel: number): number => 700 * (10 ** (mel / 2595) - 1);

/** numpy.linspace(a, b, n) element i, computed the way numpy does (a + i·step, last point exactly b). */
export function linspaceAt(a: number, b: number, n: number, i: number): number {
  if (n === 1) return a;
  if (i === n - 1) return b;
  const step = (b - a) / (n - 1);
  return a + i * step;
}

/** One triangular filter stored sparsely: weights for bins start..start+weights.length−1. */
export interface SparseFilter {
  start: number;
  weights: Float64Array;
}

/** PSF `get_filterbanks`: nfilt filters over nfft/2+1 bins, returned as a dense row-major matrix. */
export function psfFilterbank(nfilt: number, nfft: number, sampleRate: number, lowfreq = 0, highfreq = sampleRate / 2): Float64Array {
  const bins = Math.floor(nfft / 2) + 1;
  const lowmel = hz2mel(lowfreq);
  const highmel = hz2mel(highfreq);
  const bin = new Float64Array(nfilt + 2);
  for (let i = 0; i < nfilt + 2; i++) bin[i] = Math.floor(((nfft + 1) * mel2hz(linspaceAt(lowmel, highmel, nfilt + 2, i))) / sampleRate);
  const fb = new Float64Array(nfilt * bins);
  for (let j = 0; j < nfilt; j++) {
    const b0 = bin[j]!;
    const b1 = bin[j + 1]!;
    const b2 = bin[j + 2]!;
    for (let i = b0; i < b1; i++) if (i < bins) fb[j * bins + i] = (i - b0) / (b1 - b0);
    for (let i = b1; i < b2; i++) if (i < bins) fb[j * bins + i] = (b2 - i) / (b2 - b1);
  }
  return fb;
}

/** Dense filterbank rows → sparse filters (only the non-zero span of each row). */
export function sparsify(fb: Float64Array, rows: number, cols: number): SparseFilter[] {
  const out: SparseFilter[] = [];
  for (let j = 0; j < rows; j++) {
    let s = -1;
    let e = -1;
    for (let i = 0; i < cols; i++) {
      if (fb[j * cols + i] !== 0) {
        if (s < 0) s = i;
        e = i;
      }
    }
    out.push(s < 0 ? { start: 0, weights: new Float64Array(0) } : { start: s, weights: fb.slice(j * cols + s, j * cols + e + 1) });
  }
  return out;
}

/** scipy.fftpack.dct(type=2, norm='ortho') as a (numcep × n) matrix, rows k < numcep. */
export function dctOrthoMatrix(numcep: number, n: number): Float64Array {
  const m = new Float64Array(numcep * n);
  for (let k = 0; k < numcep; k++) {
    const s = k === 0 ? Math.sqrt(1 / n) : Math.sqrt(2 / n);
    for (let i = 0; i < n; i++) m[k * n + i] = s * Math.cos((Math.PI * k * (2 * i + 1)) / (2 * n));
  }
  return m;
}

/** PSF pre-emphasis: y[0] = x[0], y[n] = x[n] − c·x[n−1]. */
export function preemphasis(samples: ArrayLike<number>, coeff: number): Float64Array {
  const y = new Float64Array(samples.length);
  if (samples.length === 0) return y;
  y[0] = samples[0]!;
  for (let i = 1; i < samples.length; i++) y[i] = samples[i]! - coeff * samples[i - 1]!;
  return y;
}

/**
 * MFCC of raw int16-unit samples, identical to python_speech_features 0.6.1 `mfcc(signal, sampleRate, **opts)`.
 * Throws DifftalkError on empty input (PSF itself fails there) or invalid options.
 */
export function mfcc(samples: ArrayLike<number>, sampleRate: number, opts: MfccOptions = {}): MfccResult {
  const o = resolveMfccOptions(sampleRate, opts);
  if (samples.length === 0) throw new DifftalkError('empty-audio', 'mfcc: the audio has no samples');
  const frameLen = roundHalfUp(o.winlen * sampleRate);
  const frameStep = roundHalfUp(o.winstep * sampleRate);
  const fft = realFft(o.nfft);
  const bins = fft.bins;
  const filters = sparsify(psfFilterbank(o.nfilt, o.nfft, sampleRate, o.lowfreq, o.highfreq), o.nfilt, bins);
  const dct = dctOrthoMatrix(o.numcep, o.nfilt);
  const lift = new Float64Array(o.numcep);
  for (let n = 0; n < o.numcep; n++) lift[n] = o.ceplifter > 0 ? 1 + (o.ceplifter / 2) * Math.sin((Math.PI * n) / o.ceplifter) : 1;

  const signal = preemphasis(samples, o.preemph);
  const frames = frameCount(signal.length, frameLen, frameStep);
  const out = new Float64Array(frames * o.numcep);
  const frame = new Float64Array(frameLen);
  const pspec = new Float64Array(bins);
  const logFeat = new Float64Array(o.nfilt);
  for (let j = 0; j < frames; j++) {
    readFrame(signal, j, frameLen, frameStep, frame);
    fft.power(frame, pspec);
    let energy = 0;
    for (let k = 0; k < bins; k++) {
      pspec[k] = pspec[k]! / o.nfft;
      energy += pspec[k]!;
    }
    if (energy === 0) energy = FLOAT64_EPS;
    for (let f = 0; f < o.nfilt; f++) {
      const { start, weights } = filters[f]!;
      let s = 0;
      for (let i = 0; i < weights.length; i++) s += pspec[start + i]! * weights[i]!;
      logFeat[f] = Math.log(s === 0 ? FLOAT64_EPS : s);
    }
    const row = j * o.numcep;
    for (let k = 0; k < o.numcep; k++) {
      let c = 0;
      for (let f = 0; f < o.nfilt; f++) c += dct[k * o.nfilt + f]! * logFeat[f]!;
      out[row + k] = c * lift[k]!;
    }
    if (o.appendEnergy) out[row] = Math.log(energy);
  }
  return { data: out, frames, dim: o.numcep, rate: sampleRate / frameStep };
}
