/**
 * The diffusion noise schedule and DDIM sampler of DiffTalk (LDM `ddpm.py` register_schedule + `ddim.py`),
 * one object for training (`addNoise`) and sampling (`setTimesteps`, `timesteps`, `step`). Imports no model.
 *
 * - betas = linspace(√β₀, √β₁, T)² ("linear" in LDM's sense), alphas_cumprod = cumprod(1 − β), in float64.
 * - DDIM timesteps, 'uniform': range(0, T, T/S) + 1 → 1, 6, …, 996 for S = 200 (LDM make_ddim_timesteps).
 * - step (η = 0): x̂₀ = (x − √(1−ᾱ_t)·ε)/√ᾱ_t; x_prev = √ᾱ_prev·x̂₀ + √(1−ᾱ_prev)·ε, where ᾱ_prev of the first
 *   DDIM timestep is ᾱ[0] (as LDM's `ddim_alphas_prev`), not 1.
 */
import { tf } from '../../util/tf.js';
import { DifftalkError } from '../../util/errors.js';
import type { ScheduleConfig } from '../presets.js';

export function makeBetas(c: ScheduleConfig): Float64Array {
  const T = c.numTrainTimesteps;
  const a = Math.sqrt(c.betaStart);
  const b = Math.sqrt(c.betaEnd);
  const out = new Float64Array(T);
  for (let i = 0; i < T; i++) {
    const s = T === 1 ? a : a + ((b - a) * i) / (T - 1);
    out[i] = s * s;
  }
  return out;
}

export class DdimScheduler {
  readonly config: ScheduleConfig;
  readonly betas: Float64Array;
  readonly alphasCumprod: Float64Array;
  /** Sampling timesteps in the order they are visited (descending). Empty until setTimesteps. */
  timesteps: number[] = [];
  private prev = new Map<number, number>();

  constructor(config: ScheduleConfig) {
    this.config = { ...config };
    this.betas = makeBetas(config);
    this.alphasCumprod = new Float64Array(this.betas.length);
    let p = 1;
    this.betas.forEach((b, i) => {
      p *= 1 - b;
      this.alphasCumprod[i] = p;
    });
  }

  static fromConfig(c: ScheduleConfig): DdimScheduler {
    return new DdimScheduler(c);
  }

  get numTrainTimesteps(): number {
    return this.config.numTrainTimesteps;
  }

  /** LDM 'uniform' DDIM discretisation. */
  setTimesteps(steps: number): number[] {
    const T = this.numTrainTimesteps;
    if (!Number.isInteger(steps) || steps < 1 || steps > T) throw new DifftalkError('bad-flag', `DDIM steps must be an integer in 1..${T}, got ${steps}`);
    const c = Math.floor(T / steps);
    const asc: number[] = [];
    for (let t = 0; t < T; t += c) asc.push(t + 1);
    if (asc[asc.length - 1]! >= T) asc[asc.length - 1] = T - 1; // only when c = 1: keep indices in range
    this.prev = new Map(asc.map((t, i) => [t, i === 0 ? -1 : asc[i - 1]!]));
    this.timesteps = [...asc].reverse();
    return this.timesteps;
  }

  /** ᾱ of a (possibly -1 = "before the first DDIM step") index, following LDM's ddim_alphas_prev = ᾱ[0]. */
  private alphaPrev(t: number): number {
    const p = this.prev.get(t);
    if (p === undefined) throw new DifftalkError('internal', `timestep ${t} is not one of the DDIM timesteps; call setTimesteps first`);
    return p < 0 ? this.alphasCumprod[0]! : this.alphasCumprod[p]!;
  }

  /** q(x_t | x_0): √ᾱ_t·x0 + √(1−ᾱ_t)·noise, t per batch item (B,) or one int for all. */
  addNoise(x0: tf.Tensor4D, noise: tf.Tensor4D, t: number | readonly number[]): tf.Tensor4D {
    const b = x0.shape[0];
    const ts = typeof t === 'number' ? new Array<number>(b).fill(t) : [...t];
    if (ts.length !== b) throw new DifftalkError('internal', `addNoise: ${ts.length} timesteps for batch ${b}`);
    const sa = new Float32Array(b);
    const sb = new Float32Array(b);
    ts.forEach((ti, i) => {
      if (!Number.isInteger(ti) || ti < 0 || ti >= this.numTrainTimesteps) throw new DifftalkError('internal', `timestep ${ti} out of range`);
      sa[i] = Math.sqrt(this.alphasCumprod[ti]!);
      sb[i] = Math.sqrt(1 - this.alphasCumprod[ti]!);
    });
    return tf.tidy(() => tf.add(tf.mul(x0, tf.tensor4d(sa, [b, 1, 1, 1])), tf.mul(noise, tf.tensor4d(sb, [b, 1, 1, 1]))));
  }

  /** One DDIM step (η = 0) from timestep t to the previous DDIM timestep. Returns x_prev and the x̂₀ prediction. */
  step(eps: tf.Tensor4D, t: number, x: tf.Tensor4D): { prevSample: tf.Tensor4D; predOriginal: tf.Tensor4D } {
    const at = this.alphasCumprod[t]!;
    const ap = this.alphaPrev(t);
    return tf.tidy(() => {
      const predOriginal = tf.div(tf.sub(x, tf.mul(eps, Math.sqrt(1 - at))), Math.sqrt(at)) as tf.Tensor4D;
      const prevSample = tf.add(tf.mul(predOriginal, Math.sqrt(ap)), tf.mul(eps, Math.sqrt(1 - ap))) as tf.Tensor4D;
      return { prevSample, predOriginal };
    });
  }
}
