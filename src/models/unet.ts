/**
 * The LDM `openaimodel.UNetModel` as DiffTalk configures it (use_spatial_transformer, one context token, no
 * scale-shift norm, dropout 0, conv resampling), NHWC on TensorFlow.js. Parameter names are the upstream
 * state_dict keys (`input_blocks.{i}.{j}…`, `middle_block.{j}…`, `output_blocks.{i}.{j}…`, `time_embed.{0,2}`, `out.{0,2}`).
 */
import { tf } from '../util/tf.js';
import { DifftalkError } from '../util/errors.js';
import { attention, conv2d, gelu, groupNorm, groupNormSilu, layerNorm, linear, silu, spec, upsample2x, type ParamSpec, type Params } from './blocks.js';

export interface UNetConfig {
  imageSize: number;
  inChannels: number;
  outChannels: number;
  modelChannels: number;
  /** Downsample factors at which a SpatialTransformer follows each ResBlock. */
  attentionResolutions: number[];
  numResBlocks: number;
  channelMult: number[];
  numHeadChannels: number;
  transformerDepth: number;
  contextDim: number;
}

type Layer =
  | { type: 'conv'; name: string; cin: number; cout: number }
  | { type: 'res'; name: string; cin: number; cout: number }
  | { type: 'st'; name: string; ch: number; heads: number }
  | { type: 'down'; name: string; ch: number }
  | { type: 'up'; name: string; ch: number };

interface Layout {
  input: Layer[][];
  middle: Layer[];
  output: Layer[][];
  timeDim: number;
  outCh: number;
}

function layout(c: UNetConfig): Layout {
  if (c.modelChannels % 32 !== 0) throw new DifftalkError('model-config', `modelChannels must be a multiple of 32 (GroupNorm32), got ${c.modelChannels}`);
  const st = (name: string, ch: number): Layer => {
    if (ch % c.numHeadChannels !== 0) throw new DifftalkError('model-config', `channels ${ch} not divisible by numHeadChannels ${c.numHeadChannels}`);
    return { type: 'st', name, ch, heads: ch / c.numHeadChannels };
  };
  const input: Layer[][] = [[{ type: 'conv', name: 'input_blocks.0.0', cin: c.inChannels, cout: c.modelChannels }]];
  const chans: number[] = [c.modelChannels];
  let ch = c.modelChannels;
  let ds = 1;
  c.channelMult.forEach((mult, level) => {
    for (let r = 0; r < c.numResBlocks; r++) {
      const i = input.length;
      const blk: Layer[] = [{ type: 'res', name: `input_blocks.${i}.0`, cin: ch, cout: mult * c.modelChannels }];
      ch = mult * c.modelChannels;
      if (c.attentionResolutions.includes(ds)) blk.push(st(`input_blocks.${i}.1`, ch));
      input.push(blk);
      chans.push(ch);
    }
    if (level !== c.channelMult.length - 1) {
      input.push([{ type: 'down', name: `input_blocks.${input.length}.0`, ch }]);
      chans.push(ch);
      ds *= 2;
    }
  });
  const middle: Layer[] = [
    { type: 'res', name: 'middle_block.0', cin: ch, cout: ch },
    st('middle_block.1', ch),
    { type: 'res', name: 'middle_block.2', cin: ch, cout: ch },
  ];
  const output: Layer[][] = [];
  [...c.channelMult.entries()].reverse().forEach(([level, mult]) => {
    for (let r = 0; r <= c.numResBlocks; r++) {
      const i = output.length;
      const ich = chans.pop()!;
      const blk: Layer[] = [{ type: 'res', name: `output_blocks.${i}.0`, cin: ch + ich, cout: c.modelChannels * mult }];
      ch = c.modelChannels * mult;
      if (c.attentionResolutions.includes(ds)) blk.push(st(`output_blocks.${i}.${blk.length}`, ch));
      if (level && r === c.numResBlocks) {
        blk.push({ type: 'up', name: `output_blocks.${i}.${blk.length}`, ch });
        ds /= 2;
      }
      output.push(blk);
    }
  });
  return { input, middle, output, timeDim: c.modelChannels * 4, outCh: ch };
}

function layerSpecs(l: Layer, c: UNetConfig, timeDim: number): ParamSpec[] {
  switch (l.type) {
    case 'conv':
      return spec.conv2d(l.name, l.cin, l.cout, 3);
    case 'down':
      return spec.conv2d(`${l.name}.op`, l.ch, l.ch, 3);
    case 'up':
      return spec.conv2d(`${l.name}.conv`, l.ch, l.ch, 3);
    case 'res':
      return [
        ...spec.norm(`${l.name}.in_layers.0`, l.cin),
        ...spec.conv2d(`${l.name}.in_layers.2`, l.cin, l.cout, 3),
        ...spec.linear(`${l.name}.emb_layers.1`, timeDim, l.cout),
        ...spec.norm(`${l.name}.out_layers.0`, l.cout),
        ...spec.conv2d(`${l.name}.out_layers.3`, l.cout, l.cout, 3, { zero: true }),
        ...(l.cin !== l.cout ? spec.conv2d(`${l.name}.skip_connection`, l.cin, l.cout, 1) : []),
      ];
    case 'st': {
      const inner = l.ch; // heads × numHeadChannels
      const out: ParamSpec[] = [...spec.norm(`${l.name}.norm`, l.ch), ...spec.conv2d(`${l.name}.proj_in`, l.ch, inner, 1)];
      for (let d = 0; d < c.transformerDepth; d++) {
        const b = `${l.name}.transformer_blocks.${d}`;
        out.push(
          ...spec.linear(`${b}.attn1.to_q`, inner, inner, { bias: false }),
          ...spec.linear(`${b}.attn1.to_k`, inner, inner, { bias: false }),
          ...spec.linear(`${b}.attn1.to_v`, inner, inner, { bias: false }),
          ...spec.linear(`${b}.attn1.to_out.0`, inner, inner),
          ...spec.linear(`${b}.ff.net.0.proj`, inner, inner * 8),
          ...spec.linear(`${b}.ff.net.2`, inner * 4, inner),
          ...spec.linear(`${b}.attn2.to_q`, inner, inner, { bias: false }),
          ...spec.linear(`${b}.attn2.to_k`, c.contextDim, inner, { bias: false }),
          ...spec.linear(`${b}.attn2.to_v`, c.contextDim, inner, { bias: false }),
          ...spec.linear(`${b}.attn2.to_out.0`, inner, inner),
          ...spec.norm(`${b}.norm1`, inner),
          ...spec.norm(`${b}.norm2`, inner),
          ...spec.norm(`${b}.norm3`, inner),
        );
      }
      out.push(...spec.conv2d(`${l.name}.proj_out`, inner, l.ch, 1, { zero: true }));
      return out;
    }
  }
}

/** Every parameter (name, PyTorch shape) of the UNet, computed from the config alone. */
export function unetParamSpecs(c: UNetConfig): ParamSpec[] {
  const L = layout(c);
  const out: ParamSpec[] = [...spec.linear('time_embed.0', c.modelChannels, L.timeDim), ...spec.linear('time_embed.2', L.timeDim, L.timeDim)];
  for (const blk of [...L.input, L.middle, ...L.output]) for (const l of blk) out.push(...layerSpecs(l, c, L.timeDim));
  out.push(...spec.norm('out.0', L.outCh), ...spec.conv2d('out.2', c.modelChannels, c.outChannels, 3, { zero: true }));
  return out;
}

/** openaimodel.timestep_embedding: [cos(t·f), sin(t·f)], f_i = 10000^(−i/half). */
export function timestepEmbedding(t: tf.Tensor1D, dim: number, maxPeriod = 10000): tf.Tensor2D {
  const half = Math.floor(dim / 2);
  const freqs = new Float32Array(half);
  for (let i = 0; i < half; i++) freqs[i] = Math.exp((-Math.log(maxPeriod) * i) / half);
  const args = tf.mul(t.toFloat().reshape([-1, 1]), tf.tensor2d(freqs, [1, half]));
  let emb = tf.concat([tf.cos(args), tf.sin(args)], 1);
  if (dim % 2) emb = tf.concat([emb, tf.zerosLike(emb.slice([0, 0], [-1, 1]))], 1);
  return emb as tf.Tensor2D;
}

function resBlock(p: Params, n: string, x: tf.Tensor4D, emb: tf.Tensor2D, cin: number, cout: number): tf.Tensor4D {
  let h = conv2d(p, `${n}.in_layers.2`, groupNormSilu(p, `${n}.in_layers.0`, x, 32, 1e-5));
  const e = linear(p, `${n}.emb_layers.1`, silu(emb));
  h = tf.add(h, e.reshape([e.shape[0]!, 1, 1, cout]));
  h = conv2d(p, `${n}.out_layers.3`, groupNormSilu(p, `${n}.out_layers.0`, h, 32, 1e-5));
  const skip = cin === cout ? x : conv2d(p, `${n}.skip_connection`, x);
  return tf.add(skip, h);
}

function crossAttention(p: Params, n: string, x: tf.Tensor3D, ctx: tf.Tensor3D, heads: number): tf.Tensor {
  const q = linear(p, `${n}.to_q`, x);
  const k = linear(p, `${n}.to_k`, ctx);
  const v = linear(p, `${n}.to_v`, ctx);
  return linear(p, `${n}.to_out.0`, attention(q, k, v, heads));
}

function spatialTransformer(p: Params, n: string, x: tf.Tensor4D, ctx: tf.Tensor3D, heads: number, depth: number): tf.Tensor4D {
  const [b, hh, ww, ch] = x.shape;
  let h = conv2d(p, `${n}.proj_in`, groupNorm(p, `${n}.norm`, x, 32, 1e-6));
  let s = h.reshape([b, hh * ww, ch]) as tf.Tensor3D;
  for (let d = 0; d < depth; d++) {
    const bn = `${n}.transformer_blocks.${d}`;
    const n1 = layerNorm(p, `${bn}.norm1`, s) as tf.Tensor3D;
    s = tf.add(crossAttention(p, `${bn}.attn1`, n1, n1, heads), s);
    s = tf.add(crossAttention(p, `${bn}.attn2`, layerNorm(p, `${bn}.norm2`, s) as tf.Tensor3D, ctx, heads), s);
    const proj = linear(p, `${bn}.ff.net.0.proj`, layerNorm(p, `${bn}.norm3`, s));
    const [a, gate] = tf.split(proj, 2, -1);
    s = tf.add(linear(p, `${bn}.ff.net.2`, tf.mul(a!, gelu(gate!))), s);
  }
  h = conv2d(p, `${n}.proj_out`, s.reshape([b, hh, ww, ch]));
  return tf.add(h, x);
}

function applyLayer(p: Params, c: UNetConfig, l: Layer, h: tf.Tensor4D, emb: tf.Tensor2D, ctx: tf.Tensor3D): tf.Tensor4D {
  switch (l.type) {
    case 'conv':
      return conv2d(p, l.name, h);
    case 'res':
      return resBlock(p, l.name, h, emb, l.cin, l.cout);
    case 'st':
      return spatialTransformer(p, l.name, h, ctx, l.heads, c.transformerDepth);
    case 'down':
      return conv2d(p, `${l.name}.op`, h, { stride: 2, pad: 1 });
    case 'up':
      return conv2d(p, `${l.name}.conv`, upsample2x(h));
  }
}

/**
 * eps = UNet(x, t, context). x: (B, H, W, inChannels) NHWC; t: (B,) timesteps; context: (B, tokens, contextDim).
 * Returns (B, H, W, outChannels).
 */
export function unetForward(p: Params, c: UNetConfig, x: tf.Tensor4D, t: tf.Tensor1D, context: tf.Tensor3D): tf.Tensor4D {
  const L = layout(c);
  const f = 2 ** (c.channelMult.length - 1);
  if (x.shape[1] % f || x.shape[2] % f) throw new DifftalkError('bad-input', `UNet input ${x.shape[1]}×${x.shape[2]} is not divisible by ${f}`);
  let emb = linear(p, 'time_embed.0', timestepEmbedding(t, c.modelChannels));
  emb = linear(p, 'time_embed.2', silu(emb));
  const emb2 = emb as tf.Tensor2D;
  const hs: tf.Tensor4D[] = [];
  let h = x;
  for (const blk of L.input) {
    for (const l of blk) h = applyLayer(p, c, l, h, emb2, context);
    hs.push(h);
  }
  for (const l of L.middle) h = applyLayer(p, c, l, h, emb2, context);
  for (const blk of L.output) {
    h = tf.concat([h, hs.pop()!], 3);
    for (const l of blk) h = applyLayer(p, c, l, h, emb2, context);
  }
  return conv2d(p, 'out.2', groupNormSilu(p, 'out.0', h, 32, 1e-5));
}
