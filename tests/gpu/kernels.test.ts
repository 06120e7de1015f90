/**
 * difftalk's WGSL kernels (src/models/kernels) on whatever WebGPU adapter this machine has (in CI: Mesa ≥ 25
 * lavapipe) against the cpu backend (reference: tfjs-cpu's conv2d, matMul and the composite moments/normalise/
 * x·sigmoid(x) GroupNorm+SiLU with autodiff gradients). Shapes from the paper UNet (model channels 256·[1,2,3,4],
 * 32 groups, head dim 32) with the batch reduced and odd spatial sizes; every conv case the UNet and VQ-f4 use (3×3
 * stride 1 pad 1, 3×3 stride 2 pad 1, VQ's asymmetric (0,1,0,1) stride 2, 1×1) plus dilation 2 and 'valid', forward and
 * both gradients (tfjs's conv gradients take dilation 1 only). The filter-gradient reference is patchesᵀ·dy (im2col
 * in plain JS + tfjs-cpu matMul), as tfjs-cpu's own Conv2DBackpropFilter is too slow for these shapes.
 * Tolerance: max |gpu − cpu| ≤ 1e-4 · max(1, max |cpu|) (float32, different summation order; K up to 4608).
 * Where the adapter has `subgroups` (lavapipe does), the deep-K cases here (ResBlock, downsample, 1×1 skip, VQ forward
 * and input gradient; the 768-wide linear) run on the split-K subgroup GEMM core; gemm.test.ts forces each core in turn.
 * Without an adapter the tests skip and say why.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fusedAttention, fusedAttentionAvailable } from '../../src/models/kernels/attention.js';
import { hoistEnables, subgroupsWanted, useSubgroups } from '../../src/models/kernels/features.js';
import { groupNormAct, groupNormActAvailable } from '../../src/models/kernels/group-norm.js';
import { CUSTOM_KERNELS, customKernelsActive, useCustomKernels } from '../../src/models/kernels/index.js';
import { initBackend, tf } from '../../src/util/tf.js';
import { attentionRef, compare, VQ_DOWN_PAD } from './compare.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const TOL = 1e-4;

let unavailable: string | undefined;
try {
  await initBackend('webgpu');
} catch (e) {
  unavailable = `no WebGPU adapter here (${(e as Error).message}); .ci/run installs Mesa ≥ 25 lavapipe`;
}

test('kernels: registered over tfjs-webgpu by default, and switchable back to the stock ones', (t) => {
  if (unavailable) return t.skip(unavailable);
  assert.deepEqual(CUSTOM_KERNELS, ['BatchMatMul', 'Conv2D', 'Conv2DBackpropFilter', 'Conv2DBackpropInput', 'FusedConv2D', '_FusedMatMul']);
  assert.equal(customKernelsActive(), true, 'on by default on webgpu');
  assert.equal(useCustomKernels(false), false);
  assert.equal(tf.getKernel('DifftalkGroupNormStats', 'webgpu'), undefined, 'fused GroupNorm off with them');
  assert.equal(tf.getKernel('DifftalkAttention', 'webgpu'), undefined, 'fused attention off with them');
  assert.equal(useCustomKernels(true), true);
  assert.ok(tf.getKernel('DifftalkGroupNormStats', 'webgpu'));
  assert.ok(tf.getKernel('DifftalkAttention', 'webgpu'));
});

const CONVS: Array<{
  what: string;
  x: number[];
  w: number[];
  stride: number;
  pad: 'same' | 'valid' | number | [[0, 0], [number, number], [number, number], [0, 0]];
  dil?: number;
}> = [
  { what: 'UNet input conv 3×3 s1 p1, 9→256, batch 2, 17×15', x: [2, 17, 15, 9], w: [3, 3, 9, 256], stride: 1, pad: 1 },
  { what: 'ResBlock conv 3×3 s1 p1, 256→256, 13×11', x: [1, 13, 11, 256], w: [3, 3, 256, 256], stride: 1, pad: 1 },
  { what: 'Downsample 3×3 s2 p1, 512→512, 9×9', x: [1, 9, 9, 512], w: [3, 3, 512, 512], stride: 2, pad: 1 },
  { what: 'skip 1×1, 768→512, batch 2, 7×5', x: [2, 7, 5, 768], w: [1, 1, 768, 512], stride: 1, pad: 0 },
  {
    what: 'VQ-f4 downsample (0,1,0,1) s2, 128→128, 15×16',
    x: [1, 15, 16, 128],
    w: [3, 3, 128, 128],
    stride: 2,
    pad: VQ_DOWN_PAD,
  },
  { what: 'dilation 2 same, 6→5, 10×9', x: [1, 10, 9, 6], w: [3, 3, 6, 5], stride: 1, pad: 'same', dil: 2 },
  { what: 'valid 5×3 filter s(2), 7→70, 12×11', x: [2, 12, 11, 7], w: [5, 3, 7, 70], stride: 2, pad: 'valid' },
];

for (const c of CONVS) {
  test(`kernels: conv2d ${c.what} matches cpu`, async (t) => {
    if (unavailable) return t.skip(unavailable);
    const worst = await compare([c.x, c.w], (x, w) => [tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.stride, c.pad, 'NHWC', c.dil ?? 1)]);
    t.diagnostic(`worst ${worst.toExponential(2)}`);
    assert.ok(worst <= TOL, `conv2d ${c.what}: worst ${worst}`);
  });
}

/**
 * The filter gradient on cpu as patchesᵀ·dy: the im2col matrix built in plain JS from computeConv2DInfo's padding,
 * then tfjs-cpu's matMul (tfjs-cpu's own Conv2DBackpropFilter takes ~70 s for the 256-channel case).
 */
function filterGradRef(x: tf.Tensor, w: tf.Tensor, dy: tf.Tensor, stride: number, pad: (typeof CONVS)[number]['pad']): tf.Tensor {
  const [n, h, wd, ci] = x.shape as [number, number, number, number];
  const [kh, kw, , co] = w.shape as [number, number, number, number];
  const info = tf.backend_util.computeConv2DInfo([n, h, wd, ci], [kh, kw, ci, co], stride, 1, pad as 'same');
  const xs = x.dataSync();
  const rows = n * info.outHeight * info.outWidth;
  const cols = kh * kw * ci;
  const patches = new Float32Array(rows * cols);
  for (let b = 0; b < n; b++)
    for (let oy = 0; oy < info.outHeight; oy++)
      for (let ox = 0; ox < info.outWidth; ox++) {
        const r = (b * info.outHeight + oy) * info.outWidth + ox;
        for (let ky = 0; ky < kh; ky++)
          for (let kx = 0; kx < kw; kx++) {
            const iy = oy * stride - info.padInfo.top + ky;
            const ix = ox * stride - info.padInfo.left + kx;
            if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
            const src = ((b * h + iy) * wd + ix) * ci;
            patches.set(xs.subarray(src, src + ci), r * cols + (ky * kw + kx) * ci);
          }
      }
  return tf.matMul(tf.tensor2d(patches, [rows, cols]), dy.reshape([rows, co]), true, false).reshape(w.shape);
}

for (const c of CONVS.filter((cc) => (cc.dil ?? 1) === 1)) {
  test(`kernels: conv2d gradients (backprop to input and to filter) ${c.what} match cpu`, async (t) => {
    if (unavailable) return t.skip(unavailable);
    const y = tf.tidy(() => tf.conv2d(tf.zeros(c.x) as unknown as tf.Tensor4D, tf.zeros(c.w) as unknown as tf.Tensor4D, c.stride, c.pad));
    const yShape = y.shape;
    y.dispose();
    const loss = (dy: tf.Tensor) => (xx: tf.Tensor, ww: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, c.stride, c.pad), dy));
    const worst = await compare(
      [c.x, c.w, yShape],
      (x, w, dy) => tf.grads(loss(dy!))([x!, w!]),
      (x, w, dy) => [tf.grad((xx: tf.Tensor) => loss(dy!)(xx, w!))(x!), filterGradRef(x!, w!, dy!, c.stride, c.pad)],
    );
    t.diagnostic(`worst ${worst.toExponential(2)}`);
    assert.ok(worst <= TOL, `conv2d gradients ${c.what}: worst ${worst}`);
  });
}

const MATMULS: Array<{ what: string; a: number[]; b: number[]; ta?: boolean; tb?: boolean }> = [
  { what: 'linear 77×768 · 768×1024 (odd M)', a: [77, 768], b: [768, 1024] },
  { what: 'attention QKᵀ, 2×8 heads, 64 tokens, d 32 (transposeB)', a: [16, 64, 32], b: [16, 64, 32], tb: true },
  { what: 'attention A·V, 16 × 64×64 · 64×32', a: [16, 64, 64], b: [16, 64, 32] },
  { what: 'weight gradient Xᵀ·dY (transposeA), 100×37 / 100×45', a: [100, 37], b: [100, 45], ta: true },
  { what: 'both transposed, batch 3, 33×17 / 9×33', a: [3, 33, 17], b: [3, 9, 33], ta: true, tb: true },
  { what: 'broadcast rank 4 × rank 2, 2×3×17×33 · 33×65', a: [2, 3, 17, 33], b: [33, 65] },
];

for (const m of MATMULS) {
  test(`kernels: matMul ${m.what} matches cpu`, async (t) => {
    if (unavailable) return t.skip(unavailable);
    const worst = await compare([m.a, m.b], (a, b) => [tf.matMul(a!, b!, m.ta ?? false, m.tb ?? false)]);
    t.diagnostic(`worst ${worst.toExponential(2)}`);
    assert.ok(worst <= TOL, `matMul ${m.what}: worst ${worst}`);
  });
}

/** The reference: blocks.ts's composite GroupNorm (moments over H, W and the group's channels), then x·sigmoid(x). */
function groupNormRef(x: tf.Tensor4D, gamma: tf.Tensor, beta: tf.Tensor, groups: number, eps: number, silu: boolean): tf.Tensor {
  const [b, h, w, c] = x.shape;
  const g = x.reshape([b, h, w, groups, c / groups]);
  const { mean, variance } = tf.moments(g, [1, 2, 4], true);
  const y = tf.add(tf.mul(tf.mul(tf.sub(g, mean), tf.rsqrt(tf.add(variance, eps))).reshape([b, h, w, c]), gamma), beta);
  return silu ? tf.mul(y, tf.sigmoid(y)) : y;
}

test('kernels: enable directives move to the top of the shader; subgroups used where the device has them unless forced off', (t) => {
  assert.equal(
    hoistEnables('struct A { x : f32 };\nenable subgroups;\nfn f() {}\n  enable subgroups;\n'),
    'enable subgroups;\nstruct A { x : f32 };\n\nfn f() {}\n\n',
  );
  assert.equal(hoistEnables('fn f() {} // no directive'), 'fn f() {} // no directive');
  if (unavailable) return t.skip(unavailable);
  const has = [...(tf.backend() as unknown as { device: GPUDevice }).device.features].includes('subgroups');
  assert.equal(subgroupsWanted(), has);
  assert.equal(useSubgroups(false), false);
  assert.equal(useSubgroups(true), has);
});

const NORMS = [
  { what: 'GroupNorm(32)+SiLU, 512 ch, batch 2, 9×7', shape: [2, 9, 7, 512], silu: true, eps: 1e-5 },
  { what: 'GroupNorm(32)+SiLU, 256 ch, 17×16 (more values per group than threads)', shape: [1, 17, 16, 256], silu: true, eps: 1e-5 },
  { what: 'GroupNorm(32) alone (transformer proj_in norm), 768 ch, 5×5, eps 1e-6', shape: [1, 5, 5, 768], silu: false, eps: 1e-6 },
];

for (const n of NORMS)
  for (const sub of [true, false]) {
    test(`kernels: ${n.what}, ${sub ? 'subgroup' : 'plain (forced fallback)'} reductions, forward and gradients w.r.t. x, γ, β match cpu`, async (t) => {
      if (unavailable) return t.skip(unavailable);
      if (useSubgroups(sub) !== sub) return t.skip('this adapter has no `subgroups` feature (lavapipe ≥ Mesa 25 has)');
      t.after(() => useSubgroups(true));
      const c = n.shape[3]!;
      const dyShape = n.shape;
      const worst = await compare([n.shape, [c], [c], dyShape], (x, gm, bt, dy) => {
        // γ around 1 and β small, as trained norms; dy weights the loss so every gradient term matters
        const gamma = tf.add(1, tf.mul(gm!, 0.5));
        const beta = tf.mul(bt!, 0.2);
        const fused = tf.getBackend() === 'webgpu';
        if (fused) assert.ok(groupNormActAvailable(x as tf.Tensor4D, 32));
        const f = (xx: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) =>
          tf.sum(tf.mul(fused ? groupNormAct(xx as tf.Tensor4D, gg, bb, 32, n.eps, n.silu) : groupNormRef(xx as tf.Tensor4D, gg, bb, 32, n.eps, n.silu), dy!));
        const y = fused
          ? groupNormAct(tf.mul(x!, 3) as tf.Tensor4D, gamma, beta, 32, n.eps, n.silu)
          : groupNormRef(tf.mul(x!, 3) as tf.Tensor4D, gamma, beta, 32, n.eps, n.silu);
        const grads = tf.grads(f)([tf.mul(x!, 3), gamma, beta]);
        return [y, ...grads];
      });
      t.diagnostic(`worst ${worst.toExponential(2)}`);
      assert.ok(worst <= TOL, `${n.what}: worst ${worst}`);
    });
  }

test('kernels: matMul and conv2d of float32 tensors cast from int32 (their GPU buffer stays int32) match cpu', async (t) => {
  if (unavailable) return t.skip(unavailable);
  const worst = await compare(
    [
      [19, 23],
      [23, 5],
      [1, 6, 7, 3],
    ],
    (a, b, x) => {
      const ai = tf.cast(tf.round(tf.mul(a!, 4)), 'int32');
      const xi = tf.cast(tf.round(tf.mul(x!, 4)), 'int32');
      const w = tf
        .reshape(tf.slice(b!, [0, 0], [9, 5]), [1, 3, 3, 5])
        .transpose([1, 2, 0, 3])
        .reshape([3, 3, 1, 5])
        .tile([1, 1, 3, 1]);
      return [tf.matMul(tf.cast(ai, 'float32'), b!), tf.conv2d(tf.cast(xi, 'float32') as tf.Tensor4D, w as tf.Tensor4D, 1, 'same')];
    },
  );
  t.diagnostic(`worst ${worst.toExponential(2)}`);
  assert.ok(worst <= TOL, `worst ${worst}`);
});

const ATTNS = [
  { what: 'self-attention at 16² (256 tokens), 768 ch = 24 heads × 32', q: [1, 256, 768], m: 256, heads: 24 },
  { what: 'cross-attention, 64 queries (8²), 11 context tokens, 1024 ch = 32 heads × 32, batch 2', q: [2, 64, 1024], m: 11, heads: 32 },
  { what: 'odd sizes: 77 queries, 45 keys, 3 heads × 64', q: [1, 77, 192], m: 45, heads: 3 },
  { what: 'self-attention at 32² (1024 tokens, the longest: ds 2 of a 64² latent), 2 of the 16 heads × 32', q: [1, 1024, 64], m: 1024, heads: 2 },
  { what: 'odd sizes: 15×17 = 255 queries, 97 keys, 2 heads × 20', q: [1, 255, 40], m: 97, heads: 2 },
];

for (const a of ATTNS)
  for (const sub of [true, false]) {
    test(`kernels: fused attention ${a.what}, ${sub ? 'subgroup (a quad per row)' : 'plain (a thread per row)'} variant, forward and gradients w.r.t. q, k, v match cpu`, async (t) => {
      if (unavailable) return t.skip(unavailable);
      if (useSubgroups(sub) !== sub) return t.skip('this adapter has no `subgroups` feature (lavapipe ≥ Mesa 25 has)');
      t.after(() => useSubgroups(true));
      const kv = [a.q[0]!, a.m, a.q[2]!];
      const worst = await compare([a.q, kv, kv, a.q], (q, k, v, dy) => {
        // scores of a few units, as trained attention: softmax neither uniform nor one-hot
        const [qs, ks] = [tf.mul(q!, 2), tf.mul(k!, 2)];
        const fused = tf.getBackend() === 'webgpu';
        if (fused) assert.ok(fusedAttentionAvailable(qs, ks, a.heads));
        const f = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) =>
          fused ? fusedAttention(qq as tf.Tensor3D, kk as tf.Tensor3D, vv as tf.Tensor3D, a.heads) : attentionRef(qq, kk, vv, a.heads);
        const loss = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) => tf.sum(tf.mul(f(qq, kk, vv), dy!));
        return [f(qs, ks, v!), ...tf.grads(loss)([qs, ks, v!])];
      });
      t.diagnostic(`worst ${worst.toExponential(2)}`);
      assert.ok(worst <= TOL, `attention ${a.what}: worst ${worst}`);
    });
  }
