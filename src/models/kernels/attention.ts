/**
 * Multi-head attention softmax(Q·Kᵀ/√d)·V, fused forward (flash-style, the N×M score matrix never exists), with
 * the gradient through `tf.customGrad` as matmuls (the backward pass does materialise the per-head scores).
 *
 * Layout as blocks.attention takes it: q [B, N, H·d], k and v [B, M, H·d], head h in columns h·d … h·d+d−1, so no
 * head split/transposes are needed. One workgroup per (64 queries, image × head); each thread owns one query row,
 * holding q and its output accumulator (d ≤ 64) in registers. Keys and values stream through workgroup memory in
 * tiles of 32 (2 × 32 × 64 floats); per tile a thread computes its 32 scores, then the running max / sum / output
 * are rescaled once (online softmax). f32 throughout. Assumes float32, d ≤ 64.
 */
import { tf } from '../../util/tf.js';
import type { WebGPUBackendLike, WebGPUProgram } from './program.js';

const KERNEL = 'DifftalkAttention';
export const MAX_HEAD_DIM = 64;

function program(b: number, n: number, heads: number, inner: number): WebGPUProgram {
  return {
    outputShape: [b, n, inner],
    shaderKey: 'difftalkAttention',
    dispatchLayout: { x: [0], y: [1], z: [2] },
    dispatch: [Math.ceil(n / 64), b * heads, 1],
    variableNames: ['Q', 'Kt', 'Vt'],
    uniforms: 'N : i32, M : i32, H : i32, D : i32, scale : f32,',
    workgroupSize: [64, 1, 1],
    getUserCode: () => `
var<workgroup> ks : array<f32, 2048>; // [32 keys][64]
var<workgroup> vs : array<f32, 2048>;
fn main() {
  let tid = i32(localId.x);
  let row = i32(workgroupId.x) * 64 + tid;
  let bh = i32(workgroupId.y);
  let b = bh / uniforms.H;
  let h = bh % uniforms.H;
  let D = uniforms.D;
  let inner = uniforms.H * D;
  let valid = row < uniforms.N;
  var q : array<f32, 64>;
  var acc : array<f32, 64>;
  for (var j = 0; j < 64; j++) { q[j] = 0.0; acc[j] = 0.0; }
  if (valid) {
    for (var j = 0; j < D; j++) { q[j] = f32(Q[(b * uniforms.N + row) * inner + h * D + j]) * uniforms.scale; }
  }
  var mx = -3.0e38;
  var sum = 0.0;
  for (var k0 = 0; k0 < uniforms.M; k0 += 32) {
    for (var e = tid; e < 32 * D; e += 64) {
      let kk = e / D;
      let j = e % D;
      var kv = 0.0;
      var vv = 0.0;
      if (k0 + kk < uniforms.M) {
        let src = (b * uniforms.M + k0 + kk) * inner + h * D + j;
        kv = f32(Kt[src]);
        vv = f32(Vt[src]);
      }
      ks[kk * 64 + j] = kv;
      vs[kk * 64 + j] = vv;
    }
    workgroupBarrier();
    let count = min(32, uniforms.M - k0);
    var s : array<f32, 32>;
    var tmax = -3.0e38;
    for (var kk = 0; kk < count; kk++) {
      var dot = 0.0;
      for (var j = 0; j < D; j++) { dot = fma(q[j], ks[kk * 64 + j], dot); }
      s[kk] = dot;
      tmax = max(tmax, dot);
    }
    let mnew = max(mx, tmax);
    let corr = exp(mx - mnew);
    sum = sum * corr;
    for (var j = 0; j < D; j++) { acc[j] = acc[j] * corr; }
    for (var kk = 0; kk < count; kk++) {
      let p = exp(s[kk] - mnew);
      sum += p;
      for (var j = 0; j < D; j++) { acc[j] = fma(p, vs[kk * 64 + j], acc[j]); }
    }
    mx = mnew;
    workgroupBarrier();
  }
  if (valid) {
    for (var j = 0; j < D; j++) { result[(b * uniforms.N + row) * inner + h * D + j] = acc[j] / sum; }
  }
}`,
  };
}

type Args = { inputs: Record<string, tf.TensorInfo>; attrs?: Record<string, unknown>; backend: unknown };

function attentionKernel({ inputs, attrs, backend }: Args): tf.TensorInfo {
  const heads = (attrs as { heads: number }).heads;
  const [b, n, inner] = inputs.q!.shape as [number, number, number];
  const m = inputs.k!.shape[1]!;
  const d = inner / heads;
  return (backend as WebGPUBackendLike).runWebGPUProgram(program(b, n, heads, inner), [inputs.q!, inputs.k!, inputs.v!], 'float32', [
    { type: 'int32', data: [n] },
    { type: 'int32', data: [m] },
    { type: 'int32', data: [heads] },
    { type: 'int32', data: [d] },
    { type: 'float32', data: [1 / Math.sqrt(d)] },
  ]);
}

export const ATTENTION_KERNELS: Record<string, (args: Args) => tf.TensorInfo> = { [KERNEL]: attentionKernel };

/** Whether fusedAttention can run here: webgpu with the kernel registered, float32 rank 3, head dim ≤ 64. */
export function fusedAttentionAvailable(q: tf.Tensor, k: tf.Tensor, heads: number): boolean {
  return (
    tf.getBackend() === 'webgpu' &&
    tf.getKernel(KERNEL, 'webgpu') !== undefined &&
    q.rank === 3 &&
    k.rank === 3 &&
    q.dtype === 'float32' &&
    q.shape[2]! % heads === 0 &&
    q.shape[2]! / heads <= MAX_HEAD_DIM &&
    q.shape[1]! > 0 &&
    k.shape[1]! > 0 &&
    q.shape[0]! * heads <= 65535
  );
}

/** q [B,N,H·d], k/v [B,M,H·d] → [B,N,H·d]; the fused forward, the gradient as per-head matmuls. */
export function fusedAttention(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, heads: number): tf.Tensor3D {
  const op = tf.customGrad(((qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor, save: (t: tf.Tensor[]) => void) => {
    save([qq, kk, vv]);
    const value = tf.engine().runKernel(KERNEL, { q: qq, k: kk, v: vv } as unknown as tf.NamedTensorMap, { heads } as unknown as tf.NamedAttrMap) as tf.Tensor;
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sq, sk, sv] = saved as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D];
        const [b, n, inner] = sq.shape;
        const m = sk.shape[1];
        const d = inner / heads;
        const split = (t: tf.Tensor, len: number) => t.reshape([b, len, heads, d]).transpose([0, 2, 1, 3]) as tf.Tensor4D;
        const merge = (t: tf.Tensor, len: number) => t.transpose([0, 2, 1, 3]).reshape([b, len, inner]);
        const qh = split(sq, n);
        const kh = split(sk, m);
        const vh = split(sv, m);
        const dO = split(dy, n);
        const scale = 1 / Math.sqrt(d);
        const p = tf.softmax(tf.mul(tf.matMul(qh, kh, false, true), scale), -1);
        const dV = tf.matMul(p, dO, true, false);
        const dP = tf.matMul(dO, vh, false, true);
        const dS = tf.mul(p, tf.sub(dP, tf.sum(tf.mul(dP, p), -1, true)));
        const dQ = tf.mul(tf.matMul(dS, kh), scale);
        const dK = tf.mul(tf.matMul(dS, qh, true, false), scale);
        return [merge(dQ, n), merge(dK, m), merge(dV, m)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(q, k, v) as tf.Tensor3D;
}
