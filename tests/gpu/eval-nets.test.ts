/**
 * The eval networks on --backend webgpu (in CI: lavapipe), against the same references as their wasm tests:
 * - LPIPS-alex: fixtures/expected.json lpips.alex (PyTorch float32, det backbone + the real LPIPS v0.1 linear layers),
 *   totals within 1e-4 relative (the wasm test's 1e-5, loosened for GPU summation order);
 * - SyncNet v2: fixtures/expected.json syncnet window-0 embeddings, 1e-4 relative (as the wasm test);
 * - FID Inception (no PyTorch fixture exists for it, see tests/metrics/fid.test.ts): 2048-d features of 2 real face
 *   crops on webgpu against the wasm backend, max difference 1e-4 × max |feature| (deterministic full-rank weights).
 * Where tfjs-webgpu lacks a kernel a network needs, the test says so (skip with the kernel's name).
 * Memory: each network is called again and tf.memory().numTensors / numBytes after the repeat equal those after the
 * first call (a leak per call shows; eval calls each network once per chunk of frames).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { readWav } from '../../src/audio/wav.js';
import type { RgbFrames } from '../../src/media/types.js';
import { inceptionFeatures } from '../../src/metrics/fid.js';
import { Lpips } from '../../src/metrics/lpips.js';
import { syncMfcc } from '../../src/metrics/lse.js';
import { FidInception, fidInceptionParams } from '../../src/models/inception.js';
import { packAudioWindows, packLipWindows, SyncNet, syncnetParamShapes } from '../../src/models/syncnet.js';
import type { NamedWeight } from '../../src/models/torchvision-features.js';
import { errorMessage } from '../../src/util/errors.js';
import { initBackend, tf } from '../../src/util/tf.js';
import { det } from '../../src/weights/det.js';
import { readTorchFile, stateDict } from '../../src/weights/torch.js';
import { crop, frames, loadAstronaut } from '../metrics/astronaut.js';
import { FIXTURES, SHARED } from '../helpers.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const expected = JSON.parse(readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8'));

let unavailable: string | undefined;
try {
  await initBackend('webgpu');
} catch (e) {
  unavailable = `no WebGPU adapter here (${errorMessage(e)}); .ci/run installs Mesa ≥ 25 lavapipe`;
}

/** A missing tfjs-webgpu kernel is a genuine gap of the backend: say which. */
function kernelGap(e: unknown): string | undefined {
  const m = /'(\w+)' not registered for backend 'webgpu'|kernel '?(\w+)'? .*not registered/i.exec(errorMessage(e));
  return m ? `tfjs-webgpu has no ${m[1] ?? m[2]} kernel: ${errorMessage(e)}` : undefined;
}

/** tf.memory()'s tensors and bytes after one call of `call` and after two more: equal, or a leak per call. */
async function assertFlat(what: string, call: () => Promise<unknown>): Promise<void> {
  await call();
  const one = { tensors: tf.memory().numTensors, bytes: tf.memory().numBytes };
  await call();
  await call();
  assert.deepEqual({ tensors: tf.memory().numTensors, bytes: tf.memory().numBytes }, one, `${what}: memory after 3 calls vs after 1`);
}

function close(a: number, b: number, rel: number, what: string): void {
  assert.ok(Math.abs(a - b) <= rel * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
}

async function syncFrames(ids: string[]): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const i of ids)
    out.push(
      new Uint8Array(
        await sharp(path.join(FIXTURES, 'syncnet_frames', `${i}.png`))
          .removeAlpha()
          .raw()
          .toBuffer(),
      ),
    );
  return out;
}

test('webgpu: LPIPS-alex matches the PyTorch fixture (1e-4 relative)', async (t) => {
  if (unavailable) return t.skip(unavailable);
  const ref = expected.lpips.alex as { backbone_params: [string, number[]][]; values: Record<string, { lpips: number }> };
  const w = new Map<string, NamedWeight>();
  for (const [name, shape] of ref.backbone_params) w.set(name, { shape, data: det(name, shape) });
  for (const [k, v] of stateDict(await readTorchFile(path.join(SHARED, 'data', 'weights', 'lpips-v0.1', 'alex.pth')))) {
    w.set(k, { shape: v.shape, data: v.data as Float32Array });
  }
  const a = await loadAstronaut();
  const model = new Lpips('alex', w);
  try {
    const r = await model.distances(frames(crop(a, 0, 0, 128, 128)), frames(crop(a, 1, 1, 128, 128)));
    const want = ref.values.crop128_shift1!.lpips;
    assert.ok(Math.abs(r.total[0]! - want) <= 1e-4 * want, `total ${r.total[0]} vs ${want}`);
    const small = [frames(crop(a, 0, 0, 64, 64)), frames(crop(a, 1, 1, 64, 64))] as const;
    await assertFlat('LPIPS', () => model.distances(...small));
  } finally {
    model.dispose();
  }
});

test('webgpu: SyncNet v2 window-0 embeddings match the PyTorch fixture (1e-4 relative)', async (t) => {
  if (unavailable) return t.skip(unavailable);
  const net = SyncNet.fromTensors(new Map(syncnetParamShapes().map(([n, s]) => [n, { shape: s, data: det(n, s) }])));
  try {
    const wav = await readWav(path.join(FIXTURES, 'syncnet_audio.wav'));
    const m = syncMfcc(wav.samples, wav.sampleRate);
    const xv = packLipWindows(await syncFrames(['00', '01', '02', '03', '04']), [0]);
    const xa = packAudioWindows(m.data, m.frames, [0]);
    const read = async (t: tf.Tensor) => {
      try {
        return (await t.data()) as Float32Array;
      } finally {
        t.dispose();
      }
    };
    let lip: Float32Array;
    let aud: Float32Array;
    try {
      lip = await read(net.forwardLip(xv));
      aud = await read(net.forwardAud(xa));
      await assertFlat('SyncNet', async () => [await read(net.forwardLip(xv)), await read(net.forwardAud(xa))]);
    } catch (e) {
      const gap = kernelGap(e);
      if (gap) return t.skip(gap);
      throw e;
    } finally {
      tf.dispose([xv, xa]);
    }
    for (const [x, r, what] of [
      [lip, expected.syncnet.lip_emb_window0, 'lip'],
      [aud, expected.syncnet.aud_emb_window0, 'aud'],
    ] as const) {
      let abs = 0;
      for (const v of x) abs += Math.abs(v);
      close(abs, r.abs_sum, 1e-4, `${what} abs_sum`);
      (r.first8 as number[]).forEach((v, i) => close(x[i]!, v, 1e-4, `${what}[${i}]`));
    }
  } finally {
    net.dispose();
  }
});

test('webgpu: FID Inception features match the wasm backend (1e-4 × max |feature|)', async (t) => {
  if (unavailable) return t.skip(unavailable);
  // deterministic full-rank weights (He-uniform from a seeded LCG; BN identity), as tests/metrics/fid.test.ts explains
  const he = new Map<string, { shape: number[]; data: Float32Array }>();
  let s = 12345;
  for (const [name, shape] of fidInceptionParams()) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (name.endsWith('conv.weight') || name === 'fc.weight') {
      const fanIn = n / shape[0]!;
      const bound = Math.sqrt(6 / fanIn);
      for (let k = 0; k < n; k++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        data[k] = (s / 4294967296) * 2 * bound - bound;
      }
    } else if (name.endsWith('bn.weight') || name.endsWith('running_var')) data.fill(1);
    he.set(name, { shape, data });
  }
  const parts = await syncFrames(['00', '12']);
  const crops: RgbFrames = { width: 224, height: 224, count: 2, data: new Uint8Array(parts.length * parts[0]!.length) };
  parts.forEach((p, k) => crops.data.set(p, k * p.length));
  const features = async (backend: 'webgpu' | 'wasm') => {
    await initBackend(backend);
    const net = FidInception.fromTensors(he);
    try {
      const f = await inceptionFeatures(crops, { net, batchSize: 2 });
      if (backend === 'webgpu') {
        const one: RgbFrames = { ...crops, count: 1, data: crops.data.subarray(0, 224 * 224 * 3) };
        await assertFlat('FID Inception', () => inceptionFeatures(one, { net, batchSize: 1 }));
      }
      return f;
    } finally {
      net.dispose();
    }
  };
  let gpu: Float64Array | Float32Array;
  try {
    gpu = await features('webgpu');
  } catch (e) {
    const gap = kernelGap(e);
    if (gap) return t.skip(gap);
    throw e;
  }
  const ref = await features('wasm');
  await initBackend('webgpu');
  let maxAbs = 0;
  let maxDiff = 0;
  for (let i = 0; i < ref.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(ref[i]!));
    maxDiff = Math.max(maxDiff, Math.abs(gpu[i]! - ref[i]!));
  }
  assert.ok(maxAbs > 0);
  assert.ok(maxDiff <= 1e-4 * maxAbs, `max diff ${maxDiff} (max |feature| ${maxAbs})`);
});
