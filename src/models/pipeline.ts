/**
 * Inference glue: DiffTalk's DDIM masked latent inpainting (scripts/inference.py + LDM ddim.py with mask/x0).
 * Per DDIM step t (descending): x ← q_sample(z_gt, t)·m + (1 − m)·x (m = 1 outside the jaw polygon: keep the noised
 * ground-truth latent), ε = UNet([x, z_masked, z_ref], t, context), x ← DDIM step (η = 0). The returned latent is then
 * decoded by the first stage (quantised decode) by the caller.
 */
import { tf } from '../util/tf.js';
import type { Params } from './blocks.js';
import type { DifftalkModel } from './difftalk.js';
import type { DdimScheduler } from './schedulers/ddim.js';

export interface GenerateInput {
  /** (B, h, w, 3) latent of the ground-truth / driving frame (used outside the mask). */
  zGt: tf.Tensor4D;
  zMasked: tf.Tensor4D;
  zRef: tf.Tensor4D;
  /** (B, 8, window, dim) audio context and (B, 39, 2) landmarks. */
  audio: tf.Tensor4D;
  landmarks: tf.Tensor3D;
  /** (B, h, w, 1): 1 = keep the ground truth, 0 = generate. Omit to generate everything. */
  mask?: tf.Tensor4D;
  steps: number;
  seed: number;
  /** UNet weights to sample with (EMA by default in callers). */
  unet?: Params;
  onStep?: (i: number, total: number) => void;
}

export function generate(model: DifftalkModel, scheduler: DdimScheduler, input: GenerateInput): tf.Tensor4D {
  const ts = scheduler.setTimesteps(input.steps);
  const shape = input.zGt.shape;
  const ctx = tf.tidy(() => model.context(input.audio, input.landmarks));
  let x = tf.randomNormal(shape, 0, 1, 'float32', input.seed) as tf.Tensor4D;
  ts.forEach((t, i) => {
    const next = tf.tidy(() => {
      let xi = x;
      if (input.mask) {
        const noisy = scheduler.addNoise(input.zGt, tf.randomNormal(shape, 0, 1, 'float32', input.seed + 1 + i) as tf.Tensor4D, t);
        xi = tf.add(tf.mul(noisy, input.mask), tf.mul(xi, tf.sub(1, input.mask))) as tf.Tensor4D;
      }
      const eps = model.eps(xi, input.zMasked, input.zRef, tf.fill([shape[0]], t, 'int32') as tf.Tensor1D, ctx, input.unet);
      return scheduler.step(eps, t, xi).prevSample;
    });
    x.dispose();
    x = next;
    input.onStep?.(i + 1, ts.length);
  });
  ctx.dispose();
  return x;
}
