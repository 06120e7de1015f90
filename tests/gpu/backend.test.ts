/**
 * `initBackend('webgpu')` in Node on whatever adapter this machine has (in CI: Mesa ≥ 25 lavapipe, a software Vulkan
 * GPU installed by .ci/run): it reports the adapter, features and limits; a conv2d, its gradients and a matmul agree
 * with the cpu backend (reference; tolerance 1e-4 relative to the largest magnitude, float32 with different summation
 * order); a synchronous read of a value still on the GPU fails with the clear 'webgpu-sync-read' error instead of
 * tfjs's OffscreenCanvas ReferenceError. Without an adapter the tests skip and say why.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DifftalkError } from '../../src/util/errors.js';
import type { ProgressEvent } from '../../src/util/events.js';
import { backendInfo, initBackend, tf } from '../../src/util/tf.js';
import { maxRelDiff } from './compare.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const TOL = 1e-4;

const events: ProgressEvent[] = [];
let unavailable: string | undefined;
try {
  await initBackend('webgpu', (e) => events.push(e));
} catch (e) {
  unavailable = `no WebGPU adapter here (${(e as Error).message}); .ci/run installs Mesa ≥ 25 lavapipe`;
}

/** Run `fn` on webgpu and on cpu with the same inputs; max |a−b| / max(1, max |b|). */
async function compare(fn: () => tf.Tensor[]): Promise<number> {
  const run = async (backend: string) => {
    await tf.setBackend(backend);
    const outs = tf.tidy(fn);
    const data = await Promise.all(outs.map((t) => t.data()));
    tf.dispose(outs);
    return data;
  };
  const gpu = await run('webgpu');
  const cpu = await run('cpu');
  await tf.setBackend('webgpu');
  return maxRelDiff(gpu, cpu);
}

test('webgpu: adapter name, features and limits are reported (again by a later initBackend on the same device)', async (t) => {
  if (unavailable) return t.skip(unavailable);
  const info = backendInfo();
  assert.equal(tf.getBackend(), 'webgpu');
  assert.equal(info?.backend, 'webgpu');
  assert.ok(info?.adapter && (info.adapter.device || info.adapter.description), 'adapter named');
  assert.ok(info?.features?.length, 'features listed');
  assert.ok((info?.limits?.maxStorageBufferBindingSize ?? 0) >= 128 * 1024 * 1024);
  const log = events.find((e) => e.type === 'log' && e.message.startsWith('TensorFlow.js backend: webgpu'));
  assert.ok(log, 'one log event names the backend');
  assert.match((log as { message: string }).message, /features: .*limits: maxBufferSize \d+/);
  await initBackend('webgpu');
  assert.deepEqual(
    { adapter: backendInfo()?.adapter, features: backendInfo()?.features, limits: backendInfo()?.limits },
    { adapter: info.adapter, features: info.features, limits: info.limits },
  );
});

test('webgpu: conv2d (odd size, padding, stride 2), its input and filter gradients and a batched matmul match cpu', async (t) => {
  if (unavailable) return t.skip(unavailable);
  const x = tf.randomNormal([2, 11, 13, 5], 0, 1, 'float32', 1);
  const w = tf.randomNormal([3, 3, 5, 7], 0, 1, 'float32', 2);
  const a = tf.randomNormal([3, 17, 33], 0, 1, 'float32', 3);
  const b = tf.randomNormal([3, 33, 9], 0, 1, 'float32', 4);
  const [xs, ws, as, bs] = await Promise.all([x, w, a, b].map((v) => v.data()));
  tf.dispose([x, w, a, b]);
  const worst = await compare(() => {
    const X = tf.tensor4d(xs!, [2, 11, 13, 5]);
    const W = tf.tensor4d(ws!, [3, 3, 5, 7]);
    const f = (xx: tf.Tensor, ww: tf.Tensor) =>
      tf
        .conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, 2, 'same')
        .square()
        .sum();
    const [gx, gw] = tf.grads(f)([X, W]);
    const y = tf.conv2d(X, W, 1, 'same');
    const m = tf.matMul(tf.tensor3d(as!, [3, 17, 33]), tf.tensor3d(bs!, [3, 33, 9]));
    return [y, gx!, gw!, m];
  });
  assert.ok(worst < TOL, `max relative difference ${worst} ≥ ${TOL}`);
});

test('webgpu: a synchronous read of a GPU value fails with a clear DifftalkError; an awaited read works', async (t) => {
  if (unavailable) return t.skip(unavailable);
  // large enough that tfjs-webgpu does not forward it to its CPU fallback (small ops run on the CPU)
  const N = 64;
  const y = tf.tidy(() =>
    tf
      .matMul(tf.ones([N, N]), tf.ones([N, N]))
      .slice([0, 0], [1, 4])
      .reshape([4]),
  );
  assert.throws(
    () => y.dataSync(),
    (e: unknown) => e instanceof DifftalkError && e.code === 'webgpu-sync-read' && /await tensor\.data\(\)/.test(e.suggestion ?? ''),
  );
  assert.deepEqual([...(await y.data())], [N, N, N, N]);
  assert.deepEqual([...y.dataSync()], [N, N, N, N]); // now cached on the CPU
  y.dispose();
});
