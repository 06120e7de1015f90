/**
 * FID (mseitzer/pytorch-fid, ../shared/docs/eval-metrics.md §5): InceptionV3 pool3 features, statistics and the
 * Fréchet distance.
 *
 * - Features: `inceptionFeatures` runs pytorch-fid's FID InceptionV3 (src/models/inception.ts) on uint8 RGB frames
 *   (÷255 as ToTensor does, bilinear 299² align_corners=False, 2x − 1, pool3). Weights: the imported `fid-inception`
 *   kind (pt_inception-2015-12-05-6726825d.pth) or a file. Numerical parity with pytorch-fid on the real weights is
 *   UNVERIFIED (no reference run possible here); see tests/eval/fid.test.ts for what is checked.
 * - Statistics: μ = mean over samples, Σ = np.cov(rowvar=False) (N − 1 normalisation), float64.
 * - Distance: FID = ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2·tr sqrtm(Σ1Σ2).
 *   pytorch-fid computes sqrtm(Σ1Σ2) with scipy's Schur method. Here, for symmetric PSD Σ1 and Σ2,
 *   tr sqrtm(Σ1Σ2) = Σ_k sqrt(λ_k(S Σ2 S)), with S = Σ1^{1/2} = V·diag(sqrt(max(λ, 0)))·Vᵀ from the symmetric
 *   eigen-decomposition Σ1 = V·diag(λ)·Vᵀ, because Σ1Σ2 is similar to S·Σ2·S (itself symmetric PSD). Eigenvalues come
 *   from cyclic Jacobi rotations (float64). This is always finite, so the reference's 1e-6·I fallback is never needed,
 *   and negative round-off eigenvalues are clipped to 0 (the reference drops an imaginary part ≤ 1e-3 instead).
 *   Jacobi is O(d³) per sweep: fine for d ≤ a few hundred. For 2048-d pool3 features, expect minutes in plain JS.
 * - `fidFromFeatures` takes the features themselves and, when a set has fewer samples than dimensions, uses the
 *   exact low-rank identity tr sqrtm(Σ1Σ2) = ‖X̃1 X̃2ᵀ‖_* / sqrt((n1−1)(n2−1)) (X̃ = centred features, ‖·‖_* =
 *   nuclear norm, by one-sided Jacobi SVD): O(n²·d) instead of O(d³).
 */
import type { RgbFrames } from '../media/types.js';
import { DifftalkError } from '../util/errors.js';
import { silent, type OnEvent } from '../util/events.js';
import { FID_FEATURE_DIM, loadFidInception, type FidInception } from '../models/inception.js';
import type { NetExecutor } from '../models/net-runner.js';
import type { MetricDirection } from './metric.js';

export interface FeatureStats {
  mu: Float64Array;
  /** dim × dim, row-major. */
  sigma: Float64Array;
  dim: number;
  count: number;
}

/** μ and np.cov(features, rowvar=False) of n × dim features (row-major). */
export function featureStats(features: ArrayLike<number>, n: number, dim: number): FeatureStats {
  if (n < 2) throw new DifftalkError('too-few-samples', `FID statistics need at least 2 samples, got ${n}`);
  if (features.length !== n * dim) throw new DifftalkError('bad-input', `features: ${features.length} values for ${n} × ${dim}`);
  const mu = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) mu[j]! += features[i * dim + j]!;
  for (let j = 0; j < dim; j++) mu[j]! /= n;
  const sigma = new Float64Array(dim * dim);
  const row = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dim; j++) row[j] = features[i * dim + j]! - mu[j]!;
    for (let a = 0; a < dim; a++) {
      const ra = row[a]!;
      for (let b = a; b < dim; b++) sigma[a * dim + b]! += ra * row[b]!;
    }
  }
  for (let a = 0; a < dim; a++) {
    for (let b = a; b < dim; b++) {
      const v = sigma[a * dim + b]! / (n - 1);
      sigma[a * dim + b] = v;
      sigma[b * dim + a] = v;
    }
  }
  return { mu, sigma, dim, count: n };
}

/** Eigen-decomposition of a symmetric matrix by cyclic Jacobi: A = V·diag(values)·Vᵀ (V columns = eigenvectors). */
export function symmetricEigen(
  matrix: ArrayLike<number>,
  n: number,
  opts: { vectors?: boolean; maxSweeps?: number } = {},
): { values: Float64Array; vectors?: Float64Array } {
  const a = Float64Array.from(matrix as ArrayLike<number>);
  const wantV = opts.vectors ?? true;
  const v = wantV ? new Float64Array(n * n) : undefined;
  if (v) for (let i = 0; i < n; i++) v[i * n + i] = 1;
  const maxSweeps = opts.maxSweeps ?? 100;
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let off = 0;
    let diag = 0;
    for (let p = 0; p < n; p++) {
      diag += a[p * n + p]! ** 2;
      for (let q = p + 1; q < n; q++) off += a[p * n + q]! ** 2;
    }
    if (off <= 1e-30 * Math.max(diag, 1e-300)) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (Math.abs(apq) < 1e-300) continue;
        const app = a[p * n + p]!;
        const aqq = a[q * n + q]!;
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p]!;
          const akq = a[k * n + q]!;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k]!;
          const aqk = a[q * n + k]!;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        if (v) {
          for (let k = 0; k < n; k++) {
            const vkp = v[k * n + p]!;
            const vkq = v[k * n + q]!;
            v[k * n + p] = c * vkp - s * vkq;
            v[k * n + q] = s * vkp + c * vkq;
          }
        }
      }
    }
  }
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = a[i * n + i]!;
  return { values, vectors: v };
}

function matmul(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const aik = a[i * n + k]!;
      if (aik === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j]! += aik * b[k * n + j]!;
    }
  }
  return out;
}

/** tr sqrtm(Σ1Σ2) for symmetric PSD Σ1, Σ2 (see the module comment for the method). */
export function traceSqrtProduct(s1: Float64Array, s2: Float64Array, n: number): number {
  const { values, vectors } = symmetricEigen(s1, n);
  const V = vectors!;
  // S = V diag(sqrt λ) Vᵀ
  const VD = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) VD[i * n + k] = V[i * n + k]! * Math.sqrt(Math.max(0, values[k]!));
  const S = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let x = 0;
      for (let k = 0; k < n; k++) x += VD[i * n + k]! * V[j * n + k]!;
      S[i * n + j] = x;
    }
  const M = matmul(matmul(S, s2, n), S, n);
  for (let i = 0; i < n; i++)
    for (let j = i + 1; j < n; j++) {
      const m = (M[i * n + j]! + M[j * n + i]!) / 2;
      M[i * n + j] = m;
      M[j * n + i] = m;
    }
  const ev = symmetricEigen(M, n, { vectors: false }).values;
  let tr = 0;
  for (const l of ev) tr += Math.sqrt(Math.max(0, l));
  return tr;
}

/** FID between two sets of statistics. */
export function frechetDistance(a: FeatureStats, b: FeatureStats): number {
  if (a.dim !== b.dim) throw new DifftalkError('bad-input', `FID: feature dims differ (${a.dim} vs ${b.dim})`);
  const n = a.dim;
  let d2 = 0;
  let tr = 0;
  for (let i = 0; i < n; i++) {
    d2 += (a.mu[i]! - b.mu[i]!) ** 2;
    tr += a.sigma[i * n + i]! + b.sigma[i * n + i]!;
  }
  return d2 + tr - 2 * traceSqrtProduct(a.sigma, b.sigma, n);
}

/** Centred copy of n × dim features (float64) and the column means. */
function centred(features: ArrayLike<number>, n: number, dim: number): { x: Float64Array; mu: Float64Array } {
  const mu = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) mu[j]! += features[i * dim + j]!;
  for (let j = 0; j < dim; j++) mu[j]! /= n;
  const x = new Float64Array(n * dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) x[i * dim + j] = features[i * dim + j]! - mu[j]!;
  return { x, mu };
}

/**
 * Sum of the singular values of a rows × cols matrix (row-major), by one-sided (Hestenes) Jacobi on the columns of
 * the thinner orientation: singular values come out with relative accuracy, also the near-zero ones (the route
 * through eig(M·Mᵀ) would lose them to sqrt(ε)·σ_max).
 */
export function nuclearNorm(matrix: ArrayLike<number>, rows: number, cols: number, maxSweeps = 60): number {
  // U: r × c with c = min(rows, cols) columns to orthogonalise.
  const transpose = rows < cols;
  const r = transpose ? cols : rows;
  const c = transpose ? rows : cols;
  const u = new Float64Array(r * c);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) u[transpose ? j * c + i : i * c + j] = matrix[i * cols + j]!;
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let rotated = false;
    for (let p = 0; p < c - 1; p++) {
      for (let q = p + 1; q < c; q++) {
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let k = 0; k < r; k++) {
          const up = u[k * c + p]!;
          const uq = u[k * c + q]!;
          alpha += up * up;
          beta += uq * uq;
          gamma += up * uq;
        }
        if (gamma === 0 || Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const cs = 1 / Math.sqrt(1 + t * t);
        const sn = cs * t;
        for (let k = 0; k < r; k++) {
          const up = u[k * c + p]!;
          const uq = u[k * c + q]!;
          u[k * c + p] = cs * up - sn * uq;
          u[k * c + q] = sn * up + cs * uq;
        }
      }
    }
    if (!rotated) break;
  }
  let sum = 0;
  for (let j = 0; j < c; j++) {
    let n2 = 0;
    for (let k = 0; k < r; k++) n2 += u[k * c + j]! ** 2;
    sum += Math.sqrt(n2);
  }
  return sum;
}

/**
 * FID between two feature sets (n × dim, row-major). Same value as `frechetDistance(featureStats(a), featureStats(b))`;
 * when min(na, nb) < dim it uses the low-rank identity of the module comment (exact, O(n²·d)).
 */
export function fidFromFeatures(a: ArrayLike<number>, na: number, b: ArrayLike<number>, nb: number, dim: number): number {
  if (na < 2 || nb < 2) throw new DifftalkError('too-few-samples', `FID needs at least 2 samples per set, got ${na} and ${nb}`);
  if (a.length !== na * dim || b.length !== nb * dim)
    throw new DifftalkError('bad-input', `FID: ${a.length} and ${b.length} values for ${na} and ${nb} × ${dim}`);
  if (Math.min(na, nb) >= dim) return frechetDistance(featureStats(a, na, dim), featureStats(b, nb, dim));
  const A = centred(a, na, dim);
  const B = centred(b, nb, dim);
  let d2 = 0;
  for (let j = 0; j < dim; j++) d2 += (A.mu[j]! - B.mu[j]!) ** 2;
  let trA = 0;
  let trB = 0;
  for (const v of A.x) trA += v * v;
  for (const v of B.x) trB += v * v;
  trA /= na - 1;
  trB /= nb - 1;
  // M = X̃a X̃bᵀ (na × nb)
  const M = new Float64Array(na * nb);
  for (let i = 0; i < na; i++) {
    for (let k = 0; k < nb; k++) {
      let s = 0;
      for (let j = 0; j < dim; j++) s += A.x[i * dim + j]! * B.x[k * dim + j]!;
      M[i * nb + k] = s;
    }
  }
  const nuclear = nuclearNorm(M, na, nb);
  return d2 + trA + trB - (2 * nuclear) / Math.sqrt((na - 1) * (nb - 1));
}

export interface InceptionFeatureOptions {
  /** Weights file (.safetensors from `difftalk weights import`, or the .pth itself); default: the imported cache kind. */
  weights?: string;
  cacheDir?: string;
  /** An already loaded network (then `weights`/`cacheDir` are not used and the caller disposes it). */
  net?: FidInception;
  /** Frames per forward pass (default 8). */
  batchSize?: number;
  /** Executor when the network is loaded here (default tfjs; 'auto': onnxruntime on the CPU when it loads). */
  executor?: NetExecutor;
  onEvent?: OnEvent;
}

/**
 * pytorch-fid pool3 features of uint8 RGB frames: `count` × 2048 float32, row-major. Needs the `fid-inception`
 * weights (DifftalkError('weights-missing') naming pt_inception-2015-12-05-6726825d.pth otherwise) and, on the tfjs
 * executor, an initialised TensorFlow.js backend.
 */
export async function inceptionFeatures(frames: RgbFrames, options: InceptionFeatureOptions = {}): Promise<Float32Array> {
  const { width, height, count } = frames;
  if (count < 1 || width < 1 || height < 1 || frames.data.length !== count * width * height * 3) {
    throw new DifftalkError('bad-input', `FID: frames hold ${frames.data.length} bytes for ${count} × ${width}×${height}×3`);
  }
  const onEvent = options.onEvent ?? silent;
  const net = options.net ?? (await loadFidInception({ weights: options.weights, cacheDir: options.cacheDir, executor: options.executor })).net;
  const batch = Math.max(1, options.batchSize ?? 8);
  const out = new Float32Array(count * FID_FEATURE_DIM);
  const frameSize = width * height * 3;
  const t0 = performance.now();
  onEvent({ type: 'stage-start', stage: 'fid-features', total: count, unit: 'frames' });
  try {
    for (let start = 0; start < count; start += batch) {
      const n = Math.min(batch, count - start);
      const pixels = new Float32Array(n * frameSize);
      const src = frames.data.subarray(start * frameSize, (start + n) * frameSize);
      for (let k = 0; k < pixels.length; k++) pixels[k] = src[k]! / 255; // torchvision ToTensor
      out.set(await net.featuresOf(pixels, n, height, width), start * FID_FEATURE_DIM);
      onEvent({ type: 'progress', stage: 'fid-features', done: start + n, total: count });
    }
  } finally {
    if (!options.net) net.dispose();
  }
  onEvent({ type: 'stage-done', stage: 'fid-features', done: count, seconds: (performance.now() - t0) / 1000 });
  return out;
}

/**
 * FID as a metric object (update / compute / merge / reset): the state is the two feature sets themselves, so
 * merging shards is concatenation and a merged FID equals the one-pass FID exactly (the statistic is not a mean of
 * per-frame values; its bias depends on the sample count). One value for the whole run.
 */
export class FidMetric {
  static readonly metricName = 'fid';
  static readonly direction: MetricDirection = 'lower';
  readonly direction: MetricDirection = FidMetric.direction;
  private pred: Float32Array[] = [];
  private gt: Float32Array[] = [];

  /** `weightsTag`: the weights' identity as it appears in the name (e.g. the first 12 hex digits of the file's sha256). */
  constructor(
    readonly weightsTag: string,
    readonly dim: number = FID_FEATURE_DIM,
  ) {}

  get name(): string {
    return `fid(pytorch-fid-inception-pool3:${this.weightsTag})`;
  }

  /** Add features (n × dim, row-major) of prediction frames and of GT frames (either may be empty). */
  update(predFeatures: Float32Array, gtFeatures: Float32Array): void {
    for (const f of [predFeatures, gtFeatures])
      if (f.length % this.dim !== 0) throw new DifftalkError('bad-input', `FID features of length ${f.length} are not a multiple of ${this.dim}`);
    if (predFeatures.length) this.pred.push(predFeatures);
    if (gtFeatures.length) this.gt.push(gtFeatures);
  }

  get counts(): { pred: number; gt: number } {
    const n = (xs: Float32Array[]) => xs.reduce((a, x) => a + x.length, 0) / this.dim;
    return { pred: n(this.pred), gt: n(this.gt) };
  }

  /** FID between all prediction and all GT features seen (`gtVsGt`: the GT set against itself, the baseline). */
  compute(gtVsGt = false): { name: string; value: number; frames: number; direction: MetricDirection } {
    const { pred, gt } = this.counts;
    if (gt < 2 || (!gtVsGt && pred < 2)) throw new DifftalkError('no-data', `FID needs at least 2 frames per set (prediction ${pred}, GT ${gt})`);
    const g = concatFeatures(this.gt);
    const p = gtVsGt ? g : concatFeatures(this.pred);
    const np = gtVsGt ? gt : pred;
    return { name: this.name, value: fidFromFeatures(p, np, g, gt, this.dim), frames: np, direction: this.direction };
  }

  merge(other: FidMetric): void {
    if (other.name !== this.name || other.dim !== this.dim) throw new DifftalkError('metric-mismatch', `cannot merge ${other.name} into ${this.name}`);
    this.pred.push(...other.pred);
    this.gt.push(...other.gt);
  }

  reset(): void {
    this.pred = [];
    this.gt = [];
  }
}

/** Feature rows gathered in chunks, as one array (FID and FVD statistics). */
export function concatFeatures(xs: readonly Float32Array[]): Float32Array {
  const all = new Float32Array(xs.reduce((a, x) => a + x.length, 0));
  let o = 0;
  for (const x of xs) {
    all.set(x, o);
    o += x.length;
  }
  return all;
}
