/**
 * difftalk's own WGSL kernels, registered over tfjs-backend-webgpu's for the ops that dominate the UNet step.
 * On by default whenever the webgpu backend starts (src/util/tf.ts runs the hook registered below); set
 * `DIFFTALK_WEBGPU_KERNELS=stock` to keep tfjs's kernels (for comparison), or call `useCustomKernels(false)`.
 *
 * | kernel      | file        | replaces            |
 * |-------------|-------------|---------------------|
 * | GEMM cores  | gemm.ts     | (core of matmul and the conv passes: 64×64-tiled in workgroup memory; split-K with subgroupAdd for small grids, deep K; fused bias/activation store) |
 * | matmul      | matmul.ts   | BatchMatMul (tf.matMul, all ranks, transposes: attention's gradient, im2col convs off webgpu), _FusedMatMul (tf.fused.matMul: blocks.linear) |
 * | conv2d      | conv2d.ts   | Conv2D, Conv2DBackpropFilter, Conv2DBackpropInput (NHWC, implicit GEMM, all three passes), FusedConv2D (tf.fused.conv2d: blocks.conv2d, bias in the store) |
 * | attention   | attention.ts | new kernels `DifftalkAttention*` behind blocks.attention (fused forward and backward, no score matrix) |
 * | GroupNorm(+SiLU) | group-norm.ts | new kernels `Difftalk*` behind blocks.groupNorm / groupNormSilu (forward and backward) |
 *
 * features.ts says which optional WGSL features (subgroups) the kernels may use and lets a program carry its own
 * `enable` directive; `DIFFTALK_WEBGPU_SUBGROUPS=off` forces the plain variants (GroupNorm's tree reductions, the
 * tiled GEMM everywhere, one thread per attention row).
 * Precision: the GEMM kernels (matmul, conv2d) and fused attention have an f16-operand variant for `--precision mixed` (program.ts
 * `kernelPrecision`, set by the run; `resolvePrecision` below decides what a run may use). No subgroup-matrix
 * (tensor-core) variant: lavapipe, the only adapter here, does not offer chromium-experimental-subgroup-matrix, so it
 * could not be tested; it is left out rather than shipped untested.
 *
 * Each replacing kernel hands the cases it does not cover (int32, NCHW, general broadcasting) back to the stock kernel;
 * the new ones are only called where their `…Available` check says so (blocks.ts falls back to the composite ops).
 * This module sits in `models`, not `util`: the models are what it serves, and the fused GroupNorm+SiLU and attention
 * are model ops with their own gradients, called from blocks.ts. It reaches the device only through util/tf.ts's
 * `onWebgpuReady` hook, so util stays free of model code.
 */
import { DifftalkError } from '../../util/errors.js';
import { backendInfo, gpuDevice, onWebgpuReady, tf } from '../../util/tf.js';
import { runConv2dPass } from './conv2d.js';
import { ATTENTION_KERNELS } from './attention.js';
import { hoistEnableDirectives } from './features.js';
import { GROUP_NORM_KERNELS } from './group-norm.js';
import { runMatMul } from './matmul.js';
import type { Precision, WebGPUBackendLike } from './program.js';

export { kernelPrecision, setKernelPrecision, type Precision } from './program.js';

type KernelArgs = { inputs: Record<string, tf.TensorInfo>; attrs?: Record<string, unknown>; backend: unknown };

const BACKEND = 'webgpu';
const stock = new Map<string, tf.KernelConfig>();
let active = false;

function fallback(name: string, args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const k = stock.get(name);
  if (!k) throw new Error(`difftalk kernels: no stock ${name} kernel to fall back to`);
  return k.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]);
}

function batchMatMul(args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const { a, b } = args.inputs;
  const ta = Boolean(args.attrs?.transposeA);
  const tb = Boolean(args.attrs?.transposeB);
  return runMatMul(args.backend as WebGPUBackendLike, a!, b!, ta, tb) ?? fallback('BatchMatMul', args);
}

type ConvAttrs = {
  strides: number | [number, number];
  pad: 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;
  dataFormat?: 'NHWC' | 'NCHW';
  dilations?: number | [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  filterShape?: number[];
  inputShape?: number[];
};

function convInfo(xShape: readonly number[], filterShape: readonly number[], at: ConvAttrs): tf.backend_util.Conv2DInfo {
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    at.strides,
    at.dilations ?? 1,
    at.pad,
    at.dimRoundingMode,
    false,
    tf.backend_util.convertConv2DDataFormat(at.dataFormat ?? 'NHWC'),
  );
}

function conv2d(args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const { x, filter } = args.inputs;
  const info = convInfo(x!.shape, filter!.shape, args.attrs as ConvAttrs);
  return runConv2dPass(args.backend as WebGPUBackendLike, 'forward', [x!, filter!], info) ?? fallback('Conv2D', args);
}

type FusionAttrs = { activation?: string; leakyreluAlpha?: number };

function fusedConv2d(args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const { x, filter, bias } = args.inputs;
  const at = args.attrs as ConvAttrs & FusionAttrs;
  const info = convInfo(x!.shape, filter!.shape, at);
  const fused = { bias, activation: at.activation, leakyreluAlpha: at.leakyreluAlpha };
  return runConv2dPass(args.backend as WebGPUBackendLike, 'forward', [x!, filter!], info, fused) ?? fallback('FusedConv2D', args);
}

function fusedMatMul(args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const { a, b, bias } = args.inputs;
  const at = args.attrs as { transposeA?: boolean; transposeB?: boolean } & FusionAttrs;
  const fused = { bias, activation: at.activation, leakyreluAlpha: at.leakyreluAlpha };
  return runMatMul(args.backend as WebGPUBackendLike, a!, b!, Boolean(at.transposeA), Boolean(at.transposeB), fused) ?? fallback('_FusedMatMul', args);
}

function conv2dBackpropFilter(args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const { x, dy } = args.inputs;
  const at = args.attrs as ConvAttrs;
  const info = convInfo(x!.shape, at.filterShape!, at);
  return runConv2dPass(args.backend as WebGPUBackendLike, 'filter', [x!, dy!], info) ?? fallback('Conv2DBackpropFilter', args);
}

function conv2dBackpropInput(args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const { dy, filter } = args.inputs;
  const at = args.attrs as ConvAttrs;
  const info = convInfo(at.inputShape!, filter!.shape, at);
  return runConv2dPass(args.backend as WebGPUBackendLike, 'input', [dy!, filter!], info) ?? fallback('Conv2DBackpropInput', args);
}

const OURS: Record<string, (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[]> = {
  BatchMatMul: batchMatMul,
  Conv2D: conv2d,
  Conv2DBackpropFilter: conv2dBackpropFilter,
  Conv2DBackpropInput: conv2dBackpropInput,
  FusedConv2D: fusedConv2d,
  _FusedMatMul: fusedMatMul,
};

/** Whether the environment asks for tfjs's stock kernels (DIFFTALK_WEBGPU_KERNELS=stock|off|0). */
export function customKernelsWanted(): boolean {
  return !/^(stock|off|0|false|no)$/i.test(process.env.DIFFTALK_WEBGPU_KERNELS ?? '');
}

/** Whether our kernels are the ones registered for webgpu now. */
export function customKernelsActive(): boolean {
  return active;
}

/** The names of the kernels this module replaces. */
export const CUSTOM_KERNELS = Object.keys(OURS);

/**
 * Register our kernels over tfjs-webgpu's (on) or put the stock ones back (off). Needs tfjs-backend-webgpu loaded
 * (initBackend('webgpu') has run); a no-op before that. Returns whether ours are active afterwards.
 */
export function useCustomKernels(on: boolean): boolean {
  for (const [name, fn] of Object.entries(OURS)) {
    const current = tf.getKernel(name, BACKEND);
    if (!current) continue;
    const isOurs = current.kernelFunc === (fn as unknown as tf.KernelFunc);
    if (on && !isOurs) {
      stock.set(name, current);
      tf.unregisterKernel(name, BACKEND);
      tf.registerKernel({ kernelName: name, backendName: BACKEND, kernelFunc: fn as unknown as tf.KernelFunc });
    } else if (!on && isOurs) {
      tf.unregisterKernel(name, BACKEND);
      const s = stock.get(name);
      if (s) tf.registerKernel(s);
    }
  }
  for (const [name, fn] of Object.entries({ ...GROUP_NORM_KERNELS, ...ATTENTION_KERNELS })) {
    const registered = tf.getKernel(name, BACKEND) !== undefined;
    if (on && !registered && tf.getKernel('BatchMatMul', BACKEND)) {
      tf.registerKernel({ kernelName: name, backendName: BACKEND, kernelFunc: fn as unknown as tf.KernelFunc });
    } else if (!on && registered) tf.unregisterKernel(name, BACKEND);
  }
  active = on && Object.keys(OURS).every((name) => tf.getKernel(name, BACKEND)?.kernelFunc === (OURS[name] as unknown as tf.KernelFunc));
  return active;
}

/** `--precision`: a precision, or 'auto' (what the adapter does best). */
export type PrecisionChoice = 'auto' | Precision;

/** Why 'mixed' cannot run on the current backend, or undefined when it can. */
export function mixedUnavailable(): string | undefined {
  const info = backendInfo();
  const backend = info?.backend ?? tf.getBackend();
  if (backend !== 'webgpu') return `the '${backend}' backend has no f16 kernels (mixed precision is a webgpu path)`;
  if (!info?.features?.includes('shader-f16')) return 'the WebGPU adapter does not offer shader-f16';
  if (!customKernelsActive()) return "difftalk's WebGPU kernels are off (DIFFTALK_WEBGPU_KERNELS=stock); the stock kernels have no f16 path";
  return undefined;
}

/**
 * The precision a run uses, resolved after initBackend: 'auto' is 'mixed' where the backend is webgpu with
 * shader-f16 and our kernels, 'fp32' elsewhere; an explicit 'mixed' that cannot run is an error (exit 2) with the fix.
 */
export function resolvePrecision(choice: PrecisionChoice): { precision: Precision; why: string } {
  const why = mixedUnavailable();
  if (choice === 'fp32') return { precision: 'fp32', why: 'requested' };
  if (choice === 'mixed') {
    if (why) {
      throw new DifftalkError('bad-flag', `--precision mixed cannot run here: ${why}`, {
        suggestion: 'use --precision fp32 (or auto), or --backend webgpu on an adapter with shader-f16 (a Vulkan GPU, or Mesa ≥ 25 lavapipe)',
      });
    }
    return { precision: 'mixed', why: 'requested' };
  }
  return why ? { precision: 'fp32', why: `auto: ${why}` } : { precision: 'mixed', why: 'auto: webgpu with shader-f16' };
}

/** One line for run headers: the precision, what it means, and why it was chosen. */
export function describePrecision(p: { precision: Precision; why: string }): string {
  const what =
    p.precision === 'mixed' ? 'f16 GEMM and attention operands, f32 accumulation, f32 weights and optimizer state, dynamic loss scaling' : 'float32 throughout';
  return `precision ${p.precision} (${what}; ${p.why})`;
}

onWebgpuReady(() => {
  const device = gpuDevice();
  if (device) hoistEnableDirectives(device);
  useCustomKernels(customKernelsWanted());
});
