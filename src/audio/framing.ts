/**
 * Framing shared by mfcc and mel, following python_speech_features 0.6.1 `sigproc.framesig`:
 * frame j covers samples [j·step, j·step + len); frame count 1 + ceil((N − len)/step) (1 when N ≤ len);
 * the signal is zero-padded at the end to fill the last frame. Frame j is timestamped j·step/sampleRate
 * (the start of its analysis window), which is the convention SyncNet relies on (4 MFCC frames per 25 fps frame).
 */

/** Python's decimal ROUND_HALF_UP of a non-negative float (exact: x − floor(x) is exact in float64). */
export function roundHalfUp(x: number): number {
  const f = Math.floor(x);
  return x - f >= 0.5 ? f + 1 : f;
}

/** PSF frame count for a signal of `length` samples. */
export function frameCount(length: number, frameLen: number, frameStep: number): number {
  if (length <= frameLen) return 1;
  return 1 + Math.ceil((length - frameLen) / frameStep);
}

/** PSF `calculate_nfft`: smallest power of two ≥ winlen·sampleRate. */
export function defaultNfft(sampleRate: number, winlen: number): number {
  const want = winlen * sampleRate;
  let nfft = 1;
  while (nfft < want) nfft *= 2;
  return nfft;
}

/** Copy frame j of `signal` (zero beyond its end) into `out[0..frameLen)`. */
export function readFrame(signal: Float64Array, j: number, frameLen: number, frameStep: number, out: Float64Array): void {
  const start = j * frameStep;
  const avail = Math.max(0, Math.min(frameLen, signal.length - start));
  for (let i = 0; i < avail; i++) out[i] = signal[start + i]!;
  for (let i = avail; i < frameLen; i++) out[i] = 0;
}
