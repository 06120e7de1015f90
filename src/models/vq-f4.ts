/**
 * The first stage: LDM's VQModel (taming Encoder/Decoder + quant_conv / post_quant_conv + VectorQuantizer), the
 * `vq-f4` configuration (embed_dim 3, n_embed 8192, ch 128, ch_mult [1,2,4], 2 res blocks, no attention except
 * the mid blocks). NHWC. Upstream state_dict names (`encoder.…`, `decoder.…`, `quant_conv`, `post_quant_conv`,
 * `quantize.embedding.weight`).
 *
 * `encode` returns the pre-quantisation latent (VQModelInterface.encode); `decode` quantises to the codebook first.
 */
import { tf } from '../util/tf.js';
import { readSafetensors } from '../weights/safetensors.js';
import { readTorchFile, stateDict, type TensorData } from '../weights/torch.js';
import { registerWeightConverter } from './weights-store.js';
import { DifftalkError } from '../util/errors.js';
import { attention, conv2d, groupNorm, groupNormSilu, Params, spec, stopGradient, upsample2x, type ParamSpec } from './blocks.js';

export interface VqConfig {
  resolution: number;
  inChannels: number;
  outCh: number;
  ch: number;
  chMult: number[];
  numResBlocks: number;
  zChannels: number;
  embedDim: number;
  nEmbed: number;
}

/** LDM `models/first_stage_models/vq-f4/config.yaml`. */
export const VQ_F4: VqConfig = {
  resolution: 256,
  inChannels: 3,
  outCh: 3,
  ch: 128,
  chMult: [1, 2, 4],
  numResBlocks: 2,
  zChannels: 3,
  embedDim: 3,
  nEmbed: 8192,
};

const EPS = 1e-6;

function resnetSpecs(n: string, cin: number, cout: number): ParamSpec[] {
  return [
    ...spec.norm(`${n}.norm1`, cin),
    ...spec.conv2d(`${n}.conv1`, cin, cout, 3),
    ...spec.norm(`${n}.norm2`, cout),
    ...spec.conv2d(`${n}.conv2`, cout, cout, 3),
    ...(cin !== cout ? spec.conv2d(`${n}.nin_shortcut`, cin, cout, 1) : []),
  ];
}

function attnSpecs(n: string, ch: number): ParamSpec[] {
  return [...spec.norm(`${n}.norm`, ch), ...['q', 'k', 'v', 'proj_out'].flatMap((k) => spec.conv2d(`${n}.${k}`, ch, ch, 1))];
}

export function vqParamSpecs(c: VqConfig): ParamSpec[] {
  const out: ParamSpec[] = [...spec.conv2d('encoder.conv_in', c.inChannels, c.ch, 3)];
  const inMult = [1, ...c.chMult];
  let blockIn = c.ch;
  c.chMult.forEach((m, i) => {
    blockIn = c.ch * inMult[i]!;
    const blockOut = c.ch * m;
    for (let r = 0; r < c.numResBlocks; r++) {
      out.push(...resnetSpecs(`encoder.down.${i}.block.${r}`, blockIn, blockOut));
      blockIn = blockOut;
    }
    if (i !== c.chMult.length - 1) out.push(...spec.conv2d(`encoder.down.${i}.downsample.conv`, blockIn, blockIn, 3));
  });
  out.push(
    ...resnetSpecs('encoder.mid.block_1', blockIn, blockIn),
    ...attnSpecs('encoder.mid.attn_1', blockIn),
    ...resnetSpecs('encoder.mid.block_2', blockIn, blockIn),
  );
  out.push(...spec.norm('encoder.norm_out', blockIn), ...spec.conv2d('encoder.conv_out', blockIn, c.zChannels, 3));

  blockIn = c.ch * c.chMult[c.chMult.length - 1]!;
  out.push(...spec.conv2d('decoder.conv_in', c.zChannels, blockIn, 3));
  out.push(
    ...resnetSpecs('decoder.mid.block_1', blockIn, blockIn),
    ...attnSpecs('decoder.mid.attn_1', blockIn),
    ...resnetSpecs('decoder.mid.block_2', blockIn, blockIn),
  );
  for (let i = c.chMult.length - 1; i >= 0; i--) {
    const blockOut = c.ch * c.chMult[i]!;
    for (let r = 0; r <= c.numResBlocks; r++) {
      out.push(...resnetSpecs(`decoder.up.${i}.block.${r}`, blockIn, blockOut));
      blockIn = blockOut;
    }
    if (i !== 0) out.push(...spec.conv2d(`decoder.up.${i}.upsample.conv`, blockIn, blockIn, 3));
  }
  out.push(...spec.norm('decoder.norm_out', blockIn), ...spec.conv2d('decoder.conv_out', blockIn, c.outCh, 3));
  out.push(...spec.conv2d('quant_conv', c.zChannels, c.embedDim, 1), ...spec.conv2d('post_quant_conv', c.embedDim, c.zChannels, 1));
  out.push(...spec.embedding('quantize.embedding', c.nEmbed, c.embedDim));
  return out;
}

function resnet(p: Params, n: string, x: tf.Tensor4D): tf.Tensor4D {
  let h = conv2d(p, `${n}.conv1`, groupNormSilu(p, `${n}.norm1`, x, 32, EPS));
  h = conv2d(p, `${n}.conv2`, groupNormSilu(p, `${n}.norm2`, h, 32, EPS));
  const skip = p.has(`${n}.nin_shortcut.weight`) ? conv2d(p, `${n}.nin_shortcut`, x) : x;
  return tf.add(skip, h);
}

function attnBlock(p: Params, n: string, x: tf.Tensor4D): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  const hn = groupNorm(p, `${n}.norm`, x, 32, EPS);
  const flat = (t: tf.Tensor4D) => t.reshape([b, h * w, c]);
  const o = attention(flat(conv2d(p, `${n}.q`, hn)), flat(conv2d(p, `${n}.k`, hn)), flat(conv2d(p, `${n}.v`, hn)), 1);
  return tf.add(x, conv2d(p, `${n}.proj_out`, o.reshape([b, h, w, c])));
}

function mid(p: Params, prefix: string, h: tf.Tensor4D): tf.Tensor4D {
  h = resnet(p, `${prefix}.mid.block_1`, h);
  h = attnBlock(p, `${prefix}.mid.attn_1`, h);
  return resnet(p, `${prefix}.mid.block_2`, h);
}

/** Pre-quantisation latent: quant_conv(encoder(x)). x: (B, H, W, 3) in [-1, 1] → (B, H/f, W/f, embedDim). */
export function vqEncode(p: Params, c: VqConfig, x: tf.Tensor4D): tf.Tensor4D {
  let h = conv2d(p, 'encoder.conv_in', x);
  c.chMult.forEach((_, i) => {
    for (let r = 0; r < c.numResBlocks; r++) h = resnet(p, `encoder.down.${i}.block.${r}`, h);
    if (i !== c.chMult.length - 1) h = conv2d(p, `encoder.down.${i}.downsample.conv`, h, { stride: 2, pad: [0, 1, 0, 1] });
  });
  h = mid(p, 'encoder', h);
  h = conv2d(p, 'encoder.conv_out', groupNormSilu(p, 'encoder.norm_out', h, 32, EPS));
  return conv2d(p, 'quant_conv', h);
}

/** Nearest codebook entry (L2) per latent pixel; straight-through gradient (z + sg(zq − z)). */
export function vqQuantize(p: Params, z: tf.Tensor4D): tf.Tensor4D {
  const [b, h, w, d] = z.shape;
  const e = p.get('quantize.embedding.weight') as unknown as tf.Tensor2D; // (nEmbed, d)
  const zf = z.reshape([-1, d]) as tf.Tensor2D;
  const dist = tf.sub(tf.add(tf.sum(tf.square(zf), 1, true), tf.sum(tf.square(e), 1).reshape([1, -1])), tf.mul(tf.matMul(zf, e, false, true), 2));
  const idx = tf.argMin(dist, 1);
  const zq = tf.gather(e, idx).reshape([b, h, w, d]) as tf.Tensor4D;
  return tf.add(z, stopGradient(tf.sub(zq, z)));
}

/** decoder(post_quant_conv(z)) without the codebook lookup (the fixture's path). */
export function vqDecodeUnquantized(p: Params, c: VqConfig, z: tf.Tensor4D): tf.Tensor4D {
  let h = conv2d(p, 'decoder.conv_in', conv2d(p, 'post_quant_conv', z));
  h = mid(p, 'decoder', h);
  for (let i = c.chMult.length - 1; i >= 0; i--) {
    for (let r = 0; r <= c.numResBlocks; r++) h = resnet(p, `decoder.up.${i}.block.${r}`, h);
    if (i !== 0) h = conv2d(p, `decoder.up.${i}.upsample.conv`, upsample2x(h));
  }
  return conv2d(p, 'decoder.conv_out', groupNormSilu(p, 'decoder.norm_out', h, 32, EPS));
}

/** VQModelInterface.decode: quantise, then decode. Output in [-1, 1] (unclamped). */
export function vqDecode(p: Params, c: VqConfig, z: tf.Tensor4D): tf.Tensor4D {
  return vqDecodeUnquantized(p, c, vqQuantize(p, z));
}

/**
 * Load LDM's released `vq-f4` checkpoint (`model.ckpt` from vq-f4.zip: `state_dict` with `encoder.*`, `decoder.*`,
 * `quantize.embedding.weight`, `quant_conv.*`, `post_quant_conv.*` and the unused `loss.*` discriminator/LPIPS
 * entries), a DiffTalk/LDM diffusion checkpoint (`first_stage_model.*`), or a safetensors file with either naming.
 */
export async function loadVqWeights(file: string, c: VqConfig): Promise<Params> {
  const tensors = file.endsWith('.safetensors') ? (await readSafetensors(file)).tensors : stateDict(await readTorchFile(file));
  const prefix = [...tensors.keys()].some((k) => k.startsWith('first_stage_model.')) ? 'first_stage_model.' : '';
  const p = new Params(vqParamSpecs(c), 'init', 0, { trainable: false });
  try {
    p.loadTorch(tensors, { prefix, source: file });
  } catch (e) {
    p.dispose();
    throw e;
  }
  return p;
}

/**
 * Converter for `difftalk weights import --kind vq-f4 --model model.ckpt` (LDM's vq-f4.zip): the first-stage
 * tensors of the paper VQ-f4 (with or without the `first_stage_model.` prefix), checked name by name and shape by
 * shape, stored without the prefix. `train ldm --first-stage` accepts the resulting .safetensors as well.
 */
export async function convertVqCheckpoint(file: string, c: VqConfig = VQ_F4): Promise<{ tensors: Map<string, TensorData>; metadata: Record<string, string> }> {
  const sd = stateDict(await readTorchFile(file));
  const prefix = [...sd.keys()].some((k) => k.startsWith('first_stage_model.')) ? 'first_stage_model.' : '';
  const tensors = new Map<string, TensorData>();
  for (const { name, shape } of vqParamSpecs(c)) {
    const t = sd.get(prefix + name);
    if (!t) throw new DifftalkError('bad-weights', `${file}: tensor ${prefix}${name} is missing (is this LDM's vq-f4 model.ckpt?)`);
    if (t.shape.join() !== shape.join()) throw new DifftalkError('bad-weights', `${file}: ${name} has shape [${t.shape}], expected [${shape}]`);
    if (!(t.data instanceof Float32Array)) throw new DifftalkError('bad-weights', `${file}: ${name} is ${t.dtype}, expected float32`);
    tensors.set(name, { dtype: 'float32', shape: [...shape], data: t.data });
  }
  return { tensors, metadata: { 'difftalk.vq_config': JSON.stringify(c) } };
}

registerWeightConverter('vq-f4', ({ inputs }) => convertVqCheckpoint(inputs.model!));
