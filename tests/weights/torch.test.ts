import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { DifftalkError } from '../../src/util/errors.js';
import { readTorchFile, stateDict } from '../../src/weights/torch.js';
import { FIXTURES, SHARED, tmpDir } from '../helpers.js';
import { readStoredEntries, writeZip } from './zip-writer.js';

interface Expected {
  torch_files: Record<string, { dtype: string; shape: number[]; values: number[] }>;
  torch_files_meta: { epoch: number; global_step: number; name: string };
}
const expected = JSON.parse(readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8')) as Expected;
const LPIPS = path.join(SHARED, 'data', 'weights', 'lpips-v0.1');

for (const [file, format] of [
  ['torch_zip.pt', 'zip'],
  ['torch_legacy.pt', 'legacy'],
] as const) {
  test(`${file}: every tensor and scalar equals expected.json torch_files (exact)`, async () => {
    // Reference: ../shared/data/fixtures/expected.json torch_files / torch_files_meta (written by PyTorch 2.11).
    // Tolerance: exact (all values are representable in their dtype; int64 compared as BigInt).
    const f = await readTorchFile(path.join(FIXTURES, file));
    assert.equal(f.format, format);
    const sd = stateDict(f);
    assert.deepEqual([...sd.keys()].sort(), Object.keys(expected.torch_files).sort());
    for (const [name, e] of Object.entries(expected.torch_files)) {
      const t = sd.get(name)!;
      assert.equal(t.dtype, e.dtype, name);
      assert.deepEqual(t.shape, e.shape, name);
      if (e.dtype === 'int64')
        assert.deepEqual(
          [...(t.data as BigInt64Array)],
          e.values.map((v) => BigInt(v)),
          name,
        );
      else assert.deepEqual([...(t.data as Float32Array)], e.values, name);
    }
    const top = f.value as Map<string, unknown>;
    assert.equal(top.get('epoch'), expected.torch_files_meta.epoch);
    assert.equal(top.get('global_step'), expected.torch_files_meta.global_step);
    assert.equal(top.get('name'), expected.torch_files_meta.name);
    assert.ok(f.tensors.has('state_dict.f32'));
  });
}

test('zip variants: deflated entries and zip64 records give the same tensors', async () => {
  // Reference: the tensors of the unmodified torch_zip.pt (checked against expected.json above); exact.
  const orig = stateDict(await readTorchFile(path.join(FIXTURES, 'torch_zip.pt')));
  const items = readStoredEntries(readFileSync(path.join(FIXTURES, 'torch_zip.pt')));
  assert.ok(items.some((i) => i.name.endsWith('/data.pkl')));
  const dir = tmpDir();
  for (const opts of [{ deflate: true }, { zip64: true }, { deflate: true, zip64: true }]) {
    const f = path.join(dir, `repacked-${JSON.stringify(opts).replace(/\W/g, '')}.pt`);
    writeFileSync(f, writeZip(items, opts));
    const sd = stateDict(await readTorchFile(f));
    assert.deepEqual([...sd.keys()], [...orig.keys()]);
    for (const [k, t] of orig) assert.deepEqual(sd.get(k), t, `${k} ${JSON.stringify(opts)}`);
  }
  const noPkl = path.join(dir, 'no-pkl.pt');
  writeFileSync(noPkl, writeZip(items.filter((i) => !i.name.endsWith('data.pkl'))));
  await assert.rejects(readTorchFile(noPkl), (e: unknown) => e instanceof DifftalkError && e.code === 'bad-torch-file');
  const noData = path.join(dir, 'no-data.pt');
  writeFileSync(noData, writeZip(items.filter((i) => !i.name.endsWith('data/3'))));
  await assert.rejects(readTorchFile(noData), (e: unknown) => e instanceof DifftalkError && /data\/3/.test(e.message));
});

test('LPIPS v0.1 linear layers (legacy format): per-layer Σw equals eval-metrics.md §3', async () => {
  // Reference: ../shared/docs/eval-metrics.md §3 checksums (5 significant digits) → tolerance 1e-5 relative + rounding.
  const sums: Record<string, number[]> = {
    alex: [2.34953, 16.143, 39.2684, 27.1972, 20.3172],
    vgg: [6.92599, 8.85833, 17.515, 51.5213, 47.0349],
  };
  const channels: Record<string, number[]> = { alex: [64, 192, 384, 256, 256], vgg: [64, 128, 256, 512, 512] };
  for (const net of ['alex', 'vgg']) {
    const f = await readTorchFile(path.join(LPIPS, `${net}.pth`));
    assert.equal(f.format, 'legacy');
    const sd = stateDict(f);
    assert.equal(sd.size, 5);
    for (let k = 0; k < 5; k++) {
      const t = sd.get(`lin${k}.model.1.weight`)!;
      assert.deepEqual(t.shape, [1, channels[net]![k], 1, 1]);
      const s = (t.data as Float32Array).reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(s - sums[net]![k]!) <= 6e-5 * sums[net]![k]!, `${net} lin${k}: Σw ${s} vs ${sums[net]![k]}`);
      assert.ok((t.data as Float32Array).every((w) => w >= 0));
    }
  }
});

test('non-torch and corrupt files are rejected with a DifftalkError', async () => {
  const dir = tmpDir();
  const isBad = (e: unknown) => e instanceof DifftalkError && /bad-torch-file|bad-pickle|not-found/.test(e.code);
  const text = path.join(dir, 'text.pt');
  writeFileSync(text, 'hello world, not a checkpoint');
  await assert.rejects(readTorchFile(text), isBad);
  await assert.rejects(readTorchFile(path.join(dir, 'missing.pt')), isBad);
  const zip = readFileSync(path.join(FIXTURES, 'torch_zip.pt'));
  const truncZip = path.join(dir, 'trunc-zip.pt');
  writeFileSync(truncZip, zip.subarray(0, zip.length - 100));
  await assert.rejects(readTorchFile(truncZip), isBad);
  const legacy = readFileSync(path.join(FIXTURES, 'torch_legacy.pt'));
  for (const cut of [20, 300, legacy.length - 10]) {
    const f = path.join(dir, `trunc-legacy-${cut}.pt`);
    writeFileSync(f, legacy.subarray(0, cut));
    await assert.rejects(readTorchFile(f), isBad, `cut at ${cut}`);
  }
  const garbled = Buffer.from(legacy);
  garbled[0x0b] = 0x42; // inside the magic number
  const g = path.join(dir, 'garbled.pt');
  writeFileSync(g, garbled);
  await assert.rejects(readTorchFile(g), isBad);
});
