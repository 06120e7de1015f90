/**
 * `difftalk train autoencoder` and `difftalk train ldm` as a user runs them (bin/run.js over the built dist/, --json),
 * on a small dataset prepared from ../shared/data/media/WDA_AlexandriaOcasioCortez_000.mp4 (200 frames; DiffTalk's
 * reference rule needs clips of at least 122 frames, so it is not shortened):
 * exit 0, the JSON result, the files a run writes; and a divergence stop: an absurd --lr (1e30) makes the loss
 * non-finite after the first update, the command fails with the trainer's 'train-diverged' error (JSON on stdout) naming
 * the last good checkpoint, and latest.json still points at that checkpoint (nothing is saved for the diverged step).
 * The optional deviations (--lr-schedule, --mouth-weight, --normalize-conditions) reach the loops and the saved state; a
 * --resume with another --lr continues from the saved step with a warning; bad numbers fail before any work.
 * Tiny preset, wasm, a handful of steps (about a minute of CPU in all).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { DEFAULT_PREP_CONFIG, runPrep } from '../../src/prep/pipeline.js';
import { AOC_CLIP, MODELS, runCli, tmpDir } from '../helpers.js';

const cli = (args: string[]) => runCli(args);

const readJson = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

describe('difftalk train (CLI)', { timeout: 900_000 }, () => {
  let work: string;
  let dataset: string;
  let ae: string;

  before(async () => {
    work = tmpDir('difftalk-train-cli-');
    dataset = path.join(work, 'ds');
    const prep = await runPrep(
      { kind: 'input', paths: [AOC_CLIP] },
      { ...DEFAULT_PREP_CONFIG, audioFeatures: ['mel'], faceModel: path.join(MODELS, 'fm478md.task'), testFraction: 0 },
      { out: dataset, concurrency: 1, retries: 0, retryFailed: false, preview: false },
    );
    assert.equal(prep.frames, 200);
    ae = path.join(work, 'ae');
  });

  test('train autoencoder --json: result, checkpoint, loss curve and sample grid; --lr-schedule and --mouth-weight reach the loop', async () => {
    const r = await cli([
      'train',
      'autoencoder',
      '--data',
      dataset,
      '--out',
      ae,
      '--preset',
      'tiny',
      '--steps',
      '2',
      '--batch',
      '2',
      '--lr',
      '2e-3',
      '--lr-schedule',
      'cosine',
      '--mouth-weight',
      '4',
      '--checkpoint-every',
      '1',
      '--validate-every',
      '2',
      '--sample-every',
      '2',
      '--backend',
      'wasm',
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.equal(res.backend, 'wasm');
    assert.equal(res.step, 2);
    assert.equal(res.startStep, 0);
    assert.equal(res.lr, 2e-3);
    assert.equal(res.trainSamples, 160); // 200 frames, the last 20 % held out (no test split)
    assert.equal(res.valSamples, 32); // 40 held-out frames, capped at valSamples (32)
    assert.ok(Number.isFinite(res.firstLoss) && Number.isFinite(res.lastLoss) && Number.isFinite(res.valLoss));
    assert.equal(res.checkpoint, path.join(ae, 'ckpt-00000002'));
    assert.deepEqual(readJson(path.join(ae, 'latest.json')), { checkpoint: 'ckpt-00000002', step: 2 });
    for (const f of ['model.safetensors', 'optimizer.safetensors', 'state.json']) assert.ok(existsSync(path.join(res.checkpoint, f)), f);
    const state = readJson(path.join(res.checkpoint, 'state.json'));
    assert.equal(state.kind, 'autoencoder');
    assert.equal(state.config.preset, 'tiny');
    assert.equal(state.config.imageSize, 32);
    assert.equal(state.options.lrSchedule, 'cosine');
    assert.equal(state.options.mouthWeight, 4);
    // cosine over 2 steps: step 2 (the last) runs at 5 % of lr (scheduledLr); the saved optimizer config holds it
    assert.ok(Math.abs(state.optimizer.config.lr - 2e-3 * 0.05) < 1e-12, String(state.optimizer.config.lr));
    assert.ok(existsSync(path.join(ae, 'loss.svg')));
    assert.ok(existsSync(path.join(ae, 'samples', 'step-00000002.png')));
    // --json: progress events are JSON lines on stderr
    const events = r.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.ok(events.some((e) => e.type === 'metric' && e.name === 'train/loss' && e.step === 2));
  });

  test('train ldm --json on the autoencoder run: result, checkpoint with EMA, latent cache, samples; --normalize-conditions saves the statistics', async () => {
    const out = path.join(work, 'ldm');
    const r = await cli([
      'train',
      'ldm',
      '--data',
      dataset,
      '--first-stage',
      ae,
      '--out',
      out,
      '--preset',
      'tiny',
      '--steps',
      '4',
      '--batch',
      '4',
      '--lr',
      '1e-3',
      '--normalize-conditions',
      '--checkpoint-every',
      '2',
      '--validate-every',
      '4',
      '--sample-every',
      '4',
      '--sample-steps',
      '2',
      '--backend',
      'wasm',
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.equal(res.step, 4);
    assert.equal(res.lr, 1e-3);
    assert.equal(res.trainSamples, 160);
    assert.ok(Number.isFinite(res.firstLoss) && Number.isFinite(res.valLoss));
    assert.equal(res.checkpoint, path.join(out, 'ckpt-00000004'));
    assert.deepEqual(readJson(path.join(out, 'latest.json')), { checkpoint: 'ckpt-00000004', step: 4 });
    assert.ok(existsSync(path.join(out, 'ckpt-00000002', 'model.safetensors')), 'the step-2 checkpoint is kept (keep-last 3)');
    const state = readJson(path.join(res.checkpoint, 'state.json'));
    assert.equal(state.kind, 'ldm');
    assert.equal(state.step, 4);
    assert.equal(state.config.preset, 'tiny');
    assert.equal(state.firstStage.source, path.join(ae, 'ckpt-00000002'));
    const norm = state.config.conditionNorm;
    assert.equal(norm.landmarkMean.length, 78); // 39 points × (x, y)
    assert.equal(norm.landmarkStd.length, 78);
    assert.ok(norm.audioMean.length > 0 && norm.audioStd.length === norm.audioMean.length);
    assert.ok([...norm.audioStd, ...norm.landmarkStd].every((v: number) => v > 0));
    const header = readFileSync(path.join(res.checkpoint, 'model.safetensors'));
    const names = Object.keys(JSON.parse(header.subarray(8, 8 + Number(header.readBigUInt64LE(0))).toString('utf8')));
    assert.ok(names.includes('model.diffusion_model.out.2.weight') && names.includes('model_ema.diffusion_model.out.2.weight'));
    assert.ok(names.some((n) => n.startsWith('audio_net.')) && names.some((n) => n.startsWith('ldm_net.')));
    assert.ok(existsSync(path.join(out, 'loss.svg')));
    assert.ok(existsSync(path.join(out, 'samples', 'step-00000004.png')));
    assert.equal(readdirSync(path.join(out, 'latents')).length, 1); // one cache key folder
  });

  test('train ldm --resume with another --lr continues from the saved step and warns about the change', async () => {
    const out = path.join(work, 'ldm');
    const r = await cli([
      'train',
      'ldm',
      '--data',
      dataset,
      '--first-stage',
      ae,
      '--out',
      out,
      '--preset',
      'tiny',
      '--steps',
      '5',
      '--batch',
      '4',
      '--lr',
      '5e-4',
      '--normalize-conditions',
      '--checkpoint-every',
      '2',
      '--validate-every',
      '100',
      '--sample-every',
      '100',
      '--backend',
      'wasm',
      '--resume',
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.equal(res.startStep, 4);
    assert.equal(res.step, 5);
    const warnings = r.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((e) => e.type === 'log' && e.level === 'warn')
      .map((e) => e.message);
    assert.ok(warnings.includes('resuming with lr = 0.0005; the run was started with 0.001'), warnings.join(' | '));
  });

  test('bad numbers in flags fail with one clear error before any work', async () => {
    const r = await cli(['train', 'autoencoder', '--data', dataset, '--out', path.join(work, 'ae-bad'), '--mouth-weight', '-1', '--json']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(JSON.parse(r.stdout).error.message, '--mouth-weight must be a number ≥ 0, got -1');
    assert.ok(!existsSync(path.join(work, 'ae-bad')), 'no run folder was made');
    const r2 = await cli(['train', 'ldm', '--data', dataset, '--first-stage', ae, '--out', path.join(work, 'ldm-bad'), '--lr', 'fast', '--json']);
    assert.equal(r2.code, 2, r2.stderr);
    assert.equal(JSON.parse(r2.stdout).error.message, '--lr must be a positive number, got fast');
  });

  test('a non-finite loss (--lr 1e30) stops the run with a clear error; the last good checkpoint is kept', async () => {
    const out = path.join(work, 'ldm-nan');
    const r = await cli([
      'train',
      'ldm',
      '--data',
      dataset,
      '--first-stage',
      ae,
      '--out',
      out,
      '--preset',
      'tiny',
      '--steps',
      '6',
      '--batch',
      '2',
      '--lr',
      '1e30',
      '--checkpoint-every',
      '1',
      '--validate-every',
      '100',
      '--sample-every',
      '100',
      '--backend',
      'wasm',
      '--json',
    ]);
    // a user-fixable DifftalkError exits 2, with --json too (src/cli/base-command.ts)
    assert.equal(r.code, 2, r.stderr);
    const { error } = JSON.parse(r.stdout);
    assert.equal(error.code, 'train-diverged');
    const m = /^loss became (NaN|-?Infinity) at step (\d+); training stopped without saving this step$/.exec(error.message);
    assert.ok(m, error.message);
    const bad = Number(m[2]);
    assert.ok(bad >= 2 && bad <= 6, `diverged at step ${bad}`);
    const good = `ckpt-${String(bad - 1).padStart(8, '0')}`;
    assert.ok(error.suggestions[0].startsWith(`the last good checkpoint is ${path.join(out, good)};`), error.suggestions[0]);
    assert.deepEqual(readJson(path.join(out, 'latest.json')), { checkpoint: good, step: bad - 1 });
    assert.ok(!existsSync(path.join(out, `ckpt-${String(bad).padStart(8, '0')}`)), 'nothing saved for the diverged step');
    const state = readJson(path.join(out, good, 'state.json'));
    assert.ok(state.history.every((p: { value: number }) => Number.isFinite(p.value)));
  });
});
