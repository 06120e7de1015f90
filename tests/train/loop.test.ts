/**
 * End-to-end training on a real clip (tiny preset, wasm backend): `difftalk prep`'s pipeline turns
 * ../shared/data/media/WDA_AlexandriaOcasioCortez_000.mp4 into Arrow shards (MediaPipe landmarks from the offline
 * fm478md bundle, log-mel audio), then the VQ autoencoder and the LDM train on it.
 * Asserts: the LDM loss falls clearly (mean of the last 5 steps < 0.6 × mean of the first 5; measured 0.92 → 0.41),
 * checkpoints round-trip, and a run SIGKILLed mid-training resumes from its saved step and ends bit-identical to an
 * uninterrupted run (same seed ⇒ same batches, timesteps and noise).
 * Audit classes (issue 11): no tensor leaks per step (tf.memory().numTensors is the same after every step, for both
 * trainers — a leak of one tensor per step fails it); a crafted shard whose clip_id is `../../../../escaped` writes
 * nothing outside the run folder (before: the latent cache was named `<cache>/<key>/<clip_id>.f32`, so training wrote
 * `escaped.f32` two folders above the run and exited 0).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, readdir, readFile } from 'node:fs/promises';
import { makeData, RecordBatch, Struct, Table, tableFromIPC, tableToIPC, Utf8, vectorFromArray, type Data } from 'apache-arrow';
import path from 'node:path';
import { AOC_CLIP, MODELS, ROOT, tmpDir } from '../helpers.js';
import { initBackend, tf } from '../../src/util/tf.js';
import { writeFileAtomic, writeJsonAtomic } from '../../src/util/fs.js';
import { DifftalkError } from '../../src/util/errors.js';
import { datasetInfo, readConditions } from '../../src/train/data.js';
import type { ProgressEvent } from '../../src/util/events.js';
import { runProcess } from '../../src/util/exec.js';
import { exists, readJson } from '../../src/util/fs.js';
import { DEFAULT_PREP_CONFIG, runPrep } from '../../src/prep/pipeline.js';
import { DEFAULT_TRAIN } from '../../src/train/core.js';
import { trainAutoencoder } from '../../src/train/autoencoder.js';
import { DEFAULT_LDM, trainLdm, type TrainLdmOptions } from '../../src/train/ldm.js';
import { loadCheckpoint, type LatestPointer } from '../../src/models/checkpoint.js';

const work = tmpDir('difftalk-train-');
const dataset = path.join(work, 'ds');
const ae = path.join(work, 'ae');
const cacheDir = path.join(work, 'latents');

/** tf.memory().numTensors at each training step's progress event (after the step's update, before validation). */
function tensorCounter(stage: string): { counts: number[]; onEvent: (e: ProgressEvent) => void } {
  const counts: number[] = [];
  return { counts, onEvent: (e: ProgressEvent) => void (e.type === 'progress' && e.stage === stage && counts.push(tf.memory().numTensors)) };
}

/** Every file under `dir` (recursive), absolute paths. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else out.push(p);
  }
  return out;
}

/** Rewrite an Arrow shard with every row's clip_id replaced (same schema and metadata, same batches). */
async function rewriteClipId(file: string, clipId: string): Promise<void> {
  const t = tableFromIPC(await readFile(file));
  const batches = t.batches.map((b) => {
    const children = t.schema.fields.map((f) =>
      f.name === 'clip_id' ? (vectorFromArray(Array(b.numRows).fill(clipId), new Utf8()).data[0] as Data) : b.getChild(f.name)!.data[0]!,
    );
    return new RecordBatch(t.schema, makeData({ type: new Struct(t.schema.fields), length: b.numRows, nullCount: 0, children }));
  });
  await writeFileAtomic(file, tableToIPC(new Table(t.schema, batches), 'file'));
}

const ldmOptions = (out: string, over: Partial<TrainLdmOptions> = {}): TrainLdmOptions => ({
  ...DEFAULT_LDM,
  dataset,
  out,
  firstStage: ae,
  cacheDir,
  preset: 'tiny',
  steps: 20,
  batchSize: 8,
  lr: 1e-3,
  checkpointEvery: 5,
  validateEvery: 10,
  sampleEvery: 20,
  sampleSteps: 5,
  ...over,
});

test('prep a real clip, train the tiny autoencoder', { timeout: 600_000 }, async () => {
  await initBackend('wasm');
  const prep = await runPrep(
    { kind: 'input', paths: [AOC_CLIP] },
    { ...DEFAULT_PREP_CONFIG, audioFeatures: ['mel'], faceModel: path.join(MODELS, 'fm478md.task'), testFraction: 0 },
    { out: dataset, concurrency: 1, retries: 0, retryFailed: false, preview: false },
  );
  assert.equal(prep.frames, 200);
  const counter = tensorCounter('train-autoencoder');
  const r = await trainAutoencoder({
    onEvent: counter.onEvent,
    ...DEFAULT_TRAIN,
    dataset,
    out: ae,
    preset: 'tiny',
    steps: 3,
    batchSize: 4,
    lr: 2e-3,
    checkpointEvery: 3,
    validateEvery: 3,
    sampleEvery: 3,
  });
  console.log(
    `autoencoder: ${r.msPerStep.toFixed(0)} ms/step (batch 4, 32², wasm), loss ${r.firstLoss.toFixed(3)} → ${r.lastLoss.toFixed(3)}, val L1 ${r.valLoss?.toFixed(3)}`,
  );
  assert.equal(r.step, 3);
  assert.ok(Number.isFinite(r.valLoss!));
  assert.ok(await exists(path.join(ae, 'samples', 'step-00000003.png')));
  assert.equal(counter.counts.length, 3);
  assert.deepEqual(counter.counts, Array(3).fill(counter.counts[0]), `tensors after each step: ${counter.counts.join(', ')} (a leak per step)`);
});

test('a crafted shard with clip_id ../../../../escaped writes nothing outside the run folder', { timeout: 600_000 }, async () => {
  const root = path.join(work, 'evil');
  const evilDs = path.join(root, 'ds');
  const out = path.join(root, 'runs', 'ldm');
  const evil = '../../../../escaped';
  await cp(dataset, evilDs, { recursive: true });
  const manifestFile = path.join(evilDs, 'dataset.json');
  const manifest = await readJson<{ clips: { id: string; shards: string[] }[] }>(manifestFile);
  for (const c of manifest.clips) {
    for (const sh of c.shards) await rewriteClipId(path.join(evilDs, sh), evil);
    c.id = evil;
  }
  await writeJsonAtomic(manifestFile, manifest);
  const before = new Set(await filesUnder(root));
  // the crafted shards are read as such, or refused as a whole with one DifftalkError (openDataset's cross-check)
  const clips = await datasetInfo(evilDs)
    .then((info) => readConditions(info, 'all'))
    .catch((e: unknown) => e);
  assert.ok(clips instanceof Array || clips instanceof DifftalkError, `raw error: ${String(clips)}`);
  if (!(clips instanceof DifftalkError)) assert.deepEqual(clips instanceof Array && clips.map((c) => c.id), [evil]);
  const r = await trainLdm({ ...ldmOptions(out, { steps: 1, sampleEvery: 100, validateEvery: 100 }), dataset: evilDs, cacheDir: undefined }).catch(
    (e: unknown) => e,
  );
  assert.ok(!(r instanceof Error) || r instanceof DifftalkError, `raw error: ${String(r)}`);
  const written = (await filesUnder(root)).filter((f) => !before.has(f));
  const outside = written.filter((f) => !f.startsWith(out + path.sep));
  assert.deepEqual(outside, [], 'files written outside the run folder');
});

test('LDM loss falls clearly; checkpoint, loss curve and sample grid are written', { timeout: 600_000 }, async () => {
  const out = path.join(work, 'ldm-a');
  const counter = tensorCounter('train');
  const r = await trainLdm({ ...ldmOptions(out), onEvent: counter.onEvent });
  console.log(
    `ldm: ${r.msPerStep.toFixed(0)} ms/step (batch 8, 8×8 latents, wasm, incl. checkpoints), ${r.samplesPerSecond.toFixed(1)} samples/s, loss ${r.firstLoss.toFixed(3)} → ${r.lastLoss.toFixed(3)}, val ${r.valLoss?.toFixed(3)}`,
  );
  assert.equal(r.step, 20);
  assert.equal(r.trainSamples, 160); // 200 frames, last 20% held out (no test split)
  assert.ok(r.lastLoss < 0.6 * r.firstLoss, `loss ${r.firstLoss} → ${r.lastLoss}`);
  assert.ok(Number.isFinite(r.valLoss!));
  const latest = await readJson<LatestPointer>(path.join(out, 'latest.json'));
  assert.deepEqual(latest, { checkpoint: 'ckpt-00000020', step: 20 });
  const ck = await loadCheckpoint<{ step: number; config: { preset: string } }>(out, { optimizer: true });
  assert.equal(ck.state.step, 20);
  assert.equal(ck.state.config.preset, 'tiny');
  assert.ok(ck.model.has('model.diffusion_model.out.2.weight') && ck.model.has('model_ema.diffusion_model.out.2.weight'));
  assert.ok(await exists(path.join(out, 'loss.svg')));
  assert.ok(await exists(path.join(out, 'samples', 'step-00000020.png')));
  await assert.rejects(trainLdm(ldmOptions(out)), /already holds a training run/);
  assert.equal(counter.counts.length, 20);
  assert.deepEqual(counter.counts, Array(20).fill(counter.counts[0]), `tensors after each step: ${counter.counts.join(', ')} (a leak per step)`);
});

test('a SIGKILLed run resumes from its saved step and ends identical to the uninterrupted run', { timeout: 600_000 }, async () => {
  const out = path.join(work, 'ldm-b');
  const ac = new AbortController();
  const child = runProcess(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'tests', 'train', 'ldm-child.ts'), JSON.stringify(ldmOptions(out, { steps: 1000 }))],
    { signal: ac.signal, cwd: ROOT },
  );
  const childDone = child.then(
    () => 'exited',
    () => 'killed',
  );
  for (;;) {
    await new Promise((r) => setTimeout(r, 200));
    if (await exists(path.join(out, 'latest.json'))) {
      const l = await readJson<LatestPointer>(path.join(out, 'latest.json'));
      if (l.step >= 10) break;
    }
  }
  ac.abort();
  assert.equal(await childDone, 'killed');
  const saved = (await readJson<LatestPointer>(path.join(out, 'latest.json'))).step;
  assert.ok(saved >= 10 && saved % 5 === 0);
  const target = saved + 10;
  const resumed = await trainLdm(ldmOptions(out, { steps: target, resume: true }));
  assert.equal(resumed.startStep, saved);
  assert.equal(resumed.step, target);
  // reference: an uninterrupted run to the same step
  const ref = await trainLdm(ldmOptions(path.join(work, 'ldm-c'), { steps: target }));
  const a = await readFile(path.join(resumed.checkpoint, 'model.safetensors'));
  const b = await readFile(path.join(ref.checkpoint, 'model.safetensors'));
  assert.ok(a.equals(b), 'resumed weights differ from the uninterrupted run');
});
