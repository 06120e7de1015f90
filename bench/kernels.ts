/**
 * difftalk's WebGPU kernels (src/models/kernels) against tfjs-webgpu's stock kernels, op by op, on the same adapter
 * (the ops of ../shared/docs/gpu.md's per-op table). On lavapipe (a CPU) the ratio says nothing about a GPU; it is
 * printed anyway so the same entry runs unchanged on one. BENCH_KERNEL_SHAPES=gpu uses gpu.md's shapes (B=16,
 * 128 ch at 64², GroupNorm 512 ch at 32², attention 1024 tokens × 16 heads, matmul 4096²); the default is a small set that lavapipe runs in about a minute.
 * GEMM ops (matmul, the conv passes) and fused attention are also timed under 'mixed' precision (f16 operands, f32
 * sums; attention's softmax statistics f32) where the adapter has shader-f16, with the difference to our fp32 result (max |mixed − fp32| / max(1, max |fp32|)): on lavapipe that
 * column is the check, the time says nothing.
 * The split-K subgroup GEMM core (a deep 8² conv at sampling batch: 1024 ch, B=2 with gpu shapes; 256 ch, B=1 here)
 * is set against our own tiled core (subgroups off), and the fused conv + bias against our conv followed by tf.add.
 */
import { fusedAttention } from '../src/models/kernels/attention.js';
import { useSubgroups } from '../src/models/kernels/features.js';
import { groupNormAct } from '../src/models/kernels/group-norm.js';
import { mixedUnavailable, setKernelPrecision, useCustomKernels } from '../src/models/kernels/index.js';
import { initBackend, tf } from '../src/util/tf.js';

export interface KernelRow {
  op: string;
  oursMs: number;
  stockMs: number;
  /** GEMM and attention ops where the adapter has shader-f16: ms under 'mixed', and its max difference to fp32 relative to max(1, max |fp32|). */
  mixedMs?: number;
  mixedDiff?: number;
}

async function readAll(fn: () => tf.Tensor[]): Promise<Float32Array[]> {
  const outs = tf.tidy(fn);
  const data = (await Promise.all(outs.map((o) => o.data()))) as Float32Array[];
  tf.dispose(outs);
  return data;
}

function relDiff(a: Float32Array[], b: Float32Array[]): number {
  let worst = 0;
  b.forEach((bb, i) => {
    const scale = bb.reduce((m, v) => Math.max(m, Math.abs(v)), 1);
    bb.forEach((v, j) => (worst = Math.max(worst, Math.abs(a[i]![j]! - v) / scale)));
  });
  return worst;
}

/** Mean milliseconds per call of fn (after one warm-up call), ending each timing with a read of the result. */
async function time(fn: () => tf.Tensor[], reps: number): Promise<number> {
  const once = async () => {
    const outs = tf.tidy(fn);
    await Promise.all(outs.map((o) => o.data()));
    tf.dispose(outs);
  };
  await once();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await once();
  return (performance.now() - t0) / reps;
}

function composite(x: tf.Tensor4D, gamma: tf.Tensor, beta: tf.Tensor): tf.Tensor {
  const [b, h, w, c] = x.shape;
  const g = x.reshape([b, h, w, 32, c / 32]);
  const { mean, variance } = tf.moments(g, [1, 2, 4], true);
  const y = tf.add(tf.mul(tf.mul(tf.sub(g, mean), tf.rsqrt(tf.add(variance, 1e-5))).reshape([b, h, w, c]), gamma), beta);
  return tf.mul(y, tf.sigmoid(y));
}

/** blocks.attention's composite path: head split, QKᵀ/√d, softmax, ·V. */
function attentionComposite(x: tf.Tensor3D, heads: number): tf.Tensor {
  const [b, n, inner] = x.shape;
  const h = x.reshape([b, n, heads, inner / heads]).transpose([0, 2, 1, 3]) as tf.Tensor4D;
  const p = tf.softmax(tf.mul(tf.matMul(h, h, false, true), 1 / Math.sqrt(inner / heads)), -1);
  return tf.matMul(p, h).transpose([0, 2, 1, 3]).reshape([b, n, inner]);
}

export async function benchKernels(): Promise<{ adapter: string; rows: KernelRow[] }> {
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  await initBackend('webgpu');
  const gpuShapes = process.env.BENCH_KERNEL_SHAPES === 'gpu';
  const reps = Number(process.env.BENCH_KERNEL_REPS ?? (gpuShapes ? 20 : 2));
  const [b, s, c] = gpuShapes ? [16, 64, 128] : [1, 16, 128];
  const [gb, gs, gc] = gpuShapes ? [16, 32, 512] : [1, 16, 512];
  const mm = gpuShapes ? 4096 : 512;
  const x = tf.randomNormal([b, s, s, c], 0, 1, 'float32', 1) as tf.Tensor4D;
  const w = tf.randomNormal([3, 3, c, c], 0, 0.05, 'float32', 2) as tf.Tensor4D;
  const dy = tf.randomNormal([b, s, s, c], 0, 1, 'float32', 3) as tf.Tensor4D;
  const gx = tf.randomNormal([gb, gs, gs, gc], 0, 1, 'float32', 4) as tf.Tensor4D;
  const gamma = tf.ones([gc]);
  const beta = tf.zeros([gc]);
  const [tokens, heads] = gpuShapes ? [1024, 16] : [256, 8];
  const qkv = tf.randomNormal([gpuShapes ? 16 : 1, tokens, heads * 32], 0, 1, 'float32', 7) as tf.Tensor3D;
  const ma = tf.randomNormal([mm, mm], 0, 1, 'float32', 5);
  const mb = tf.randomNormal([mm, mm], 0, 1, 'float32', 6);
  const dyq = tf.randomNormal(qkv.shape, 0, 1, 'float32', 8) as tf.Tensor3D;
  // a deep, small-spatial layer at sampling batch: the split-K subgroup GEMM core's case (kernels/gemm.ts)
  const [db, dc] = gpuShapes ? [2, 1024] : [1, 256];
  const xd = tf.randomNormal([db, 8, 8, dc], 0, 1, 'float32', 9) as tf.Tensor4D;
  const wd = tf.randomNormal([3, 3, dc, dc], 0, 0.05, 'float32', 10) as tf.Tensor4D;
  const bd = tf.randomNormal([dc], 0, 1, 'float32', 11);
  const oursTiled = () => {
    useCustomKernels(true);
    useSubgroups(false);
  };
  const attnLoss = (f: (x: tf.Tensor3D) => tf.Tensor) => () => tf.grads((qq: tf.Tensor) => tf.sum(tf.mul(f(qq as tf.Tensor3D), dyq)))([qkv]);
  const gnLoss = () => tf.grads((xx: tf.Tensor) => tf.sum(groupNormAct(xx as tf.Tensor4D, gamma, beta, 32, 1e-5, true)))([gx]);
  /** `baseline` (default: tfjs's stock kernels) is what the stock column runs under. */
  const ops: Array<{ op: string; ours: () => tf.Tensor[]; stock: () => tf.Tensor[]; baseline?: () => void; mixed?: true }> = [
    { op: `conv 3×3 ${c}→${c}, ${s}², B=${b}, forward`, ours: () => [tf.conv2d(x, w, 1, 'same')], stock: () => [tf.conv2d(x, w, 1, 'same')], mixed: true },
    {
      op: 'conv backprop to input',
      ours: () => [tf.conv2dTranspose(dy, w, x.shape, 1, 'same')],
      stock: () => [tf.conv2dTranspose(dy, w, x.shape, 1, 'same')],
      mixed: true,
    },
    {
      op: 'conv backprop to filter',
      ours: () => [tf.grad((ww: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(x, ww as tf.Tensor4D, 1, 'same'), dy)))(w)],
      stock: () => [tf.grad((ww: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(x, ww as tf.Tensor4D, 1, 'same'), dy)))(w)],
      mixed: true,
    },
    {
      op: `GroupNorm(32)+SiLU ${gc} ch, ${gs}², B=${gb}, forward`,
      ours: () => [groupNormAct(gx, gamma, beta, 32, 1e-5, true)],
      stock: () => [composite(gx, gamma, beta)],
    },
    {
      op: 'GroupNorm(32)+SiLU forward+backward',
      ours: () => tf.grads((xx: tf.Tensor) => tf.sum(groupNormAct(xx as tf.Tensor4D, gamma, beta, 32, 1e-5, true)))([gx]),
      stock: () => tf.grads((xx: tf.Tensor) => tf.sum(composite(xx as tf.Tensor4D, gamma, beta)))([gx]),
    },
    {
      op: `attention ${tokens} tokens, ${heads} heads × 32, forward`,
      ours: () => [fusedAttention(qkv, qkv, qkv, heads)],
      stock: () => [attentionComposite(qkv, heads)],
      mixed: true,
    },
    {
      op: 'attention forward+backward (fused dQ, dK/dV)',
      ours: attnLoss((x) => fusedAttention(x, x, x, heads)),
      stock: attnLoss((x) => attentionComposite(x, heads)),
      mixed: true,
    },
    {
      op: 'attention forward+backward; stock column: composite on our matmul',
      ours: attnLoss((x) => fusedAttention(x, x, x, heads)),
      stock: attnLoss((x) => attentionComposite(x, heads)),
      baseline: () => useCustomKernels(true),
    },
    {
      op: 'attention fwd+bwd, subgroup variant (a quad per row); stock column: our plain variant (a thread per row)',
      ours: attnLoss((x) => fusedAttention(x, x, x, heads)),
      stock: attnLoss((x) => fusedAttention(x, x, x, heads)),
      baseline: () => {
        useCustomKernels(true);
        useSubgroups(false);
      },
    },
    {
      op: 'GroupNorm+SiLU fwd+bwd, subgroupAdd; stock column: our plain tree reductions',
      ours: gnLoss,
      stock: gnLoss,
      baseline: () => {
        useCustomKernels(true);
        useSubgroups(false);
      },
    },
    {
      op: `conv 3×3 ${dc}→${dc}, 8², B=${db}, forward, split-K subgroup core; stock column: our tiled core`,
      ours: () => [tf.conv2d(xd, wd, 1, 'same')],
      stock: () => [tf.conv2d(xd, wd, 1, 'same')],
      baseline: oursTiled,
      mixed: true,
    },
    {
      op: 'same, backprop to input, split-K subgroup core; stock column: our tiled core',
      ours: () => [tf.conv2dTranspose(xd, wd, xd.shape, 1, 'same')],
      stock: () => [tf.conv2dTranspose(xd, wd, xd.shape, 1, 'same')],
      baseline: oursTiled,
      mixed: true,
    },
    {
      op: 'same, forward + bias fused in the store; stock column: our conv, then tf.add',
      ours: () => [tf.fused.conv2d({ x: xd, filter: wd, strides: 1, pad: 'same', bias: bd })],
      stock: () => [tf.add(tf.conv2d(xd, wd, 1, 'same'), bd)],
      baseline: () => useCustomKernels(true),
      mixed: true,
    },
    { op: `matmul ${mm}²`, ours: () => [tf.matMul(ma, mb)], stock: () => [tf.matMul(ma, mb)], mixed: true },
  ];
  const rows: KernelRow[] = [];
  const mixed = mixedUnavailable() === undefined;
  try {
    for (const o of ops) {
      useCustomKernels(true);
      useSubgroups(true);
      const oursMs = await time(o.ours, reps);
      const row: KernelRow = { op: o.op, oursMs, stockMs: NaN };
      if (o.mixed && mixed) {
        const ref = await readAll(o.ours);
        setKernelPrecision('mixed');
        try {
          row.mixedDiff = relDiff(await readAll(o.ours), ref);
          row.mixedMs = await time(o.ours, reps);
        } finally {
          setKernelPrecision('fp32');
        }
      }
      if (o.baseline) o.baseline();
      else useCustomKernels(false);
      row.stockMs = await time(o.stock, reps);
      rows.push(row);
    }
  } finally {
    setKernelPrecision('fp32');
    useCustomKernels(true);
    useSubgroups(true);
    tf.dispose([x, w, dy, gx, gamma, beta, qkv, dyq, ma, mb, xd, wd, bd]);
  }
  const info = (await import('../src/util/tf.js')).backendInfo();
  const a = info?.adapter;
  return { adapter: a ? [a.vendor, a.architecture, a.device, a.description].filter((v) => v).join(' / ') : 'unknown', rows };
}
