/** Test helper: deterministic FID Inception weights shared by tests/metrics/fid.test.ts and tests/models/onnx-executor.test.ts. */
import { fidInceptionParams } from '../../src/models/inception.js';

/**
 * Full-rank deterministic test weights (det() is rank 2 per layer — every filter is a phase-shifted copy of the same
 * sinusoid — so signals collapse to ~1e-8 after a few layers and cannot show input sensitivity): He-uniform conv
 * weights from a mulberry32 stream seeded by the name, BN γ=1, β=0, mean 0, var 1.
 */
export function heWeights(): Map<string, { shape: number[]; data: Float32Array }> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, shape] of fidInceptionParams()) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (name.endsWith('conv.weight')) {
      let seed = 0;
      for (let i = 0; i < name.length; i++) seed = (Math.imul(seed, 31) + name.charCodeAt(i)) | 0;
      const bound = Math.sqrt(6 / (n / shape[0]!));
      for (let k = 0; k < n; k++) {
        seed = (seed + 0x6d2b79f5) | 0;
        let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
        data[k] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * bound;
      }
    } else if (name.endsWith('bn.weight') || name.endsWith('running_var')) data.fill(1);
    out.set(name, { shape, data });
  }
  return out;
}
