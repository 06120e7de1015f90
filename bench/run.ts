/**
 * `npm run bench`: throughput on this machine (not a test; numbers go into the issues' closing notes).
 * - prep: frames/s per stage and end to end on the real HDTF clip (../shared), as a user runs it (`--input`),
 *   one run with the clip alone (startup included) and one with several copies (startup amortised);
 * - metrics: frames/s of each eval metric side by side with its Python reference (PyTorch 1.13 CPU, numpy, scikit-image)
 *   in the same run, and the ratio (bench/metrics.ts, bench/torch/metrics_bench.py; BENCH_METRICS_QUICK=1: one run each;
 *   BENCH_METRICS=lse,fvd: only those rows);
 * - gpu: tfjs-webgpu against PyTorch in the same run, per op and whole UNet step / eval networks (bench/gpu.ts), when a
 *   WebGPU adapter exists (else it says why). BENCH_GPU_SIZE=full (default: gpu.md's shapes, the paper UNet) or tiny
 *   (toy sizes: lavapipe + torch on CPU in seconds), BENCH_GPU_EVAL=0 (no eval networks: on lavapipe FID's 299² alone
 *   takes a minute), BENCH_PYTHON (default /usr/bin/python3), BENCH_GPU_JSON=file.
 * - kernels: difftalk's WebGPU kernels vs tfjs-webgpu's stock ones per op on the webgpu adapter (bench/kernels.ts;
 *   only when one exists; BENCH_KERNEL_SHAPES=gpu for gpu.md's shapes).
 * Options (env): BENCH_ONLY=prep|metrics|gpu|kernels, BENCH_COPIES (default 4), BENCH_LANDMARKER=mediapipe|tfjs.
 */
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { renderPrepSummary, table } from '../src/cli/summary.js';
import { DEFAULT_PREP_CONFIG, runPrep, type PrepResult } from '../src/prep/pipeline.js';
import { initBackend } from '../src/util/tf.js';
import { benchGpu, renderGpuBenchText, type GpuBenchSize } from './gpu.js';
import { benchKernels } from './kernels.js';
import { benchMetrics, renderMetricBench } from './metrics.js';

const SHARED = process.env.DIFFTALK_SHARED ?? path.resolve(import.meta.dirname, '..', '..', 'shared');
const CLIP = path.join(SHARED, 'data', 'media', 'WDA_AlexandriaOcasioCortez_000.mp4');
const MODEL = path.join(SHARED, 'data', 'models', 'fm478md.task');
const out = (s: string) => process.stdout.write(`${s}\n`);

/**
 * CPU seconds used machine-wide (all cores, /proc/stat) and by this process, or undefined off Linux. Machine-wide
 * is the only way to count Chromium's renderer processes (grandchildren); run the bench on an otherwise idle machine.
 */
function cpuSeconds(): { machine: number; self: number } | undefined {
  try {
    const t = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const busy = t.reduce((a, b) => a + b, 0) - (t[3] ?? 0) - (t[4] ?? 0); // all but idle and iowait
    const u = process.cpuUsage();
    return { machine: busy / 100, self: (u.user + u.system) / 1e6 }; // USER_HZ = 100
  } catch {
    return undefined;
  }
}

/** Where the CPU time went, per frame, and the frames/s that this CPU cost allows on this machine's cores. */
function cpuReport(before: ReturnType<typeof cpuSeconds>, frames: number, wall: number): string {
  const after = cpuSeconds();
  if (!before || !after || frames === 0) return '';
  const total = (after.machine - before.machine) / frames;
  const self = (after.self - before.self) / frames;
  const cores = os.cpus().length;
  return [
    `CPU per frame (machine-wide): ${(total * 1000).toFixed(1)} ms = node ${(self * 1000).toFixed(1)} ms + other processes (ffmpeg, Chromium) ${((total - self) * 1000).toFixed(1)} ms;`,
    `cores busy ${(((total * frames) / wall / cores) * 100).toFixed(0)} % of ${cores}; at this CPU cost ${cores} fully busy cores give at most ${(cores / total).toFixed(0)} frames/s`,
  ].join('\n');
}

async function prepOnce(inputs: string[], landmarker: 'mediapipe' | 'tfjs'): Promise<PrepResult & { cpu: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'difftalk-bench-'));
  const before = cpuSeconds();
  const t0 = performance.now();
  try {
    const r = await runPrep(
      { kind: 'input', paths: inputs },
      { ...DEFAULT_PREP_CONFIG, landmarker, faceModel: landmarker === 'mediapipe' ? MODEL : undefined },
      { out: path.join(dir, 'out'), concurrency: 1, retries: 0, retryFailed: false, preview: false },
    );
    return { ...r, cpu: cpuReport(before, r.frames, (performance.now() - t0) / 1000) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function benchPrep(): Promise<void> {
  const landmarker = (process.env.BENCH_LANDMARKER as 'mediapipe' | 'tfjs' | undefined) ?? 'mediapipe';
  const copies = Number(process.env.BENCH_COPIES ?? 4);
  out(`## prep (--input, ${landmarker} landmarks, 256², jpeg 95, mfcc+mel) on ${path.basename(CLIP)}\n`);
  out('### one clip (200 frames), startup included');
  const one = await prepOnce([CLIP], landmarker);
  out(renderPrepSummary(one));
  out(one.cpu);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'difftalk-bench-in-'));
  try {
    await mkdir(dir, { recursive: true });
    const inputs: string[] = [];
    for (let i = 0; i < copies; i++) {
      const f = path.join(dir, `clip${i}.mp4`);
      await copyFile(CLIP, f);
      inputs.push(f);
    }
    out(`\n### ${copies} clips (${copies * 200} frames)`);
    const many = await prepOnce(inputs, landmarker);
    out(renderPrepSummary(many));
    out(many.cpu);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const only = process.env.BENCH_ONLY;
out(`# difftalk bench — ${os.cpus().length} cores, ${os.cpus()[0]?.model ?? ''}, node ${process.version}\n`);
if (!only || only === 'prep') await benchPrep();
if (!only || only === 'metrics') {
  out('\n## metrics: difftalk vs the Python reference, same machine, same run (frames/s; LSE: windows/s; FVD: clips/s; ratio = difftalk / reference)\n');
  const r = await benchMetrics({
    quick: process.env.BENCH_METRICS_QUICK === '1',
    metrics: process.env.BENCH_METRICS?.split(',').filter(Boolean),
    log: (l) => process.stderr.write(`${l}\n`),
  });
  out(renderMetricBench(r));
}
if (!only || only === 'gpu') {
  const size = (process.env.BENCH_GPU_SIZE ?? 'full') as GpuBenchSize;
  out(`\n## GPU: tfjs-webgpu vs PyTorch (${size} sizes)`);
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  let why: string | undefined;
  try {
    await initBackend('webgpu');
  } catch (e) {
    why = (e as Error).message;
  }
  if (why) out(`skipped: ${why}`);
  else {
    const r = await benchGpu({ size, eval: process.env.BENCH_GPU_EVAL !== '0', log: (l) => process.stderr.write(`${l}\n`) });
    out(renderGpuBenchText(r));
    if (process.env.BENCH_GPU_JSON) await writeFile(process.env.BENCH_GPU_JSON, JSON.stringify(r, null, 2));
  }
}
if (!only || only === 'kernels') {
  out('\n## WebGPU kernels: difftalk (src/models/kernels) vs tfjs-webgpu stock, same adapter');
  try {
    const r = await benchKernels();
    out(`(adapter: ${r.adapter}; a software adapter proves correctness only, not speed)`);
    out(
      table([
        ['op', 'ours ms', 'stock ms', 'stock / ours', 'ours mixed ms', 'mixed vs fp32 (rel. max diff)'],
        ...r.rows.map((x) => [
          x.op,
          x.oursMs.toFixed(2),
          x.stockMs.toFixed(2),
          (x.stockMs / x.oursMs).toFixed(2),
          x.mixedMs === undefined ? '—' : x.mixedMs.toFixed(2),
          x.mixedDiff === undefined ? '—' : x.mixedDiff.toExponential(1),
        ]),
      ]),
    );
  } catch (e) {
    out(`skipped: no WebGPU adapter (${(e as Error).message})`);
  }
}
