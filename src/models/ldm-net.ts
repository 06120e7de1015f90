/**
 * DiffTalk's landmark encoder LdmNet (reference `ldm/modules/encoders/modules.py`):
 * (B, 39, 2) raw 256-px coordinates → flatten 78 → Linear 128 → LeakyReLU(0.02) → Linear 64 → LeakyReLU(0.02) → Linear 64.
 * PyTorch names `encoder_fc1.{0,2,4}`.
 */
import { type tf } from '../util/tf.js';
import { DifftalkError } from '../util/errors.js';
import { leakyRelu, linear, spec, type ParamSpec, type Params } from './blocks.js';

export interface LdmNetConfig {
  /** Landmark points in the condition (39: iBUG 0–3 and 13–47). */
  points: number;
  hidden: number;
  /** Output width (64). */
  dimLdm: number;
}

export const PAPER_LDM_NET: LdmNetConfig = { points: 39, hidden: 128, dimLdm: 64 };

/** iBUG-68 indices used as the landmark condition (jaw 0–3, jaw 13–16, brows, nose, eyes; no lower jaw, no mouth). */
export const CONDITION_POINTS: readonly number[] = Object.freeze([0, 1, 2, 3, ...Array.from({ length: 35 }, (_, i) => 13 + i)]);

export function ldmNetParamSpecs(c: LdmNetConfig): ParamSpec[] {
  return [
    ...spec.linear('encoder_fc1.0', c.points * 2, c.hidden),
    ...spec.linear('encoder_fc1.2', c.hidden, 64),
    ...spec.linear('encoder_fc1.4', 64, c.dimLdm),
  ];
}

export function ldmNet(p: Params, x: tf.Tensor3D, c: LdmNetConfig): tf.Tensor2D {
  const [b, n, d] = x.shape;
  if (n !== c.points || d !== 2) throw new DifftalkError('bad-input', `landmark condition has shape [${x.shape}] but the model expects [B, ${c.points}, 2]`);
  let h = leakyRelu(linear(p, 'encoder_fc1.0', x.reshape([b, n * 2])));
  h = leakyRelu(linear(p, 'encoder_fc1.2', h));
  return linear(p, 'encoder_fc1.4', h) as tf.Tensor2D;
}
