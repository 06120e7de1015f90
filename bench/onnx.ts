/**
 * `node --import tsx bench/onnx.ts`: frames/s of the eval networks on each executor of their one network description
 * (src/models/netgraph.ts) — tfjs-wasm (one thread in Node), onnxruntime-node on all CPU cores — and PyTorch on the
 * same CPU in the same run (bench/torch/nets_cpu.py, Debian python3-torch, all cores), interleaved, with the ratios.
 * Frames are 256² RGB in batches of BENCH_ONNX_BATCH (default 4); a LPIPS frame is one pred/target pair; FID is the
 * pool3 features at 299² (resize included); SyncNet is both branches on BENCH_ONNX_SYNC_WINDOWS windows per call
 * (default 19, the metric bench's; a frame = one window of 5 × 224² crops + 13×20 MFCC); FVD's I3D runs one clip of 16
 * such frames per call (resized to 224² inside) and is counted in clips/s. det()/He weights: the real shapes and
 * FLOPs. Env: BENCH_PYTHON (default /usr/bin/python3), BENCH_ONNX_SECONDS per measurement (default 3),
 * BENCH_ONNX_JSON=file, BENCH_ONNX_NETS=lpips-alex,lpips-vgg,fid,syncnet,i3d (a subset; default all).
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Lpips } from '../src/metrics/lpips.js';
import { FidInception, fidInceptionParams } from '../src/models/inception.js';
import { SyncNetRunner, syncnetParamShapes } from '../src/models/syncnet.js';
import { I3d, I3D_CLIP_FRAMES, i3dParams } from '../src/models/i3d.js';
import type { NetExecutor } from '../src/models/net-runner.js';
import { featureParams, FEATURE_NETS, type NamedWeight } from '../src/models/torchvision-features.js';
import { runProcess } from '../src/util/exec.js';
import { initBackend } from '../src/util/tf.js';
import { det } from '../src/weights/det.js';

const SIZE = 256;
const BATCH = Number(process.env.BENCH_ONNX_BATCH ?? 4);
const SECONDS = Number(process.env.BENCH_ONNX_SECONDS ?? 3);
const SYNC_WINDOWS = Number(process.env.BENCH_ONNX_SYNC_WINDOWS ?? 19);
/** BENCH_ONNX_NETS=syncnet,fid: only those networks (default: all). */
const NETS = process.env.BENCH_ONNX_NETS?.split(',').filter(Boolean);
/** Per network, what one unit of its rate is. */
export const ONNX_BENCH_UNITS: Record<string, string> = { i3d: 'clips/s' };

async function rate(frames: number, fn: () => Promise<unknown>): Promise<number> {
  await fn(); // warm-up
  let runs = 0;
  const t0 = performance.now();
  do {
    await fn();
    runs++;
  } while ((performance.now() - t0) / 1000 < SECONDS);
  return (runs * frames) / ((performance.now() - t0) / 1000);
}

function input(seed: number, scale: (v: number) => number): Float32Array {
  const x = new Float32Array(BATCH * SIZE * SIZE * 3);
  for (let k = 0; k < x.length; k++) x[k] = scale(0.5 + 0.5 * Math.sin(0.37 * k + seed));
  return x;
}

function lpipsWeights(net: 'alex' | 'vgg'): Map<string, NamedWeight> {
  const w = new Map<string, NamedWeight>();
  for (const [name, shape] of featureParams(net)) w.set(name, { shape, data: det(name, shape) });
  FEATURE_NETS[net].channels.forEach((c, k) => w.set(`lin${k}.model.1.weight`, { shape: [1, c, 1, 1], data: det(`lin${k}`, [1, c, 1, 1]).map(Math.abs) }));
  return w;
}

/** PyTorch frames/s of one network (a fresh process, so it runs right next to the difftalk measurements). */
async function torchRate(net: string): Promise<[string, number]> {
  const python = process.env.BENCH_PYTHON ?? '/usr/bin/python3';
  const args = [path.join(import.meta.dirname, 'torch', 'nets_cpu.py'), String(SIZE), String(BATCH), String(SECONDS), net, String(SYNC_WINDOWS)];
  const r = JSON.parse((await runProcess(python, args, { timeoutMs: 15 * 60_000 })).stdout.toString()) as Record<string, number | string>;
  return [`pytorch ${r.torch} cpu (${r.threads} threads)`, r[net] as number];
}

/**
 * Per network, in one sitting and interleaved (PyTorch, tfjs-wasm, onnxruntime, PyTorch again; the PyTorch figure is
 * the mean of its two runs) so that a shared machine's load drifts over all three alike.
 */
export async function benchOnnx(): Promise<Record<string, Record<string, number>>> {
  await initBackend('wasm');
  const out: Record<string, Record<string, number>> = {};
  const x = input(0, (v) => 2 * v - 1);
  const y = input(1, (v) => 2 * v - 1);
  const img = input(2, (v) => v);
  const measure = async (net: string, one: (executor: NetExecutor) => Promise<[string, number]>) => {
    if (NETS && !NETS.includes(net)) return;
    const row: Record<string, number> = {};
    const [tk, t1] = await torchRate(net);
    for (const executor of ['tfjs', 'onnx'] as NetExecutor[]) {
      const [k, v] = await one(executor);
      row[k] = v;
    }
    const [, t2] = await torchRate(net);
    row[tk] = (t1 + t2) / 2;
    out[net] = row;
  };
  for (const net of ['alex', 'vgg'] as const) {
    await measure(`lpips-${net}`, async (executor) => {
      const m = await Lpips.create(net, lpipsWeights(net), executor);
      try {
        return [m.executor, await rate(BATCH, () => m.distancesScaled(x, y, BATCH, SIZE, SIZE))];
      } finally {
        m.dispose();
      }
    });
  }
  await measure('fid', async (executor) => {
    const f = await FidInception.create(new Map(fidInceptionParams().map(([n, s]) => [n, { shape: s, data: det(n, s) }])), executor);
    try {
      return [f.executor, await rate(BATCH, () => f.featuresOf(img, BATCH, SIZE, SIZE))];
    } finally {
      f.dispose();
    }
  });
  const lip = {
    data: Float32Array.from({ length: SYNC_WINDOWS * 224 * 224 * 15 }, (_, k) => 127.5 + 127.5 * Math.sin(0.37 * k)),
    shape: [SYNC_WINDOWS, 224, 224, 15],
  };
  const aud = { data: Float32Array.from({ length: SYNC_WINDOWS * 13 * 20 }, (_, k) => 10 * Math.sin(0.91 * k)), shape: [SYNC_WINDOWS, 13, 20, 1] };
  await measure('syncnet', async (executor) => {
    const s = await SyncNetRunner.create(new Map(syncnetParamShapes().map(([n, sh]) => [n, { shape: sh, data: det(n, sh) }])), undefined, executor);
    try {
      return [s.executor, await rate(SYNC_WINDOWS, () => s.embed(lip, aud))];
    } finally {
      s.dispose();
    }
  });
  await measure('i3d', async (executor) => {
    const net = await I3d.create(new Map(i3dParams().map(([n, s]) => [n, { dtype: 'float32' as const, shape: s, data: det(n, s) }])), { executor });
    const clip = Float32Array.from({ length: I3D_CLIP_FRAMES * SIZE * SIZE * 3 }, (_, k) => 127.5 + 127.5 * Math.sin(0.37 * k));
    try {
      return [net.executor, await rate(1, () => net.featuresOf(clip, 1, SIZE, SIZE))];
    } finally {
      net.dispose();
    }
  });
  return out;
}

if (process.argv[1] === import.meta.filename) {
  const res = await benchOnnx();
  for (const [net, row] of Object.entries(res)) {
    const entries = Object.entries(row);
    const torch = entries.find(([k]) => k.startsWith('pytorch'))![1];
    process.stdout.write(`${net}\n`);
    const unit = ONNX_BENCH_UNITS[net] ?? 'frames/s';
    for (const [k, v] of entries) process.stdout.write(`  ${k.padEnd(40)} ${v.toFixed(2).padStart(9)} ${unit}  ${(v / torch).toFixed(2)}× PyTorch\n`);
  }
  if (process.env.BENCH_ONNX_JSON) await writeFile(process.env.BENCH_ONNX_JSON, JSON.stringify(res, null, 2));
}
