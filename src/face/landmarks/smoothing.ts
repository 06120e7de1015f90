import { DifftalkError } from '../../util/errors.js';

/**
 * Temporal smoothing of per-frame landmark coordinates, never across bad frames.
 *
 * Spec strings (recorded in the Arrow metadata as given):
 * - `none`            no smoothing (smoothed = raw).
 * - `savgol:<w>`      Savitzky–Golay style local quadratic fit over a centred window of `w` frames (odd, ≥ 3),
 *                     evaluated at the centre frame. Near the ends of a run the window is cut to the run (an
 *                     asymmetric local fit, not mirrored padding); runs of 1–2 frames are left as they are.
 * - `ema:<alpha>`     zero-phase exponential moving average: forward EMA then backward EMA over the run,
 *                     alpha in (0, 1] (1 = no smoothing). Zero-phase, so it adds no lag.
 * A "run" is a maximal stretch of consecutive good frames; smoothing restarts at every bad frame.
 */
export type SmoothingSpec = string;

export type Smoother = { kind: 'none' } | { kind: 'savgol'; window: number; order: 2 } | { kind: 'ema'; alpha: number };

export const DEFAULT_SMOOTHING: SmoothingSpec = 'savgol:5';

export function parseSmoothing(spec: SmoothingSpec): Smoother {
  const s = spec.trim().toLowerCase();
  if (s === 'none') return { kind: 'none' };
  const m = /^(savgol|ema):([0-9.]+)$/.exec(s);
  if (m?.[1] === 'savgol') {
    const window = Number(m[2]);
    if (Number.isInteger(window) && window >= 3 && window % 2 === 1 && window <= 101) return { kind: 'savgol', window, order: 2 };
  }
  if (m?.[1] === 'ema') {
    const alpha = Number(m[2]);
    if (alpha > 0 && alpha <= 1) return { kind: 'ema', alpha };
  }
  throw new DifftalkError('bad-smoothing', `unknown landmark smoothing '${spec}'`, {
    suggestion: "use 'none', 'savgol:<odd window ≥ 3>' (e.g. savgol:5) or 'ema:<alpha in (0,1]>' (e.g. ema:0.5)",
  });
}

/** Maximal runs [start, end) of consecutive `good` frames. */
export function goodRuns(good: readonly boolean[]): [number, number][] {
  const runs: [number, number][] = [];
  let start = -1;
  for (let i = 0; i <= good.length; i++) {
    if (i < good.length && good[i]) {
      if (start < 0) start = i;
    } else if (start >= 0) {
      runs.push([start, i]);
      start = -1;
    }
  }
  return runs;
}

/** Weights of a least-squares polynomial fit over offsets `ts` (relative to the evaluated frame), value at 0. */
function localFitWeights(ts: number[], order: number): number[] {
  const p = Math.min(order, ts.length - 1) + 1;
  // normal matrix AᵀA (p×p) with A[i][k] = ts[i]^k
  const ata: number[][] = Array.from({ length: p }, () => new Array<number>(p).fill(0));
  for (const t of ts) for (let r = 0; r < p; r++) for (let c = 0; c < p; c++) ata[r]![c]! += t ** (r + c);
  // solve AᵀA · v = e0 (Gauss–Jordan); weights_i = Σ_k v_k ts[i]^k
  const m = ata.map((row, r) => [...row, r === 0 ? 1 : 0]);
  for (let c = 0; c < p; c++) {
    let piv = c;
    for (let r = c + 1; r < p; r++) if (Math.abs(m[r]![c]!) > Math.abs(m[piv]![c]!)) piv = r;
    [m[c], m[piv]] = [m[piv]!, m[c]!];
    for (let r = 0; r < p; r++) {
      if (r === c) continue;
      const f = m[r]![c]! / m[c]![c]!;
      for (let k = c; k <= p; k++) m[r]![k]! -= f * m[c]![k]!;
    }
  }
  const v = m.map((row, r) => row[p]! / row[r]!);
  return ts.map((t) => v.reduce((acc, vk, k) => acc + vk * t ** k, 0));
}

/**
 * Smooth `frames` (count × dim floats, row-major) over time. Frames with good[i] false are returned as NaN and are
 * never used for their neighbours. The input is not modified.
 */
export function smoothSequence(data: Float32Array, dim: number, good: readonly boolean[], spec: SmoothingSpec | Smoother): Float32Array {
  const sm = typeof spec === 'string' ? parseSmoothing(spec) : spec;
  const count = good.length;
  if (data.length !== count * dim) throw new DifftalkError('bad-landmarks', `expected ${count}×${dim} values, got ${data.length}`);
  const out = new Float32Array(data.length).fill(Number.NaN);
  for (const [a, b] of goodRuns(good)) {
    if (sm.kind === 'none' || (sm.kind === 'savgol' && b - a < 3)) {
      out.set(data.subarray(a * dim, b * dim), a * dim);
      continue;
    }
    if (sm.kind === 'savgol') {
      const h = (sm.window - 1) >> 1;
      for (let t = a; t < b; t++) {
        const lo = Math.max(a, t - h);
        const hi = Math.min(b - 1, t + h);
        const ts: number[] = [];
        for (let j = lo; j <= hi; j++) ts.push(j - t);
        const w = localFitWeights(ts, sm.order);
        for (let d = 0; d < dim; d++) {
          let acc = 0;
          for (let j = lo; j <= hi; j++) acc += w[j - lo]! * data[j * dim + d]!;
          out[t * dim + d] = acc;
        }
      }
    } else {
      const fwd = new Float64Array((b - a) * dim);
      for (let d = 0; d < dim; d++) {
        let s = data[a * dim + d]!;
        for (let t = a; t < b; t++) {
          s = sm.alpha * data[t * dim + d]! + (1 - sm.alpha) * s;
          fwd[(t - a) * dim + d] = s;
        }
        s = fwd[(b - 1 - a) * dim + d]!;
        for (let t = b - 1; t >= a; t--) {
          s = sm.alpha * fwd[(t - a) * dim + d]! + (1 - sm.alpha) * s;
          out[t * dim + d] = s;
        }
      }
    }
  }
  return out;
}

/**
 * Rigid face points of the 478 mesh used for the jitter figure: nose bridge and tip (168, 6, 197, 195, 5, 4, 1),
 * eye corners (33, 133, 362, 263), forehead mid-line (10, 151, 9), and the cheek/temple points at the face-oval
 * (234, 454, 127, 356). They move with the head but barely with speech or expression.
 */
export const STABLE_MESH_POINTS: readonly number[] = Object.freeze([168, 6, 197, 195, 5, 4, 1, 33, 133, 362, 263, 10, 151, 9, 234, 454, 127, 356]);

/**
 * Per-clip jitter in pixels: for each pair of consecutive good frames, fit the 2-D similarity (scale, rotation,
 * translation) that best maps the stable points of frame t onto frame t+1 (least squares), and take the median
 * residual distance over the stable points; the clip's figure is the median over all pairs. Global head motion is
 * thus removed and what remains is frame-to-frame noise of the landmarker. NaN when there is no good pair.
 * `points`: count × (pointCount × stride) floats, stride 3 (x, y, z mesh) by default.
 */
export function jitter(
  points: Float32Array,
  good: readonly boolean[],
  opts: { stride?: number; pointsPerFrame?: number; indices?: readonly number[] } = {},
): number {
  const stride = opts.stride ?? 3;
  const perFrame = (opts.pointsPerFrame ?? 478) * stride;
  const idx = opts.indices ?? STABLE_MESH_POINTS;
  const pairs: number[] = [];
  const n = idx.length;
  for (let t = 0; t + 1 < good.length; t++) {
    if (!good[t] || !good[t + 1]) continue;
    const p = (k: number) => [points[t * perFrame + idx[k]! * stride]!, points[t * perFrame + idx[k]! * stride + 1]!] as const;
    const q = (k: number) => [points[(t + 1) * perFrame + idx[k]! * stride]!, points[(t + 1) * perFrame + idx[k]! * stride + 1]!] as const;
    let px = 0;
    let py = 0;
    let qx = 0;
    let qy = 0;
    for (let k = 0; k < n; k++) {
      px += p(k)[0] / n;
      py += p(k)[1] / n;
      qx += q(k)[0] / n;
      qy += q(k)[1] / n;
    }
    let sxx = 0;
    let a = 0;
    let b = 0;
    for (let k = 0; k < n; k++) {
      const [x, y] = [p(k)[0] - px, p(k)[1] - py];
      const [u, v] = [q(k)[0] - qx, q(k)[1] - qy];
      sxx += x * x + y * y;
      a += x * u + y * v;
      b += x * v - y * u;
    }
    if (!(sxx > 0)) continue;
    a /= sxx;
    b /= sxx;
    const res: number[] = [];
    for (let k = 0; k < n; k++) {
      const [x, y] = [p(k)[0] - px, p(k)[1] - py];
      const [u, v] = [q(k)[0] - qx, q(k)[1] - qy];
      res.push(Math.hypot(u - (a * x - b * y), v - (b * x + a * y)));
    }
    pairs.push(median(res));
  }
  return pairs.length ? median(pairs) : Number.NaN;
}

export function median(values: number[]): number {
  const s = [...values].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
