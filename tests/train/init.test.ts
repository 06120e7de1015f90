/**
 * `train ldm --init`: a run starts from a checkpoint that PyTorch saved (tests/reference/torch_difftalk_save.py:
 * the reference modules — openaimodel UNet, AudioNet, AudioAttNet, LdmNet — under LatentDiffusion's state_dict names,
 * LitEma buffers with num_updates 42, torch.save's default zip format; seeded normal weights).
 *
 * Asserts: every UNet, encoder and EMA tensor difftalk loads equals the PyTorch one bit for bit (each of the file's
 * tensors, except the schedule buffers and LitEma's decay / num_updates, is used exactly once); then `difftalk train ldm
 * --init` (CLI, tiny preset, wasm) trains 1 step from it: the step-1 weights are within one AdamW step of the file's
 * (|Δ| ≤ 1.05·lr + lr·wd·|w|) and not equal to them, and the EMA is the file's EMA advanced once from num_updates 42
 * (d = min(decay, 44/53), max error 1e-6); --init with --resume is refused (exit 2).
 * Hostile/wrong files (crafted with difftalk's torch writer): no UNet, a missing encoder, a wrong shape, an int64 weight
 * → one DifftalkError each naming the tensor; a file without model_ema.* starts the EMA from the weights.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { AOC_CLIP, MODELS, ROOT, runCli, tmpDir } from '../helpers.js';
import { initBackend } from '../../src/util/tf.js';
import { runProcess } from '../../src/util/exec.js';
import { DEFAULT_PREP_CONFIG, runPrep } from '../../src/prep/pipeline.js';
import { datasetInfo } from '../../src/train/data.js';
import { DEFAULT_TRAIN } from '../../src/train/core.js';
import { trainAutoencoder } from '../../src/train/autoencoder.js';
import { initFromTorch } from '../../src/train/init.js';
import { DifftalkModel, PREFIX, toReferenceName } from '../../src/models/difftalk.js';
import { Params } from '../../src/models/blocks.js';
import { resolveConfig } from '../../src/models/presets.js';
import { loadCheckpoint } from '../../src/models/checkpoint.js';
import { DifftalkError } from '../../src/util/errors.js';
import { stateDictValue, writeTorchFile } from '../../src/weights/torch-writer.js';
import type { PickleValue } from '../../src/weights/pickle-writer.js';
import type { TensorData } from '../../src/weights/torch.js';

const work = tmpDir('difftalk-init-');
const dataset = path.join(work, 'ds');
const ae = path.join(work, 'ae');
const ckpt = path.join(work, 'torch.ckpt');
const LR = 1e-3;
const WD = 0.01;

type Dump = Record<string, { shape: number[]; values: number[] }>;

test('train ldm --init: loads a PyTorch-saved DiffTalk checkpoint exactly and trains on from it', { timeout: 900_000 }, async () => {
  await initBackend('wasm');
  const prep = await runPrep(
    { kind: 'input', paths: [AOC_CLIP] },
    { ...DEFAULT_PREP_CONFIG, audioFeatures: ['mel'], faceModel: path.join(MODELS, 'fm478md.task'), testFraction: 0 },
    { out: dataset, concurrency: 1, retries: 0, retryFailed: false, preview: false },
  );
  assert.equal(prep.frames, 200);
  await trainAutoencoder({
    ...DEFAULT_TRAIN,
    dataset,
    out: ae,
    preset: 'tiny',
    steps: 1,
    batchSize: 2,
    lr: 2e-3,
    checkpointEvery: 1,
    validateEvery: 100,
    sampleEvery: 100,
  });
  const info = await datasetInfo(dataset);
  const config = resolveConfig('tiny', { winSize: info.audio.window, featureDim: info.audio.dim });
  const u = config.unet;
  const unetJson = JSON.stringify({
    in_channels: u.inChannels,
    out_channels: u.outChannels,
    model_channels: u.modelChannels,
    attention_resolutions: u.attentionResolutions,
    num_res_blocks: u.numResBlocks,
    channel_mult: u.channelMult,
    num_head_channels: u.numHeadChannels,
    transformer_depth: u.transformerDepth,
    context_dim: u.contextDim,
  });
  const dumpFile = path.join(work, 'dump.json');
  await runProcess('/usr/bin/python3', [
    path.join(ROOT, 'tests/reference/torch_difftalk_save.py'),
    unetJson,
    String(info.audio.window),
    String(info.audio.dim),
    ckpt,
    dumpFile,
  ]);
  const dump = JSON.parse(await readFile(dumpFile, 'utf8')) as Dump;

  // 1. what difftalk loads equals what PyTorch saved
  const model = new DifftalkModel(config, 'init', 1);
  const ema = new Params([...model.unet.specs.values()], 'init', 2);
  const r = await initFromTorch(ckpt, model, ema);
  assert.equal(r.ema, true);
  assert.equal(r.emaNumUpdates, 42);
  const loaded = new Map([...model.toTensors(), ...ema.toTorch(PREFIX.ema)]);
  const used = new Set<string>();
  for (const [name, t] of loaded) {
    const ref = toReferenceName(name);
    const d = dump[ref];
    assert.ok(d, `${ref} is in the PyTorch file`);
    assert.deepEqual(t.shape, d.shape, ref);
    const a = t.data as Float32Array;
    for (let i = 0; i < a.length; i++) if (a[i] !== d.values[i]) assert.fail(`${ref}[${i}]: difftalk ${a[i]} vs torch ${d.values[i]}`);
    used.add(ref);
  }
  assert.deepEqual(
    Object.keys(dump)
      .filter((k) => !used.has(k))
      .sort(),
    ['model_ema.decay', 'model_ema.num_updates'],
  );
  console.log(`--init: ${loaded.size} tensors equal to PyTorch's bit for bit`);
  model.dispose();
  ema.dispose();

  // 2. one training step from it, through the CLI
  const out = path.join(work, 'ldm');
  const base = ['train', 'ldm', '--data', dataset, '--first-stage', ae, '--out', out, '--preset', 'tiny', '--backend', 'wasm', '--batch', '2'];
  const run = await runCli([...base, '--init', ckpt, '--steps', '1', '--lr', String(LR), '--weight-decay', String(WD), '--ema-decay', '0.9999']);
  assert.equal(run.code, 0, run.stderr);
  const saved = await loadCheckpoint<{ step: number; ema: { numUpdates: number } }>(out);
  assert.equal(saved.state.step, 1);
  assert.equal(saved.state.ema.numUpdates, 43);
  let moved = 0;
  let maxEmaErr = 0;
  const d = Math.min(0.9999, (1 + 43) / (10 + 43));
  for (const [name, t] of saved.model) {
    const ref = dump[toReferenceName(name)]!;
    const a = t.data as Float32Array;
    if (name.startsWith(PREFIX.ema)) {
      const w = saved.model.get(PREFIX.unet + name.slice(PREFIX.ema.length))!.data as Float32Array;
      for (let i = 0; i < a.length; i++) maxEmaErr = Math.max(maxEmaErr, Math.abs(a[i]! - (d * ref.values[i]! + (1 - d) * w[i]!)));
      continue;
    }
    for (let i = 0; i < a.length; i++) {
      const delta = Math.abs(a[i]! - ref.values[i]!);
      assert.ok(delta <= 1.05 * LR + LR * WD * Math.abs(ref.values[i]!), `${name}[${i}] moved ${delta} in one step`);
      if (delta > 0) moved++;
    }
  }
  console.log(`after 1 step: ${moved} weights moved (each ≤ one AdamW step), EMA max error ${maxEmaErr.toExponential(2)}`);
  assert.ok(moved > 0);
  assert.ok(maxEmaErr < 1e-6, `EMA error ${maxEmaErr}`);

  const both = await runCli([...base, '--init', ckpt, '--steps', '2', '--resume']);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--init starts a new run/);
});

test('--init refuses files that are not a DiffTalk checkpoint of this config, with one clear error each', { timeout: 120_000 }, async () => {
  await initBackend('cpu');
  const config = resolveConfig('tiny', { winSize: 16, featureDim: 29 });
  const model = new DifftalkModel(config, 'det');
  const ema = new Params([...model.unet.specs.values()], 'init', 2);
  const good = new Map([...model.toTensors()].map(([n, t]) => [toReferenceName(n), t]));
  const write = async (name: string, sd: Map<string, TensorData>) => {
    const file = path.join(work, name);
    await writeTorchFile(file, (tensor) => new Map<PickleValue, PickleValue>([['state_dict', stateDictValue(sd, tensor)]]));
    return file;
  };
  const cases: [string, Map<string, TensorData>, RegExp][] = [
    ['no-unet.ckpt', new Map([...good].filter(([k]) => !k.startsWith('model.diffusion_model.'))), /no model\.diffusion_model\.\* tensors/],
    ['missing.ckpt', new Map([...good].filter(([k]) => !k.startsWith('cond_stage_model_for_ldm.'))), /--init .*parameters missing/],
    [
      'shape.ckpt',
      new Map([...good].map(([k, t]) => [k, k === 'model.diffusion_model.out.2.bias' ? { dtype: 'float32', shape: [4], data: new Float32Array(4) } : t])),
      /out\.2\.bias has shape \[4\]/,
    ],
    [
      'int.ckpt',
      new Map([...good].map(([k, t]) => [k, k === 'model.diffusion_model.out.2.bias' ? { dtype: 'int64', shape: [3], data: new BigInt64Array(3) } : t])),
      /out\.2\.bias is int64/,
    ],
  ];
  for (const [name, sd, message] of cases) {
    const err = await initFromTorch(await write(name, sd), model, ema).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof DifftalkError, `${name}: ${String(err)}`);
    assert.match(err.message, message, name);
  }
  // the good one loads, without model_ema.*: the EMA starts as the weights
  const r = await initFromTorch(await write('good.ckpt', good), model, ema);
  assert.deepEqual([r.ema, r.emaNumUpdates], [false, 0]);
  assert.deepEqual(
    ema.toTorch(PREFIX.unet).get('model.diffusion_model.out.2.bias')!.data,
    model.unet.toTorch(PREFIX.unet).get('model.diffusion_model.out.2.bias')!.data,
  );
  model.dispose();
  ema.dispose();
});
