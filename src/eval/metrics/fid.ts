/**
 * FID (mseitzer/pytorch-fid, ../shared/docs/eval-metrics.md §5): statistics and the Fréchet distance are implemented;
 * the InceptionV3 feature network is NOT (see `inceptionFeatures`).
 *
 * - Statistics: μ = mean over samples, Σ = np.cov(rowvar=False) (N − 1 normalisation), float64.
 * - Distance: FID = ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2·tr sqrtm(Σ1Σ2).
 *   pytorch-fid computes sqrtm(Σ1Σ2) with scipy's Schur method. Here, for symmetric PSD Σ1 and Σ2,
 *   tr sqrtm(Σ1Σ2) = Σ_k sqrt(λ_k(S Σ2 S)), with S = Σ1^{1/2} = V·diag(sqrt(max(λ, 0)))·Vᵀ from the symmetric
 *   eigen-decomposition Σ1 = V·diag(λ)·Vᵀ, because Σ1Σ2 is similar to S·Σ2·S (itself symmetric PSD). Eigenvalues come
 *   from cyclic Jacobi rotations (float64). This is always finite, so the reference's 1e-6·I fallback is never needed,
 *   and negative round-off eigenvalues are clipped to 0 (the reference drops an imaginary part ≤ 1e-3 instead).
 *   Jacobi is O(d³) per sweep: fine for d ≤ a few hundred. For 2048-d pool3 features, expect minutes in plain JS.
 */
import { DifftalkError } from '../../util/errors.js';

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
export function symmetricEigen(matrix: ArrayLike<number>, n: number, opts: { vectors?: boolean; maxSweeps?: number } = {}): { values: Float64Array; vectors?: Float64Array } {
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
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let x = 0;
    for (let k = 0; k < n; k++) x += VD[i * n + k]! * V[j * n + k]!;
    S[i * n + j] = x;
  }
  const M = matmul(matmul(S, s2, n), S, n);
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) {
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

/** The pytorch-fid InceptionV3 pool3 network is not ported in this version. */
export function inceptionFeatures(): never {
  throw new DifftalkError('not-implemented', 'FID: the pytorch-fid InceptionV3 feature network is not implemented in this version of difftalk', {
    suggestion: 'run pytorch-fid on folders of GT and generated face crops meanwhile; featureStats/frechetDistance accept any features',
  });
}
