/**
 * `difftalk train` as a user runs it (bin/run.js over the built dist/), on a dataset prepared from
 * ../shared/data/media/WDA_AlexandriaOcasioCortez_000.mp4 (200 frames, as tests/commands/train.test.ts prepares it):
 * - `paper` on wasm is refused before any work (exit 2, no run folder) with the estimate and a message naming small/tiny;
 * - the tiny preset trains both stages (a few steps each) into <out>/first-stage and <out>/ldm, the non-TTY output has a
 *   progress line with the loss every --log-every steps, the summary names both checkpoints and the next command, and each
 *   run folder holds a TensorBoard event file whose scalars (read by tests/reference/tfevents_reader.py, python3-protobuf)
 *   cover every step of the run for train/loss.
 * Wasm, tiny preset (about a minute of CPU in all).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { DEFAULT_PREP_CONFIG, runPrep } from '../../src/prep/pipeline.js';
import { AOC_CLIP, MODELS, ROOT, runCli, tmpDir } from '../helpers.js';

const PY = '/usr/bin/python3';

describe('difftalk train (both stages)', { timeout: 900_000 }, () => {
  let work: string;
  let dataset: string;

  before(async () => {
    work = tmpDir('difftalk-train-all-');
    dataset = path.join(work, 'ds');
    const prep = await runPrep(
      { kind: 'input', paths: [AOC_CLIP] },
      { ...DEFAULT_PREP_CONFIG, audioFeatures: ['mel'], faceModel: path.join(MODELS, 'fm478md.task'), testFraction: 0 },
      { out: dataset, concurrency: 1, retries: 0, retryFailed: false, preview: false },
    );
    assert.equal(prep.frames, 200);
  });

  test("--preset paper on wasm is refused before any work, naming the preset that fits (tiny: small's autoencoder step is estimated above 10 min on wasm)", async () => {
    const out = path.join(work, 'paper');
    const r = await runCli(['train', '--data', dataset, '--out', out, '--preset', 'paper', '--backend', 'wasm']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /preset 'paper' cannot train on the wasm backend/);
    assert.match(r.stderr, /GiB memory/);
    assert.match(r.stderr, /per step/);
    assert.match(r.stderr, /--preset tiny/);
    assert.equal(existsSync(out), false, 'nothing written');
  });

  test('tiny: trains the first stage and the LDM, progress every --log-every steps, summary, TensorBoard files', async () => {
    const out = path.join(work, 'run');
    const steps = 4;
    const logEvery = 2;
    // stdout and stderr are pipes here: the non-TTY rendering.
    const r = await runCli([
      'train',
      '--data',
      dataset,
      '--out',
      out,
      '--preset',
      'tiny',
      '--first-stage-steps',
      String(steps),
      '--first-stage-lr',
      '2e-3',
      '--steps',
      String(steps),
      '--lr',
      '1e-3',
      '--batch',
      '2',
      '--validate-every',
      String(steps),
      '--sample-every',
      String(steps),
      '--checkpoint-every',
      String(steps),
      '--log-every',
      String(logEvery),
      '--backend',
      'wasm',
    ]);
    assert.equal(r.code, 0, r.stderr);
    for (const stage of ['train-autoencoder', 'train']) {
      const lines = r.stderr.split('\n').filter((l) => l.trim().startsWith(`${stage} step `));
      const stepsShown = lines.map((l) => Number(/step (\d+)\//.exec(l)![1]));
      assert.deepEqual(stepsShown, [1, 2, 4], `${stage}: first step, every ${logEvery} steps, last step:\n${r.stderr}`);
      for (const l of lines) assert.match(l, /loss \d+\.\d+ \| .*samples\/s \| .*\/step \| ETA /);
    }
    assert.match(r.stdout, /first stage \(autoencoder\): 4 steps in /);
    assert.match(r.stdout, /conditional LDM: 4 steps in /);
    assert.match(r.stdout, /final train loss \d+\.\d+ \| validation loss \d/);
    assert.match(r.stdout, /best validation /);
    assert.ok(r.stdout.includes(`checkpoint ${path.join(out, 'first-stage', 'ckpt-00000004')}`), r.stdout);
    assert.ok(r.stdout.includes(`checkpoint ${path.join(out, 'ldm', 'ckpt-00000004')}`), r.stdout);
    assert.ok(r.stdout.includes(`next: difftalk render --checkpoint ${path.join(out, 'ldm')}`), r.stdout);
    for (const [dir, loss] of [
      ['first-stage', 'train/loss'],
      ['ldm', 'train/loss'],
    ] as const) {
      const files = readdirSync(path.join(out, dir)).filter((f) => f.startsWith('events.out.tfevents.'));
      assert.equal(files.length, 1, dir);
      const tb = JSON.parse(execFileSync(PY, [path.join(ROOT, 'tests/reference/tfevents_reader.py'), path.join(out, dir, files[0]!)], { encoding: 'utf8' }));
      assert.equal(tb.bad_crc, 0);
      const lossSteps = tb.events.filter((e: { values: { tag: string }[] }) => e.values.some((v) => v.tag === loss)).map((e: { step: number }) => e.step);
      assert.deepEqual(lossSteps, [1, 2, 3, 4], `${dir}: ${loss} at every step`);
      const tags = new Set(tb.events.flatMap((e: { values: { tag: string }[] }) => e.values.map((v) => v.tag)));
      assert.ok(
        [...tags].some((t) => String(t).startsWith('val/')),
        `${dir}: a validation scalar (${[...tags].join(', ')})`,
      );
    }
  });
});
