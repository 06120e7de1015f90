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
 *
 * Audit classes (issue 11), each failing on the code before it:
 * - the LDM run pins its first stage by sha256 and a run-relative copy; a relative --first-stage is resolved (before:
 *   stored as given), and continuing the autoencoder run (which prunes the pinned checkpoint) keeps the LDM resumable
 *   (before: 'first-stage-missing');
 * - --resume with a corrupt, dangling or missing latest.json fails with exit 2 and says how to recover, the checkpoints
 *   untouched (before: exit 0, a silent restart at step 0 overwriting them); --resume-from <step> continues from an
 *   intact checkpoint and sweeps temp files of killed runs (before: no such flag; temp files stayed);
 * - --out into a non-empty folder difftalk did not create: exit 2 without --force (before: written into);
 * - --first-stage a plain folder, a truncated state.json, a non-finite number in state.json: exit 2 with one clear
 *   error (before: raw EISDIR / SyntaxError, or accepted);
 * - SIGTERM or SIGINT mid-training saves the step reached and exits 143 or 130; --resume continues from it (before: killed, nothing saved).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { DEFAULT_PREP_CONFIG, runPrep } from '../../src/prep/pipeline.js';
import { AOC_CLIP, MODELS, ROOT, runCli, tmpDir } from '../helpers.js';
import { sha256File } from '../../src/util/fs.js';

const cli = (args: string[]) => runCli(args);

const readJson = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

/** A small autoencoder run (tiny, batch 2, a checkpoint every step, no validation or samples before the end). */
const aeArgs = (out: string, steps: number) => {
  const data = path.join(path.dirname(out), 'ds');
  return ['train', 'autoencoder', '--data', data, '--out', out, '--preset', 'tiny', '--steps', String(steps), '--batch', '2', '--lr', '2e-3'].concat([
    '--checkpoint-every',
    '1',
    '--validate-every',
    '1000',
    '--sample-every',
    '1000',
    '--backend',
    'wasm',
  ]);
};

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
    assert.equal(res.precision, 'fp32', 'auto precision on wasm');
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
      path.relative(ROOT, ae), // relative to the CLI's cwd: stored resolved
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
    // pinned: a copy inside the run (run-relative path) with the weights' sha256
    assert.equal(state.firstStage.path, 'first-stage');
    assert.equal(state.firstStage.id, await sha256File(path.join(ae, 'ckpt-00000002', 'model.safetensors')));
    assert.equal(await sha256File(path.join(out, 'first-stage', 'model.safetensors')), state.firstStage.id);
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

  test('continuing the autoencoder run prunes the checkpoint the LDM run pinned; the LDM run keeps its copy', async () => {
    const r = await cli([...aeArgs(ae, 5), '--resume', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).startStep, 2);
    assert.ok(!existsSync(path.join(ae, 'ckpt-00000002')), 'keep-last 3 pruned the pinned checkpoint of the autoencoder run');
    assert.ok(existsSync(path.join(work, 'ldm', 'first-stage', 'model.safetensors')));
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

  test('--resume never starts over: corrupt, dangling or missing latest.json is exit 2; --resume-from continues and sweeps temp files', async () => {
    const run = path.join(work, 'ae-resume');
    const r0 = await cli([...aeArgs(run, 2), '--json']);
    assert.equal(r0.code, 0, r0.stderr);
    const stateBytes = readFileSync(path.join(run, 'ckpt-00000002', 'state.json'));
    const cases: [string, () => void, string][] = [
      ['corrupt', () => writeFileSync(path.join(run, 'latest.json'), '{"checkpoint": "ckpt-000'), 'checkpoint-corrupt'],
      ['dangling', () => writeFileSync(path.join(run, 'latest.json'), '{"checkpoint": "ckpt-00000009", "step": 9}'), 'checkpoint-missing'],
      ['traversal', () => writeFileSync(path.join(run, 'latest.json'), '{"checkpoint": "../ae", "step": 2}'), 'checkpoint-corrupt'],
      ['missing', () => rmSync(path.join(run, 'latest.json')), 'checkpoint-missing'],
    ];
    for (const [what, breakIt, code] of cases) {
      breakIt();
      const r = await cli([...aeArgs(run, 3), '--resume', '--json']);
      assert.equal(r.code, 2, `${what}: ${r.stderr}`);
      const { error } = JSON.parse(r.stdout);
      assert.equal(error.code, code, what);
      assert.match(error.suggestions[0], /--resume-from|ckpt-00000002/, what);
      assert.ok(readFileSync(path.join(run, 'ckpt-00000002', 'state.json')).equals(stateBytes), `${what}: the checkpoint was touched`);
      assert.ok(existsSync(path.join(run, 'ckpt-00000001', 'model.safetensors')), what);
    }
    // temp files a killed run left: a half-written checkpoint folder and an atomic-write temp file
    mkdirSync(path.join(run, '.ckpt-00000003.tmp-99999'));
    writeFileSync(path.join(run, '.ckpt-00000003.tmp-99999', 'model.safetensors'), 'half');
    writeFileSync(path.join(run, '.latest.json.99999.abcd1234.tmp'), '{');
    const r = await cli([...aeArgs(run, 3), '--resume', '--resume-from', '2', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.equal(res.startStep, 2);
    assert.equal(res.step, 3);
    assert.deepEqual(readJson(path.join(run, 'latest.json')), { checkpoint: 'ckpt-00000003', step: 3 });
    assert.deepEqual(
      readdirSync(run).filter((n) => n.startsWith('.')),
      [],
      'temp files of the killed run were swept',
    );
  });

  test('--out into a non-empty folder difftalk did not create is refused without --force', async () => {
    const mine = path.join(work, 'my-folder');
    mkdirSync(mine);
    writeFileSync(path.join(mine, 'notes.txt'), 'mine');
    const r = await cli([...aeArgs(mine, 1), '--json']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(JSON.parse(r.stdout).error.code, 'out-not-empty');
    assert.deepEqual(readdirSync(mine), ['notes.txt']);
    const f = await cli([...aeArgs(mine, 1), '--force', '--json']);
    assert.equal(f.code, 0, f.stderr);
    assert.equal(readFileSync(path.join(mine, 'notes.txt'), 'utf8'), 'mine');
    // a folder difftalk made (marked) is not "someone else's": a second fresh run there is refused as a run, not as foreign
    const again = await cli([...aeArgs(mine, 1), '--json']);
    assert.equal(JSON.parse(again.stdout).error.code, 'run-exists');
  });

  test('a malformed --first-stage (plain folder, truncated or non-finite state.json) is one clear error, exit 2', async () => {
    const plain = path.join(work, 'plain');
    mkdirSync(plain);
    writeFileSync(path.join(plain, 'weights.bin'), 'x');
    const trunc = path.join(work, 'fs-trunc');
    cpSync(path.join(ae, 'ckpt-00000005'), trunc, { recursive: true });
    const full = readFileSync(path.join(trunc, 'state.json'), 'utf8');
    writeFileSync(path.join(trunc, 'state.json'), full.slice(0, Math.floor(full.length / 2)));
    const inf = path.join(work, 'fs-inf');
    cpSync(path.join(ae, 'ckpt-00000005'), inf, { recursive: true });
    writeFileSync(path.join(inf, 'state.json'), full.replace('"step": 5', '"step": 1e999'));
    for (const [fs, code] of [
      [plain, 'first-stage-not-checkpoint'],
      [trunc, 'checkpoint-corrupt'],
      [inf, 'checkpoint-corrupt'],
    ] as const) {
      const r = await cli([
        'train',
        'ldm',
        '--data',
        dataset,
        '--first-stage',
        fs,
        '--out',
        path.join(work, `ldm-${path.basename(fs)}`),
        '--preset',
        'tiny',
        '--backend',
        'wasm',
        '--json',
      ]);
      assert.equal(r.code, 2, `${fs}: ${r.stderr}`);
      assert.equal(JSON.parse(r.stdout).error.code, code, fs);
    }
  });

  for (const [signal, exitCode] of [
    ['SIGTERM', 143],
    ['SIGINT', 130],
  ] as const) {
    test(`${signal} mid-training saves the step reached and exits ${exitCode}; --resume continues from it`, async () => {
      const run = path.join(work, `ae-${signal.toLowerCase()}`);
      // no scheduled checkpoint before step 1000: the one found afterwards is the signal's
      const args = aeArgs(run, 1000).map((v, i, all) => (all[i - 1] === '--checkpoint-every' ? '1000' : v));
      const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'run.js'), ...args, '--log-every', '1', '--json'], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let lastStep = 0;
      let killed = false;
      let buf = '';
      child.stderr.on('data', (c) => {
        buf += c;
        const lines = buf.split('\n');
        buf = lines.pop()!;
        for (const l of lines) {
          const e = JSON.parse(l);
          if (e.type === 'progress' && e.stage === 'train-autoencoder') {
            lastStep = e.done;
            if (lastStep >= 2 && !killed) killed = child.kill(signal);
          }
        }
      });
      const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
      assert.equal(code, exitCode);
      const saved = readJson(path.join(run, 'latest.json')).step;
      assert.ok(saved >= 2 && saved === lastStep, `saved ${saved}, last step ${lastStep}`);
      const r = await cli([...aeArgs(run, saved + 1), '--resume', '--json']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).startStep, saved);
    });
  }

  test('bad numbers in flags fail with one clear error before any work', async () => {
    const r = await cli(['train', 'autoencoder', '--data', dataset, '--out', path.join(work, 'ae-bad'), '--mouth-weight', '-1', '--json']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(JSON.parse(r.stdout).error.message, '--mouth-weight must be a number ≥ 0, got -1');
    assert.ok(!existsSync(path.join(work, 'ae-bad')), 'no run folder was made');
    const r2 = await cli(['train', 'ldm', '--data', dataset, '--first-stage', ae, '--out', path.join(work, 'ldm-bad'), '--lr', 'fast', '--json']);
    assert.equal(r2.code, 2, r2.stderr);
    assert.equal(JSON.parse(r2.stdout).error.message, '--lr must be a positive number, got fast');
    // mixed precision is a webgpu path: asking for it on wasm is exit 2 with the fix, before any work
    const r3 = await cli([
      'train',
      'ldm',
      '--data',
      dataset,
      '--first-stage',
      ae,
      '--out',
      path.join(work, 'ldm-mixed'),
      '--backend',
      'wasm',
      '--precision',
      'mixed',
      '--json',
    ]);
    assert.equal(r3.code, 2, r3.stderr);
    const err = JSON.parse(r3.stdout).error;
    assert.equal(err.message, "--precision mixed cannot run here: the 'wasm' backend has no f16 kernels (mixed precision is a webgpu path)");
    assert.match(err.suggestions[0], /--precision fp32/);
    assert.ok(!existsSync(path.join(work, 'ldm-mixed')), 'no run folder was made');
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
