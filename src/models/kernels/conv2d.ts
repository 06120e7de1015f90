/**
 * Conv2D forward (tf.conv2d, NHWC) as implicit GEMM on the tiled core of gemm.ts: the output pixels are the rows
 * (M = batch·outH·outW), the output channels the columns (N = outC), and k runs over (ky, kx, inC) in the filter's
 * own [kh, kw, inC, outC] order, so B is the filter buffer as it is. Row m, column k of A is the input pixel under
 * tap (ky, kx) of output pixel m, or 0 in the padding: the im2col matrix is never written, each 64×16 slice is
 * gathered straight into workgroup memory (consecutive threads read consecutive input channels).
 * Any stride, dilation and padding (same/valid/explicit, as computeConv2DInfo resolves them). Assumes float32, NHWC
 * (channelsLast) and a single group; anything else goes to the stock kernel.
 */
import type { tf } from '../../util/tf.js';
import { gemmDispatch, gemmFits, gemmSource, WORKGROUP } from './gemm.js';
import { gridLayout, type WebGPUBackendLike, type WebGPUProgram } from './program.js';

const LOADERS = `
fn loadA(b : i32, m : i32, k : i32) -> f32 {
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
  return X[((img * uniforms.inH + iy) * uniforms.inW + ix) * uniforms.inC + ci];
}
fn loadB(b : i32, k : i32, n : i32) -> f32 { return Wf[k * uniforms.N + n]; }`;

const UNIFORMS = ['M', 'N', 'K', 'inH', 'inW', 'inC', 'outH', 'outW', 'kW', 'strideH', 'strideW', 'padT', 'padL', 'dilH', 'dilW'];

/** Run the implicit-GEMM conv2d (undefined when the kernel does not cover the case). */
export function runConv2d(backend: WebGPUBackendLike, x: tf.TensorInfo, filter: tf.TensorInfo, info: tf.backend_util.Conv2DInfo): tf.TensorInfo | undefined {
  if (x.dtype !== 'float32' || filter.dtype !== 'float32' || info.dataFormat !== 'channelsLast') return undefined;
  const m = info.batchSize * info.outHeight * info.outWidth;
  const n = info.outChannels;
  const k = info.filterHeight * info.filterWidth * info.inChannels;
  if (m === 0 || n === 0 || k === 0 || !gemmFits(m, n, 1)) return undefined;
  const values: Record<string, number> = {
    M: m,
    N: n,
    K: k,
    inH: info.inHeight,
    inW: info.inWidth,
    inC: info.inChannels,
    outH: info.outHeight,
    outW: info.outWidth,
    kW: info.filterWidth,
    strideH: info.strideHeight,
    strideW: info.strideWidth,
    padT: info.padInfo.top,
    padL: info.padInfo.left,
    dilH: info.dilationHeight,
    dilW: info.dilationWidth,
  };
  const program: WebGPUProgram = {
    outputShape: [info.batchSize, info.outHeight, info.outWidth, info.outChannels],
    shaderKey: 'difftalkConv2dGemm',
    dispatchLayout: gridLayout(),
    dispatch: gemmDispatch(m, n, 1),
    variableNames: ['X', 'Wf'],
    uniforms: UNIFORMS.map((u) => `${u} : i32,`).join(' '),
    workgroupSize: [...WORKGROUP],
    getUserCode: () => gemmSource({ loaders: LOADERS, aAlongK: true, bAlongN: true, outIndex: 'm * N + n' }),
  };
  return backend.runWebGPUProgram(
    program,
    [x, filter],
    'float32',
    UNIFORMS.map((u) => ({ type: 'int32' as const, data: [values[u]!] })),
  );
}
