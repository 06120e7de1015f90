/**
 * The Node side of bench/gpu/run-device.sh, bundled by bench/gpu/pack.sh into .device/device.mjs (the GPU machine
 * has no node_modules). Subcommands, each writing under $DEVICE_OUT:
 * - `probe`: the WebGPU adapters Dawn offers with and without difftalk's toggles (DAWN_TOGGLES): name, features,
 *   subgroup-matrix configurations where Dawn reports them, key limits → probe.json;
 * - `bench LABEL`: the GPU bench (bench/gpu.ts) at BENCH_GPU_SIZE (default full) → bench-LABEL.json / .md, one line
 *   per item in bench-LABEL.log as it goes (partial numbers survive a timeout). BENCH_TORCH_FROM=file reuses the
 *   PyTorch numbers of an earlier run (e.g. the stock-kernel run reuses those of the custom-kernel run);
 *   BENCH_PYTHON names the interpreter with torch; BENCH_GPU_EVAL=0 leaves out the eval networks;
 * - `summary`: summary.md from whatever the steps left (probe, twin check, kernel tests' TAP, benches).
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DAWN_TOGGLES } from '../../src/util/tf.js';
import { benchGpu, benchWebgpu, gpuBenchSpec, renderGpuBench, type GpuBenchResult, type GpuBenchSize, type TorchResults } from '../gpu.js';

const OUT = process.env.DEVICE_OUT ?? path.resolve('device-out');
const say = (s: string) => process.stdout.write(`${s}\n`);

async function probe(): Promise<void> {
  const webgpu = (await import('webgpu')) as unknown as { create(flags: string[]): GPU; globals: object };
  Object.assign(globalThis, webgpu.globals);
  const out: Record<string, unknown> = {};
  for (const [label, flags] of [
    ['no toggles', []],
    ['difftalk toggles', DAWN_TOGGLES],
  ] as const) {
    const adapter = await webgpu.create([...flags]).requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) {
      out[label] = { error: 'no adapter' };
      continue;
    }
    // GPUAdapterInfo's fields are getters on its prototype: read them by name
    const raw = (adapter as unknown as { info?: Record<string, unknown> }).info ?? {};
    const keys = ['vendor', 'architecture', 'device', 'description', 'subgroupMinSize', 'subgroupMaxSize', 'isFallbackAdapter', 'subgroupMatrixConfigs'];
    const info = Object.fromEntries(keys.filter((k) => raw[k] !== undefined).map((k) => [k, raw[k]]));
    const limits = adapter.limits as unknown as Record<string, number>;
    out[label] = {
      flags,
      info: JSON.parse(JSON.stringify(info)) as unknown,
      features: [...adapter.features].map(String).sort(),
      limits: Object.fromEntries(
        ['maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup'].map((k) => [k, limits[k]]),
      ),
    };
  }
  await writeFile(path.join(OUT, 'probe.json'), JSON.stringify(out, null, 2));
  say(JSON.stringify(out, null, 1));
}

async function bench(label: string): Promise<void> {
  const size = (process.env.BENCH_GPU_SIZE ?? 'full') as GpuBenchSize;
  const withEval = process.env.BENCH_GPU_EVAL !== '0';
  const logFile = path.join(OUT, `bench-${label}.log`);
  const log = (l: string) => {
    say(l);
    appendFileSync(logFile, `${l}\n`);
  };
  let r: GpuBenchResult;
  if (process.env.BENCH_TORCH_FROM && existsSync(process.env.BENCH_TORCH_FROM)) {
    const prev = JSON.parse(readFileSync(process.env.BENCH_TORCH_FROM, 'utf8')) as GpuBenchResult;
    const spec = gpuBenchSpec(size, { eval: withEval });
    r = { spec, webgpu: await benchWebgpu(spec, log), torch: prev.torch as TorchResults, torchError: prev.torchError };
  } else {
    r = await benchGpu({ size, eval: withEval, python: process.env.BENCH_PYTHON, log });
  }
  await writeFile(path.join(OUT, `bench-${label}.json`), JSON.stringify(r, null, 2));
  const md = renderGpuBench(r);
  await writeFile(path.join(OUT, `bench-${label}.md`), `${md}\n`);
  say(md);
}

function summary(): string {
  const read = (f: string) => (existsSync(path.join(OUT, f)) ? readFileSync(path.join(OUT, f), 'utf8') : undefined);
  const parts: string[] = ['# difftalk GPU device run', ''];
  const p = read('probe.json');
  if (p) {
    const probeJson = JSON.parse(p) as Record<string, { info?: Record<string, unknown>; features?: string[]; error?: string }>;
    for (const [k, v] of Object.entries(probeJson)) {
      const m = v.info?.subgroupMatrixConfigs;
      const mx = Array.isArray(m) && m.length ? `; subgroup-matrix configs: ${JSON.stringify(m)}` : '';
      const name = Object.values(v.info ?? {})
        .filter((x) => typeof x === 'string' && x)
        .join(' / ');
      parts.push(`- adapter (${k}): ${v.error ?? `${name}; features: ${(v.features ?? []).join(', ')}${mx}`}`);
    }
  } else parts.push('- probe: not run');
  const twin = read('twin-check.json');
  if (twin) {
    const t = JSON.parse(twin) as Record<string, { max_abs_err?: number; max_ref?: number }> & { torch: string };
    const errs = ['unet', 'vq_z', 'vq_recon', 'audionet', 'audioatt', 'ldmnet'].map(
      (k) => `${k} ${((t[k]?.max_abs_err ?? NaN) / (t[k]?.max_ref ?? NaN)).toExponential(1)}`,
    );
    parts.push(`- PyTorch twin vs fixtures (torch ${t.torch}, CPU, max err / max |ref|): ${errs.join(', ')}`);
  } else parts.push('- twin check: not run');
  const tap = read('kernel-tests.tap');
  if (tap) {
    const n = (k: string) =>
      /^# (\w+) (\d+)$/m.exec(
        tap
          .split('\n')
          .filter((l) => l.startsWith(`# ${k} `))
          .pop() ?? '',
      )?.[2] ?? '?';
    const failed = tap
      .split('\n')
      .filter((l) => /^\s*not ok/.test(l))
      .map((l) => l.trim());
    parts.push(
      `- kernel checks (tests/gpu on the GPU against the cpu backend): pass ${n('pass')}, fail ${n('fail')}, skipped ${n('skipped')}${failed.length ? `; ${failed.join('; ')}` : ''}`,
    );
  } else parts.push('- kernel checks: not run');
  for (const label of ['custom', 'stock']) {
    const md = read(`bench-${label}.md`);
    parts.push('', `## bench: ${label} kernels`, '', md ?? `not run (partial lines, if any, in bench-${label}.log)`);
  }
  return parts.join('\n');
}

await mkdir(OUT, { recursive: true });
process.env.XDG_RUNTIME_DIR ??= '/tmp';
const [cmd, arg] = process.argv.slice(2);
if (cmd === 'probe') await probe();
else if (cmd === 'bench') await bench(arg ?? 'custom');
else if (cmd === 'summary') {
  const s = summary();
  await writeFile(path.join(OUT, 'summary.md'), `${s}\n`);
  say(s);
} else {
  process.stderr.write('usage: device.mjs probe | bench LABEL | summary\n');
  process.exitCode = 2;
}
