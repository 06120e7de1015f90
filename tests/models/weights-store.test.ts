import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { loadLpips } from '../../src/metrics/lpips.js';
import { DifftalkError } from '../../src/util/errors.js';
import { initBackend } from '../../src/util/tf.js';
import { det } from '../../src/weights/det.js';
import { sha256File } from '../../src/util/fs.js';
import { getWeightKind, importWeights, loadWeights, registerWeightKind, requireWeights, weightsDir } from '../../src/models/weights-store.js';
import { readTorchFile, stateDict } from '../../src/weights/torch.js';
import { crop, frames, loadAstronaut } from '../metrics/astronaut.js';
import { FIXTURES, SHARED, tmpDir } from '../helpers.js';
import { writeLegacyTorch } from '../weights/legacy-writer.js';

const ZIP = path.join(FIXTURES, 'torch_zip.pt');
const ALEX = path.join(SHARED, 'data', 'weights', 'lpips-v0.1', 'alex.pth');
const code = (c: string) => (e: unknown) => e instanceof DifftalkError && e.code === c;

test('weightsDir: explicit folder, else $DIFFTALK_CACHE/weights', () => {
  assert.equal(weightsDir('/x/y'), '/x/y');
  const old = process.env.DIFFTALK_CACHE;
  process.env.DIFFTALK_CACHE = '/tmp/dc';
  try {
    assert.equal(weightsDir(), '/tmp/dc/weights');
  } finally {
    if (old === undefined) delete process.env.DIFFTALK_CACHE;
    else process.env.DIFFTALK_CACHE = old;
  }
});

test('requireWeights on an empty cache names every file, its URL and the import command', async () => {
  for (const kind of ['lpips-alex', 'lpips-vgg', 'syncnet-v2', 'fid-inception', 'vq-f4']) {
    const spec = getWeightKind(kind);
    await assert.rejects(requireWeights(kind, { cacheDir: tmpDir() }), (e: unknown) => {
      assert.ok(e instanceof DifftalkError && e.code === 'weights-missing', kind);
      for (const s of spec.sources) {
        assert.ok(e.message.includes(s.fileName) && e.message.includes(s.url.split(' ')[0]!), `${kind}: ${e.message}`);
        assert.ok(e.suggestion!.includes(`--${s.flag} <path/to/${s.fileName}>`));
      }
      assert.ok(e.suggestion!.includes(`difftalk weights import --kind ${kind}`));
      return true;
    });
  }
  assert.match(getWeightKind('lpips-alex').sources[0]!.url, /alexnet-owt-7be5be79\.pth$/);
  await assert.rejects(requireWeights('no-such-kind'), code('unknown-weight-kind'));
});

test('importWeights verifies, converts, indexes; loadWeights returns the same tensors; corruption is detected', async () => {
  // A kind registered the way other modules extend the table: two real torch files with known full sha256.
  registerWeightKind({
    kind: 'test-fixture',
    description: 'test kind',
    sources: [
      { flag: 'ckpt', fileName: 'torch_zip.pt', url: 'shared/data/fixtures', description: 'fixture checkpoint', sha256: await sha256File(ZIP) },
      { flag: 'linear', fileName: 'alex.pth', url: 'shared/data/weights', description: 'LPIPS alex', sha256Prefix: 'df73285e' },
    ],
    convert: async ({ inputs }) => {
      const t = stateDict(await readTorchFile(inputs.ckpt!));
      for (const [k, v] of stateDict(await readTorchFile(inputs.linear!))) t.set(k, v);
      return { tensors: t, metadata: { note: 'test' } };
    },
  });
  const dir = tmpDir();
  const r = await importWeights('test-fixture', { ckpt: ZIP, linear: ALEX }, { cacheDir: dir });
  assert.equal(r.path, path.join(dir, 'test-fixture.safetensors'));
  assert.equal(r.tensors, 12);
  assert.deepEqual(
    r.sources.map((s) => s.verified),
    ['sha256', 'sha256-prefix'],
  );
  const index = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8'));
  assert.equal(index.entries['test-fixture'].sha256, await sha256File(r.path));
  const back = await loadWeights('test-fixture', { cacheDir: dir });
  const orig = stateDict(await readTorchFile(ZIP));
  // exact round trip (reference: the torch file's own values)
  for (const [k, t] of orig) assert.deepEqual([...(back.get(k)!.data as Float32Array)], [...(t.data as Float32Array)], k);
  assert.equal(back.get('lin0.model.1.weight')!.shape.join(','), '1,64,1,1');

  await assert.rejects(importWeights('test-fixture', { ckpt: ALEX, linear: ALEX }, { cacheDir: dir }), code('checksum-mismatch'));
  await assert.rejects(importWeights('test-fixture', { ckpt: ZIP }, { cacheDir: dir }), code('missing-input'));
  await assert.rejects(importWeights('test-fixture', { ckpt: ZIP, linear: path.join(dir, 'nope.pth') }, { cacheDir: dir }), code('not-found'));
  await assert.rejects(importWeights('lpips-alex', { backbone: ZIP, linear: ALEX }, { cacheDir: dir }), code('checksum-mismatch'));
  await assert.rejects(importWeights('syncnet-v2', { model: ZIP }, { cacheDir: dir }), code('not-implemented'));

  const bytes = readFileSync(r.path);
  bytes[bytes.length - 1]! ^= 0xff;
  writeFileSync(r.path, bytes);
  await assert.rejects(requireWeights('test-fixture', { cacheDir: dir }), code('weights-corrupt'));
});

test('lpips-alex import end to end: torchvision-named checkpoint + real alex.pth → cache → loadLpips → reference LPIPS', async () => {
  // The real alexnet-owt-7be5be79.pth is not available here: fabricate a torchvision-named legacy checkpoint with the
  // det() weights of expected.json lpips.alex (plus the classifier tensors a real file has), and import it under a
  // copy of the lpips-alex kind without the backbone hash check (the linear layer keeps its full sha256).
  // Reference: ../shared/data/fixtures/expected.json lpips.alex.values.crop64_far.lpips; tolerance 1e-5 relative.
  const fixture = JSON.parse(readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8')).lpips.alex;
  const dir = tmpDir();
  const sd = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, shape] of fixture.backbone_params as [string, number[]][]) sd.set(name, { shape, data: det(name, shape) });
  sd.set('classifier.6.bias', { shape: [10], data: det('classifier.6.bias', [10]) });
  const backbone = path.join(dir, 'alexnet-fabricated.pth');
  writeLegacyTorch(backbone, sd);
  const spec = getWeightKind('lpips-alex');
  registerWeightKind({ ...spec, sources: spec.sources.map((s) => (s.flag === 'backbone' ? { ...s, sha256Prefix: undefined } : s)) });
  const cache = path.join(dir, 'cache');
  const r = await importWeights('lpips-alex', { backbone, linear: ALEX }, { cacheDir: cache });
  assert.equal(r.tensors, 15);
  assert.deepEqual(
    r.sources.map((s) => s.verified),
    ['unverified', 'sha256'],
  );
  await initBackend('wasm');
  const model = await loadLpips('alex', { cacheDir: cache });
  try {
    const a = await loadAstronaut();
    const d = await model.distances(frames(crop(a, 200, 200, 64, 64)), frames(crop(a, 300, 50, 64, 64)));
    const ref = fixture.values.crop64_far.lpips as number;
    assert.ok(Math.abs(d.total[0]! - ref) <= 1e-5 * ref, `${d.total[0]} vs ${ref}`);
  } finally {
    model.dispose();
  }
  // a checkpoint lacking a backbone tensor is refused with a clear error
  sd.delete('features.8.weight');
  writeLegacyTorch(backbone, sd);
  await assert.rejects(
    importWeights('lpips-alex', { backbone, linear: ALEX }, { cacheDir: cache }),
    (e: unknown) => e instanceof DifftalkError && e.code === 'bad-weights' && /features\.8\.weight/.test(e.message),
  );
});
