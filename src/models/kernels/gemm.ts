/**
 * The GEMM cores shared by matmul and conv2d (implicit GEMM): C[b, m, n] = epilogue(Σ_k A(b, m, k) · B(b, k, n), n).
 * Two variants; `gemmVariant` picks one per call from the shape and the device (both give the same result up to the f32
 * summation order):
 *
 * - tiled (every device): one 64×64 tile of C per workgroup (16×16 threads, each thread 4×4 outputs at rows
 *   ty + 16·i and columns tx + 16·j, so neighbouring threads write neighbouring columns). K advances in steps of 16:
 *   the workgroup stages a 64×16 slice of A and a 16×64 slice of B in workgroup memory (2 × 4 KiB), every thread
 *   loading 4 elements of each, then accumulates from there in f32. Dispatch: ⌈N/64⌉ × ⌈M/64⌉ × batch.
 * - split-K with subgroup reduction (only where `subgroupsWanted()`, for shapes whose tiled grid would leave most of
 *   a GPU idle: fewer than SPLITK_MAX_TILES tiles and K ≥ SPLITK_MIN_K — the deep, small-spatial UNet layers at
 *   batch 1–2, e.g. 8×8 or 16×16 with 512–1024 channels and K = 9·C): one 4×8 block of C per workgroup of 64
 *   threads; thread t takes k = t, t + 64, … (consecutive threads read consecutive k, so A along k is coalesced),
 *   loads the 4 A and 8 B values at its k into registers and keeps 4×8 partial sums (8 vec4). The 64 partials of
 *   each output are then summed with subgroupAdd within each subgroup, each subgroup's first lane (exclusive rank 0)
 *   leaves its partial in workgroup memory (the other slots 0), and every subgroup sums the 64 slots (lane r taking
 *   r, r + lanes, …; lanes counted with subgroupAdd(1)) and subgroupAdd again, as GroupNorm's reduce256. No
 *   assumption on the subgroup size (lavapipe 8, NVIDIA 32, AMD 32/64) or on which invocations form a subgroup;
 *   every subgroup operation is in workgroup-uniform control flow. Dispatch: ⌈N/8⌉ × ⌈M/4⌉ × batch, so an 8×8 layer
 *   at batch 1 (M = 64, N = 512) runs 1024 workgroups instead of 8 tiles.
 *
 * Out-of-range rows, columns and k load as zero in both, so any M, N, K works (no padding of the tensors).
 * The caller supplies two WGSL functions: `loadA(batch, m, k) -> f32` and `loadB(batch, k, n) -> f32` (bounds
 * are checked here, before they are called), plus whether A is contiguous along k (row-major) or along m, and the
 * same for B along n or k: in the tiled variant the element each thread loads is chosen so that consecutive threads
 * read consecutive addresses. An optional epilogue (fused bias, activation) is applied as each output is stored.
 *
 * Precision (program.ts `kernelPrecision`): 'fp32' stages f32; 'mixed' rounds each loaded element to f16 (`toF16`)
 * as it is staged (2 × 2 KiB of workgroup memory in the tiled variant, registers in split-K) and widens it back to
 * f32 for the fma, so the products are of f16 operands and the sums f32, as on tensor cores. The result stays f32
 * (tfjs has no f16 tensors).
 */
import type { tf } from '../../util/tf.js';
import { subgroupsWanted } from './features.js';
import { F16_SUPPORT, gridLayout, type Precision, type WebGPUProgram } from './program.js';

export const TILE = 64;
export const TILE_K = 16;
const TILED_WORKGROUP: [number, number, number] = [16, 16, 1];
/** Split-K: threads per workgroup, and the rows × columns of C each workgroup computes. */
const SPLITK_THREADS = 64;
const SPLITK_ROWS = 4;
const SPLITK_COLS = 8;
/** Split-K is chosen below this many 64×64 tiles (about one per SM of a large GPU: H100 has 132)… */
export const SPLITK_MAX_TILES = 128;
/** …and from this reduction depth on (each of the 64 threads then sums ≥ 8 products before the reduction). */
export const SPLITK_MIN_K = 512;

export type GemmVariant = 'tiled' | 'splitk';

/** tfjs's fused activations that the epilogue computes (prelu, which needs a weight tensor, goes to the stock kernel). */
export const EPILOGUE_ACTIVATIONS = ['linear', 'relu', 'relu6', 'elu', 'sigmoid', 'leakyrelu'] as const;
export type Activation = (typeof EPILOGUE_ACTIVATIONS)[number];

/**
 * What is applied to each output as it is stored: + bias (an input named `Bias`, one value per column n, or one for
 * all), then an activation as tfjs defines it (elu: x ≥ 0 ? x : eˣ − 1; leakyrelu: x < 0 ? α·x : x).
 */
export interface Epilogue {
  bias: 'none' | 'column' | 'scalar';
  activation: Activation;
  /** leakyrelu's α (compiled in: part of the shader key). */
  alpha?: number;
}

export interface GemmShader {
  /** WGSL defining `fn loadA(b: i32, m: i32, k: i32) -> f32` and `fn loadB(b: i32, k: i32, n: i32) -> f32`. */
  loaders: string;
  /** A's memory runs along k (true: row-major A) or along m (false: A transposed). */
  aAlongK: boolean;
  /** B's memory runs along n (true: row-major B) or along k (false: B transposed). */
  bAlongN: boolean;
  /** WGSL expression for the flat output index of (b, m, n). */
  outIndex: string;
  epilogue?: Epilogue;
}

/** The fused bias and activation of a FusedConv2D / _FusedMatMul, as tfjs passes them. */
export interface Fusion {
  bias?: tf.TensorInfo;
  activation?: string;
  leakyreluAlpha?: number;
}

/** The epilogue for a FusedConv2D / _FusedMatMul, or undefined when it is not one gemm.ts computes. */
export function epilogueOf(f: Fusion, columns: number): Epilogue | undefined {
  const activation = (f.activation ?? 'linear') as Activation;
  if (!EPILOGUE_ACTIVATIONS.includes(activation)) return undefined;
  let bias: Epilogue['bias'] = 'none';
  if (f.bias) {
    const size = f.bias.shape.reduce((a, b) => a * b, 1);
    if (size === 1) bias = 'scalar';
    else if (size === columns && f.bias.shape[f.bias.shape.length - 1] === columns) bias = 'column';
    else return undefined;
  }
  return { bias, activation, alpha: f.leakyreluAlpha };
}

function epilogueKey(e: Epilogue | undefined): string {
  if (!e || (e.bias === 'none' && e.activation === 'linear')) return '';
  return `_${e.bias}_${e.activation}${e.activation === 'leakyrelu' ? `_${e.alpha ?? 0.2}` : ''}`;
}

/** WGSL `fn epilogue(v : f32, n : i32) -> f32`. */
function epilogueSource(e: Epilogue | undefined): string {
  const bias = !e || e.bias === 'none' ? '' : e.bias === 'scalar' ? 'r = r + f32(Bias[0]);' : 'r = r + f32(Bias[n]);';
  const alpha = e?.alpha ?? 0.2;
  const act: Record<Activation, string> = {
    linear: '',
    relu: 'r = max(r, 0.0);',
    relu6: 'r = clamp(r, 0.0, 6.0);',
    elu: 'r = select(exp(r) - 1.0, r, r >= 0.0);',
    sigmoid: 'r = 1.0 / (1.0 + exp(-r));',
    leakyrelu: `r = select(${Number.isInteger(alpha) ? `${alpha}.0` : String(alpha)} * r, r, r >= 0.0);`,
  };
  return `
fn epilogue(v : f32, n : i32) -> f32 {
  var r = v;
  ${bias}
  ${act[e?.activation ?? 'linear']}
  return r;
}`;
}

/** WGSL user code of the tiled variant; expects uniforms `M`, `N`, `K` (i32). */
function tiledSource(s: GemmShader, precision: Precision): string {
  const mixed = precision === 'mixed';
  const t = mixed ? 'f16' : 'f32';
  const stage = (v: string) => (mixed ? `toF16(${v})` : v);
  const widen = (v: string) => (mixed ? `f32(${v})` : v);
  // element e (0..1023) of a 64×16 A slice / 16×64 B slice, chosen for coalesced reads
  const aCoord = s.aAlongK ? 'let r = e / 16; let kk = e % 16;' : 'let kk = e / 64; let r = e % 64;';
  const bCoord = s.bAlongN ? 'let kk = e / 64; let c = e % 64;' : 'let c = e / 16; let kk = e % 16;';
  return `${mixed ? F16_SUPPORT : ''}
${s.loaders}
${epilogueSource(s.epilogue)}
var<workgroup> As : array<${t}, 1024>; // [k][m]
var<workgroup> Bs : array<${t}, 1024>; // [k][n]

fn main() {
  let tx = i32(localId.x);
  let ty = i32(localId.y);
  let tid = ty * 16 + tx;
  let b = i32(workgroupId.z);
  let row0 = i32(workgroupId.y) * 64;
  let col0 = i32(workgroupId.x) * 64;
  let M = uniforms.M;
  let N = uniforms.N;
  let K = uniforms.K;
  var acc : array<f32, 16>;
  for (var i = 0; i < 16; i++) { acc[i] = 0.0; }
  for (var k0 = 0; k0 < K; k0 += 16) {
    for (var l = 0; l < 4; l++) {
      let e = tid + l * 256;
      {
        ${aCoord}
        let m = row0 + r;
        let k = k0 + kk;
        var v = 0.0;
        if (m < M && k < K) { v = loadA(b, m, k); }
        As[kk * 64 + r] = ${stage('v')};
      }
      {
        ${bCoord}
        let n = col0 + c;
        let k = k0 + kk;
        var v = 0.0;
        if (n < N && k < K) { v = loadB(b, k, n); }
        Bs[kk * 64 + c] = ${stage('v')};
      }
    }
    workgroupBarrier();
    for (var kk = 0; kk < 16; kk++) {
      var a : array<f32, 4>;
      var bb : array<f32, 4>;
      for (var i = 0; i < 4; i++) { a[i] = ${widen('As[kk * 64 + ty + 16 * i]')}; }
      for (var j = 0; j < 4; j++) { bb[j] = ${widen('Bs[kk * 64 + tx + 16 * j]')}; }
      for (var i = 0; i < 4; i++) {
        for (var j = 0; j < 4; j++) { acc[i * 4 + j] = fma(a[i], bb[j], acc[i * 4 + j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0; i < 4; i++) {
    let m = row0 + ty + 16 * i;
    if (m >= M) { continue; }
    for (var j = 0; j < 4; j++) {
      let n = col0 + tx + 16 * j;
      if (n < N) { result[${s.outIndex}] = epilogue(acc[i * 4 + j], n); }
    }
  }
}
`;
}

/** WGSL user code of the split-K subgroup variant (see the note at the top); expects uniforms `M`, `N`, `K` (i32). */
function splitKSource(s: GemmShader, precision: Precision): string {
  const mixed = precision === 'mixed';
  // the operand as the products see it: rounded to f16 and widened ('mixed'), or as loaded
  const op = (v: string) => (mixed ? `f32(toF16(${v}))` : v);
  const T = SPLITK_THREADS;
  return `${mixed ? F16_SUPPORT : ''}
enable subgroups;
${s.loaders}
${epilogueSource(s.epilogue)}
var<workgroup> red : array<vec4<f32>, ${2 * SPLITK_ROWS * T}>; // [output quad q][slot]

fn main() {
  let lid = i32(localIndex);
  let b = i32(workgroupId.z);
  let row0 = i32(workgroupId.y) * ${SPLITK_ROWS};
  let col0 = i32(workgroupId.x) * ${SPLITK_COLS};
  let M = uniforms.M;
  let N = uniforms.N;
  let K = uniforms.K;
  // acc[2 * i + h]: row row0 + i, columns col0 + 4h … col0 + 4h + 3
  var acc : array<vec4<f32>, ${2 * SPLITK_ROWS}>;
  for (var q = 0; q < ${2 * SPLITK_ROWS}; q++) { acc[q] = vec4<f32>(0.0); }
  for (var k = lid; k < K; k += ${T}) {
    var a : array<f32, ${SPLITK_ROWS}>;
    for (var i = 0; i < ${SPLITK_ROWS}; i++) {
      let m = row0 + i;
      var v = 0.0;
      if (m < M) { v = loadA(b, m, k); }
      a[i] = ${op('v')};
    }
    var w : array<vec4<f32>, 2>;
    for (var h = 0; h < 2; h++) {
      var v = vec4<f32>(0.0);
      for (var j = 0; j < 4; j++) {
        let n = col0 + 4 * h + j;
        if (n < N) { v[j] = ${op('loadB(b, k, n)')}; }
      }
      w[h] = v;
    }
    for (var i = 0; i < ${SPLITK_ROWS}; i++) {
      acc[2 * i] = fma(vec4<f32>(a[i]), w[0], acc[2 * i]);
      acc[2 * i + 1] = fma(vec4<f32>(a[i]), w[1], acc[2 * i + 1]);
    }
  }
  // reduction over the ${T} threads: workgroup-uniform control flow from here to the store
  let lanes = subgroupAdd(1u);
  let rank = subgroupExclusiveAdd(1u);
  for (var q = 0; q < ${2 * SPLITK_ROWS}; q++) {
    let part = subgroupAdd(acc[q]);
    red[q * ${T} + lid] = select(vec4<f32>(0.0), part, rank == 0u);
  }
  workgroupBarrier();
  var tot : array<vec4<f32>, ${2 * SPLITK_ROWS}>;
  for (var q = 0; q < ${2 * SPLITK_ROWS}; q++) {
    var t = vec4<f32>(0.0);
    for (var r = rank; r < ${T}u; r += lanes) { t += red[q * ${T} + i32(r)]; }
    tot[q] = subgroupAdd(t);
  }
  if (lid < ${2 * SPLITK_ROWS}) {
    let m = row0 + lid / 2;
    let total = tot[lid];
    if (m < M) {
      for (var j = 0; j < 4; j++) {
        let n = col0 + 4 * (lid % 2) + j;
        if (n < N) { result[${s.outIndex}] = epilogue(total[j], n); }
      }
    }
  }
}
`;
}

/** The variant for an M×N×K GEMM over `batch` matrices on this device (see the note at the top). */
export function gemmVariant(m: number, n: number, k: number, batch: number): GemmVariant {
  const tiles = Math.ceil(m / TILE) * Math.ceil(n / TILE) * batch;
  return subgroupsWanted() && tiles < SPLITK_MAX_TILES && k >= SPLITK_MIN_K ? 'splitk' : 'tiled';
}

/** The GEMM part of a program: variant chosen, shader key, grid, workgroup and user code; undefined when the grid does not fit. */
export function gemmProgram(
  base: Pick<WebGPUProgram, 'outputShape' | 'shaderKey' | 'variableNames' | 'uniforms'>,
  dims: { m: number; n: number; k: number; batch: number },
  shader: GemmShader,
  precision: Precision,
): WebGPUProgram | undefined {
  const { m, n, k, batch } = dims;
  const variant = gemmVariant(m, n, k, batch);
  const [rows, cols] = variant === 'tiled' ? [TILE, TILE] : [SPLITK_ROWS, SPLITK_COLS];
  const dispatch: [number, number, number] = [Math.ceil(n / cols), Math.ceil(m / rows), batch];
  if (dispatch.some((d) => d > 65535)) return undefined;
  return {
    ...base,
    shaderKey: `${base.shaderKey}_${variant}_${precision}${epilogueKey(shader.epilogue)}`,
    dispatchLayout: gridLayout(),
    dispatch,
    workgroupSize: variant === 'tiled' ? [...TILED_WORKGROUP] : [SPLITK_THREADS, 1, 1],
    getUserCode: () => (variant === 'tiled' ? tiledSource(shader, precision) : splitKSource(shader, precision)),
  };
}
