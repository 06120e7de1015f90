/**
 * BatchMatMul (tf.matMul, every rank ≥ 2, transposeA/B): the tiled GEMM of gemm.ts with plain strided loads.
 * Assumes float32 and batch dimensions that are equal or where one side's batch is 1 (broadcast); anything else
 * (int32, general broadcasting such as [2,1]×[1,3]) goes to the stock tfjs-webgpu kernel. Under 'mixed' precision
 * (program.ts) the operands are rounded to f16, the sums stay f32 (gemm.ts). Tiled or split-K subgroup core as
 * gemm.ts `gemmVariant` picks. _FusedMatMul (tf.fused.matMul, blocks.linear on webgpu) is the same with the bias add
 * and activation in the store (gemm.ts `Epilogue`; prelu and other bias shapes go to the stock kernel).
 */
import type { tf } from '../../util/tf.js';
import { epilogueOf, gemmProgram, type Epilogue, type Fusion } from './gemm.js';
import { allFloat32, kernelPrecision, type Precision, type WebGPUBackendLike, type WebGPUProgram } from './program.js';

export interface MatMulDims {
  batch: number;
  batchA: number;
  batchB: number;
  m: number;
  n: number;
  k: number;
  outShape: number[];
}

/** Shapes of a BatchMatMul, or undefined when this kernel does not cover them. */
export function matMulDims(aShape: readonly number[], bShape: readonly number[], transposeA: boolean, transposeB: boolean): MatMulDims | undefined {
  const ra = aShape.length;
  const rb = bShape.length;
  if (ra < 2 || rb < 2) return undefined;
  const m = transposeA ? aShape[ra - 1]! : aShape[ra - 2]!;
  const ka = transposeA ? aShape[ra - 2]! : aShape[ra - 1]!;
  const kb = transposeB ? bShape[rb - 1]! : bShape[rb - 2]!;
  const n = transposeB ? bShape[rb - 2]! : bShape[rb - 1]!;
  if (ka !== kb) return undefined;
  const outerA = aShape.slice(0, -2);
  const outerB = bShape.slice(0, -2);
  const batchA = outerA.reduce((x, y) => x * y, 1);
  const batchB = outerB.reduce((x, y) => x * y, 1);
  let outer: number[];
  if (batchA === 1) outer = outerB.length >= outerA.length ? outerB : outerA;
  else if (batchB === 1) outer = outerA.length >= outerB.length ? outerA : outerB;
  else if (outerA.length === outerB.length && outerA.every((d, i) => d === outerB[i])) outer = outerA;
  else return undefined;
  const batch = Math.max(batchA, batchB);
  return { batch, batchA, batchB, m, n, k: ka, outShape: [...outer, m, n] };
}

function program(d: MatMulDims, transposeA: boolean, transposeB: boolean, precision: Precision, epilogue: Epilogue | undefined): WebGPUProgram | undefined {
  const aIndex = transposeA ? 'k * uniforms.M + m' : 'm * uniforms.K + k';
  const bIndex = transposeB ? 'n * uniforms.K + k' : 'k * uniforms.N + n';
  const loaders = `
fn loadA(b : i32, m : i32, k : i32) -> f32 { return f32(A[b * uniforms.strideA + ${aIndex}]); }
fn loadB(b : i32, k : i32, n : i32) -> f32 { return f32(B[b * uniforms.strideB + ${bIndex}]); }`;
  const withBias = epilogue !== undefined && epilogue.bias !== 'none';
  return gemmProgram(
    {
      outputShape: d.outShape,
      shaderKey: `difftalkMatMul_${transposeA}_${transposeB}`,
      variableNames: withBias ? ['A', 'B', 'Bias'] : ['A', 'B'],
      uniforms: 'M : i32, N : i32, K : i32, strideA : i32, strideB : i32,',
    },
    { m: d.m, n: d.n, k: d.k, batch: d.batch },
    { loaders, aAlongK: !transposeA, bAlongN: !transposeB, outIndex: '(b * M + m) * N + n', epilogue },
    precision,
  );
}

/**
 * Run our matmul on the webgpu backend (undefined when matMulDims does not cover the shapes); `fused` (_FusedMatMul)
 * adds the bias and activation in the store.
 */
export function runMatMul(
  backend: WebGPUBackendLike,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  fused?: Fusion,
): tf.TensorInfo | undefined {
  if (!allFloat32([a, b])) return undefined;
  const d = matMulDims(a.shape, b.shape, transposeA, transposeB);
  if (!d) return undefined;
  if (d.m * d.n * d.batch === 0 || d.k === 0) return undefined;
  const epilogue = fused ? epilogueOf(fused, d.n) : undefined;
  if (fused && (!epilogue || (fused.bias && !allFloat32([fused.bias])))) return undefined;
  const p = program(d, transposeA, transposeB, kernelPrecision(), epilogue);
  if (!p) return undefined;
  const uniforms = [d.m, d.n, d.k, d.batchA === 1 ? 0 : d.m * d.k, d.batchB === 1 ? 0 : d.k * d.n].map((v) => ({ type: 'int32' as const, data: [v] }));
  return backend.runWebGPUProgram(p, fused?.bias ? [a, b, fused.bias] : [a, b], 'float32', uniforms);
}
