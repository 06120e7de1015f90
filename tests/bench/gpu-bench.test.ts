/**
 * The GPU section of `npm run bench` (bench/gpu.ts) at its tiny sizes, on whatever WebGPU adapter is here (in CI:
 * lavapipe) and Debian's python3-torch on CPU: every per-op and whole-UNet item is timed on tfjs-webgpu and in each
 * PyTorch mode (fp32 with TF32 off, TF32, bf16 autocast) in the same run, and the rendered table's ratios are the
 * webgpu time over the PyTorch time of that mode (to the 2 digits printed). Timings themselves are not asserted
 * (lavapipe proves the code path, never speed). The eval networks are left out here (FID's 299² on lavapipe alone takes
 * a minute); `BENCH_ONLY=gpu BENCH_GPU_SIZE=tiny npm run bench` runs them. Where the adapter has shader-f16 (lavapipe
 * does), the GEMM items (conv_*, matmul, unet_*) are timed under mixed precision too, and the table's 'mixed ratio vs
 * bf16' is that time over PyTorch's bf16 autocast time. Where it has `subgroups` (lavapipe does), the deep convs
 * (split-K subgroup GEMM core) are timed with subgroups off too (the tiled core). Without an adapter the test skips and says why.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { benchGpu, renderGpuBench } from '../../bench/gpu.js';
import { subgroupsWanted } from '../../src/models/kernels/features.js';
import { initBackend } from '../../src/util/tf.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
let unavailable: string | undefined;
try {
  await initBackend('webgpu');
} catch (e) {
  unavailable = `no WebGPU adapter here (${(e as Error).message}); .ci/run installs Mesa ≥ 25 lavapipe`;
}

const ITEMS = [
  'conv_fwd',
  'conv_dgrad',
  'conv_wgrad',
  'conv_deep_fwd',
  'conv_deep_dgrad',
  'gn_silu',
  'attention',
  'attention_train',
  'matmul',
  'unet_train',
  'unet_fwd',
];

test('GPU bench, tiny: every item on webgpu and in PyTorch fp32/tf32/bf16, ratios printed', { timeout: 180_000 }, async (t) => {
  if (unavailable) return t.skip(unavailable);
  const r = await benchGpu({ size: 'tiny', eval: false, python: '/usr/bin/python3' });
  assert.equal(r.torchError, undefined);
  assert.deepEqual(Object.keys(r.webgpu.results).sort(), [...ITEMS].sort());
  for (const n of ITEMS) assert.ok(r.webgpu.results[n]!.ms > 0 && r.webgpu.results[n]!.iters >= 1, `webgpu ${n}`);
  assert.deepEqual(Object.keys(r.torch!.results), ['fp32', 'tf32', 'bf16']);
  for (const [mode, res] of Object.entries(r.torch!.results)) {
    for (const n of ITEMS) assert.ok((res[n]?.ms ?? 0) > 0, `torch ${mode} ${n}: ${JSON.stringify(res[n])}`);
  }
  const md = renderGpuBench(r);
  const head = md.split('\n')[2]!.slice(2, -2).split(' | ');
  assert.ok(head.includes('ratio vs fp32') && head.includes('ratio vs bf16'));
  const row = md
    .split('\n')
    .find((l) => l.startsWith('| unet_train |'))!
    .slice(2, -2)
    .split(' | ');
  const col = head.indexOf('ratio vs fp32');
  const expected = r.webgpu.results.unet_train!.ms / r.torch!.results.fp32!.unet_train!.ms;
  assert.ok(Math.abs(parseFloat(row[col]!) - expected) <= 0.01 * expected + 0.5, `ratio ${row[col]} vs ${expected}`);
  // the items with an f16 variant (GEMM kernels, fused attention) are timed under 'mixed' too
  const MIXED = [
    'conv_fwd',
    'conv_dgrad',
    'conv_wgrad',
    'conv_deep_fwd',
    'conv_deep_dgrad',
    'matmul',
    'attention',
    'attention_train',
    'unet_train',
    'unet_fwd',
  ];
  assert.deepEqual(Object.keys(r.webgpu.mixed ?? {}).sort(), [...MIXED].sort(), r.webgpu.mixedUnavailable);
  for (const n of MIXED) assert.ok(r.webgpu.mixed![n]!.ms > 0, `webgpu mixed ${n}: ${JSON.stringify(r.webgpu.mixed![n])}`);
  if (subgroupsWanted()) {
    // the deep convs take the split-K subgroup core; they are timed again on the tiled one (subgroups off)
    assert.deepEqual(Object.keys(r.webgpu.plain ?? {}).sort(), ['conv_deep_dgrad', 'conv_deep_fwd']);
    const off = head.indexOf('tfjs subgroups off ms');
    const deep = md
      .split('\n')
      .find((l) => l.startsWith('| conv_deep_fwd |'))!
      .slice(2, -2)
      .split(' | ');
    assert.ok(off > 0 && parseFloat(deep[off]!) > 0, `subgroups-off column: ${deep[off]}`);
  }
  const mcol = head.indexOf('mixed ratio vs bf16');
  const mexpected = r.webgpu.mixed!.unet_train!.ms / r.torch!.results.bf16!.unet_train!.ms;
  assert.ok(Math.abs(parseFloat(row[mcol]!) - mexpected) <= 0.01 * mexpected + 0.5, `mixed ratio ${row[mcol]} vs ${mexpected}`);
});
