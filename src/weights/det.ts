/**
 * The deterministic weight formula of ../shared/data/fixtures/README.md, so parity tests can rebuild the exact
 * weights the reference PyTorch code used from parameter names and shapes, with no weight files.
 */

function phaseOf(name: string): number {
  let s = 0;
  for (let i = 0; i < name.length; i++) s += name.charCodeAt(i);
  return ((s % 1000) / 1000) * 2 * Math.PI;
}

/** det(name, shape): computed in float64, returned as float32 in row-major order. */
export function det(name: string, shape: readonly number[]): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const phase = phaseOf(name);
  const out = new Float32Array(n);
  const rank = shape.length;
  if (name.endsWith('num_batches_tracked')) return out;
  for (let k = 0; k < n; k++) {
    const base = Math.sin(0.618034 * k + phase);
    let v: number;
    if (name.endsWith('running_var')) v = 1 + 0.5 * Math.abs(base);
    else if (name.endsWith('running_mean')) v = 0.1 * base;
    else if (rank === 1 && name.endsWith('weight')) v = 1 + 0.1 * base;
    else if (rank <= 1) v = 0.1 * base;
    else v = base / Math.sqrt(n / shape[0]!);
    out[k] = v;
  }
  return out;
}

/** detinput(shape, seed, scale, offset): offset + scale·sin(0.37·k + seed), float32, row-major. */
export function detInput(shape: readonly number[], seed: number, scale = 1, offset = 0): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  for (let k = 0; k < n; k++) out[k] = offset + scale * Math.sin(0.37 * k + seed);
  return out;
}
