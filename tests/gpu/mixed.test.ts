/**
 * The 'mixed' precision GEMM kernels (src/models/kernels: matmul and the three conv2d passes with f16 operands and
 * f32 accumulation) on this machine's adapter (CI: Mesa ≥ 25 lavapipe, which offers shader-f16), each against the cpu
 * backend twice:
 * - on the inputs rounded to f16 first (f16Round below, round-to-nearest-even, independent of the GPU): then the
 *   kernel's own rounding changes nothing and only the f32 summation order differs, so the fp32 tolerance holds:
 *   max |gpu − cpu| ≤ 1e-4 · max(1, max |cpu|). This proves the semantics (operands f16, sums f32).
 * - on the raw f32 inputs: max |gpu − cpu| ≤ 2e-3 · max(1, max |cpu|). Why 2e-3: rounding both operands to f16 makes
 *   each product off by at most 2·2⁻¹¹ ≈ 9.8e-4 relative, with random signs, so a K-term dot product is off by about
 *   √K · 9.8e-4 · rms(a·b)/√3 while its largest output is about 3 · √K · rms(a·b) (inputs uniform in [-1, 1)):
 *   ≈ 2e-4 relative to max |output|, independent of K; 2e-3 leaves a 10× margin. The test also checks the difference
 *   is above 1e-6 (the f16 rounding really happens: an fp32 kernel would be within ~1e-7 here).
 * - the overflow contract the loss scaler relies on: an operand beyond f16's range gives ±inf, one within it stays exact.
 * Cases whose shape picks the split-K subgroup GEMM core (gemm.ts) where the adapter has `subgroups` (lavapipe does)
 * run twice, on it and forced onto the tiled core; the overflow contract is checked on both cores.
 * Shapes: the paper UNet's linears and attention products, a ResBlock conv (channels reduced to 64 so that tfjs-cpu's
 * filter gradient stays fast), VQ-f4's asymmetric stride-2 conv and a 1×1 skip, odd sizes included.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { fusedAttention, fusedAttentionAvailable } from '../../src/models/kernels/attention.js';
import { subgroupsWanted, useSubgroups } from '../../src/models/kernels/features.js';
import { gemmVariant, type GemmVariant } from '../../src/models/kernels/gemm.js';
import { customKernelsActive, mixedUnavailable, setKernelPrecision } from '../../src/models/kernels/index.js';
import { initBackend, tf } from '../../src/util/tf.js';
import { attentionRef, maxRelDiff, size, values, VQ_DOWN_PAD } from './compare.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const TOL_F16_INPUTS = 1e-4;
const TOL_F32_INPUTS = 2e-3;
const MIN_ROUNDING = 1e-6;

let unavailable: string | undefined;
try {
  await initBackend('webgpu');
  unavailable = mixedUnavailable();
} catch (e) {
  unavailable = `no WebGPU adapter here (${(e as Error).message}); .ci/run installs Mesa ≥ 25 lavapipe`;
}
after(() => setKernelPrecision('fp32'));

/** x rounded to the nearest IEEE binary16 value (ties to even; ±inf from 65520 on), as a JS number. */
function f16Round(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  if (a >= 65520) return Math.sign(x) * Infinity;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  e = Math.max(e, -14); // subnormals: spacing 2^-24
  const q = 2 ** (e - 10);
  const r = a / q;
  let f = Math.floor(r);
  const d = r - f;
  if (d > 0.5 || (d === 0.5 && f % 2 === 1)) f++;
  return Math.sign(x) * f * q;
}

/**
 * fn on webgpu with mixed kernels; on cpu with f16-rounded and with raw inputs: [worst vs rounded, worst vs raw].
 * `setup`: run the webgpu side once per entry (a kernel variant), each against the same cpu results; one pair each.
 */
async function compareMixed(shapes: number[][], fn: (...xs: tf.Tensor[]) => tf.Tensor[]): Promise<[number, number]>;
async function compareMixed(shapes: number[][], fn: (...xs: tf.Tensor[]) => tf.Tensor[], setup: Array<() => void>): Promise<Array<[number, number]>>;
async function compareMixed(
  shapes: number[][],
  fn: (...xs: tf.Tensor[]) => tf.Tensor[],
  setup?: Array<() => void>,
): Promise<[number, number] | Array<[number, number]>> {
  const raw = shapes.map((s, i) => values(size(s), 101 + 37 * i));
  const rounded = raw.map((d) => d.map(f16Round));
  const run = async (backend: string, data: Float32Array[]) => {
    await tf.setBackend(backend);
    const outs = tf.tidy(() => fn(...shapes.map((s, i) => tf.tensor(data[i]!, s))));
    const res = await Promise.all(outs.map((t) => t.data()));
    tf.dispose(outs);
    return res;
  };
  assert.ok(customKernelsActive());
  setKernelPrecision('mixed');
  try {
    const gpus = [];
    for (const s of setup ?? [() => {}]) {
      s();
      gpus.push([await run('webgpu', rounded), await run('webgpu', raw)] as const);
    }
    const cpuRounded = await run('cpu', rounded);
    const cpu = await run('cpu', raw);
    const pairs = gpus.map(([gr, g]): [number, number] => [maxRelDiff(gr, cpuRounded), maxRelDiff(g, cpu)]);
    return setup ? pairs : pairs[0]!;
  } finally {
    setKernelPrecision('fp32');
    await tf.setBackend('webgpu');
  }
}

function check(t: { diagnostic(s: string): void }, what: string, [vsRounded, vsRaw]: [number, number]): void {
  t.diagnostic(`${what}: vs f16-rounded inputs ${vsRounded.toExponential(2)}, vs f32 inputs ${vsRaw.toExponential(2)}`);
  assert.ok(vsRounded <= TOL_F16_INPUTS, `${what}: vs f16-rounded inputs ${vsRounded}`);
  assert.ok(vsRaw <= TOL_F32_INPUTS, `${what}: vs f32 inputs ${vsRaw}`);
  assert.ok(vsRaw > MIN_ROUNDING, `${what}: vs f32 inputs ${vsRaw}, so small that the operands were not rounded to f16`);
}

test('f16Round (the reference rounding) on hand-checked values', () => {
  assert.equal(f16Round(1 + 2 ** -11), 1); // tie → even
  assert.equal(f16Round(1 + 3 * 2 ** -11), 1 + 2 ** -9); // tie → even (up)
  assert.equal(f16Round(0.1), 0.0999755859375);
  assert.equal(f16Round(65519), 65504);
  assert.equal(f16Round(-65520), -Infinity);
  assert.equal(f16Round(2 ** -25 * 3), 2 ** -23); // subnormal
});

const MATMULS = [
  { what: 'linear 77×768 · 768×1024 (odd M)', a: [77, 768], b: [768, 1024] },
  { what: 'attention QKᵀ, 16 × 64×32 (transposeB)', a: [16, 64, 32], b: [16, 64, 32], tb: true },
  { what: 'weight gradient Xᵀ·dY (transposeA), 100×37 / 100×45', a: [100, 37], b: [100, 45], ta: true },
  { what: 'both transposed, batch 3, 33×17 / 9×33', a: [3, 33, 17], b: [3, 9, 33], ta: true, tb: true },
];

/** The GEMM cores a case is run on: both where the shape picks split-K with subgroups (then also forced tiled). */
function cores(...mnk: Array<[number, number, number]>): Array<{ sub: boolean; core: GemmVariant }> {
  const split = !unavailable && subgroupsWanted() && mnk.some(([m, n, k]) => gemmVariant(m, n, k, 1) === 'splitk');
  return split
    ? [
        { sub: true, core: 'splitk' },
        { sub: false, core: 'tiled' },
      ]
    : [{ sub: true, core: 'tiled' }];
}

for (const m of MATMULS) {
  const [ra, rb] = [m.a.length, m.b.length];
  const mnk: [number, number, number] = [m.ta ? m.a[ra - 1]! : m.a[ra - 2]!, m.tb ? m.b[rb - 2]! : m.b[rb - 1]!, m.ta ? m.a[ra - 2]! : m.a[ra - 1]!];
  for (const { sub, core } of cores(mnk))
    test(`mixed (${core} core): matMul ${m.what} matches cpu`, async (t) => {
      if (unavailable) return t.skip(unavailable);
      useSubgroups(sub);
      t.after(() => useSubgroups(true));
      check(t, m.what, await compareMixed([m.a, m.b], (a, b) => [tf.matMul(a!, b!, m.ta ?? false, m.tb ?? false)]));
    });
}

const CONVS: Array<{ what: string; x: number[]; w: number[]; stride: number; pad: number | [[0, 0], [0, 1], [0, 1], [0, 0]] }> = [
  { what: 'ResBlock 3×3 s1 p1, 64→64, batch 2, 13×11', x: [2, 13, 11, 64], w: [3, 3, 64, 64], stride: 1, pad: 1 },
  {
    what: 'VQ-f4 downsample (0,1,0,1) s2, 32→32, 15×16',
    x: [1, 15, 16, 32],
    w: [3, 3, 32, 32],
    stride: 2,
    pad: VQ_DOWN_PAD,
  },
  { what: 'skip 1×1, 96→64, 7×5', x: [1, 7, 5, 96], w: [1, 1, 96, 64], stride: 1, pad: 0 },
];

for (const c of CONVS) {
  const [kh, kw, ci, co] = c.w;
  const pixels = c.x[0]! * c.x[1]! * c.x[2]!; // input pixels; output pixels ≤ these (an upper bound is enough here)
  for (const { sub, core } of cores([pixels, co!, kh! * kw! * ci!], [pixels, ci!, kh! * kw! * co!]))
    test(`mixed (${core} core): conv2d ${c.what}, forward and both gradients, match cpu`, async (t) => {
      if (unavailable) return t.skip(unavailable);
      useSubgroups(sub);
      t.after(() => useSubgroups(true));
      const yShape = tf.tidy(() => tf.conv2d(tf.zeros(c.x) as unknown as tf.Tensor4D, tf.zeros(c.w) as unknown as tf.Tensor4D, c.stride, c.pad).shape);
      const conv = (x: tf.Tensor, w: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.stride, c.pad);
      const res = await compareMixed([c.x, c.w, yShape], (x, w, dy) => [
        conv(x!, w!),
        ...tf.grads((xx: tf.Tensor, ww: tf.Tensor) => tf.sum(tf.mul(conv(xx, ww), dy!)))([x!, w!]),
      ]);
      check(t, c.what, res);
    });
}

test('mixed: an operand beyond f16 range gives ±inf (what the loss scaler detects); one within it stays exact', async (t) => {
  if (unavailable) return t.skip(unavailable);
  setKernelPrecision('mixed');
  try {
    const out = tf.matMul(tf.tensor2d([70000, 0, -70000, 0, 60000, 0, 65519, 0], [4, 2]), tf.tensor2d([1, 1], [2, 1]));
    assert.deepEqual([...(await out.data())], [Infinity, -Infinity, 60000, 65504]);
    out.dispose();
    setKernelPrecision('fp32');
    const f32 = tf.matMul(tf.tensor2d([70000, 0], [1, 2]), tf.tensor2d([1, 1], [2, 1]));
    assert.deepEqual([...(await f32.data())], [70000]);
    f32.dispose();
    if (subgroupsWanted()) {
      // the split-K core (K = 512, one tile): the overflow survives its subgroup reduction
      setKernelPrecision('mixed');
      assert.equal(gemmVariant(2, 1, 512, 1), 'splitk');
      const row = (v: number) => Array.from({ length: 512 }, (_, i) => (i === 300 ? v : 0.5));
      const split = tf.matMul(tf.tensor2d([...row(70000), ...row(-70000)], [2, 512]), tf.ones([512, 1]));
      assert.deepEqual([...(await split.data())], [Infinity, -Infinity]);
      split.dispose();
    }
  } finally {
    setKernelPrecision('fp32');
  }
});

// the 1024-token case (the longest, and the slowest on lavapipe) runs the default variant only; the others run both
const ATTNS: Array<{ what: string; q: number[]; m: number; heads: number; defaultOnly?: true }> = [
  { what: 'self-attention at 32² (1024 tokens), 2 heads × 32', q: [1, 1024, 64], m: 1024, heads: 2, defaultOnly: true },
  { what: 'self-attention at 16² (256 tokens), 8 heads × 32', q: [1, 256, 256], m: 256, heads: 8 },
  { what: 'cross-attention, 64 queries, 11 context tokens, 32 heads × 32, batch 2', q: [2, 64, 1024], m: 11, heads: 32 },
  { what: 'odd sizes: 77 queries, 45 keys, 3 heads × 64', q: [1, 77, 192], m: 45, heads: 3 },
  { what: 'odd sizes: 255 queries, 97 keys, 2 heads × 20', q: [1, 255, 40], m: 97, heads: 2 },
];

/** Fused attention on webgpu, the composite reference elsewhere: [output, dq, dk, dv] for the loss Σ out·dy. */
function attentionAndGrads(heads: number) {
  return (q: tf.Tensor | undefined, k: tf.Tensor | undefined, v: tf.Tensor | undefined, dy: tf.Tensor | undefined): tf.Tensor[] => {
    // q, k × 2: scores of a few units, as trained attention (softmax neither uniform nor one-hot); × 2 is exact in f16
    const [qs, ks] = [tf.mul(q!, 2), tf.mul(k!, 2)];
    const fused = tf.getBackend() === 'webgpu';
    if (fused) assert.ok(fusedAttentionAvailable(qs, ks, heads));
    const f = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) =>
      fused ? fusedAttention(qq as tf.Tensor3D, kk as tf.Tensor3D, vv as tf.Tensor3D, heads) : attentionRef(qq, kk, vv, heads);
    const loss = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) => tf.sum(tf.mul(f(qq, kk, vv), dy!));
    return [f(qs, ks, v!), ...tf.grads(loss)([qs, ks, v!])];
  };
}

for (const a of ATTNS) {
  test(`mixed: fused attention ${a.what}, ${a.defaultOnly ? 'default variant' : 'subgroup and plain variants'}, forward and gradients w.r.t. q, k, v, match cpu`, async (t) => {
    if (unavailable) return t.skip(unavailable);
    t.after(() => useSubgroups(true));
    const kv = [a.q[0]!, a.m, a.q[2]!];
    const fn = attentionAndGrads(a.heads);
    const variants = a.defaultOnly ? [useSubgroups(true)] : [true, false].filter((sub) => useSubgroups(sub) === sub); // subgroup: where the adapter has it
    const res = await compareMixed(
      [a.q, kv, kv, a.q],
      (q, k, v, dy) => fn(q, k, v, dy),
      variants.map((sub) => () => useSubgroups(sub)),
    );
    res.forEach((r, i) => check(t, `${a.what}, ${variants[i] ? 'subgroup' : 'plain'} variant`, r));
  });
}

test('mixed: attention with Q beyond f16 range, or dO beyond it, gives non-finite results (the loss scaler skips); fp32 stays finite', async (t) => {
  if (unavailable) return t.skip(unavailable);
  const [n, m, heads, d] = [5, 7, 1, 32]; // d 32: the programs the cases above compiled
  const q = tf.tensor3d(values(n * heads * d, 3), [1, n, heads * d]);
  const k = tf.tensor3d(values(m * heads * d, 4), [1, m, heads * d]);
  const v = tf.tensor3d(values(m * heads * d, 5), [1, m, heads * d]);
  const big = (x: tf.Tensor3D) => tf.add(x, tf.oneHot([0], x.size).reshape(x.shape).mul(70000)) as tf.Tensor3D;
  const grads = (dy: tf.Tensor) =>
    tf.grads((qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) =>
      tf.sum(tf.mul(fusedAttention(qq as tf.Tensor3D, kk as tf.Tensor3D, vv as tf.Tensor3D, heads), dy)),
    )([q, k, v]);
  const finite = async (ts: tf.Tensor[]) => {
    const data = await Promise.all(ts.map((x) => x.data()));
    tf.dispose(ts);
    return data.map((a) => a.every(Number.isFinite));
  };
  try {
    for (const p of ['mixed', 'fp32'] as const) {
      setKernelPrecision(p);
      const fwd = await finite([fusedAttention(big(q), k, v, heads)]);
      const bwd = await finite(grads(big(tf.onesLike(q) as tf.Tensor3D)));
      const ok = p === 'fp32';
      assert.deepEqual(fwd, [ok], `${p}: forward with a Q element of 70000`);
      assert.deepEqual(bwd, [ok, ok, ok], `${p}: dq, dk, dv with a dO element of 70000`);
    }
  } finally {
    setKernelPrecision('fp32');
    tf.dispose([q, k, v]);
  }
});
