/**
 * `difftalk export checkpoint` against PyTorch (Debian python3-torch 1.13, tests/reference/checkpoint_reference.py).
 *
 * The run: a real difftalk LDM checkpoint (model.safetensors + state.json, written by saveCheckpoint) of the tiny
 * preset, whose UNet config equals the fixtures' `unet.config`, with the fixtures' deterministic det() weights (so the
 * fixtures' PyTorch outputs apply), an EMA that differs from the weights (0.5×, so a swap shows), and a first stage
 * pinned from an autoencoder checkpoint of the fixtures' `vq_f4.config` (det() weights, a 64-entry codebook).
 *
 * Asserts (the Python side is an independent reader and independent reference modules):
 * - torch.load(weights_only=True) opens the file; names and shapes equal the reference LatentDiffusion list built from
 *   the fixtures' parameter lists (strict: no missing, no unexpected, no shape differs);
 * - every weight equals the run's safetensors bit for bit (numpy reads them); the schedule buffers equal LDM's
 *   register_schedule recomputed in numpy (relative error < 1e-6, float32 rounding of float64 math);
 * - reference UNet / AudioNet+AudioAttNet / LdmNet modules load their parts with load_state_dict(strict=True); their
 *   outputs match the fixtures' PyTorch outputs (max |Δ| < 1e-4, which validates the modules) and difftalk's own
 *   outputs on the same inputs: denoiser max |Δ| < 1e-4 (the fixture README's UNet tolerance), encoders < 1e-5;
 * - for the paper preset (no weights allocated): the UNet, LitEma and encoder names and shapes equal the fixtures'
 *   paper_config_params and encoder list;
 * - the CLI refuses to replace an existing --out without --force (exit 2, file unchanged), replaces it with --force,
 *   and writes nothing but --out in its folder.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FIXTURES, ROOT, runCli, tmpDir } from '../helpers.js';
import { initBackend, tf } from '../../src/util/tf.js';
import { runProcess } from '../../src/util/exec.js';
import { saveCheckpoint } from '../../src/models/checkpoint.js';
import { Params } from '../../src/models/blocks.js';
import { vqParamSpecs, type VqConfig } from '../../src/models/vq-f4.js';
import { loadFirstStage, pinFirstStage } from '../../src/models/first-stage.js';
import { checkpointSpecs, DifftalkModel, PREFIX, toReferenceName } from '../../src/models/difftalk.js';
import { PRESETS, type DifftalkConfig } from '../../src/models/presets.js';
import { unetForward } from '../../src/models/unet.js';
import { encodeAudio } from '../../src/models/audio-net.js';
import { ldmNet } from '../../src/models/ldm-net.js';
import { exportCheckpoint } from '../../src/export/checkpoint.js';
import type { TensorData } from '../../src/weights/torch.js';

const work = tmpDir('difftalk-export-ckpt-');
const PY = '/usr/bin/python3';

interface PyResult {
  torch: string;
  top_keys: string[];
  global_step: number;
  missing: string[];
  unexpected: string[];
  shape_mismatch: string[];
  codebook_shape: number[];
  count: number;
  values_compared: number;
  values_differ: string[];
  ema_decay: number;
  ema_num_updates: number;
  ema_num_updates_dtype: string;
  schedule_max_rel: number;
  unet_out: number[];
  audio_out: number[];
  ldm_out: number[];
  unet_vs_fixture: number;
  audio_vs_fixture: number;
  ldm_vs_fixture: number;
}

/** The fixtures' detinput: offset + scale·sin(0.37k + seed), float32. */
function detinput(n: number, seed: number, scale = 1, offset = 0): Float32Array {
  return Float32Array.from({ length: n }, (_, k) => offset + scale * Math.sin(0.37 * k + seed));
}

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

async function makeRun(): Promise<{ runDir: string; config: DifftalkConfig; model: DifftalkModel }> {
  const expected = JSON.parse(await readFile(path.join(FIXTURES, 'expected.json'), 'utf8')) as { vq_f4: { config: Record<string, unknown> } };
  const v = expected.vq_f4.config as {
    resolution: number;
    in_channels: number;
    out_ch: number;
    ch: number;
    ch_mult: number[];
    num_res_blocks: number;
    z_channels: number;
  };
  const vq: VqConfig = {
    resolution: v.resolution,
    inChannels: v.in_channels,
    outCh: v.out_ch,
    ch: v.ch,
    chMult: v.ch_mult,
    numResBlocks: v.num_res_blocks,
    zChannels: v.z_channels,
    embedDim: v.z_channels,
    nEmbed: 64,
  };
  const config: DifftalkConfig = { ...structuredClone(PRESETS.tiny), vq, imageSize: v.resolution };
  const aeDir = path.join(work, 'ae');
  const vqParams = new Params(vqParamSpecs(vq), 'det', 0);
  await saveCheckpoint(aeDir, { kind: 'autoencoder', version: 1, step: 1, config }, vqParams.toTorch(), undefined);
  vqParams.dispose();
  const runDir = path.join(work, 'run');
  const fs = await loadFirstStage(aeDir, { vq, imageSize: config.imageSize });
  const pin = await pinFirstStage(runDir, fs);
  fs.params.dispose();
  const model = new DifftalkModel(config, 'det');
  const tensors = model.toTensors();
  for (const [n, t] of model.unet.toTorch()) tensors.set(PREFIX.ema + n, { ...t, data: (t.data as Float32Array).map((x) => x * 0.5) } satisfies TensorData);
  await saveCheckpoint(runDir, { kind: 'ldm', version: 1, step: 7, config, ema: { decay: 0.999, numUpdates: 7 }, firstStage: pin }, tensors, undefined);
  return { runDir, config, model };
}

test('export checkpoint: PyTorch loads it with the reference names, values and denoiser output', { timeout: 300_000 }, async () => {
  await initBackend('cpu');
  const { runDir, config, model } = await makeRun();
  const out = path.join(work, 'exported', 'model.ckpt');
  const r = await exportCheckpoint({ run: runDir, out });
  assert.equal(r.step, 7);
  const ckptDir = path.join(runDir, 'ckpt-00000007');
  const pyOut = path.join(work, 'py.json');
  await runProcess(PY, [
    path.join(ROOT, 'tests/reference/checkpoint_reference.py'),
    out,
    path.join(FIXTURES, 'expected.json'),
    path.join(ckptDir, 'model.safetensors'),
    path.join(runDir, 'first-stage', 'model.safetensors'),
    pyOut,
  ]);
  const py = JSON.parse(await readFile(pyOut, 'utf8')) as PyResult;
  console.log(
    `torch ${py.torch}: ${py.count} entries, ${py.values_compared} compared bit-exact; schedule rel ${py.schedule_max_rel.toExponential(2)}; ` +
      `torch modules vs fixtures: unet ${py.unet_vs_fixture.toExponential(2)}, audio ${py.audio_vs_fixture.toExponential(2)}, ldm ${py.ldm_vs_fixture.toExponential(2)}`,
  );
  assert.deepEqual(py.missing, []);
  assert.deepEqual(py.unexpected, []);
  assert.deepEqual(py.shape_mismatch, []);
  assert.deepEqual(py.codebook_shape, [64, 3]);
  assert.equal(py.count, r.tensors);
  assert.equal(py.values_compared, r.tensors - 14); // all but the 12 schedule buffers and model_ema.decay / num_updates
  assert.deepEqual(py.values_differ, []);
  assert.deepEqual(py.top_keys, ['difftalk', 'global_step', 'state_dict']);
  assert.equal(py.global_step, 7);
  assert.equal(Math.fround(py.ema_decay), Math.fround(0.999));
  assert.equal(py.ema_num_updates, 7);
  assert.equal(py.ema_num_updates_dtype, 'torch.int32');
  assert.ok(py.schedule_max_rel < 1e-6, `schedule rel err ${py.schedule_max_rel}`);
  assert.ok(py.unet_vs_fixture < 1e-4 && py.audio_vs_fixture < 1e-5 && py.ldm_vs_fixture < 1e-5, 'reference torch modules reproduce the fixtures');

  // difftalk's own outputs on the same inputs
  const x = tf.tensor4d(detinput(9 * 16 * 16, 0.7), [1, 9, 16, 16]).transpose([0, 2, 3, 1]) as tf.Tensor4D;
  const eps = unetForward(model.unet, config.unet, x, tf.tensor1d([37], 'int32'), tf.tensor3d(detinput(128, 2.3), [1, 1, 128]));
  const epsNchw = (await eps.transpose([0, 3, 1, 2]).data()) as Float32Array;
  const aud = encodeAudio(model.audioNet, model.audioAtt, tf.tensor4d(detinput(2 * 8 * 16 * 29, 0.3), [2, 8, 16, 29]), config.audio);
  const lm = ldmNet(model.ldmNet, tf.tensor3d(detinput(2 * 39 * 2, 1.1, 100, 128), [2, 39, 2]), config.ldm);
  const dUnet = maxAbs(epsNchw, py.unet_out);
  const dAudio = maxAbs((await aud.data()) as Float32Array, py.audio_out);
  const dLdm = maxAbs((await lm.data()) as Float32Array, py.ldm_out);
  console.log(
    `difftalk vs PyTorch on the exported weights: denoiser max |Δ| ${dUnet.toExponential(2)}, audio ${dAudio.toExponential(2)}, landmarks ${dLdm.toExponential(2)}`,
  );
  assert.ok(dUnet < 1e-4, `denoiser differs by ${dUnet}`);
  assert.ok(dAudio < 1e-5 && dLdm < 1e-5, `encoders differ by ${dAudio} / ${dLdm}`);
  model.dispose();
});

test('export checkpoint CLI: --ema, no overwrite without --force, nothing written beside --out', { timeout: 300_000 }, async () => {
  const runDir = path.join(work, 'run');
  const dir = path.join(work, 'cli');
  const out = path.join(dir, 'model.ckpt');
  const ok = await runCli(['export', 'checkpoint', '--run', runDir, '--out', out, '--ema', '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  const res = JSON.parse(ok.stdout) as { ema: boolean; tensors: number };
  assert.equal(res.ema, true);
  // with --ema, model.diffusion_model.* holds the EMA (0.5 × det weights): check one value in PyTorch
  const check = await runProcess(PY, [
    '-c',
    'import sys,torch; sd=torch.load(sys.argv[1],weights_only=True)["state_dict"]; ' +
      'print(bool(torch.equal(sd["model.diffusion_model.out.2.weight"], sd["model_ema.diffusion_modelout2weight"])))',
    out,
  ]);
  assert.equal(check.stdout.toString().trim(), 'True');
  const before = await stat(out);
  await writeFile(path.join(dir, 'keep.txt'), 'mine');
  const refused = await runCli(['export', 'checkpoint', '--run', runDir, '--out', out]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /already exists[\s\S]*--force/);
  assert.equal((await stat(out)).mtimeMs, before.mtimeMs);
  const forced = await runCli(['export', 'checkpoint', '--run', runDir, '--out', out, '--force']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.deepEqual((await readdir(dir)).sort(), ['keep.txt', 'model.ckpt']);
  const onDir = await runCli(['export', 'checkpoint', '--run', runDir, '--out', dir, '--force']);
  assert.equal(onDir.code, 2);
  assert.match(onDir.stderr, /not a file/);
});

test('paper preset: the exported names and shapes are the reference paper config (fixtures: paper_config_params, encoders)', async () => {
  const exp = JSON.parse(await readFile(path.join(FIXTURES, 'expected.json'), 'utf8')) as {
    unet: { paper_config_params: [string, number[]][] };
    difftalk_encoders: { params: [string, number[]][] };
  };
  const ref = { 'audio.': 'cond_stage_model_for_audio.', 'audio_att.': 'cond_stage_model_for_audio_smooth.', 'ldm.': 'cond_stage_model_for_ldm.' };
  const want = new Map<string, string>();
  for (const [n, s] of exp.unet.paper_config_params) {
    want.set(`model.diffusion_model.${n}`, s.join());
    want.set(`model_ema.diffusion_model${n.replaceAll('.', '')}`, s.join());
  }
  for (const [n, s] of exp.difftalk_encoders.params) {
    const p = (Object.keys(ref) as (keyof typeof ref)[]).find((k) => n.startsWith(k))!;
    want.set(ref[p] + n.slice(p.length), s.join());
  }
  const got = new Map([...checkpointSpecs(PRESETS.paper)].map(([n, s]) => [toReferenceName(n), s.shape.join()]));
  assert.equal(got.size, want.size);
  assert.deepEqual([...got].sort(), [...want].sort());
});
