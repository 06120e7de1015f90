/**
 * Conv2D forward (tf.conv2d, NHWC) as implicit GEMM on the tiled core of gemm.ts: the output pixels are the rows
 * (M = batch·outH·outW), the output channels the columns (N = outC), and k runs over (ky, kx, inC) in the filter's
 * own [kh, kw, inC, outC] order, so B is the filter buffer as it is. Row m, column k of A is the input pixel under
 * tap (ky, kx) of output pixel m, or 0 in the padding: the im2col matrix is never written, each 64×16 slice is
 * gathered straight into workgroup memory (consecutive threads read consecutive input channels).
 * The two gradients are the same tiled GEMM with other gathers (see LOADERS_FILTER, LOADERS_INPUT): the filter
 * gradient reduces over the output pixels (K = batch·outH·outW), the input gradient over taps × outC.
 * Any stride, dilation and padding (same/valid/explicit, as computeConv2DInfo resolves them). Assumes float32, NHWC
 * (channelsLast) and a single group; anything else goes to the stock kernel. Under 'mixed' precision (program.ts)
 * every pass rounds both operands (x or dy, and the filter or dy) to f16 and sums in f32 (gemm.ts). Each pass runs
 * on the tiled core or, where the device has subgroups and the tiled grid would be small (deep layers at small batch),
 * on the split-K subgroup core (gemm.ts `gemmVariant`).
 * FusedConv2D (tf.fused.conv2d, which blocks.conv2d uses on webgpu) is the forward pass with the bias add and the
 * activation in the GEMM's store (gemm.ts `Epilogue`): bias of one value per output channel or one for all, and
 * tfjs's activations except prelu; anything else goes to the stock kernel. Its gradients are tfjs's own (the two
 * backprop passes here, and the bias gradient as a sum of dy).
 */
import type { tf } from '../../util/tf.js';
import { epilogueOf, gemmProgram, type Fusion } from './gemm.js';
import { allFloat32, kernelPrecision, type WebGPUBackendLike } from './program.js';

/** The implicit im2col matrix A[m, k]: output pixel m = (img, oy, ox), k = (ky, kx, ci); zero in the padding. */
const GATHER_X = `
fn gatherX(m : i32, k : i32) -> f32 {
  let ox = m % uniforms.outW;
  let t = m / uniforms.outW;
  let oy = t % uniforms.outH;
  let img = t / uniforms.outH;
  let ci = k % uniforms.inC;
  let tap = k / uniforms.inC;
  let kx = tap % uniforms.kW;
  let ky = tap / uniforms.kW;
  let iy = oy * uniforms.strideH - uniforms.padT + ky * uniforms.dilH;
  let ix = ox * uniforms.strideW - uniforms.padL + kx * uniforms.dilW;
  if (iy < 0 || iy >= uniforms.inH || ix < 0 || ix >= uniforms.inW) { return 0.0; }
  return f32(X[((img * uniforms.inH + iy) * uniforms.inW + ix) * uniforms.inC + ci]);
}`;

const LOADERS = `${GATHER_X}
fn loadA(b : i32, m : i32, k : i32) -> f32 { return gatherX(m, k); }
fn loadB(b : i32, k : i32, n : i32) -> f32 { return f32(Wf[k * uniforms.N + n]); }`;

/** Backprop to the filter: dW[k, co] = Σ_m A[m, k]·dY[m, co], the GEMM with rows k = (ky, kx, ci), columns co, and
 * the output pixels m as the reduction; A is gathered as in the forward pass (here read along its rows k). */
const LOADERS_FILTER = `${GATHER_X}
fn loadA(b : i32, k : i32, m : i32) -> f32 { return gatherX(m, k); }
fn loadB(b : i32, m : i32, n : i32) -> f32 { return f32(Dy[m * uniforms.N + n]); }`;

/** Backprop to the input: dX[p, ci] = Σ_(ky,kx,co) dY[pixel under tap (ky,kx) of p, co]·W[ky, kx, ci, co], rows p =
 * input pixels, columns ci; a tap contributes only where (iy + padT − ky·dil) divides by the stride (else 0). */
const LOADERS_INPUT = `
fn loadA(b : i32, m : i32, k : i32) -> f32 {
  let ix = m % uniforms.inW;
  let t = m / uniforms.inW;
  let iy = t % uniforms.inH;
  let img = t / uniforms.inH;
  let co = k % uniforms.outC;
  let tap = k / uniforms.outC;
  let kx = tap % uniforms.kW;
  let ky = tap / uniforms.kW;
  let ty = iy + uniforms.padT - ky * uniforms.dilH;
  let tx = ix + uniforms.padL - kx * uniforms.dilW;
  if (ty < 0 || tx < 0 || ty % uniforms.strideH != 0 || tx % uniforms.strideW != 0) { return 0.0; }
  let oy = ty / uniforms.strideH;
  let ox = tx / uniforms.strideW;
  if (oy >= uniforms.outH || ox >= uniforms.outW) { return 0.0; }
  return f32(Dy[((img * uniforms.outH + oy) * uniforms.outW + ox) * uniforms.outC + co]);
}
fn loadB(b : i32, k : i32, n : i32) -> f32 {
  let co = k % uniforms.outC;
  let tap = k / uniforms.outC;
  return f32(Wf[(tap * uniforms.inC + n) * uniforms.outC + co]);
}`;

const UNIFORMS = ['M', 'N', 'K', 'inH', 'inW', 'inC', 'outH', 'outW', 'outC', 'kW', 'strideH', 'strideW', 'padT', 'padL', 'dilH', 'dilW'];

type Pass = 'forward' | 'filter' | 'input';

/** The GEMM view of one conv pass: (M, N, K), output shape, input names, loaders and read directions. */
function passOf(pass: Pass, info: tf.backend_util.Conv2DInfo) {
  const pixels = info.batchSize * info.outHeight * info.outWidth;
  const taps = info.filterHeight * info.filterWidth;
  if (pass === 'forward') {
    return {
      mnk: [pixels, info.outChannels, taps * info.inChannels],
      shape: [info.batchSize, info.outHeight, info.outWidth, info.outChannels],
      names: ['X', 'Wf'],
      gemm: { loaders: LOADERS, aAlongK: true, bAlongN: true, outIndex: 'm * N + n' },
    };
  }
  if (pass === 'filter') {
    return {
      mnk: [taps * info.inChannels, info.outChannels, pixels],
      shape: [info.filterHeight, info.filterWidth, info.inChannels, info.outChannels],
      names: ['X', 'Dy'],
      gemm: { loaders: LOADERS_FILTER, aAlongK: false, bAlongN: true, outIndex: 'm * N + n' },
    };
  }
  return {
    mnk: [info.batchSize * info.inHeight * info.inWidth, info.inChannels, taps * info.outChannels],
    shape: [info.batchSize, info.inHeight, info.inWidth, info.inChannels],
    names: ['Dy', 'Wf'],
    gemm: { loaders: LOADERS_INPUT, aAlongK: true, bAlongN: false, outIndex: 'm * N + n' },
  };
}

/**
 * Run one conv pass as implicit GEMM: 'forward' (inputs x, filter), 'filter' (backprop to the filter; inputs x, dy)
 * or 'input' (backprop to the input; inputs dy, filter); `fused` (forward only) adds the bias and activation in the
 * store. Undefined when the kernel does not cover the case.
 */
export function runConv2dPass(
  backend: WebGPUBackendLike,
  pass: Pass,
  inputs: [tf.TensorInfo, tf.TensorInfo],
  info: tf.backend_util.Conv2DInfo,
  fused?: Fusion,
): tf.TensorInfo | undefined {
  if (!allFloat32(inputs) || info.dataFormat !== 'channelsLast') return undefined;
  const p = passOf(pass, info);
  const precision = kernelPrecision();
  const [m, n, k] = p.mnk as [number, number, number];
  if (m === 0 || n === 0 || k === 0) return undefined;
  const epilogue = fused ? epilogueOf(fused, n) : undefined;
  if (fused && (!epilogue || pass !== 'forward' || (fused.bias && !allFloat32([fused.bias])))) return undefined;
  const values: Record<string, number> = {
    M: m,
    N: n,
    K: k,
    inH: info.inHeight,
    inW: info.inWidth,
    inC: info.inChannels,
    outH: info.outHeight,
    outW: info.outWidth,
    outC: info.outChannels,
    kW: info.filterWidth,
    strideH: info.strideHeight,
    strideW: info.strideWidth,
    padT: info.padInfo.top,
    padL: info.padInfo.left,
    dilH: info.dilationHeight,
    dilW: info.dilationWidth,
  };
  const withBias = fused?.bias !== undefined;
  const program = gemmProgram(
    {
      outputShape: p.shape,
      shaderKey: `difftalkConv2dGemm_${pass}`,
      variableNames: withBias ? [...p.names, 'Bias'] : p.names,
      uniforms: UNIFORMS.map((u) => `${u} : i32,`).join(' '),
    },
    { m, n, k, batch: 1 },
    { ...p.gemm, epilogue },
    precision,
  );
  if (!program) return undefined;
  return backend.runWebGPUProgram(
    program,
    withBias ? [...inputs, fused!.bias!] : inputs,
    'float32',
    UNIFORMS.map((u) => ({ type: 'int32' as const, data: [values[u]!] })),
  );
}
