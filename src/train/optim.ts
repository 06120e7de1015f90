/**
 * Optimisation pieces with exactly-restorable state:
 * - AdamW as torch.optim.AdamW (β = (0.9, 0.999), eps 1e-8, decoupled weight decay: p ← p·(1 − lr·wd) before the
 *   Adam update, bias-corrected moments);
 * - clipGradNorm as torch.nn.utils.clip_grad_norm_ (global L2 norm; scale by max/(norm + 1e-6) when above max),
 *   which is what PyTorch Lightning's gradient_clip_val does;
 * - Ema as LDM's LitEma (decay 0.9999, warm-up decay = min(decay, (1 + n)/(10 + n))).
 */
import { DifftalkError } from '../util/errors.js';
import { tf } from '../util/tf.js';
import type { TensorData } from '../weights/torch.js';

export interface AdamWConfig {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const TORCH_ADAMW: Omit<AdamWConfig, 'lr'> = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };

export class AdamW {
  readonly config: AdamWConfig;
  step = 0;
  private m = new Map<string, tf.Variable>();
  private v = new Map<string, tf.Variable>();

  constructor(
    config: AdamWConfig,
    private readonly vars: ReadonlyMap<string, tf.Variable>,
  ) {
    this.config = { ...config };
    for (const [n, p] of vars) {
      this.m.set(n, tf.variable(tf.zerosLike(p), false));
      this.v.set(n, tf.variable(tf.zerosLike(p), false));
    }
  }

  /** Apply one update with gradients keyed like `vars`. */
  apply(grads: ReadonlyMap<string, tf.Tensor>): void {
    this.step++;
    const { lr, beta1, beta2, eps, weightDecay } = this.config;
    const bc1 = 1 - beta1 ** this.step;
    const bc2 = 1 - beta2 ** this.step;
    for (const [n, p] of this.vars) {
      const g = grads.get(n);
      if (!g) continue;
      tf.tidy(() => {
        const m = this.m.get(n)!;
        const v = this.v.get(n)!;
        m.assign(tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1)));
        v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2)));
        const denom = tf.add(tf.div(tf.sqrt(v), Math.sqrt(bc2)), eps);
        const decayed = weightDecay ? tf.mul(p, 1 - lr * weightDecay) : p;
        p.assign(tf.sub(decayed, tf.mul(tf.div(m, denom), lr / bc1)));
      });
    }
  }

  /** Moments as PyTorch-layout-free float32 tensors (tfjs layout; restored by the same code). */
  async state(): Promise<Map<string, TensorData>> {
    const out = new Map<string, TensorData>();
    for (const [n, m] of this.m) out.set(`m.${n}`, { dtype: 'float32', shape: [...m.shape], data: (await m.data()) as Float32Array });
    for (const [n, v] of this.v) out.set(`v.${n}`, { dtype: 'float32', shape: [...v.shape], data: (await v.data()) as Float32Array });
    return out;
  }

  load(state: ReadonlyMap<string, TensorData>, step: number): void {
    for (const [key, target] of [...[...this.m].map(([n, t]) => [`m.${n}`, t] as const), ...[...this.v].map(([n, t]) => [`v.${n}`, t] as const)]) {
      const t = state.get(key);
      if (!t) throw new Error(`optimizer state has no ${key}`);
      target.assign(tf.tensor(t.data as Float32Array, target.shape, 'float32'));
    }
    this.step = step;
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
  }
}

/**
 * Sum of many same-shape tensors in groups of at most {@link ADDN_GROUP}: WebGPU limits the storage buffers one shader
 * may bind (16 per stage on lavapipe), and tfjs-webgpu's AddN binds one per input, so a 154-input addN fails there.
 */
export const ADDN_GROUP = 8;
export function sumTensors<T extends tf.Tensor>(ts: readonly T[]): T {
  if (!ts.length) throw new DifftalkError('internal', 'sumTensors of nothing');
  return tf.tidy(() => {
    let level: tf.Tensor[] = [...ts];
    while (level.length > 1) {
      const next: tf.Tensor[] = [];
      for (let i = 0; i < level.length; i += ADDN_GROUP) {
        const group = level.slice(i, i + ADDN_GROUP);
        next.push(group.length === 1 ? group[0]! : tf.addN(group));
      }
      level = next;
    }
    return level[0]! as T;
  });
}

/** Squared global norm of the gradients, on the device (read it with `await data()`). */
export function gradNormSq(grads: ReadonlyMap<string, tf.Tensor>): tf.Scalar {
  return tf.tidy(() => sumTensors([...grads.values()].map((g) => tf.sum(tf.square(g)) as tf.Scalar)));
}

/** Global-norm gradient clipping given the norm before clipping (from `gradNormSq`); returns the clipped gradients. */
export function clipGradNorm(grads: Map<string, tf.Tensor>, maxNorm: number, norm: number): { grads: Map<string, tf.Tensor>; norm: number } {
  const coef = maxNorm / (norm + 1e-6);
  if (!(coef < 1)) return { grads, norm };
  const out = new Map<string, tf.Tensor>();
  for (const [n, g] of grads) {
    out.set(n, tf.mul(g, coef));
    g.dispose();
  }
  return { grads: out, norm };
}

export class Ema {
  numUpdates = 0;
  readonly shadow = new Map<string, tf.Variable>();

  constructor(
    private readonly vars: ReadonlyMap<string, tf.Variable>,
    readonly decay = 0.9999,
  ) {
    for (const [n, p] of vars) this.shadow.set(n, tf.variable(p.clone(), false));
  }

  /** Restart from the current weights (after an init that replaced them): shadow = weights, no updates counted. */
  reset(): void {
    this.numUpdates = 0;
    for (const [n, p] of this.vars) this.shadow.get(n)!.assign(p);
  }

  update(): void {
    this.numUpdates++;
    const d = Math.min(this.decay, (1 + this.numUpdates) / (10 + this.numUpdates));
    for (const [n, p] of this.vars) {
      const s = this.shadow.get(n)!;
      tf.tidy(() => s.assign(tf.sub(s, tf.mul(tf.sub(s, p), 1 - d))));
    }
  }

  dispose(): void {
    for (const s of this.shadow.values()) s.dispose();
  }
}
