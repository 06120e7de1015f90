/**
 * The tiled GEMM core shared by matmul and conv2d (implicit GEMM).
 *
 * Computes C[b, m, n] = Σ_k A(b, m, k) · B(b, k, n) for one 64×64 tile of C per workgroup (16×16 threads, each
 * thread 4×4 outputs at rows ty + 16·i and columns tx + 16·j, so neighbouring threads write neighbouring columns).
 * K advances in steps of 16: the workgroup stages a 64×16 slice of A and a 16×64 slice of B in workgroup memory
 * (2 × 4 KiB), every thread loading 4 elements of each, then accumulates from there in f32. Out-of-range rows,
 * columns and k load as zero, so any M, N, K works (no padding of the tensors). Dispatch: ⌈N/64⌉ × ⌈M/64⌉ × batch.
 *
 * The caller supplies two WGSL functions: `loadA(batch, m, k) -> f32` and `loadB(batch, k, n) -> f32` (bounds
 * are checked here, before they are called), plus whether A is contiguous along k (row-major) or along m, and the
 * same for B along n or k: the element each thread loads is chosen so that consecutive threads read consecutive
 * addresses.
 *
 * Precision (program.ts `kernelPrecision`): 'fp32' stages f32; 'mixed' rounds each loaded element to f16 (`toF16`)
 * as it is staged (2 × 2 KiB of workgroup memory) and widens it back to f32 for the fma, so the products are of f16
 * operands and the sums f32, as on tensor cores. The result stays f32 (tfjs has no f16 tensors).
 */
import { F16_SUPPORT, type Precision } from './program.js';

export const TILE = 64;
export const TILE_K = 16;
export const WORKGROUP: [number, number, number] = [16, 16, 1];

export interface GemmShader {
  /** WGSL defining `fn loadA(b: i32, m: i32, k: i32) -> f32` and `fn loadB(b: i32, k: i32, n: i32) -> f32`. */
  loaders: string;
  /** A's memory runs along k (true: row-major A) or along m (false: A transposed). */
  aAlongK: boolean;
  /** B's memory runs along n (true: row-major B) or along k (false: B transposed). */
  bAlongN: boolean;
  /** WGSL expression for the flat output index of (b, m, n). */
  outIndex: string;
}

/** WGSL user code for one GEMM program; expects uniforms `M`, `N`, `K` (i32). */
export function gemmSource(s: GemmShader, precision: Precision = 'fp32'): string {
  const mixed = precision === 'mixed';
  const t = mixed ? 'f16' : 'f32';
  const stage = (v: string) => (mixed ? `toF16(${v})` : v);
  const widen = (v: string) => (mixed ? `f32(${v})` : v);
  // element e (0..1023) of a 64×16 A slice / 16×64 B slice, chosen for coalesced reads
  const aCoord = s.aAlongK ? 'let r = e / 16; let kk = e % 16;' : 'let kk = e / 64; let r = e % 64;';
  const bCoord = s.bAlongN ? 'let kk = e / 64; let c = e % 64;' : 'let c = e / 16; let kk = e % 16;';
  return `${mixed ? F16_SUPPORT : ''}
${s.loaders}
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
      if (n < N) { result[${s.outIndex}] = acc[i * 4 + j]; }
    }
  }
}
`;
}

/** Whether the grid fits WebGPU's default 65535 workgroups per dimension. */
export function gemmFits(m: number, n: number, batch: number): boolean {
  return Math.ceil(n / TILE) <= 65535 && Math.ceil(m / TILE) <= 65535 && batch <= 65535;
}

export function gemmDispatch(m: number, n: number, batch: number): [number, number, number] {
  return [Math.ceil(n / TILE), Math.ceil(m / TILE), batch];
}
