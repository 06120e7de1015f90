/**
 * `difftalk train` on a dataset that is not what it says, as a user runs it (bin/run.js over dist/): a shard with a
 * huge declared row count, and a dataset.json whose frame count disagrees with the shards. Each is exit 2 with one
 * error (one JSON error under --json) before any training work: nothing but the run folder's mark is written into --out.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { runCli, tmpDir } from '../helpers.js';
import { patchBatch, writeTestDataset } from '../dataset/fixture.js';

const N = 6;
const trainArgs = (data: string, out: string) => [
  'train',
  'autoencoder',
  '--data',
  data,
  '--out',
  out,
  '--preset',
  'tiny',
  '--steps',
  '1',
  '--backend',
  'wasm',
];

/** Exit 2; under --json one error object with `code`; without it, one error on stderr and no stack. */
async function refusedByCli(data: string, code: string, text: RegExp): Promise<void> {
  const work = tmpDir();
  const json = await runCli([...trainArgs(data, path.join(work, 'json')), '--json']);
  assert.equal(json.code, 2, json.stderr);
  const { error } = JSON.parse(json.stdout) as { error: { code: string; message: string } };
  assert.equal(error.code, code, error.message);
  assert.match(error.message, text);
  const plain = await runCli(trainArgs(data, path.join(work, 'plain')));
  assert.equal(plain.code, 2, plain.stderr);
  // oclif wraps the one message at the terminal width (› lines) and adds its code and the suggestion: one error, no stack.
  const block = plain.stderr.split('\n').filter((l) => /^\s*›/.test(l));
  const message = block
    .slice(
      0,
      block.findIndex((l) => /›\s+Code:/.test(l)),
    )
    .map((l) => l.replace(/^\s*›\s*/, '').trim())
    .join(' ');
  assert.equal((plain.stderr.match(/Error:/g) ?? []).length, 1, plain.stderr);
  assert.ok(!/^\s+at /m.test(plain.stderr) && !/RangeError|TypeError/.test(plain.stderr), `no raw exception:\n${plain.stderr}`);
  assert.match(message.replace(/\s+/g, ' '), text);
  // Nothing but the run folder's ownership mark (no checkpoint, no latest.json, no latent cache).
  for (const out of ['json', 'plain']) {
    const dir = path.join(work, out);
    const written = existsSync(dir) ? readdirSync(dir).filter((n) => n !== 'difftalk-run.json') : [];
    assert.deepEqual(written, [], `${out}: nothing written`);
  }
}

describe('difftalk train on a hostile or inconsistent dataset (CLI)', () => {
  let dir: string;
  let shard: string;
  let good: Buffer;
  before(async () => {
    dir = tmpDir();
    ({ shard } = await writeTestDataset(dir, 'clipA', N, 64));
    good = readFileSync(shard);
  });

  test('a shard declaring 2⁴⁰ rows: exit 2, shard-unreadable, one line', async () => {
    writeFileSync(
      shard,
      patchBatch(good, N, 2 ** 40, (m) => m.isRecordBatch() && m.header().length === 2 ** 40),
    );
    try {
      await refusedByCli(dir, 'shard-unreadable', /clipA-0000\.arrow.*declares 1099511627776 rows/);
    } finally {
      writeFileSync(shard, good);
    }
  });

  // Before: a manifest/shard mismatch made training run on all-zero latents with exit 0.
  test('dataset.json and the shards disagree (frame count): exit 2, dataset-corrupt, before any work', async () => {
    const file = path.join(dir, 'dataset.json');
    const manifest = readFileSync(file, 'utf8');
    const m = JSON.parse(manifest) as { clips: { frames: number }[]; totals: { frames: number }; splits: { train: { frames: number } } };
    m.clips[0]!.frames = N + 1;
    m.totals.frames = N + 1;
    m.splits.train.frames = N + 1;
    writeFileSync(file, JSON.stringify(m));
    try {
      await refusedByCli(dir, 'dataset-corrupt', /clip clipA: dataset\.json says 7 frames, its shards hold 6/);
    } finally {
      writeFileSync(file, manifest);
    }
  });
});
