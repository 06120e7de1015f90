import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { Lpips, LpipsMetric, loadLpips, type LpipsNet } from '../../src/metrics/lpips.js';
import type { NamedWeight } from '../../src/models/torchvision-features.js';
import { DifftalkError } from '../../src/util/errors.js';
import { initBackend } from '../../src/util/tf.js';
import { det } from '../../src/weights/det.js';
import { readTorchFile, stateDict } from '../../src/weights/torch.js';
import { FIXTURES, SHARED, tmpDir } from '../helpers.js';
import { crop, frames, loadAstronaut, quantise, type Image } from './astronaut.js';

interface LpipsFixture {
  backbone_params: [string, number[]][];
  values: Record<string, { lpips: number; per_layer: number[] }>;
}
const expected = JSON.parse(readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8')).lpips as Record<LpipsNet, LpipsFixture>;

/** det() backbone under torchvision names + the real LPIPS v0.1 linear layers (fixtures README). */
async function fixtureWeights(net: LpipsNet): Promise<Map<string, NamedWeight>> {
  const w = new Map<string, NamedWeight>();
  for (const [name, shape] of expected[net].backbone_params) w.set(name, { shape, data: det(name, shape) });
  const lin = stateDict(await readTorchFile(path.join(SHARED, 'data', 'weights', 'lpips-v0.1', `${net}.pth`)));
  for (const [k, t] of lin) w.set(k, { shape: t.shape, data: t.data as Float32Array });
  return w;
}

let pairs: Record<string, [Image, Image]>;
before(async () => {
  await initBackend('wasm');
  const a = await loadAstronaut();
  const q = quantise(a);
  pairs = {
    crop128_shift1: [crop(a, 0, 0, 128, 128), crop(a, 1, 1, 128, 128)],
    crop256_quantised: [crop(a, 100, 100, 256, 256), crop(q, 100, 100, 256, 256)],
    crop64_far: [crop(a, 200, 200, 64, 64), crop(a, 300, 50, 64, 64)],
  };
});

for (const net of ['alex', 'vgg'] as const) {
  test(`LPIPS ${net}: totals and per-layer values match the PyTorch reference (expected.json lpips.${net})`, async () => {
    // Reference: ../shared/data/fixtures/expected.json lpips.<net> (lpips 0.1 in PyTorch float32, det backbone).
    // Tolerance: 1e-5 relative on totals (fixtures README); per layer 1e-4 relative or 1e-6 × total absolute
    // (deep layers of the det backbone are 1e-8…1e-15, i.e. float32 cancellation noise below any visible effect).
    const model = new Lpips(net, await fixtureWeights(net));
    try {
      for (const [pair, [x, y]] of Object.entries(pairs)) {
        const ref = expected[net].values[pair]!;
        const r = await model.distances(frames(x), frames(y));
        const total = r.total[0]!;
        assert.ok(Math.abs(total - ref.lpips) <= 1e-5 * ref.lpips, `${pair} total ${total} vs ${ref.lpips}`);
        r.perLayer[0]!.forEach((v, k) => {
          const e = ref.per_layer[k]!;
          assert.ok(Math.abs(v - e) <= Math.max(1e-4 * e, 1e-6 * ref.lpips), `${pair} layer ${k}: ${v} vs ${e}`);
        });
      }
    } finally {
      model.dispose();
    }
  });
}

test('LpipsMetric averages frames; loadLpips without imported weights names the files and the import command', async () => {
  const model = new Lpips('alex', await fixtureWeights('alex'));
  try {
    const m = new LpipsMetric(model, 2);
    assert.equal(m.name, 'lpips(alex-v0.1)');
    assert.equal(m.direction, 'lower');
    const [x, y] = pairs.crop64_far!;
    await m.update(frames(x, x, y), frames(y, x, x));
    const r = m.compute();
    const ref = expected.alex.values.crop64_far!.lpips;
    // identical pair gives exactly 0; LPIPS is symmetric → mean = 2·ref/3; tolerance 1e-5 relative
    assert.ok(Math.abs(r.value - (2 * ref) / 3) <= 1e-5 * ref, `${r.value}`);
    assert.equal(r.frames, 3);
  } finally {
    model.dispose();
  }
  await assert.rejects(loadLpips('vgg', { cacheDir: tmpDir() }), (e: unknown) => {
    assert.ok(e instanceof DifftalkError && e.code === 'weights-missing');
    assert.match(e.message, /vgg16-397923af\.pth/);
    assert.match(e.message, /vgg\.pth/);
    assert.match(e.suggestion ?? '', /difftalk weights import --kind lpips-vgg --backbone <path\/to\/vgg16-397923af\.pth> --linear <path\/to\/vgg\.pth>/);
    return true;
  });
});
