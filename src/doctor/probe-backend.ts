/**
 * Child-process probe for `difftalk doctor`: starts one TensorFlow.js backend (src/util/tf.ts initBackend) and prints
 * one JSON line; for webgpu also the adapter's name and features. Run in its own process so a native crash of a backend
 * cannot take doctor down.  Usage: node probe-backend.js <tensorflow|webgpu|wasm|cpu>
 */
import { initBackend, tf, type BackendName } from '../util/tf.js';
import { errorMessage } from '../util/errors.js';

const NAMES = ['tensorflow', 'webgpu', 'wasm', 'cpu'] as const;

async function adapterInfo(): Promise<{ adapter?: string; features?: string[] }> {
  const webgpu = (await import('webgpu')) as unknown as { create(flags: string[]): GPU; globals: object };
  Object.assign(globalThis, webgpu.globals);
  const adapter = await webgpu.create([]).requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) return {};
  const info = (adapter as unknown as { info?: { vendor?: string; architecture?: string; device?: string; description?: string } }).info ?? {};
  const name = [info.description, info.vendor, info.architecture, info.device].filter((s) => s).join(' / ');
  return { adapter: name || 'unnamed adapter', features: [...adapter.features].map(String).sort() };
}

async function main(): Promise<void> {
  const name = process.argv[2] as BackendName;
  if (!NAMES.includes(name as (typeof NAMES)[number])) throw new Error(`unknown backend ${String(name)}`);
  const extra = name === 'webgpu' ? await adapterInfo().catch(() => ({})) : {};
  let used: string;
  try {
    used = await initBackend(name);
  } catch (e) {
    process.stdout.write(JSON.stringify({ ok: false, error: errorMessage(e), ...extra }) + '\n');
    return;
  }
  const sum = tf.tidy(() => tf.add(tf.tensor1d([1, 2]), tf.tensor1d([3, 4])).dataSync());
  process.stdout.write(JSON.stringify({ ok: used === name && sum[0] === 4 && sum[1] === 6, backend: used, ...extra }) + '\n');
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stdout.write(JSON.stringify({ ok: false, error: errorMessage(e) }) + '\n');
    process.exit(0);
  },
);
