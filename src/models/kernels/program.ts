/**
 * The small part of tfjs-backend-webgpu's program API the kernels use (typed here so that nothing imports the
 * package's values: importing it registers its backend as a side effect). A program is WGSL that tfjs prefixes with
 * its declarations: the output buffer `result`, one read-only storage buffer per name in `variableNames`, and
 * `uniforms` (the shapes, then the fields named in `uniforms`, filled from `programDefinedUniform` in order).
 * The user code defines `fn main()`; `localId`, `workgroupId` and friends are module-scope private variables.
 */
import type { tf } from '../../util/tf.js';

export interface WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[]; y?: number[]; z?: number[] };
  dispatch: [number, number, number];
  variableNames: string[];
  uniforms?: string;
  workgroupSize: [number, number, number];
  getUserCode: () => string;
}

export type ProgramUniform = Array<{ type: 'int32' | 'float32'; data: number[] }>;

export interface WebGPUBackendLike {
  runWebGPUProgram(program: WebGPUProgram, inputs: tf.TensorInfo[], outputDtype: tf.DataType, uniforms?: ProgramUniform): tf.TensorInfo;
}

/**
 * Whether every input is a float32 tensor. Its GPU buffer may still hold int32 (tfjs declares each WGSL input from
 * its buffer's dtype, and a cast from int32 or bool to float32 shares the buffer), so every kernel reads inputs
 * through f32(…).
 */
export function allFloat32(inputs: tf.TensorInfo[]): boolean {
  return inputs.every((t) => t.dtype === 'float32');
}

/** `dispatchLayout` for programs that index the grid themselves through `workgroupId` (main() takes no argument). */
export const gridLayout = (): WebGPUProgram['dispatchLayout'] => ({ x: [0], y: [1], z: [2] });

/**
 * Arithmetic of the GEMM kernels (matmul, the three conv passes) and of fused attention: 'fp32' (f32 operands, f32
 * accumulation) or 'mixed' (operands rounded to f16 as they are staged in workgroup memory, f32 accumulation, f32
 * results; attention's softmax statistics f32; needs the device feature `shader-f16`). A property of the run: the
 * trainer / sampler sets it with `setKernelPrecision` (from its resolved `--precision`), every such program reads it
 * and is compiled once per precision (it is part of the shader key). GroupNorm and everything else stay f32, as under
 * PyTorch's autocast (norms in f32; group-norm.ts says why it has no f16 staging).
 */
export type Precision = 'fp32' | 'mixed';

let precision: Precision = 'fp32';

/** The precision the GEMM and attention kernels use now ('fp32' until a run sets it). */
export function kernelPrecision(): Precision {
  return precision;
}

/** Set the precision of the GEMM and attention kernels (the caller checked the device has `shader-f16` for 'mixed'); returns the previous one. */
export function setKernelPrecision(p: Precision): Precision {
  const before = precision;
  precision = p;
  return before;
}

/**
 * WGSL for the f16 side of 'mixed': `enable f16;` (util/tf.ts moves `enable` lines to the top of the module: tfjs puts
 * its own declarations first) and `toF16(v)`, f32 → f16 with IEEE overflow made explicit: |v| ≥ 65520 (what
 * round-to-nearest sends past f16's max 65504) and NaN become ±inf, so an overflowing operand always yields a
 * non-finite result that the loss scaler sees (WGSL leaves out-of-range conversions at run time unspecified).
 */
export const F16_SUPPORT = `
enable f16;
fn toF16(v : f32) -> f16 {
  if (abs(v) < 65520.0) { return f16(v); }
  var bits = 0x7c00fc00u; // (x: -inf, y: +inf) as two f16; a var, so that no constant inf is folded at compile time
  let infs = bitcast<vec2<f16>>(bits);
  return select(infs.x, infs.y, v > 0.0);
}`;
