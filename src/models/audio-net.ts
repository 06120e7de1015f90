/**
 * DiffTalk's audio encoder (reference `ldm/modules/encoders/modules.py`, copied from AD-NeRF):
 * AudioNet(dim_aud=64, win_size=16) applied to each of the 8 frames' (16, 29) feature windows, then
 * AudioAttNet(dim_aud=32, seq_len=8) which softmax-weights the 8 frame embeddings using only their first 32 channels.
 * Input (B, 8, 16, 29) → output (B, 64). PyTorch names: `encoder_conv.{0,2,4,6}`, `encoder_fc1.{0,2}`,
 * `attentionConvNet.{0,2,4,6,8}`, `attentionNet.0`.
 */
import { tf } from '../util/tf.js';
import { DifftalkError } from '../util/errors.js';
import { conv1d, leakyRelu, linear, spec, type ParamSpec, type Params } from './blocks.js';

export interface AudioNetConfig {
  /** Feature dimension per window (29 DeepSpeech logits in the paper; whatever the dataset's extractor gives here). */
  featureDim: number;
  /** Windows per frame (16). */
  winSize: number;
  /** Frames smoothed by AudioAttNet (8). */
  seqLen: number;
  /** Output width (64). */
  dimAud: number;
  /** Channels AudioAttNet reads its logits from (32). */
  attDim: number;
}

export const PAPER_AUDIO_NET: AudioNetConfig = { featureDim: 29, winSize: 16, seqLen: 8, dimAud: 64, attDim: 32 };

/** Conv1d k3 s2 p1 stack: 16 → 8 → 4 → 2 → 1 (channels 32, 32, 64, 64 for dimAud 64). */
function convChannels(c: AudioNetConfig): number[] {
  return [c.featureDim, 32, 32, 64, c.dimAud];
}

/** Length after the four k3 s2 p1 convs: ⌈L/2⌉ four times (1 for the paper's 16 windows). */
export function audioNetOutLength(winSize: number): number {
  let l = winSize;
  for (let i = 0; i < 4; i++) l = Math.ceil(l / 2);
  return l;
}

/**
 * Windows other than 16 (e.g. 20 MFCC frames) are a documented extension: the conv output (C, L₄) is flattened in
 * PyTorch's channel-major order into encoder_fc1.0, whose input width becomes 64·L₄ (64 for the paper's shape).
 */
export function audioNetParamSpecs(c: AudioNetConfig): ParamSpec[] {
  if (!Number.isInteger(c.winSize) || c.winSize < 1) throw new DifftalkError('model-config', `AudioNet winSize must be a positive integer, got ${c.winSize}`);
  const ch = convChannels(c);
  const out: ParamSpec[] = [];
  for (let i = 0; i < 4; i++) out.push(...spec.conv1d(`encoder_conv.${2 * i}`, ch[i]!, ch[i + 1]!, 3));
  out.push(...spec.linear('encoder_fc1.0', c.dimAud * audioNetOutLength(c.winSize), 64), ...spec.linear('encoder_fc1.2', 64, c.dimAud));
  return out;
}

export function audioAttNetParamSpecs(c: AudioNetConfig): ParamSpec[] {
  const ch = [c.attDim, 16, 8, 4, 2, 1];
  const out: ParamSpec[] = [];
  for (let i = 0; i < 5; i++) out.push(...spec.conv1d(`attentionConvNet.${2 * i}`, ch[i]!, ch[i + 1]!, 3));
  out.push(...spec.linear('attentionNet.0', c.seqLen, c.seqLen));
  return out;
}

/** AudioNet: x (N, winSize, featureDim) → (N, dimAud). */
export function audioNet(p: Params, x: tf.Tensor3D): tf.Tensor2D {
  let h = x; // NWC == torch's permute(0, 2, 1) NCW
  for (let i = 0; i < 4; i++) h = leakyRelu(conv1d(p, `encoder_conv.${2 * i}`, h, { stride: 2, pad: 1 }));
  const n = h.shape[0];
  let f = (h.shape[1] === 1 ? h : h.transpose([0, 2, 1])).reshape([n, -1]); // torch flattens (C, L) channel-major
  f = leakyRelu(linear(p, 'encoder_fc1.0', f));
  return linear(p, 'encoder_fc1.2', f) as tf.Tensor2D;
}

/** AudioAttNet: x (B, seqLen, dimAud) → (B, dimAud). */
export function audioAttNet(p: Params, x: tf.Tensor3D, c: AudioNetConfig): tf.Tensor2D {
  const [b, seq] = x.shape;
  let y = x.slice([0, 0, 0], [b, seq, c.attDim]); // (B, 8, 32) == torch (B, 32, 8) in NCW
  for (let i = 0; i < 5; i++) y = leakyRelu(conv1d(p, `attentionConvNet.${2 * i}`, y, { pad: 1 }));
  const logits = linear(p, 'attentionNet.0', y.reshape([b, seq]));
  const w = tf.softmax(logits, -1).reshape([b, seq, 1]);
  return tf.sum(tf.mul(w, x), 1) as tf.Tensor2D;
}

/** The full audio condition: (B, seqLen, winSize, featureDim) → (B, dimAud). */
export function encodeAudio(net: Params, att: Params, x: tf.Tensor4D, c: AudioNetConfig): tf.Tensor2D {
  const [b, seq, win, dim] = x.shape;
  if (seq !== c.seqLen || win !== c.winSize || dim !== c.featureDim) {
    throw new DifftalkError('bad-input', `audio condition has shape [${x.shape}] but the model expects [B, ${c.seqLen}, ${c.winSize}, ${c.featureDim}]`);
  }
  const e = audioNet(net, x.reshape([b * seq, win, dim]));
  return audioAttNet(att, e.reshape([b, seq, c.dimAud]), c);
}
