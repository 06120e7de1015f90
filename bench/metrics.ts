/**
 * Each eval metric side by side with its Python reference, on this machine, in the same run (bench/torch/metrics_bench.py
 * run by /usr/bin/python3 with torch.set_num_threads(all cores)): frames/s (LSE: windows/s) of both and the ratio,
 * each metric's two sides timed one right after the other.
 * difftalk runs through the metric objects eval uses (PsnrMetric/SsimMetric on a FramePool, LpipsMetric,
 * inceptionFeatures, syncScores, lmd), so whatever executor they pick by default is what is timed. Networks carry det()
 * weights (same shapes and FLOPs as the real ones; the values do not matter for speed), the reference random ones.
 * Sizes (both sides): 256×256 RGB frames for PSNR/SSIM/LPIPS and FID (resized to 299² inside), FVD clips of 16 such
 * frames (resized to 224² inside; clips/s: one prediction and one GT clip per FvdMetric update), SyncNet windows of
 * 5 face crops of 224² + 13×20 MFCC, LMD on 68-point sets.
 * `quick`: one timed run per item on small batches, no warm-up (for tests: proves every row runs; the timings mean
 * nothing then).
 */
import path from 'node:path';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import { mkdtemp, rm } from 'node:fs/promises';
import { Lpips, LpipsMetric } from '../src/metrics/lpips.js';
import { FramePool } from '../src/metrics/frame-pool.js';
import { PsnrMetric } from '../src/metrics/psnr.js';
import { SsimMetric } from '../src/metrics/ssim.js';
import { featureParams, FEATURE_NETS, type NamedWeight } from '../src/models/torchvision-features.js';
import type { RgbFrames } from '../src/media/types.js';
import { initBackend, tf, type BackendName } from '../src/util/tf.js';
import { det } from '../src/weights/det.js';
import { inceptionFeatures } from '../src/metrics/fid.js';
import { lmd } from '../src/metrics/lmd.js';
import { syncScores } from '../src/metrics/lse.js';
import { FidInception, fidInceptionParams } from '../src/models/inception.js';
import { FvdMetric } from '../src/metrics/fvd.js';
import { I3d, I3D_CLIP_FRAMES, i3dParams } from '../src/models/i3d.js';
import { SyncNetRunner, syncnetParamShapes } from '../src/models/syncnet.js';
import { runProcess } from '../src/util/exec.js';

const SIZE = 256;

export interface MetricBenchRow {
  metric: string;
  /** difftalk frames/s (LSE: windows/s, FVD: clips/s). */
  difftalk: number;
  /** The reference's frames/s (NaN when it failed; see `referenceError`). */
  reference: number;
  /** What the reference ran. */
  referenceImpl: string;
  referenceError?: string;
}

export interface MetricBench {
  rows: MetricBenchRow[];
  backend: string;
  torch: string;
  threads: number;
  cores: number;
}

function synthetic(count: number, seed: number): RgbFrames {
  const n = SIZE * SIZE * 3;
  const data = new Uint8Array(count * n);
  for (let k = 0; k < data.length; k++) data[k] = Math.round(127.5 + 127.5 * Math.sin(0.37 * k + seed + 0.001 * (k % 977) * (k % 131)));
  return { width: SIZE, height: SIZE, count, data };
}

async function rate(frames: number, minSeconds: number, quick: boolean, fn: () => Promise<unknown> | unknown): Promise<number> {
  if (!quick) await fn(); // warm-up
  let runs = 0;
  const t0 = performance.now();
  do {
    await fn();
    runs++;
  } while (!quick && (performance.now() - t0) / 1000 < minSeconds);
  return (runs * frames) / ((performance.now() - t0) / 1000);
}

interface Sizes {
  frames: number;
  lpips_batch: number;
  fid_batch: number;
  fvd_clips: number;
  sync_windows: number;
  lmd_frames: number;
}

/** The difftalk side: one timing function per metric (the FramePool is the caller's, closed by it). */
function difftalkItems(s: Sizes, minSeconds: number, quick: boolean, pool: FramePool): Record<string, () => Promise<number>> {
  const a = synthetic(s.frames, 0);
  const b = synthetic(s.frames, 1);
  const lpips = (net: 'alex' | 'vgg') => async () => {
    const w = new Map<string, NamedWeight>();
    for (const [name, shape] of featureParams(net)) w.set(name, { shape, data: det(name, shape) });
    FEATURE_NETS[net].channels.forEach((c, k) => {
      const name = `lin${k}.model.1.weight`;
      w.set(name, { shape: [1, c, 1, 1], data: det(name, [1, c, 1, 1]).map(Math.abs) });
    });
    const model = await Lpips.create(net, w, 'auto'); // the executor eval picks without --backend
    try {
      const n = s.lpips_batch;
      const pa = synthetic(n, 0);
      const pb = synthetic(n, 1);
      const metric = new LpipsMetric(model, n);
      return await rate(n, minSeconds, quick, () => metric.update(pa, pb));
    } finally {
      model.dispose();
    }
  };
  const ssim = (v: 'gaussian' | 'skimage') => () => {
    const m = new SsimMetric(v, { pool });
    return rate(s.frames, minSeconds, quick, () => m.update(a, b));
  };
  return {
    psnr: () => {
      const m = new PsnrMetric({ pool });
      return rate(s.frames, minSeconds, quick, () => m.update(a, b));
    },
    'ssim-gaussian': ssim('gaussian'),
    'ssim-skimage': ssim('skimage'),
    'lpips-alex': lpips('alex'),
    'lpips-vgg': lpips('vgg'),
    fid: async () => {
      const net = await FidInception.create(new Map(fidInceptionParams().map(([name, shape]) => [name, { shape, data: det(name, shape) }])), 'auto');
      try {
        const n = s.fid_batch;
        const frames = synthetic(n, 3);
        return await rate(n, minSeconds, quick, () => inceptionFeatures(frames, { net, batchSize: n }));
      } finally {
        net.dispose();
      }
    },
    // FvdMetric.update with 16 paired frames: one prediction and one GT clip through the I3D.
    fvd: async () => {
      const net = await I3d.create(new Map(i3dParams().map(([name, shape]) => [name, { dtype: 'float32' as const, shape, data: det(name, shape) }])), {
        executor: 'auto',
      });
      try {
        const metric = new FvdMetric(net, 'bench');
        const pred = synthetic(I3D_CLIP_FRAMES, 5);
        const gt = synthetic(I3D_CLIP_FRAMES, 6);
        return await rate(2, minSeconds, quick, async () => {
          metric.beginVideo();
          await metric.update(pred, gt);
          metric.endVideo();
        });
      } finally {
        net.dispose();
      }
    },
    // `windows` windows: windows + 5 face crops and the matching audio (640 samples per frame at 16 kHz).
    lse: async () => {
      const w = new Map(syncnetParamShapes().map(([name, shape]) => [name, { shape, data: det(name, shape) }]));
      const net = await SyncNetRunner.create(w, undefined, 'auto'); // the executor eval picks without --backend
      try {
        const windows = s.sync_windows;
        const crops = Array.from({ length: windows + 5 }, (_, i) => synthetic(1, i).data.subarray(0, 224 * 224 * 3));
        const samples = Float32Array.from({ length: (windows + 5) * 640 }, (_, k) => 3000 * Math.sin(k / 7) * Math.sin(k / 1700));
        return await rate(windows, minSeconds, quick, () => syncScores(net, { frames: crops, samples, sampleRate: 16000 }));
      } finally {
        net.dispose();
      }
    },
    lmd: () => {
      const n = s.lmd_frames;
      const p = Float32Array.from({ length: n * 136 }, (_, k) => 128 + 100 * Math.sin(k * 0.37));
      const g = Float32Array.from({ length: n * 136 }, (_, k) => 128 + 100 * Math.sin(k * 0.41 + 1));
      return rate(n, minSeconds, quick, () => lmd(p, g));
    },
  };
}

/** difftalk metric → reference items (the fastest of several counts: the reference is given its best). */
const PAIRS: Array<[string, string[]]> = [
  ['psnr', ['psnr_skimage', 'psnr_numpy']],
  ['ssim-gaussian', ['ssim_gaussian']],
  ['ssim-skimage', ['ssim_skimage']],
  ['lpips-alex', ['lpips_alex']],
  ['lpips-vgg', ['lpips_vgg']],
  ['fid', ['fid']],
  ['fvd', ['fvd']],
  ['lse', ['lse']],
  ['lmd', ['lmd']],
];

export const METRIC_BENCH_METRICS = PAIRS.map(([m]) => m);

interface PyResult {
  torch: string;
  threads: number;
  results: Record<string, { fps: number; impl: string } | { error: string }>;
}

/**
 * Both sides, metric by metric: difftalk's item, then the reference's for the same metric (a python3 run per metric,
 * so a machine whose load drifts during the bench skews each ratio less than two long separate passes would).
 */
export async function benchMetrics(
  options: { backend?: BackendName; minSeconds?: number; quick?: boolean; python?: string; metrics?: readonly string[]; log?: (line: string) => void } = {},
): Promise<MetricBench> {
  const unknown = options.metrics?.filter((m) => !METRIC_BENCH_METRICS.includes(m)) ?? [];
  if (unknown.length) throw new Error(`metric bench: unknown metric(s) ${unknown.join(', ')} (known: ${METRIC_BENCH_METRICS.join(', ')})`);
  const quick = options.quick ?? false;
  const minSeconds = options.minSeconds ?? 2;
  const log = options.log ?? (() => undefined);
  const python = options.python ?? process.env.BENCH_PYTHON ?? '/usr/bin/python3';
  await initBackend(options.backend ?? 'auto');
  const sizes: Sizes = quick
    ? { frames: 2, lpips_batch: 1, fid_batch: 1, fvd_clips: 2, sync_windows: 2, lmd_frames: 16 }
    : { frames: 16, lpips_batch: 4, fid_batch: 8, fvd_clips: 2, sync_windows: 19, lmd_frames: 200 };
  const dir = await mkdtemp(path.join(os.tmpdir(), 'difftalk-metric-bench-'));
  const pool = new FramePool();
  const rows: MetricBenchRow[] = [];
  let torch = '';
  let threads = 0;
  try {
    const items = difftalkItems(sizes, minSeconds, quick, pool);
    for (const [metric, refs] of PAIRS.filter(([m]) => !options.metrics || options.metrics.includes(m))) {
      log(`metric bench: ${metric} (difftalk, then ${refs.join(', ')})`);
      const ours = await items[metric]!();
      const spec = path.join(dir, `${metric}.json`);
      await writeFile(spec, JSON.stringify({ budget_s: minSeconds, quick, ...sizes, items: refs }));
      const r = await runProcess(python, [path.join(import.meta.dirname, 'torch', 'metrics_bench.py'), spec]);
      const py = JSON.parse(r.stdout.toString()) as PyResult;
      torch = py.torch;
      threads = py.threads;
      let best: { fps: number; impl: string } | undefined;
      const errors: string[] = [];
      for (const k of refs) {
        const x = py.results[k];
        if (!x) errors.push(`${k}: missing`);
        else if ('error' in x) errors.push(`${k}: ${x.error}`);
        else if (!best || x.fps > best.fps) best = x;
      }
      rows.push({
        metric,
        difftalk: ours,
        reference: best?.fps ?? NaN,
        referenceImpl: best?.impl ?? '',
        referenceError: best ? undefined : errors.join('; '),
      });
    }
  } finally {
    await pool.close();
    await rm(dir, { recursive: true, force: true });
  }
  return { rows, backend: tf.getBackend(), torch, threads, cores: os.cpus().length };
}

/** The table `npm run bench` prints: metric, difftalk frames/s, reference frames/s, ratio (difftalk / reference); LSE in windows/s, FVD in clips/s. */
export function renderMetricBench(r: MetricBench): string {
  const fmt = (x: number) => (Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x.toFixed(1)) : 'n/a');
  const lines = [
    `difftalk: tfjs backend ${r.backend}, PSNR/SSIM on a ${r.cores}-thread FramePool; reference: PyTorch ${r.torch} CPU (${r.threads} threads), numpy, scikit-image`,
    'rates are frames/s, except lse (windows/s) and fvd (16-frame clips/s)',
    '',
    '| metric | difftalk frames/s | reference frames/s | ratio | reference |',
    '| --- | --- | --- | --- | --- |',
    ...r.rows.map(
      (x) =>
        `| ${x.metric} | ${fmt(x.difftalk)} | ${fmt(x.reference)} | ${(x.difftalk / x.reference).toPrecision(3)} | ${x.referenceImpl || x.referenceError} |`,
    ),
  ];
  return lines.join('\n');
}
