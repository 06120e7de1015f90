import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { DifftalkError, errorMessage } from './errors.js';
import { silent, type OnEvent } from './events.js';

export type BackendName = 'auto' | 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';
export { tf };

const require = createRequire(import.meta.url);

/**
 * Dawn toggles for every WebGPU device we create: unsafe APIs (experimental features such as subgroup matrices),
 * f16 on NVIDIA's Vulkan driver (Dawn hides `shader-f16` there by default) and the Vulkan memory model. Harmless on
 * adapters where they do not apply (e.g. lavapipe).
 */
export const DAWN_TOGGLES = ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia,use_vulkan_memory_model'];

/** Optional device features we ask for when the adapter offers them. */
const WANTED_FEATURES = ['timestamp-query', 'subgroups', 'shader-f16', 'chromium-experimental-subgroup-matrix'] as const;

/** Limits tfjs-backend-webgpu relies on; we request the adapter's maximum for each. */
const WANTED_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeWorkgroupsPerDimension',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeInvocationsPerWorkgroup',
  'maxStorageBuffersPerShaderStage',
] as const;

/** What the selected backend runs on; for webgpu, the adapter's name, features and limits. */
export interface BackendInfo {
  backend: string;
  /** Why this backend (the selection order for auto, or 'requested'). */
  reason: string;
  adapter?: { vendor: string; architecture: string; device: string; description: string };
  features?: string[];
  limits?: Record<string, number>;
}

let lastInfo: BackendInfo | undefined;
let webgpuDevice: GPUDevice | undefined;
/** What tryWebgpu reported when it created webgpuDevice. */
let webgpuStarted: Partial<BackendInfo> | undefined;
const webgpuHooks = new Set<() => void>();

/**
 * Run `fn` each time the webgpu backend starts (and now, if it already has). Higher layers use it to register their
 * own WebGPU kernels (src/models/kernels) without util importing them.
 */
export function onWebgpuReady(fn: () => void): void {
  webgpuHooks.add(fn);
  if (webgpuDevice && tf.findBackend('webgpu')) fn();
}

/** The description of the backend chosen by the last initBackend call (undefined before one). */
export function backendInfo(): BackendInfo | undefined {
  return lastInfo;
}

/** The WebGPU device initBackend('webgpu') created (for custom kernels); undefined on other backends. */
export function gpuDevice(): GPUDevice | undefined {
  return tf.getBackend() === 'webgpu' ? webgpuDevice : undefined;
}

type Attempt = { ok: true; info?: Partial<BackendInfo> } | { ok: false; why: string };

async function tryTensorflow(): Promise<Attempt> {
  const whys: string[] = [];
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(pkg);
      if (await tf.setBackend('tensorflow')) return { ok: true, info: { reason: `${pkg} is installed` } };
      whys.push(`${pkg} did not start`);
    } catch {
      whys.push(`${pkg} is not installed`);
    }
  }
  return { ok: false, why: whys.join('; ') };
}

/** ' at <file:line>' of the first caller outside tfjs and this module, for the sync-read error. */
function callerOf(): string {
  // a read from deep inside tfjs (e.g. moving a tensor between backends) is more than the default 10 frames down
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 64;
  const stack = new Error().stack ?? '';
  Error.stackTraceLimit = limit;
  const frames = stack.split('\n').slice(1);
  const frame = frames.find((f) => !/tfjs|util[\\/]tf\.[jt]s|node:internal/.test(f));
  const m = frame && /\(?((?:file:\/\/)?[^()\s]+:\d+):\d+\)?\s*$/.exec(frame);
  return m ? ` at ${path.relative(process.cwd(), m[1]!.replace(/^file:\/\//, ''))}` : '';
}

/**
 * tfjs-webgpu's synchronous read (dataSync/arraySync) stages through OffscreenCanvas, which Node lacks: make it fail
 * with a clear message (values already on the CPU are still returned).
 */
function guardSyncReads(backend: tf.KernelBackend): void {
  const b = backend as unknown as { readSync(dataId: object): unknown; tensorMap: { get(id: object): { values?: unknown; dtype?: string } | undefined } };
  const original = b.readSync.bind(b);
  b.readSync = (dataId: object) => {
    const data = b.tensorMap.get(dataId);
    if (data && (data.values != null || data.dtype === 'string')) return original(dataId);
    throw new DifftalkError(
      'webgpu-sync-read',
      `a synchronous tensor read (dataSync/arraySync)${callerOf()} is not possible on the webgpu backend in Node (tfjs stages it through OffscreenCanvas)`,
      { suggestion: 'read with `await tensor.data()` / `await tensor.array()`, or run with --backend wasm' },
    );
  };
}

function adapterSummary(adapter: GPUAdapter): NonNullable<BackendInfo['adapter']> {
  const info = (adapter as unknown as { info?: Partial<GPUAdapterInfo> }).info ?? {};
  return { vendor: info.vendor ?? '', architecture: info.architecture ?? '', device: info.device ?? '', description: info.description ?? '' };
}

/** A software adapter (lavapipe, SwiftShader): correct, but slower than wasm; auto skips it, `--backend webgpu` uses it. */
function isSoftware(adapter: GPUAdapter): boolean {
  const a = adapterSummary(adapter);
  return a.architecture === 'software' || /llvmpipe|lavapipe|swiftshader/i.test(`${a.device} ${a.description}`);
}

async function tryWebgpu(allowSoftware = true): Promise<Attempt> {
  if (tf.findBackend('webgpu') && webgpuDevice) {
    // the same device again (a later initBackend in this process): the same adapter, features and limits
    return (await tf.setBackend('webgpu')) ? { ok: true, info: webgpuStarted } : { ok: false, why: 'the webgpu backend registered earlier did not start' };
  }
  let webgpu: { create(flags: string[]): GPU; globals: object };
  try {
    webgpu = (await import('webgpu')) as unknown as typeof webgpu;
  } catch (e) {
    return { ok: false, why: `the optional npm package \`webgpu\` did not load (${errorMessage(e)})` };
  }
  Object.assign(globalThis, webgpu.globals);
  const gpu = webgpu.create(DAWN_TOGGLES);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) return { ok: false, why: 'no WebGPU adapter (no Vulkan GPU, and no software Vulkan such as Mesa ≥ 25 lavapipe)' };
  if (!allowSoftware && isSoftware(adapter)) {
    return { ok: false, why: `the only WebGPU adapter is a software renderer (${adapterSummary(adapter).device || 'CPU'}), slower than wasm` };
  }
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const requiredLimits: Record<string, number> = {};
  const adapterLimits = adapter.limits as unknown as Record<string, number>;
  for (const k of WANTED_LIMITS) if (typeof adapterLimits[k] === 'number') requiredLimits[k] = adapterLimits[k];
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  // A GPU validation or out-of-memory error means wrong results from then on: report it on stderr (never on stdout,
  // which carries --json results) with what failed.
  device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
    process.stderr.write(`webgpu error: ${ev.error.message}\n`);
  };
  // tfjs-backend-webgpu checks `navigator.gpu` in its constructor; Node 20 has no navigator nor window.
  const g = globalThis as unknown as { navigator?: { gpu?: GPU }; window?: unknown };
  if (!g.navigator) Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  else if (!g.navigator.gpu) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
  if (g.window === undefined) g.window = globalThis;
  const { WebGPUBackend } = await import('@tensorflow/tfjs-backend-webgpu');
  const Backend = WebGPUBackend as unknown as new (d: GPUDevice, info?: unknown) => tf.KernelBackend;
  const adapterInfo = (adapter as unknown as { info?: unknown }).info;
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend(
    'webgpu',
    () => {
      const backend = new Backend(device, adapterInfo);
      guardSyncReads(backend);
      return backend;
    },
    // below wasm and cpu in tfjs's own priority: only initBackend picks it, never tf.ready() on its own
    0,
  );
  if (!(await tf.setBackend('webgpu'))) return { ok: false, why: 'tfjs-backend-webgpu did not start on the adapter' };
  webgpuDevice = device;
  for (const hook of webgpuHooks) hook();
  const limits: Record<string, number> = {};
  for (const k of WANTED_LIMITS) if (requiredLimits[k] !== undefined) limits[k] = requiredLimits[k];
  webgpuStarted = { adapter: adapterSummary(adapter), features: [...device.features].map(String).sort(), limits };
  return { ok: true, info: webgpuStarted };
}

async function tryWasm(): Promise<Attempt> {
  try {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    const dir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
    wasm.setWasmPaths(`${path.join(dir, 'dist')}${path.sep}`);
    return (await tf.setBackend('wasm')) ? { ok: true } : { ok: false, why: 'the wasm backend did not start' };
  } catch (e) {
    return { ok: false, why: `the wasm backend did not load (${errorMessage(e)})` };
  }
}

async function tryCpu(): Promise<Attempt> {
  return (await tf.setBackend('cpu')) ? { ok: true } : { ok: false, why: 'the cpu backend did not start' };
}

const TRIES: Record<Exclude<BackendName, 'auto'>, () => Promise<Attempt>> = { tensorflow: tryTensorflow, webgpu: tryWebgpu, wasm: tryWasm, cpu: tryCpu };
const AUTO_ORDER = ['tensorflow', 'webgpu', 'wasm', 'cpu'] as const;

const CPU_WARNING =
  "the 'cpu' backend is tfjs's plain-JavaScript reference: orders of magnitude slower than wasm (a tiny autoencoder step: ~200 s vs ~2 s); use --backend wasm on a CPU, webgpu on a GPU";

function describe(info: BackendInfo): string {
  if (!info.adapter) return `TensorFlow.js backend: ${info.backend} (${info.reason})`;
  const a = info.adapter;
  const name = [a.vendor, a.architecture, a.device, a.description].filter((s) => s).join(' / ') || 'unnamed adapter';
  const limits = info.limits ?? {};
  return (
    `TensorFlow.js backend: webgpu (${info.reason}) on ${name}; features: ${(info.features ?? []).join(', ') || 'none'}; ` +
    `limits: maxBufferSize ${limits.maxBufferSize}, maxStorageBufferBindingSize ${limits.maxStorageBufferBindingSize}, ` +
    `maxComputeWorkgroupStorageSize ${limits.maxComputeWorkgroupStorageSize}, maxComputeInvocationsPerWorkgroup ${limits.maxComputeInvocationsPerWorkgroup}`
  );
}

/**
 * Select a TensorFlow.js backend and return the name actually in use. Emits one `log` event saying which backend,
 * why, and for webgpu the adapter's name, features and limits (also in `backendInfo()`); a warning for `cpu`.
 * auto: tensorflow (tfjs-node[-gpu], if installed) → webgpu (npm `webgpu`, if an adapter exists) → wasm → cpu, with
 * no stack traces: each skipped backend's reason is part of the message.
 * Naming a backend that cannot start is an error, never a silent fallback.
 */
export async function initBackend(name: BackendName = 'auto', onEvent: OnEvent = silent): Promise<string> {
  let info: BackendInfo | undefined;
  if (name === 'auto') {
    const skipped: string[] = [];
    for (const n of AUTO_ORDER) {
      let attempt: Attempt;
      try {
        attempt = n === 'webgpu' ? await tryWebgpu(false) : await TRIES[n]();
      } catch (e) {
        attempt = { ok: false, why: errorMessage(e) };
      }
      if (attempt.ok) {
        const reason = skipped.length ? `auto: ${skipped.join('; ')}` : 'auto: first in the order tensorflow → webgpu → wasm → cpu';
        info = { backend: n, ...attempt.info, reason };
        break;
      }
      skipped.push(`${n} skipped: ${attempt.why}`);
    }
    if (!info) throw new DifftalkError('backend-unavailable', `no TensorFlow.js backend could start (${skipped.join('; ')})`);
  } else {
    let attempt: Attempt;
    try {
      attempt = await TRIES[name]();
    } catch (e) {
      throw new DifftalkError('backend-unavailable', `TensorFlow.js backend '${name}' failed to start: ${errorMessage(e)}`);
    }
    if (!attempt.ok) {
      const hint: Record<string, string> = {
        tensorflow: 'npm install @tensorflow/tfjs-node-gpu (needs internet and CUDA 11) or @tensorflow/tfjs-node',
        webgpu: 'needs the optional npm package `webgpu` and a Vulkan GPU (or Mesa ≥ 25 lavapipe on a CPU; see docs/backends.md)',
        wasm: 'reinstall @tensorflow/tfjs-backend-wasm',
        cpu: '',
      };
      throw new DifftalkError('backend-unavailable', `TensorFlow.js backend '${name}' is not available here: ${attempt.why}`, { suggestion: hint[name] });
    }
    info = { backend: name, ...attempt.info, reason: 'requested' };
  }
  await tf.ready();
  info.backend = tf.getBackend();
  lastInfo = info;
  onEvent({ type: 'log', level: 'info', message: describe(info) });
  if (info.backend === 'cpu') onEvent({ type: 'log', level: 'warn', message: CPU_WARNING });
  return info.backend;
}
