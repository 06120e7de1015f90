/**
 * The `difftalk prep` CLI as a user runs it (bin/run.js over the built dist/): --json output, clear errors,
 * SIGKILL mid-run then resume == an uninterrupted run, and array-job shards merged == one run.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { runTool } from '../../src/util/exec.js';
import { AOC_CLIP, MODELS, runCli, tmpDir } from '../helpers.js';

const FACE_MODEL = path.join(MODELS, 'fm478md.task');

const cli = runCli;

const prepArgs = (input: string, out: string, extra: string[] = []) => ['prep', '--input', input, '--out', out, '--face-model', FACE_MODEL, '--json', ...extra];

/** Shard file name → bytes, and dataset.json without its creation time. */
function snapshot(dir: string): { shards: Record<string, string>; manifest: Record<string, unknown> } {
  const shardDir = path.join(dir, 'shards');
  const shards: Record<string, string> = {};
  for (const f of readdirSync(shardDir).sort()) shards[f] = readFileSync(path.join(shardDir, f)).toString('base64');
  const { created: _c, merged_from: _m, job: _j, ...manifest } = JSON.parse(readFileSync(path.join(dir, 'dataset.json'), 'utf8'));
  return { shards, manifest };
}

describe('difftalk prep (CLI)', () => {
  let inputs: string;
  let reference: ReturnType<typeof snapshot>;
  let work: string;

  before(async () => {
    work = tmpDir();
    inputs = path.join(work, 'in');
    await mkdir(inputs);
    await copyFile(AOC_CLIP, path.join(inputs, 'a.mp4'));
    // A second, different clip: the last 6 s of the same video.
    await runTool('ffmpeg', ['-v', 'error', '-ss', '2', '-i', AOC_CLIP, '-c:v', 'libx264', '-preset', 'ultrafast', '-c:a', 'aac', path.join(inputs, 'b.mp4')]);
    const r = await cli(prepArgs(inputs, path.join(work, 'full')));
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout);
    assert.equal(result.clips.done, 2);
    assert.equal(result.frames, 200 + 150);
    assert.ok(result.stages.some((s: { stage: string; framesPerSecond: number }) => s.stage === 'landmarks' && s.framesPerSecond > 0));
    // --json: progress events are JSON lines on stderr.
    const events = r.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.ok(events.some((e) => e.type === 'stage-done' && e.stage === 'clips'));
    reference = snapshot(path.join(work, 'full'));
    // A finished clip keeps only its status file in work/: the normalised media are deleted (no --keep-work).
    const w = path.join(work, 'full', 'work');
    for (const d of readdirSync(w)) assert.deepEqual(readdirSync(path.join(w, d)), ['status.json'], d);
  });

  test('killed with SIGKILL mid-run, the rerun resumes to the same shards and manifest', async () => {
    const out = path.join(work, 'killed');
    // Kill once the first clip is finished, while the second is being prepared.
    const killed = await cli(prepArgs(inputs, out), () => {
      const w = path.join(out, 'work');
      return existsSync(w) && readdirSync(w).some((d) => existsSync(path.join(w, d, 'status.json')));
    });
    assert.equal(killed.signal, 'SIGKILL');
    assert.ok(!existsSync(path.join(out, 'dataset.json')), 'the killed run did not finish');
    const resumed = await cli(prepArgs(inputs, out));
    assert.equal(resumed.code, 0, resumed.stderr);
    const result = JSON.parse(resumed.stdout);
    assert.equal(result.clips.skippedAsFinished, 1);
    assert.deepEqual(snapshot(out), reference);
  });

  test('killed at an arbitrary early moment (during the first clip), the rerun still matches', async () => {
    const out = path.join(work, 'killed-early');
    const t0 = Date.now();
    const killed = await cli(prepArgs(inputs, out), () => Date.now() - t0 > 2500);
    assert.equal(killed.signal, 'SIGKILL');
    const resumed = await cli(prepArgs(inputs, out));
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.deepEqual(snapshot(out), reference);
  });

  // Before: the clip in progress was recorded as dropped ("browser has been closed"), its work media deleted, exit 0,
  // and the rerun skipped it for good.
  test('SIGTERM mid-clip: exit 143, the clip in progress is not dropped, and the rerun redoes it to the same shards', async () => {
    const out = path.join(work, 'termed');
    // While the first clip is being prepared (its work folder exists, no clip is finished yet).
    const w = path.join(out, 'work');
    const termed = await cli(prepArgs(inputs, out, ['--workers', '1']), () => existsSync(w) && readdirSync(w).length > 0, 'SIGTERM');
    assert.equal(termed.code, 143, termed.stderr);
    assert.equal(JSON.parse(termed.stdout).error.code, 'interrupted');
    assert.match(JSON.parse(termed.stdout).error.message, /SIGTERM/);
    for (const d of readdirSync(w)) {
      const st = path.join(w, d, 'status.json');
      if (existsSync(st)) assert.notEqual(JSON.parse(readFileSync(st, 'utf8')).status, 'dropped', `${d} was recorded as dropped`);
    }
    const resumed = await cli(prepArgs(inputs, out));
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal(JSON.parse(resumed.stdout).clips.dropped, 0);
    assert.deepEqual(snapshot(out), reference);
  });

  // Before: a rerun with another --size wrote its shards and a "done" status before refusing; an all-skipped rerun
  // lost the landmark model record from dataset.json (and `prep merge` then failed).
  test('another --size in the same folder is refused before any work; a finished rerun keeps every dataset.json record', async () => {
    const out = path.join(work, 'full');
    const before = snapshot(out);
    const other = await cli(prepArgs(inputs, out, ['--size', '512']));
    assert.equal(other.code, 2, other.stderr);
    assert.equal(JSON.parse(other.stdout).error.code, 'config-mismatch');
    assert.match(JSON.parse(other.stdout).error.message, /size/);
    assert.deepEqual(snapshot(out), before, 'nothing was written');
    const again = await cli(prepArgs(inputs, out));
    assert.equal(again.code, 0, again.stderr);
    const after = snapshot(out);
    assert.deepEqual(after, before);
    assert.ok((after.manifest as { config: { landmarkerResolved?: unknown } }).config.landmarkerResolved, 'landmark model recorded');
  });

  // The landmark model and the set of inputs are part of the folder's configuration: another one is refused before any
  // work (exit 2, naming what differs), never mixed into the same shards.
  test('another landmark model or another set of inputs in the same folder is refused before any work', async () => {
    const out = path.join(work, 'full');
    const before = snapshot(out);
    const model = await cli(['prep', '--input', inputs, '--out', out, '--face-model', path.join(MODELS, 'fm468md.task'), '--json']);
    assert.equal(model.code, 2, model.stderr);
    assert.equal(JSON.parse(model.stdout).error.code, 'config-mismatch');
    assert.match(JSON.parse(model.stdout).error.message, /landmarkerResolved/);
    const fewer = await cli(prepArgs(path.join(inputs, 'a.mp4'), out));
    assert.equal(fewer.code, 2, fewer.stderr);
    assert.equal(JSON.parse(fewer.stdout).error.code, 'config-mismatch');
    assert.match(JSON.parse(fewer.stdout).error.message, /\binputs\b/);
    assert.deepEqual(snapshot(out), before, 'nothing was written');
  });

  // Before: a bad --smoothing was recorded as a drop on every clip (exit 0), and a bad face model likewise.
  test('configuration errors fail with exit 2 before the first clip', async () => {
    const bad = await cli(prepArgs(inputs, path.join(work, 'bad-smoothing'), ['--smoothing', 'wobble:3']));
    assert.equal(bad.code, 2, bad.stderr);
    assert.ok(!existsSync(path.join(work, 'bad-smoothing', 'work')), 'no clip was started');
    const junk = path.join(work, 'junk.task');
    writeFileSync(junk, 'not a model');
    const model = await cli(['prep', '--input', inputs, '--out', path.join(work, 'bad-model'), '--face-model', junk, '--json']);
    assert.equal(model.code, 2, model.stderr);
    assert.ok(!existsSync(path.join(work, 'bad-model', 'work')), 'no clip was started');
  });

  // Before: prep overwrote the user's dataset.json and deleted a file in a folder it had not created.
  test('a non-empty folder difftalk did not create is refused without --force; temp files of killed runs are swept', async () => {
    const theirs = path.join(work, 'theirs');
    await mkdir(theirs);
    writeFileSync(path.join(theirs, 'dataset.json'), '{"mine": true}');
    writeFileSync(path.join(theirs, 'notes.txt'), 'keep me');
    const r = await cli(prepArgs(inputs, theirs));
    assert.equal(r.code, 2, r.stderr);
    assert.equal(JSON.parse(r.stdout).error.code, 'foreign-folder');
    assert.deepEqual(readdirSync(theirs).sort(), ['dataset.json', 'notes.txt']);
    assert.equal(readFileSync(path.join(theirs, 'dataset.json'), 'utf8'), '{"mine": true}');
    // A temp file as util/fs.ts names them, left by a killed run in a prep folder, is gone after the next run.
    const stale = path.join(work, 'full', 'shards', '.x.arrow.12345.deadbeef.tmp');
    writeFileSync(stale, 'half');
    const again = await cli(prepArgs(inputs, path.join(work, 'full')));
    assert.equal(again.code, 0, again.stderr);
    assert.ok(!existsSync(stale));
  });

  test('array job: --shard 0/2 and 1/2 merged equal one run', async () => {
    for (const i of [0, 1]) {
      const r = await cli(prepArgs(inputs, path.join(work, `part-${i}`), ['--shard', `${i}/2`, ...(i === 1 ? ['--keep-work'] : [])]));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).clips.done, 1);
    }
    // --keep-work keeps the finished clip's normalised video and audio (and does not change the shards below).
    const kept = path.join(work, 'part-1', 'work');
    const [clipDir] = readdirSync(kept);
    assert.deepEqual(readdirSync(path.join(kept, clipDir!)).sort(), [`${clipDir}.clip.json`, `${clipDir}.mkv`, `${clipDir}.wav`, 'status.json']);
    const merged = path.join(work, 'merged');
    const r = await cli(['prep', 'merge', path.join(work, 'part-0'), path.join(work, 'part-1'), '--out', merged, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).frames, 350);
    const snap = snapshot(merged);
    assert.deepEqual(snap.shards, reference.shards);
    assert.deepEqual((snap.manifest as { clips: unknown }).clips, (reference.manifest as { clips: unknown }).clips);
  });

  test('bad invocations fail with one clear message', async () => {
    const none = await cli(['prep', '--out', path.join(work, 'x')]);
    assert.equal(none.code, 2, 'a DifftalkError exits 2');
    const noneJson = await cli(['prep', '--out', path.join(work, 'x'), '--json']);
    assert.equal(noneJson.code, 2, 'also under --json');
    assert.equal(JSON.parse(noneJson.stdout).error.code, 'bad-flag');
    assert.match(none.stderr, /--hdtf .* or --input/);
    const missing = await cli(['prep', '--input', path.join(work, 'nope.mp4'), '--out', path.join(work, 'y')]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /does not exist/);
    const shard = await cli(['prep', '--input', inputs, '--out', path.join(work, 'z'), '--shard', '2/2']);
    assert.notEqual(shard.code, 0);
    assert.match(shard.stderr, /--shard must be i\/n/);
  });
});
