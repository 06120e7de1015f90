/**
 * Parity of the TensorFlow.js DiffTalk networks with the reference PyTorch code, using the deterministic `det()` weights
 * of ../shared/data/fixtures (expected.json parts difftalk_encoders, unet, vq_f4; README there for the formula).
 * Tolerances per the fixture README: encoders 1e-5 relative, UNet / VQ 1e-4 relative (max |Δ| / max |ref|).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { FIXTURES } from '../helpers.js';
import { tf, initBackend } from '../../src/util/tf.js';
import { detInput } from '../../src/weights/det.js';
import { Params, countParams, permute, type ParamSpec } from '../../src/models/blocks.js';
import { audioAttNetParamSpecs, audioNet, audioNetParamSpecs, encodeAudio, PAPER_AUDIO_NET } from '../../src/models/audio-net.js';
import { ldmNet, ldmNetParamSpecs, PAPER_LDM_NET } from '../../src/models/ldm-net.js';
import { unetForward, unetParamSpecs, type UNetConfig } from '../../src/models/unet.js';
import { vqDecodeUnquantized, vqEncode, vqParamSpecs, type VqConfig } from '../../src/models/vq-f4.js';
import { PRESETS } from '../../src/models/presets.js';

const expected = JSON.parse(readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8'));

function relErr(got: ArrayLike<number>, ref: readonly number[]): number {
  assert.equal(got.length, ref.length);
  let maxD = 0;
  let maxR = 0;
  for (let i = 0; i < ref.length; i++) {
    maxD = Math.max(maxD, Math.abs(got[i]! - ref[i]!));
    maxR = Math.max(maxR, Math.abs(ref[i]!));
  }
  return maxD / maxR;
}

function sameSpecs(ours: ParamSpec[], ref: [string, number[]][], ignore: string[] = []): void {
  const a = new Map(ours.filter((s) => !ignore.includes(s.name)).map((s) => [s.name, s.shape.join('x')]));
  const b = new Map(ref.map(([n, s]) => [n, s.join('x')]));
  assert.deepEqual([...a.entries()].sort(), [...b.entries()].sort());
}

const nchwToNhwc = (d: Float32Array, [n, c, h, w]: number[]) => tf.tensor4d(permute(d, [n!, c!, h!, w!], [0, 2, 3, 1]), [n!, h!, w!, c!]);
const nhwcToNchw = (t: tf.Tensor4D) => permute(t.dataSync() as Float32Array, t.shape, [0, 3, 1, 2]);

// Set-up, not a test: every reference below is computed on tfjs's plain-JavaScript cpu backend.
before(async () => {
  await initBackend('cpu');
  assert.equal(tf.getBackend(), 'cpu');
});

test('AudioNet + AudioAttNet + LdmNet match the reference (det weights, 1e-5 rel)', () => {
  const fx = expected.difftalk_encoders;
  const audio = fx.params.filter(([n]: [string]) => n.startsWith('audio.')).map(([n, s]: [string, number[]]) => [n.slice(6), s]);
  const att = fx.params.filter(([n]: [string]) => n.startsWith('audio_att.')).map(([n, s]: [string, number[]]) => [n.slice(10), s]);
  const ldm = fx.params.filter(([n]: [string]) => n.startsWith('ldm.')).map(([n, s]: [string, number[]]) => [n.slice(4), s]);
  sameSpecs(audioNetParamSpecs(PAPER_AUDIO_NET), audio);
  sameSpecs(audioAttNetParamSpecs(PAPER_AUDIO_NET), att);
  sameSpecs(ldmNetParamSpecs(PAPER_LDM_NET), ldm);
  const pA = new Params(audioNetParamSpecs(PAPER_AUDIO_NET), 'det', 0, { prefix: 'audio.' });
  const pB = new Params(audioAttNetParamSpecs(PAPER_AUDIO_NET), 'det', 0, { prefix: 'audio_att.' });
  const pL = new Params(ldmNetParamSpecs(PAPER_LDM_NET), 'det', 0, { prefix: 'ldm.' });
  const x = tf.tensor4d(detInput([2, 8, 16, 29], 0.3), [2, 8, 16, 29]);
  const an = audioNet(pA, x.reshape([16, 16, 29]));
  const anData = an.dataSync();
  const e1 = Math.max(relErr(anData.slice(0, 8), fx.audionet_out.first8), relErr(anData.slice(-8), fx.audionet_out.last8));
  assert.ok(Math.abs(an.sum().dataSync()[0]! - fx.audionet_out.sum) < 1e-3, 'audionet sum');
  const a = encodeAudio(pA, pB, x, PAPER_AUDIO_NET);
  const e2 = relErr(a.dataSync(), fx.audioatt_out_full);
  const lm = tf.tensor3d(detInput([2, 39, 2], 1.1, 100, 128), [2, 39, 2]);
  const l = ldmNet(pL, lm, PAPER_LDM_NET);
  const e3 = relErr(l.dataSync(), fx.ldmnet_out_full);
  console.log(`encoders rel err: audionet(first8) ${e1.toExponential(2)} audioatt ${e2.toExponential(2)} ldmnet ${e3.toExponential(2)}`);
  assert.ok(e1 < 1e-5 && e2 < 1e-5 && e3 < 1e-5);
  [pA, pB, pL].forEach((p) => p.dispose());
});

const unetCfg = (c: Record<string, unknown>): UNetConfig => ({
  imageSize: c.image_size as number,
  inChannels: c.in_channels as number,
  outChannels: c.out_channels as number,
  modelChannels: c.model_channels as number,
  attentionResolutions: c.attention_resolutions as number[],
  numResBlocks: c.num_res_blocks as number,
  channelMult: c.channel_mult as number[],
  numHeadChannels: c.num_head_channels as number,
  transformerDepth: c.transformer_depth as number,
  contextDim: c.context_dim as number,
});

test('UNet (tiny fixture config) matches openaimodel with det weights (1e-4 rel)', () => {
  const fx = expected.unet;
  const cfg = unetCfg(fx.config);
  sameSpecs(unetParamSpecs(cfg), fx.params);
  const p = new Params(unetParamSpecs(cfg), 'det');
  const x = nchwToNhwc(detInput([1, 9, 16, 16], 0.7), [1, 9, 16, 16]);
  const ctx = tf.tensor3d(detInput([1, 1, 128], 2.3), [1, 1, 128]);
  const t0 = performance.now();
  const out = unetForward(p, cfg, x, tf.tensor1d([37]), ctx);
  const ms = performance.now() - t0;
  const e = relErr(nhwcToNchw(out), fx.out_full);
  console.log(`unet rel err ${e.toExponential(2)} (forward ${ms.toFixed(0)} ms)`);
  assert.ok(e < 1e-4);
  p.dispose();
});

test('UNet paper config: parameter names/shapes and count (530,152,963) from shapes only', () => {
  const fx = expected.unet;
  const specs = unetParamSpecs(PRESETS.paper.unet);
  sameSpecs(specs, fx.paper_config_params);
  assert.equal(countParams(specs), fx.paper_param_count);
});

test('VQ-f4 encoder/decoder (tiny fixture config) match LDM with det weights (1e-4 rel)', () => {
  const fx = expected.vq_f4;
  const c = fx.config;
  const cfg: VqConfig = {
    resolution: c.resolution,
    inChannels: c.in_channels,
    outCh: c.out_ch,
    ch: c.ch,
    chMult: c.ch_mult,
    numResBlocks: c.num_res_blocks,
    zChannels: c.z_channels,
    embedDim: 3,
    nEmbed: 16,
  };
  sameSpecs(vqParamSpecs(cfg), fx.params, ['quantize.embedding.weight']);
  const p = new Params(vqParamSpecs(cfg), 'det');
  const x = nchwToNhwc(detInput([1, 3, 32, 32], 0.2), [1, 3, 32, 32]);
  const z = vqEncode(p, cfg, x);
  const ez = relErr(nhwcToNchw(z), fx.z_full);
  const rec = vqDecodeUnquantized(p, cfg, z);
  const recSum = rec.sum().dataSync()[0]!;
  const er = Math.max(relErr(nhwcToNchw(rec).slice(0, 8), fx.recon.first8), relErr(nhwcToNchw(rec).slice(-8), fx.recon.last8));
  console.log(`vq rel err: z ${ez.toExponential(2)} recon(first/last8) ${er.toExponential(2)} sum ${recSum} vs ${fx.recon.sum}`);
  assert.ok(ez < 1e-4 && er < 1e-4);
  assert.ok(Math.abs(recSum - fx.recon.sum) / fx.recon.abs_sum < 1e-4);
  p.dispose();
});

/** The VQ-f4 config of the reference fixture (expected.json: vq_f4.config) with a 16-entry codebook. */
function fixtureVqConfig(): VqConfig {
  const c = expected.vq_f4.config;
  return {
    resolution: c.resolution,
    inChannels: 3,
    outCh: 3,
    ch: c.ch,
    chMult: c.ch_mult,
    numResBlocks: c.num_res_blocks,
    zChannels: 3,
    embedDim: 3,
    nEmbed: 16,
  };
}

test('VQ weights round-trip through a safetensors checkpoint with LDM names (first_stage_model.* prefix)', async () => {
  const { writeSafetensors } = await import('../../src/weights/safetensors.js');
  const { loadVqWeights } = await import('../../src/models/vq-f4.js');
  const { tmpDir } = await import('../helpers.js');
  const cfg = fixtureVqConfig();
  const p = new Params(vqParamSpecs(cfg), 'det');
  const file = path.join(tmpDir(), 'vq.safetensors');
  await writeSafetensors(file, p.toTorch('first_stage_model.'));
  const q = await loadVqWeights(file, cfg);
  const x = nchwToNhwc(detInput([1, 3, 32, 32], 0.2), [1, 3, 32, 32]);
  // exact: the layout conversion is a pure permutation
  assert.deepEqual(vqEncode(q, cfg, x).dataSync(), vqEncode(p, cfg, x).dataSync());
  p.dispose();
  q.dispose();
});

test('vq-f4 converter: an LDM-layout legacy torch checkpoint → checked tensors without the prefix; wrong files refused', async () => {
  const { convertVqCheckpoint, loadVqWeights } = await import('../../src/models/vq-f4.js');
  const { writeSafetensors } = await import('../../src/weights/safetensors.js');
  const { writeLegacyTorch } = await import('../weights/legacy-writer.js');
  const { tmpDir } = await import('../helpers.js');
  const cfg = fixtureVqConfig();
  const p = new Params(vqParamSpecs(cfg), 'det');
  const dir = tmpDir();
  const ckpt = path.join(dir, 'model.ckpt');
  const torchTensors = new Map<string, { shape: readonly number[]; data: Float32Array }>();
  for (const [name, t] of p.toTorch('first_stage_model.')) torchTensors.set(name, { shape: t.shape, data: t.data as Float32Array });
  writeLegacyTorch(ckpt, torchTensors);
  const { tensors } = await convertVqCheckpoint(ckpt, cfg);
  assert.equal(tensors.size, vqParamSpecs(cfg).length);
  assert.ok([...tensors.keys()].every((k) => !k.startsWith('first_stage_model.')));
  const out = path.join(dir, 'vq.safetensors');
  await writeSafetensors(out, tensors);
  const q = await loadVqWeights(out, cfg);
  const x = nchwToNhwc(detInput([1, 3, 32, 32], 0.4), [1, 3, 32, 32]);
  assert.deepEqual(vqEncode(q, cfg, x).dataSync(), vqEncode(p, cfg, x).dataSync()); // exact: same numbers, new container
  p.dispose();
  q.dispose();
  // the paper VQ-f4 layout is required by the registered converter: a tiny checkpoint is refused by name/shape
  await assert.rejects(convertVqCheckpoint(ckpt), (e: Error & { code?: string }) => e.code === 'bad-weights');
});

test('conditionNorm: the context of raw conditions equals the context of conditions standardised by hand (no leak per call)', async () => {
  await initBackend('cpu');
  const { DifftalkModel } = await import('../../src/models/difftalk.js');
  const base = PRESETS.tiny;
  const { seqLen, winSize, featureDim: dim } = base.audio;
  const audioMean = Array.from({ length: dim }, (_, i) => -10 + 0.1 * i);
  const audioStd = Array.from({ length: dim }, (_, i) => 2 + 0.05 * i);
  const landmarkMean = Array.from({ length: 78 }, (_, i) => 100 + i);
  const landmarkStd = Array.from({ length: 78 }, (_, i) => 3 + 0.1 * i);
  const normed = new DifftalkModel({ ...base, conditionNorm: { audioMean, audioStd, landmarkMean, landmarkStd } }, 'init', 5);
  const plain = new DifftalkModel(base, 'init', 5);
  const audio = tf.randomNormal([2, seqLen, winSize, dim], -10, 4, 'float32', 1) as tf.Tensor4D;
  const lm = tf.randomNormal([2, 39, 2], 120, 5, 'float32', 2) as tf.Tensor3D;
  const audioStdT = tf.div(tf.sub(audio, audioMean), audioStd) as tf.Tensor4D;
  const lmStdT = tf.div(tf.sub(lm, tf.tensor2d(landmarkMean, [39, 2])), tf.tensor2d(landmarkStd, [39, 2])) as tf.Tensor3D;
  const want = plain.context(audioStdT, lmStdT).dataSync();
  normed.context(audio, lm).dispose(); // first call makes the constants
  const before = tf.memory().numTensors;
  const got = tf.tidy(() => normed.context(audio, lm).dataSync());
  assert.equal(tf.memory().numTensors, before, 'no tensors left behind by a call');
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-5 * (1 + Math.abs(want[i]!)), `${i}: ${got[i]} vs ${want[i]}`);
  normed.dispose();
  plain.dispose();
});
