/**
 * Radix-2 real FFT in float64: an n-point real transform computed as one n/2-point complex FFT plus a
 * split step. Twiddles are computed directly with Math.cos/Math.sin (no recurrence), so results agree with
 * numpy.fft.rfft to ~1e-13 relative. Plans are cached per size.
 */
import { DifftalkError } from '../util/errors.js';

export function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n >= 2 && (n & (n - 1)) === 0;
}

/** A reusable plan for real FFTs of one power-of-two size n. Not thread-safe (it keeps scratch buffers). */
export class RealFft {
  readonly n: number;
  /** Number of output bins: n/2 + 1. */
  readonly bins: number;
  private readonly m: number;
  private readonly rev: Uint32Array;
  private readonly cosM: Float64Array;
  private readonly sinM: Float64Array;
  private readonly cosN: Float64Array;
  private readonly sinN: Float64Array;
  private readonly zr: Float64Array;
  private readonly zi: Float64Array;

  constructor(n: number) {
    if (!isPowerOfTwo(n)) throw new DifftalkError('bad-fft-size', `FFT size must be a power of two >= 2, got ${n}`);
    this.n = n;
    this.m = n / 2;
    this.bins = this.m + 1;
    const m = this.m;
    const bits = Math.round(Math.log2(m));
    this.rev = new Uint32Array(m);
    for (let i = 0; i < m; i++) {
      let r = 0;
      for (let b = 0; b < bits; b++) if (i & (1 << b)) r |= 1 << (bits - 1 - b);
      this.rev[i] = r;
    }
    this.cosM = new Float64Array(Math.max(1, m / 2));
    this.sinM = new Float64Array(Math.max(1, m / 2));
    for (let j = 0; j < m / 2; j++) {
      this.cosM[j] = Math.cos((2 * Math.PI * j) / m);
      this.sinM[j] = Math.sin((2 * Math.PI * j) / m);
    }
    this.cosN = new Float64Array(m + 1);
    this.sinN = new Float64Array(m + 1);
    for (let k = 0; k <= m; k++) {
      this.cosN[k] = Math.cos((2 * Math.PI * k) / n);
      this.sinN[k] = Math.sin((2 * Math.PI * k) / n);
    }
    this.zr = new Float64Array(m);
    this.zi = new Float64Array(m);
  }

  /** In-place complex FFT (forward, e^{-2πi jk/m}) of zr/zi of length m. */
  private complexFft(): void {
    const { m, zr, zi, rev, cosM, sinM } = this;
    for (let i = 0; i < m; i++) {
      const j = rev[i]!;
      if (j > i) {
        let t = zr[i]!;
        zr[i] = zr[j]!;
        zr[j] = t;
        t = zi[i]!;
        zi[i] = zi[j]!;
        zi[j] = t;
      }
    }
    for (let size = 2; size <= m; size *= 2) {
      const half = size / 2;
      const step = m / size;
      for (let start = 0; start < m; start += size) {
        for (let k = 0; k < half; k++) {
          const wr = cosM[k * step]!;
          const wi = -sinM[k * step]!;
          const a = start + k;
          const b = a + half;
          const br = zr[b]!;
          const bi = zi[b]!;
          const tr = br * wr - bi * wi;
          const ti = br * wi + bi * wr;
          const ar = zr[a]!;
          const ai = zi[a]!;
          zr[b] = ar - tr;
          zi[b] = ai - ti;
          zr[a] = ar + tr;
          zi[a] = ai + ti;
        }
      }
    }
  }

  /**
   * Forward transform of `input` (length n; shorter input is zero-padded, as numpy.fft.rfft(x, n) does;
   * longer input is truncated to n, also as numpy does). Writes bins 0..n/2 into re/im.
   */
  forward(input: ArrayLike<number>, re: Float64Array, im: Float64Array, length = input.length): void {
    const { m, zr, zi, cosN, sinN } = this;
    const len = Math.min(length, this.n);
    for (let k = 0; k < m; k++) {
      const i0 = 2 * k;
      zr[k] = i0 < len ? input[i0]! : 0;
      zi[k] = i0 + 1 < len ? input[i0 + 1]! : 0;
    }
    this.complexFft();
    for (let k = 0; k <= m; k++) {
      const a = zr[k % m]!;
      const b = zi[k % m]!;
      const c = zr[(m - k) % m]!;
      const d = zi[(m - k) % m]!;
      const er = (a + c) / 2;
      const ei = (b - d) / 2;
      const or = (b + d) / 2;
      const oi = -(a - c) / 2;
      const cs = cosN[k]!;
      const sn = sinN[k]!;
      re[k] = er + cs * or + sn * oi;
      im[k] = ei + cs * oi - sn * or;
    }
  }

  /** |rfft(input, n)|² per bin into `out` (length n/2+1). */
  power(input: ArrayLike<number>, out: Float64Array, length = input.length): void {
    const re = (this.reBuf ??= new Float64Array(this.bins));
    const im = (this.imBuf ??= new Float64Array(this.bins));
    this.forward(input, re, im, length);
    for (let k = 0; k < this.bins; k++) out[k] = re[k]! * re[k]! + im[k]! * im[k]!;
  }

  private reBuf?: Float64Array;
  private imBuf?: Float64Array;
}

const plans = new Map<number, RealFft>();

/** A cached plan for size n. */
export function realFft(n: number): RealFft {
  let p = plans.get(n);
  if (!p) {
    p = new RealFft(n);
    plans.set(n, p);
  }
  return p;
}
