/**
 * The GPU section of `npm run bench`: tfjs-webgpu (whatever kernels are registered: difftalk's own unless
 * DIFFTALK_WEBGPU_KERNELS=stock) against PyTorch on the same machine, in the same run.
 *
 * - per op (the table in ../shared/docs/gpu.md): conv 3×3 forward, conv backprop to input, conv backprop to filter,
 *   a deep small-spatial conv (+ bias) and its input gradient at sampling batch (conv_deep_*: where our split-K
 *   subgroup GEMM core applies; timed with subgroups off too, the 'tfjs subgroups off' column), GroupNorm(32)+SiLU, attention (QKᵀ, softmax, ·V), attention_train (its forward and the gradients w.r.t. q, k, v),
 *   matmul;
 * - whole: the UNet train step (forward, MSE, gradients of every parameter, AdamW) and the denoiser forward, the
 *   paper preset at batch 8 / 32; the eval networks' frames/s (LPIPS-alex, SyncNet video branch, FID Inception).
 * PyTorch (bench/torch/bench.py, the UNet from bench/torch/twin.py, checked against the fixtures) runs the same
 * items in fp32 with TF32 off, TF32, and bf16 autocast; the tables give tfjs ms / PyTorch ms per mode.
 *
 * Where the adapter has shader-f16, the items whose time is in matmuls/convs/attention (conv_*, matmul, attention*,
 * unet_*) are timed a second time under `--precision mixed` (f16 GEMM and attention operands, f32 sums and softmax
 * statistics; unet_train with the loss scaled and the
 * gradients unscaled, as the trainer does) and set against PyTorch's bf16 autocast.
 *
 * Sizes: `full` (the H100 table's shapes and the paper UNet; for a real GPU) or `tiny` (the same code paths at toy
 * sizes, which lavapipe and torch on CPU finish in seconds: proves the bench works, measures nothing useful).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { table } from '../src/cli/summary.js';
import { Lpips } from '../src/metrics/lpips.js';
import { attention, groupNormSilu, Params, spec, tfShape, type ParamSpec } from '../src/models/blocks.js';
import { subgroupsWanted, useSubgroups } from '../src/models/kernels/features.js';
import { customKernelsActive, kernelPrecision, mixedUnavailable, setKernelPrecision } from '../src/models/kernels/index.js';
import { FidInception, fidInceptionParams } from '../src/models/inception.js';
import { PRESETS } from '../src/models/presets.js';
import { SyncNet, syncnetParamShapes } from '../src/models/syncnet.js';
import { featureParams, FEATURE_NETS, type NamedWeight } from '../src/models/torchvision-features.js';
import { unetForward, unetParamSpecs, type UNetConfig } from '../src/models/unet.js';
import { AdamW, TORCH_ADAMW } from '../src/train/optim.js';
import { runProcess } from '../src/util/exec.js';
import { backendInfo, initBackend, tf } from '../src/util/tf.js';
import { det } from '../src/weights/det.js';

export type GpuBenchSize = 'full' | 'tiny';

export interface GpuBenchSpec {
  size: GpuBenchSize;
  /** Seconds of timed runs per item (after one warm-up run); at least one run, at most maxIters. */
  budget_s: number;
  max_iters: number;
  modes: string[];
  conv: { batch: number; channels: number; size: number };
  /** A deep, small-spatial layer at sampling batch: where the split-K subgroup GEMM core (kernels/gemm.ts) applies. */
  conv_deep: { batch: number; channels: number; size: number };
  gn_silu: { batch: number; channels: number; size: number };
  attention: { batch: number; tokens: number; heads: number; head_dim: number };
  matmul: { size: number };
  unet?: { preset: string; config: UNetConfig; train_batch: number; fwd_batch: number; budget_s: number };
  eval?: { lpips_batch: number; lpips_size: number; syncnet_batch: number; fid_batch: number };
}

const MODES = ['fp32', 'tf32', 'bf16'];

/** The sizes of each variant; `full` are the shapes of gpu.md's H100 table and the whole-step goals. */
export function gpuBenchSpec(size: GpuBenchSize, opts: { unet?: boolean; eval?: boolean } = {}): GpuBenchSpec {
  const full = size === 'full';
  const s: GpuBenchSpec = full
    ? {
        size,
        budget_s: 1,
        max_iters: 50,
        modes: MODES,
        conv: { batch: 16, channels: 128, size: 64 },
        conv_deep: { batch: 2, channels: 1024, size: 8 },
        gn_silu: { batch: 16, channels: 512, size: 32 },
        attention: { batch: 16, tokens: 1024, heads: 16, head_dim: 32 },
        matmul: { size: 4096 },
      }
    : {
        size,
        budget_s: 0.05,
        max_iters: 3,
        modes: MODES,
        conv: { batch: 2, channels: 16, size: 16 },
        conv_deep: { batch: 1, channels: 64, size: 8 },
        gn_silu: { batch: 2, channels: 64, size: 8 },
        attention: { batch: 2, tokens: 64, heads: 2, head_dim: 8 },
        matmul: { size: 128 },
      };
  if (opts.unet !== false) {
    const preset = full ? 'paper' : 'tiny';
    s.unet = { preset, config: PRESETS[preset].unet, train_batch: full ? 8 : 2, fwd_batch: full ? 32 : 2, budget_s: full ? 4 : 0.05 };
  }
  if (opts.eval !== false)
    s.eval = full ? { lpips_batch: 32, lpips_size: 256, syncnet_batch: 32, fid_batch: 32 } : { lpips_batch: 1, lpips_size: 64, syncnet_batch: 1, fid_batch: 1 };
  return s;
}

export interface Timing {
  ms: number;
  iters: number;
  /** Set instead of a time when the item failed (then ms is NaN). */
  error?: string;
}

/** One bench item on tfjs: `make` builds its inputs (kept), `run` returns the output tensors (disposed each run). */
interface Item {
  name: string;
  /** Work units per run for a rate (frames for the eval networks). */
  frames?: number;
  run: () => tf.Tensor | tf.Tensor[] | Promise<unknown>;
  budget?: number;
  /** Its time is in kernels with an f16 variant (GEMM, fused attention): timed under 'mixed' precision too, where the adapter can. */
  mixed?: true;
  /** Its GEMMs take the split-K subgroup core: timed with subgroups off too (the tiled core), where the device has them. */
  splitk?: true;
}

/**
 * Wall time per run: one warm-up (shader compilation), one run to size the loop (the result if it alone fills the
 * budget), then as many runs as fit the budget, at most maxIters.
 */
async function time(item: Item, budget: number, maxIters: number): Promise<Timing> {
  const once = async () => {
    const r = await item.run();
    if (r instanceof tf.Tensor || Array.isArray(r)) {
      const ts = (Array.isArray(r) ? r : [r]) as tf.Tensor[];
      await ts[ts.length - 1]!.data();
      tf.dispose(ts);
    }
  };
  await once();
  let t0 = performance.now();
  await once();
  const one = performance.now() - t0;
  const n = Math.min(maxIters, Math.floor((budget * 1000) / Math.max(one, 1e-3)));
  if (n <= 1) return { ms: one, iters: 1 }; // a run as long as the budget: it is the measurement
  t0 = performance.now();
  for (let i = 0; i < n; i++) await once();
  return { ms: (performance.now() - t0) / n, iters: n };
}

function randn(shape: number[], seed: number): tf.Tensor {
  return tf.randomNormal(shape, 0, 1, 'float32', seed);
}

/** A parameter store with PyTorch-default-scale random values made on the device (the paper UNet has 530 M). */
function randomParams(specs: readonly ParamSpec[]): Params {
  const p = new Params([]);
  specs.forEach((s, i) => {
    const shape = tfShape(s);
    const bound = 1 / Math.sqrt(s.fanIn);
    const v =
      s.init === 'ones' ? tf.ones(shape) : s.init === 'zeros' && s.kind !== 'conv2d' ? tf.zeros(shape) : tf.randomUniform(shape, -bound, bound, 'float32', i);
    p.specs.set(s.name, s);
    p.vars.set(s.name, tf.variable(v, true, `bench.${s.name}`));
  });
  return p;
}

function opItems(s: GpuBenchSpec, keep: tf.Tensor[]): Item[] {
  const k = <T extends tf.Tensor>(t: T): T => {
    keep.push(t);
    return t;
  };
  const c = s.conv;
  const x = k(randn([c.batch, c.size, c.size, c.channels], 1)) as tf.Tensor4D;
  const w = k(tf.mul(randn([3, 3, c.channels, c.channels], 2), 1 / Math.sqrt(9 * c.channels))) as tf.Tensor4D;
  const dy = k(randn([c.batch, c.size, c.size, c.channels], 3)) as tf.Tensor4D;
  const g = s.gn_silu;
  const xg = k(randn([g.batch, g.size, g.size, g.channels], 4)) as tf.Tensor4D;
  const gp = new Params(spec.norm('gn', g.channels));
  keep.push(...gp.vars.values());
  const a = s.attention;
  const inner = a.heads * a.head_dim;
  const [q, kk, v, dya] = [5, 6, 7, 10].map((i) => k(randn([a.batch, a.tokens, inner], i)));
  const d = s.conv_deep;
  const xd = k(randn([d.batch, d.size, d.size, d.channels], 11)) as tf.Tensor4D;
  const wd = k(tf.mul(randn([3, 3, d.channels, d.channels], 12), 1 / Math.sqrt(9 * d.channels))) as tf.Tensor4D;
  const bd = k(randn([d.channels], 13));
  const ma = k(randn([s.matmul.size, s.matmul.size], 8)) as tf.Tensor2D;
  const mb = k(randn([s.matmul.size, s.matmul.size], 9)) as tf.Tensor2D;
  return [
    { name: 'conv_fwd', run: () => tf.conv2d(x, w, 1, 'same'), mixed: true },
    { name: 'conv_dgrad', run: () => tf.conv2dTranspose(dy, w, [c.batch, c.size, c.size, c.channels], 1, 'same'), mixed: true },
    {
      name: 'conv_wgrad',
      mixed: true,
      run: () =>
        tf
          .engine()
          .runKernel(
            'Conv2DBackpropFilter',
            { x, dy },
            { strides: [1, 1], pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, c.channels, c.channels] },
          ) as tf.Tensor,
    },
    { name: 'conv_deep_fwd', run: () => tf.fused.conv2d({ x: xd, filter: wd, strides: 1, pad: 'same', bias: bd }), mixed: true, splitk: true },
    { name: 'conv_deep_dgrad', run: () => tf.conv2dTranspose(xd, wd, xd.shape, 1, 'same'), mixed: true, splitk: true },
    { name: 'gn_silu', run: () => tf.tidy(() => groupNormSilu(gp, 'gn', xg, 32, 1e-5)) },
    { name: 'attention', mixed: true, run: () => tf.tidy(() => attention(q!, kk!, v!, a.heads)) },
    {
      name: 'attention_train',
      mixed: true,
      run: () => tf.tidy(() => tf.grads((qq: tf.Tensor, k2: tf.Tensor, vv: tf.Tensor) => tf.sum(tf.mul(attention(qq, k2, vv, a.heads), dya!)))([q!, kk!, v!])),
    },
    { name: 'matmul', run: () => tf.matMul(ma, mb), mixed: true },
  ];
}

function unetItems(s: NonNullable<GpuBenchSpec['unet']>, keep: tf.Tensor[], cleanup: (() => void)[]): Item[] {
  const cfg = s.config;
  const p = randomParams(unetParamSpecs(cfg));
  const opt = new AdamW({ ...TORCH_ADAMW, lr: 1e-5 }, p.vars);
  cleanup.push(() => {
    p.dispose();
    opt.dispose();
  });
  const hw = cfg.imageSize;
  const inputs = (b: number, seed: number) => {
    const x = randn([b, hw, hw, cfg.inChannels], seed) as tf.Tensor4D;
    const t = tf.tensor1d(
      Array.from({ length: b }, (_, i) => (i * 37 + seed) % 1000),
      'int32',
    );
    const ctx = randn([b, 1, cfg.contextDim], seed + 1) as tf.Tensor3D;
    keep.push(x, t, ctx);
    return { x, t, ctx };
  };
  const tr = inputs(s.train_batch, 11);
  const noise = randn([s.train_batch, hw, hw, cfg.outChannels], 13);
  keep.push(noise);
  const fw = inputs(s.fwd_batch, 17);
  const list = [...p.vars.values()];
  const names = new Map(list.map((v) => [v.name, [...p.vars].find(([, u]) => u === v)![0]]));
  return [
    {
      name: 'unet_train',
      budget: s.budget_s,
      mixed: true,
      run: () => {
        // under mixed, as the trainer: loss × scale before backprop, gradients ÷ scale after (GradScaler's init scale)
        const scale = kernelPrecision() === 'mixed' ? 65536 : 1;
        const loss = () => tf.losses.meanSquaredError(noise, unetForward(p, cfg, tr.x, tr.t, tr.ctx)) as tf.Scalar;
        const { value, grads } = tf.variableGrads(scale === 1 ? loss : () => tf.mul(loss(), scale), list);
        const byName = new Map(
          Object.entries(grads).map(([vn, gr]) => {
            if (scale === 1) return [names.get(vn)!, gr];
            const g = tf.div(gr, scale);
            gr.dispose();
            return [names.get(vn)!, g];
          }),
        );
        opt.apply(byName);
        tf.dispose([...byName.values()]);
        return value;
      },
    },
    { name: 'unet_fwd', budget: s.budget_s, mixed: true, run: () => tf.tidy(() => unetForward(p, cfg, fw.x, fw.t, fw.ctx)) },
  ];
}

function evalItems(s: NonNullable<GpuBenchSpec['eval']>, keep: tf.Tensor[], cleanup: (() => void)[]): Item[] {
  const w = new Map<string, NamedWeight>();
  for (const [name, shape] of featureParams('alex')) w.set(name, { shape, data: det(name, shape) });
  FEATURE_NETS.alex.channels.forEach((c, k) => {
    const name = `lin${k}.model.1.weight`;
    w.set(name, { shape: [1, c, 1, 1], data: det(name, [1, c, 1, 1]).map(Math.abs) });
  });
  const lpips = new Lpips('alex', w);
  const sync = SyncNet.fromTensors(new Map(syncnetParamShapes().map(([name, shape]) => [name, { shape, data: det(name, shape) }])));
  const fid = FidInception.fromTensors(new Map(fidInceptionParams().map(([name, shape]) => [name, { shape, data: det(name, shape) }])));
  cleanup.push(() => {
    lpips.dispose();
    sync.dispose();
    fid.dispose();
  });
  const n = s.lpips_batch * s.lpips_size * s.lpips_size * 3;
  const pa = Float32Array.from({ length: n }, (_, i) => Math.sin(0.37 * i));
  const pb = Float32Array.from({ length: n }, (_, i) => Math.sin(0.37 * i + 1));
  const lips = randn([s.syncnet_batch, 224, 224, 15], 21);
  const imgs = tf.clipByValue(randn([s.fid_batch, 299, 299, 3], 23), 0, 1) as tf.Tensor4D;
  keep.push(lips, imgs);
  return [
    { name: 'lpips_alex', frames: s.lpips_batch, run: () => lpips.distancesScaled(pa, pb, s.lpips_batch, s.lpips_size, s.lpips_size) },
    { name: 'syncnet', frames: s.syncnet_batch, run: () => sync.forwardLip(lips as tf.Tensor4D) },
    { name: 'fid_inception', frames: s.fid_batch, run: () => fid.features(imgs) },
  ];
}

export interface TorchResults {
  torch: string;
  device: string;
  results: Record<string, Record<string, Timing>>;
}

export interface GpuBenchResult {
  spec: GpuBenchSpec;
  webgpu: {
    adapter?: string;
    features?: string[];
    kernels: string;
    results: Record<string, Timing & { fps?: number }>;
    /** The split-K items again with subgroups off (our tiled GEMM core); absent where the device has no subgroups. */
    plain?: Record<string, Timing>;
    /** The GEMM items under 'mixed' precision (f16 operands, f32 sums); absent where the adapter has no shader-f16. */
    mixed?: Record<string, Timing>;
    mixedUnavailable?: string;
  };
  torch?: TorchResults;
  torchError?: string;
}

/** Run the PyTorch side (bench/torch/bench.py) with the same spec. `python`: an interpreter with torch. */
export async function benchTorch(s: GpuBenchSpec, python: string): Promise<TorchResults> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'difftalk-bench-gpu-'));
  try {
    const file = path.join(dir, 'spec.json');
    await writeFile(file, JSON.stringify(s));
    const dir0 = process.env.BENCH_TORCH_DIR ?? path.join(import.meta.dirname, 'torch'); // bundles run from .device/
    const r = await runProcess(python, [path.join(dir0, 'bench.py'), file], { timeoutMs: 15 * 60_000 });
    return JSON.parse(r.stdout.toString()) as TorchResults;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The tfjs-webgpu side: every item of the spec on the webgpu backend (started here if it is not yet). */
export async function benchWebgpu(s: GpuBenchSpec, log: (line: string) => void = () => {}): Promise<GpuBenchResult['webgpu']> {
  if (tf.getBackend() !== 'webgpu') await initBackend('webgpu');
  const info = backendInfo();
  const keep: tf.Tensor[] = [];
  const cleanup: (() => void)[] = [];
  const results: GpuBenchResult['webgpu']['results'] = {};
  const noMixed = mixedUnavailable();
  const mixed: Record<string, Timing> | undefined = noMixed ? undefined : {};
  const plain: Record<string, Timing> | undefined = customKernelsActive() && subgroupsWanted() ? {} : undefined;
  const kernels = customKernelsActive() ? "difftalk's (src/models/kernels)" : 'stock (DIFFTALK_WEBGPU_KERNELS=stock)';
  try {
    const groups: (() => Item[])[] = [() => opItems(s, keep)];
    if (s.unet) groups.push(() => unetItems(s.unet!, keep, cleanup));
    if (s.eval) groups.push(() => evalItems(s.eval!, keep, cleanup));
    for (const make of groups) {
      let items: Item[];
      try {
        items = make();
      } catch (e) {
        log(`webgpu: could not build a group of items: ${(e as Error).message}`);
        continue;
      }
      for (const item of items) {
        try {
          const t = await time(item, item.budget ?? s.budget_s, s.max_iters);
          results[item.name] = item.frames ? { ...t, fps: (item.frames * 1000) / t.ms } : t;
          log(`webgpu ${item.name}: ${t.ms.toFixed(2)} ms (${t.iters} runs)`);
        } catch (e) {
          // one item failing (a buffer over the adapter's binding limit, out of memory) leaves the others' numbers
          results[item.name] = { ms: NaN, iters: 0, error: (e as Error).message.split('\n')[0]!.slice(0, 300) };
          log(`webgpu ${item.name}: error ${results[item.name]!.error}`);
        }
        if (plain && item.splitk) {
          useSubgroups(false);
          try {
            plain[item.name] = await time(item, item.budget ?? s.budget_s, s.max_iters);
            log(`webgpu subgroups off ${item.name}: ${plain[item.name]!.ms.toFixed(2)} ms (${plain[item.name]!.iters} runs)`);
          } catch (e) {
            plain[item.name] = { ms: NaN, iters: 0, error: (e as Error).message.split('\n')[0]!.slice(0, 300) };
          } finally {
            useSubgroups(true);
          }
        }
        if (mixed && item.mixed) {
          setKernelPrecision('mixed');
          try {
            mixed[item.name] = await time(item, item.budget ?? s.budget_s, s.max_iters);
            log(`webgpu mixed ${item.name}: ${mixed[item.name]!.ms.toFixed(2)} ms (${mixed[item.name]!.iters} runs)`);
          } catch (e) {
            mixed[item.name] = { ms: NaN, iters: 0, error: (e as Error).message.split('\n')[0]!.slice(0, 300) };
            log(`webgpu mixed ${item.name}: error ${mixed[item.name]!.error}`);
          } finally {
            setKernelPrecision('fp32');
          }
        }
      }
      while (cleanup.length) cleanup.pop()!();
      tf.dispose(keep.splice(0));
    }
  } finally {
    while (cleanup.length) cleanup.pop()!();
    tf.dispose(keep);
  }
  const a = info?.adapter;
  return {
    adapter: a ? [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' ') : undefined,
    features: info?.features,
    kernels,
    results,
    ...(plain ? { plain } : {}),
    ...(mixed ? { mixed } : { mixedUnavailable: noMixed }),
  };
}

const fmt = (ms: number | null | undefined) => (ms === undefined ? '—' : ms === null || Number.isNaN(ms) ? 'error' : ms < 10 ? ms.toFixed(3) : ms.toFixed(1));
const ratio = (a: number | null | undefined, b: number | null | undefined) =>
  a == null || b == null || Number.isNaN(a) || Number.isNaN(b) ? '—' : `${(a / b).toFixed(a / b < 10 ? 2 : 0)}×`;

/**
 * The result as markdown: one row per item, tfjs ms, PyTorch ms per mode, and tfjs / PyTorch per mode; then, where
 * the mixed path ran, tfjs mixed ms and its ratio to PyTorch bf16 autocast.
 */
export function renderGpuBench(r: GpuBenchResult): string {
  const modes = r.torch ? Object.keys(r.torch.results) : [];
  const mixed = r.webgpu.mixed;
  const plain = r.webgpu.plain;
  const bf16 = modes.includes('bf16');
  const head = [
    'item',
    'tfjs-webgpu ms',
    ...modes.map((m) => `torch ${m} ms`),
    ...modes.map((m) => `ratio vs ${m}`),
    'tfjs frames/s',
    ...(plain ? ['tfjs subgroups off ms'] : []),
    ...(mixed ? ['tfjs-webgpu mixed ms', ...(bf16 ? ['mixed ratio vs bf16'] : [])] : []),
  ];
  const names = new Set([...Object.keys(r.webgpu.results), ...modes.flatMap((m) => Object.keys(r.torch!.results[m]!))]);
  const rows = [...names].map((n) => {
    const w = r.webgpu.results[n];
    const t = modes.map((m) => {
      const x = r.torch!.results[m]![n];
      return x && (x.error ? NaN : x.ms);
    });
    const mx = mixed?.[n] && (mixed[n].error ? NaN : mixed[n].ms);
    const bf = bf16 ? r.torch!.results.bf16![n] : undefined;
    const extra = mixed ? [fmt(mx), ...(bf16 ? [ratio(mx, bf && (bf.error ? NaN : bf.ms))] : [])] : [];
    const off = plain ? [plain[n] ? fmt(plain[n].error ? NaN : plain[n].ms) : ''] : [];
    return [n, fmt(w?.ms), ...t.map(fmt), ...t.map((tm) => ratio(w?.ms, tm)), w?.fps ? w.fps.toFixed(1) : '', ...off, ...extra];
  });
  const md = (rs: string[][]) => rs.map((x) => `| ${x.join(' | ')} |`).join('\n');
  return [
    `GPU bench (${r.spec.size} sizes) — webgpu adapter: ${r.webgpu.adapter ?? '?'}; kernels: ${r.webgpu.kernels}; ` +
      (r.torch ? `PyTorch ${r.torch.torch} on ${r.torch.device}` : `PyTorch: not run (${r.torchError ?? 'no interpreter'})`) +
      (r.webgpu.mixed ? '; mixed: f16 GEMM and attention operands, f32 sums' : `; mixed: not run (${r.webgpu.mixedUnavailable ?? '?'})`),
    '',
    md([head, head.map(() => '---'), ...rows]),
  ].join('\n');
}

/** Plain-text variant for the terminal. */
export function renderGpuBenchText(r: GpuBenchResult): string {
  const lines = renderGpuBench(r).split('\n');
  const rows = lines
    .slice(2)
    .filter((_, i) => i !== 1)
    .map((l) => l.slice(2, -2).split(' | '));
  return [lines[0], table(rows)].join('\n');
}

/**
 * Both sides in one run: PyTorch first (its process exits and frees the GPU before tfjs-webgpu's buffer pool, which
 * keeps freed buffers for reuse, grows), then webgpu. `python`: an interpreter with torch (and torchvision for the
 * eval networks); where it fails, the webgpu numbers stand alone and the error is kept.
 */
export async function benchGpu(opts: {
  size: GpuBenchSize;
  python?: string;
  unet?: boolean;
  eval?: boolean;
  log?: (line: string) => void;
}): Promise<GpuBenchResult> {
  const spec = gpuBenchSpec(opts.size, { unet: opts.unet, eval: opts.eval });
  let torch: TorchResults | undefined;
  let torchError: string | undefined;
  try {
    torch = await benchTorch(spec, opts.python ?? process.env.BENCH_PYTHON ?? '/usr/bin/python3');
    opts.log?.(`torch done on ${torch.device}`);
  } catch (e) {
    torchError = (e as Error).message.split('\n').slice(-3).join(' ');
  }
  const webgpu = await benchWebgpu(spec, opts.log);
  return { spec, webgpu, torch, torchError };
}
