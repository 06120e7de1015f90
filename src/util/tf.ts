import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { DifftalkError, errorMessage } from './errors.js';

export type BackendName = 'auto' | 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';
export { tf };

const require = createRequire(import.meta.url);

async function tryTensorflow(): Promise<boolean> {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(pkg);
      if (await tf.setBackend('tensorflow')) return true;
    } catch {
      /* optional dependency not installed */
    }
  }
  return false;
}

async function tryWebgpu(): Promise<boolean> {
  try {
    const webgpu = (await import('webgpu')) as unknown as { create(flags: string[]): GPU; globals: object };
    Object.assign(globalThis, webgpu.globals);
    const gpu = webgpu.create([]);
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) return false;
    const device = await adapter.requestDevice({
      requiredLimits: {
        maxBufferSize: adapter.limits.maxBufferSize,
        maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      },
    });
    const { WebGPUBackend } = await import('@tensorflow/tfjs-backend-webgpu');
    // WebGPUBackend(device, adapterInfo) is the documented way to hand tfjs an existing device.
    const Backend = WebGPUBackend as unknown as new (d: GPUDevice, info?: unknown) => tf.KernelBackend;
    tf.registerBackend('webgpu', () => new Backend(device, (adapter as unknown as { info?: unknown }).info), 10);
    return await tf.setBackend('webgpu');
  } catch {
    return false;
  }
}

async function tryWasm(): Promise<boolean> {
  try {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    const dir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
    wasm.setWasmPaths(`${path.join(dir, 'dist')}${path.sep}`);
    return await tf.setBackend('wasm');
  } catch {
    return false;
  }
}

/**
 * Select a TensorFlow.js backend and return the name actually in use.
 * auto: tensorflow (tfjs-node[-gpu], if installed) → webgpu (npm `webgpu`, if a GPU adapter exists) → wasm → cpu.
 * Naming a backend that cannot start is an error, never a silent fallback.
 */
export async function initBackend(name: BackendName = 'auto'): Promise<string> {
  const tries: Record<Exclude<BackendName, 'auto'>, () => Promise<boolean>> = {
    tensorflow: tryTensorflow,
    webgpu: tryWebgpu,
    wasm: tryWasm,
    cpu: async () => tf.setBackend('cpu'),
  };
  if (name === 'auto') {
    for (const n of ['tensorflow', 'webgpu', 'wasm', 'cpu'] as const) {
      if (await tries[n]()) break;
    }
  } else {
    let ok = false;
    try {
      ok = await tries[name]();
    } catch (e) {
      throw new DifftalkError('backend-unavailable', `TensorFlow.js backend '${name}' failed to start: ${errorMessage(e)}`);
    }
    if (!ok) {
      const hint: Record<string, string> = {
        tensorflow: 'npm install @tensorflow/tfjs-node-gpu (needs internet and CUDA 11) or @tensorflow/tfjs-node',
        webgpu: 'needs the optional npm package `webgpu` and a Vulkan-capable GPU',
        wasm: 'reinstall @tensorflow/tfjs-backend-wasm',
        cpu: '',
      };
      throw new DifftalkError('backend-unavailable', `TensorFlow.js backend '${name}' is not available here`, {
        suggestion: hint[name],
      });
    }
  }
  await tf.ready();
  return tf.getBackend();
}
