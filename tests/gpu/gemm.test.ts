/**
 * The two GEMM cores of src/models/kernels/gemm.ts, each forced in turn, against the cpu backend on this machine's
 * adapter (CI: Mesa ≥ 25 lavapipe, subgroup size 8): the split-K core with subgroup reduction (chosen where the
 * device has `subgroups`, the tiled grid is small and K deep) and the tiled core (`useSubgroups(false)`), at the shapes
 * where the choice matters: the paper UNet's deep layers at batch 1 (512 channels at 8×8, K = 4608; 384 at odd 7×5), a stride-2 downsample and VQ-f4's asymmetric (0,1,0,1) stride 2 at odd sizes, a 1×1 skip, and matmuls with
 * transposes (A read along m, B along k) and batches. Conv cases: forward and the gradient to the input (the two
 * passes with deep K there; their filter gradients reduce over the few output pixels, tiled either way, and are covered
 * in kernels.test.ts), plus a filter gradient whose K (output pixels) is deep. Then the fused epilogue (FusedConv2D,
 * _FusedMatMul: bias per column or scalar, tfjs's activations except prelu) under both cores, the fused ops'
 * gradients (tfjs's own formulas over our passes), and blocks.conv2d / blocks.linear, which call them on webgpu.
 * Tolerance, as kernels.test.ts: max |gpu − cpu| ≤ 1e-4 · max(1, max |cpu|) (float32, another summation order).
 * The 'mixed' (f16 operand) variants of both cores are in mixed.test.ts. Without an adapter the tests skip; without
 * `subgroups` the split-K half skips.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { useSubgroups } from '../../src/models/kernels/features.js';
import { conv2d, linear, Params, spec } from '../../src/models/blocks.js';
import { gemmVariant, type GemmVariant } from '../../src/models/kernels/gemm.js';
import { initBackend, tf } from '../../src/util/tf.js';
import { compare, VQ_DOWN_PAD } from './compare.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const TOL = 1e-4;

let unavailable: string | undefined;
try {
  await initBackend('webgpu');
} catch (e) {
  unavailable = `no WebGPU adapter here (${(e as Error).message}); .ci/run installs Mesa ≥ 25 lavapipe`;
}

type Pad = number | tf.backend_util.ExplicitPadding;
const CONVS: Array<{ what: string; x: [number, number, number, number]; w: [number, number, number, number]; stride: number; pad: Pad }> = [
  { what: 'ResBlock 3×3 s1 p1, 512→512 at 8×8, batch 1 (deepest level at 64² latent)', x: [1, 8, 8, 512], w: [3, 3, 512, 512], stride: 1, pad: 1 },
  { what: 'ResBlock 3×3 s1 p1, 384→384 at odd 7×5', x: [1, 7, 5, 384], w: [3, 3, 384, 384], stride: 1, pad: 1 },
  { what: 'Downsample 3×3 s2 p1, 256→256, 11×9', x: [1, 11, 9, 256], w: [3, 3, 256, 256], stride: 2, pad: 1 },
  {
    what: 'VQ-f4 downsample (0,1,0,1) s2, 64→64, 13×11',
    x: [1, 13, 11, 64],
    w: [3, 3, 64, 64],
    stride: 2,
    pad: VQ_DOWN_PAD,
  },
  { what: 'skip 1×1, 1024→512, 6×6', x: [1, 6, 6, 1024], w: [1, 1, 1024, 512], stride: 1, pad: 0 },
];

/** (M, N, K) of the forward pass and of the gradient to the input. */
function convGemms(c: (typeof CONVS)[number]): Array<[number, number, number]> {
  const info = tf.backend_util.computeConv2DInfo(c.x, c.w, c.stride, 1, c.pad);
  const [kh, kw, ci, co] = c.w;
  return [
    [c.x[0] * info.outHeight * info.outWidth, co, kh * kw * ci],
    [c.x[0] * c.x[1] * c.x[2], ci, kh * kw * co],
  ];
}

const VARIANTS: Array<{ sub: boolean; want: GemmVariant }> = [
  { sub: true, want: 'splitk' },
  { sub: false, want: 'tiled' },
];

/** Force a variant for one test; false when this adapter cannot run it. */
function force(t: { after(fn: () => void): void }, sub: boolean): boolean {
  if (useSubgroups(sub) !== sub) return false;
  t.after(() => useSubgroups(true));
  return true;
}

for (const c of CONVS)
  for (const v of VARIANTS) {
    test(`gemm ${v.want}: conv2d ${c.what}, forward and gradient to the input, match cpu`, async (t) => {
      if (unavailable) return t.skip(unavailable);
      if (!force(t, v.sub)) return t.skip('this adapter has no `subgroups` feature (lavapipe ≥ Mesa 25 has)');
      for (const [m, n, k] of convGemms(c)) assert.equal(gemmVariant(m, n, k, 1), v.want, `M ${m}, N ${n}, K ${k}`);
      const yShape = tf.tidy(() => tf.conv2d(tf.zeros(c.x) as tf.Tensor4D, tf.zeros(c.w) as tf.Tensor4D, c.stride, c.pad).shape);
      const conv = (x: tf.Tensor, w: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.stride, c.pad);
      const worst = await compare([c.x, c.w, yShape], (x, w, dy) => [conv(x!, w!), tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(conv(xx, w!), dy!)))(x!)]);
      t.diagnostic(`worst ${worst.toExponential(2)}`);
      assert.ok(worst <= TOL, `${c.what}: worst ${worst}`);
    });
  }

for (const v of VARIANTS) {
  test(`gemm ${v.want}: conv2d gradient to the filter with deep K (3×3 16→8, batch 2, 16×16: K = 512 output pixels, M = 144) matches cpu`, async (t) => {
    if (unavailable) return t.skip(unavailable);
    if (!force(t, v.sub)) return t.skip('this adapter has no `subgroups` feature');
    assert.equal(gemmVariant(144, 8, 512, 1), v.want);
    const worst = await compare(
      [
        [2, 16, 16, 16],
        [3, 3, 16, 8],
        [2, 16, 16, 8],
      ],
      (x, w, dy) => [tf.grad((ww: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(x as tf.Tensor4D, ww as tf.Tensor4D, 1, 'same'), dy!)))(w!)],
    );
    t.diagnostic(`worst ${worst.toExponential(2)}`);
    assert.ok(worst <= TOL, `filter gradient: worst ${worst}`);
  });
}

test('gemm: the split-K core really runs (its result differs in the last bits from the tiled one: another summation order)', async (t) => {
  if (unavailable) return t.skip(unavailable);
  if (!force(t, true)) return t.skip('this adapter has no `subgroups` feature');
  const c = CONVS[0]!;
  const x = tf.randomNormal(c.x, 0, 1, 'float32', 1);
  const w = tf.randomNormal(c.w, 0, 0.05, 'float32', 2);
  const split = await tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 1).data();
  useSubgroups(false);
  const tiled = await tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 1).data();
  tf.dispose([x, w]);
  let differ = 0;
  let worst = 0;
  for (let i = 0; i < tiled.length; i++) {
    if (split[i] !== tiled[i]) differ++;
    worst = Math.max(worst, Math.abs(split[i]! - tiled[i]!));
  }
  t.diagnostic(`${differ} of ${tiled.length} outputs differ, by ≤ ${worst.toExponential(2)}`);
  assert.ok(differ > 0, 'split-K and tiled gave bit-identical results: the split-K core did not run');
  assert.ok(worst < 1e-4);
});

const MATMULS: Array<{ what: string; a: number[]; b: number[]; ta?: boolean; tb?: boolean }> = [
  { what: 'transposeA (A read along m), batch 3, 600×37 / 600×45', a: [3, 600, 37], b: [3, 600, 45], ta: true },
  { what: 'transposeB (B read along k), batch 2, 50×520 · (33×520)ᵀ', a: [2, 50, 520], b: [2, 33, 520], tb: true },
  { what: 'broadcast rank 3 × rank 2, 2×13×1024 · 1024×70', a: [2, 13, 1024], b: [1024, 70] },
];

for (const m of MATMULS)
  for (const v of VARIANTS) {
    test(`gemm ${v.want}: matMul ${m.what} matches cpu`, async (t) => {
      if (unavailable) return t.skip(unavailable);
      if (!force(t, v.sub)) return t.skip('this adapter has no `subgroups` feature');
      const worst = await compare([m.a, m.b], (a, b) => [tf.matMul(a!, b!, m.ta ?? false, m.tb ?? false)]);
      t.diagnostic(`worst ${worst.toExponential(2)}`);
      assert.ok(worst <= TOL, `matMul ${m.what}: worst ${worst}`);
    });
  }

const ACTIVATIONS = ['linear', 'relu', 'relu6', 'elu', 'sigmoid', 'leakyrelu'] as const;

for (const v of VARIANTS) {
  test(`gemm ${v.want}: fused bias + each activation in the store (FusedConv2D 128→128 at 8×8, _FusedMatMul 13×1024 · 1024×70) match cpu`, async (t) => {
    if (unavailable) return t.skip(unavailable);
    if (!force(t, v.sub)) return t.skip('this adapter has no `subgroups` feature');
    assert.equal(gemmVariant(64, 128, 1152, 1), v.want);
    const worst = await compare([[1, 8, 8, 128], [3, 3, 128, 128], [128], [13, 1024], [1024, 70], [70]], (x, w, bc, a, b, bm) => {
      const outs: tf.Tensor[] = [];
      // weights scaled so that the pre-activations are a few units (std ≈ 1–2): every activation's range is used
      // (relu6's clamp, elu's and leakyrelu's negative side) and bounded outputs are not compared on a scale of 100
      const filter = tf.mul(w!, 0.1) as tf.Tensor4D;
      const bw = tf.mul(b!, 0.2) as tf.Tensor2D;
      for (const activation of ACTIVATIONS) {
        outs.push(tf.fused.conv2d({ x: x as tf.Tensor4D, filter, strides: 1, pad: 'same', bias: bc, activation, leakyreluAlpha: 0.15 }));
        outs.push(tf.fused.matMul({ a: a as tf.Tensor2D, b: bw, bias: bm, activation, leakyreluAlpha: 0.15 }));
      }
      // a scalar bias
      outs.push(tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias: tf.scalar(0.75) }));
      return outs;
    });
    t.diagnostic(`worst ${worst.toExponential(2)}`);
    assert.ok(worst <= TOL, `fused epilogue: worst ${worst}`);
  });
}

test('gemm: fused conv and linear with bias (as blocks.conv2d / blocks.linear call them), gradients w.r.t. input, weight and bias match cpu', async (t) => {
  if (unavailable) return t.skip(unavailable);
  const x: [number, number, number, number] = [2, 9, 7, 40];
  const w: [number, number, number, number] = [3, 3, 40, 24];
  const pad: Pad = [
    [0, 0],
    [1, 1],
    [1, 1],
    [0, 0],
  ];
  const worst = await compare([x, w, [24], [2, 9, 7, 24], [63, 40], [40, 30], [30], [63, 30]], (xx, ww, bc, dy, a, b, bm, dm) => {
    const conv = (i: tf.Tensor, f: tf.Tensor, bias: tf.Tensor) =>
      tf.sum(tf.mul(tf.fused.conv2d({ x: i as tf.Tensor4D, filter: f as tf.Tensor4D, strides: 1, pad, bias }), dy!));
    const lin = (i: tf.Tensor, f: tf.Tensor, bias: tf.Tensor) => tf.sum(tf.mul(tf.fused.matMul({ a: i as tf.Tensor2D, b: f as tf.Tensor2D, bias }), dm!));
    return [...tf.grads(conv)([xx!, ww!, bc!]), ...tf.grads(lin)([a!, b!, bm!])];
  });
  t.diagnostic(`worst ${worst.toExponential(2)}`);
  assert.ok(worst <= TOL, `fused gradients: worst ${worst}`);
});

test('gemm: blocks.conv2d (3×3 p1, VQ (0,1,0,1) s2) and blocks.linear with bias: fused on webgpu, im2col + add on cpu; outputs and gradients w.r.t. input and every parameter match', async (t) => {
  if (unavailable) return t.skip(unavailable);
  const specs = [...spec.conv2d('c', 24, 40, 3), ...spec.conv2d('d', 40, 16, 3), ...spec.linear('l', 16, 12)];
  const names = specs.map((s) => s.name);
  const p0 = new Params(specs, 'det');
  const x0 = tf.ones([1, 5, 5, 24]) as tf.Tensor4D;
  const { kernelNames } = await tf.profile(() => linear(p0, 'l', conv2d(p0, 'd', conv2d(p0, 'c', x0))));
  p0.vars.forEach((v) => v.dispose());
  x0.dispose();
  assert.ok(kernelNames.includes('FusedConv2D') && kernelNames.includes('_FusedMatMul'), `webgpu runs the fused kernels: ${kernelNames.join(', ')}`);
  assert.ok(!kernelNames.includes('Add'), 'no separate bias add');
  const worst = await compare([[2, 11, 9, 24]], (x) => {
    const p = new Params(specs, 'det');
    try {
      const { value, grads } = tf.variableGrads(() => {
        const h = conv2d(p, 'c', x as tf.Tensor4D);
        const d = conv2d(p, 'd', h, { stride: 2, pad: [0, 1, 0, 1] });
        return tf.sum(tf.mul(linear(p, 'l', d), tf.linspace(-1, 1, 12)));
      }, [...p.vars.values()]);
      const gx = tf.grad((xx: tf.Tensor) => tf.sum(linear(p, 'l', conv2d(p, 'd', conv2d(p, 'c', xx as tf.Tensor4D), { stride: 2, pad: [0, 1, 0, 1] }))))(x!);
      return [value, gx, ...names.map((n) => grads[p.get(n).name]!)];
    } finally {
      p.vars.forEach((v) => v.dispose());
    }
  });
  t.diagnostic(`worst ${worst.toExponential(2)}`);
  assert.ok(worst <= TOL, `blocks with fused bias: worst ${worst}`);
});
