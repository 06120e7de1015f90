/**
 * FID statistics and Fréchet distance (fid.ts). Reference: numpy 1.x / scipy 1.17.1 `linalg.sqrtm` run here on the same
 * formula-generated float32 features (pytorch-fid's calculate_frechet_distance steps: np.cov(rowvar=False), sqrtm of the
 * product, trace). Tolerance 1e-8 absolute (float64 both sides; eigen vs Schur method).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { featureStats, frechetDistance, inceptionFeatures, symmetricEigen } from '../../src/eval/metrics/fid.js';
import { detInput } from '../../src/weights/det.js';

/** x[i][j] = sin(0.37·(7i + j²) + seed) + 0.3·cos(1.7·i·j + seed), cast to float32 (full-rank covariance). */
function feats(n: number, d: number, seed: number): Float32Array {
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) out[i * d + j] = Math.sin(0.37 * (7 * i + j * j) + seed) + 0.3 * Math.cos(1.7 * i * j + seed);
  return out;
}

describe('FID statistics and distance', () => {
  it('matches numpy/scipy on full-rank features', () => {
    const a = featureStats(feats(40, 8, 1), 40, 8);
    const b = featureStats(feats(60, 8, 2), 60, 8);
    assert.ok(Math.abs(a.sigma[0]! - 0.5136004915543114) < 1e-9); // np.cov(a)[0,0]
    assert.ok(Math.abs(a.mu[0]! - 0.18664370661717838) < 1e-12);
    const fid = frechetDistance(a, b);
    assert.ok(Math.abs(fid - 0.10413184642881923) < 1e-8, `fid ${fid}`);
    assert.ok(Math.abs(frechetDistance(a, a)) < 1e-8);
  });

  it('matches scipy on singular (rank-2) covariances', () => {
    // detinput((40,6), 1.0) vs detinput((50,6), 2.0, 1.5, 0.2): sin sequences give rank-2 covariances
    const a = featureStats(detInput([40, 6], 1), 40, 6);
    const b = featureStats(detInput([50, 6], 2, 1.5, 0.2), 50, 6);
    const fid = frechetDistance(a, b);
    assert.ok(Math.abs(fid - 0.934115997723767) < 1e-6, `fid ${fid}`); // scipy sqrtm of a singular product: ~1e-8 noise
  });

  it('decomposes symmetric matrices', () => {
    const m = [4, 1, 0, 1, 3, 1, 0, 1, 2];
    const { values } = symmetricEigen(m, 3);
    const sorted = [...values].sort((x, y) => x - y);
    // numpy.linalg.eigvalsh([[4,1,0],[1,3,1],[0,1,2]]) = [1.26794919, 3.0, 4.73205081] (3 ± √3, 3)
    [3 - Math.sqrt(3), 3, 3 + Math.sqrt(3)].forEach((v, i) => assert.ok(Math.abs(sorted[i]! - v) < 1e-12));
  });

  it('says clearly that the Inception network is not implemented', () => {
    assert.throws(() => inceptionFeatures(), /InceptionV3 feature network is not implemented/);
  });
});
