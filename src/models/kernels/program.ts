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
