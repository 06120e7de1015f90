/**
 * Multi-head attention softmax(Q·Kᵀ/√d)·V, fused forward and backward (FlashAttention-2 style: the N×M score matrix
 * never exists in global memory, in either direction).
 *
 * Layout as blocks.attention takes it: q [B, N, H·d], k and v [B, M, H·d], head h in columns h·d … h·d+d−1, so no
 * head split/transposes are needed. Three programs, each one workgroup per (64 rows, image × head), each thread owning
 * one row with its vectors in registers (d ≤ 64), the other side streaming through workgroup memory in tiles:
 * - forward (thread = query row, K/V tiles of 32 keys): per tile the thread computes its 32 scores, then rescales the
 *   running max / sum / output once (online softmax). Under a gradient tape it also writes the row's log-sum-exp
 *   L = max + log(sum) ([B, N, H], appended to the output buffer and sliced off).
 * - backward, D = rowsum(dO∘O) ([B, N, H]) first with tf ops (a cheap elementwise product and sum);
 * - dQ (thread = query row, K/V tiles of 32): s = q·k/√d recomputed, p = exp(s − L), ds = p·(dO·v − D),
 *   dQ = Σ ds·k/√d;
 * - dK, dV (thread = key row, Q/dO/L/D tiles of 32 queries, 16 when d > 32): the same p and ds,
 *   dV = Σ p·dO, dK = Σ ds·q/√d; both written to one buffer [2, B, M, H·d] and split.
 * WebGPU has no float atomics, so dQ and dK/dV are two passes (scores recomputed twice: ~3.5 forward's work in all,
 * against 2.5 for FlashAttention-2's atomic dQ). The backward programs are compiled per head dim (arrays sized d).
 * Precision (program.ts `kernelPrecision`, part of each shader key): 'fp32' is f32 throughout; 'mixed' rounds Q, K, V
 * and dO to f16 (`toF16`, overflow to ±inf so that the loss scaler sees it) as they are staged: the workgroup tiles
 * (K/V in the forward and dQ pass, Q/dO in the dK/dV pass: half the workgroup memory and its traffic) and each
 * thread's own row vectors are f16, widened for an f32 fma, so QKᵀ, dO·Vᵀ and the P·V / dS·K / Pᵀ·dO / dSᵀ·Q sums
 * are f32 sums of products of f16 inputs. The scale 1/√d is applied to the f32 dot product, so it adds no rounding
 * of its own. Softmax statistics (running max, sum, log-sum-exp), P and dS (registers, never staged), D (tf ops on
 * the f32 dO and O) and every output stay f32: as FlashAttention under autocast except that P and dS are not rounded to f16 before their products
 * (a tensor-core kernel must round them; on this scalar-fma path it would only cost accuracy).
 * Subgroups (features.ts `subgroupsWanted`, else the plain variant): a quad of 4 invocations per row instead of one
 * thread, each holding every 4th column, the row's dot products summed over the quad with quadSwapX/Y (see lanesOf);
 * a quarter of the registers per invocation and 4× the invocations. No subgroup size or layout is assumed. Both
 * variants are tested (tests/gpu/kernels.test.ts, mixed.test.ts). Assumes float32, d ≤ 64.
 * Measured on lavapipe (docs/benchmarks.md, a CPU, not a speed claim): 256 tokens × 8 heads × 32, forward+backward
 * 1115 ms fused vs 1068 ms stock composite; tested against tf.grads of the composite on cpu within 1e-4 (≤ 9e-7 seen).
 */
import { tf } from '../../util/tf.js';
import { subgroupsWanted } from './features.js';
import { F16_SUPPORT, kernelPrecision, type Precision, type WebGPUBackendLike, type WebGPUProgram } from './program.js';

const KERNEL = 'DifftalkAttention';
const GRAD_Q = 'DifftalkAttentionGradQ';
const GRAD_KV = 'DifftalkAttentionGradKV';
export const MAX_HEAD_DIM = 64;
const ROWS = 64;

/**
 * The operand arithmetic of one precision: the WGSL prelude, the element type `t` of staged tiles and of the
 * per-thread Q/K/V/dO vectors, and `stage(v)`, how a loaded f32 becomes a `t` ('mixed': `toF16`, overflow to ±inf).
 * Every use widens with f32(…), so the products are of `t` operands and all sums, the softmax and the outputs f32.
 */
function operands(p: Precision): { prelude: string; t: string; stage: (v: string) => string } {
  return p === 'mixed' ? { prelude: F16_SUPPORT, t: 'f16', stage: (v) => `toF16(${v})` } : { prelude: '', t: 'f32', stage: (v) => v };
}

/**
 * How a row is spread over invocations. Plain: one invocation per row (`lanes` 1). Subgroups: a quad (4 invocations,
 * the unit of WGSL's quad operations; every subgroup size WebGPU allows is a multiple of 4) per row, each invocation
 * holding every 4th column of the row's vectors, and each dot product summed over the quad with quadSwapX/quadSwapY
 * (the sum is bit-identical in the 4 invocations, so they run one softmax). Which invocations form a quad, and which
 * position an invocation holds in it, is read with quadBroadcast, and each quad claims its row with a workgroup
 * atomic, so nothing depends on the subgroup size or on how local indices map to subgroups.
 * WGSL it defines: `slot()` (the row within the workgroup's 64, in `rowOf` order; all invocations call it first),
 * `part` (a module-scope var: the invocation's position in its row's quad) and `rowSum(x)`.
 */
interface Lanes {
  lanes: 1 | 4;
  wgsl: string;
  /** A loop over this invocation's columns j of a row of `d` (register index r); d a WGSL expression. */
  cols: (d: string, body: string) => string;
}

function lanesOf(sub: boolean): Lanes {
  if (!sub) {
    return {
      lanes: 1,
      wgsl: `
var<private> part = 0;
fn slot() -> i32 { return i32(localIndex); }
fn rowSum(x : f32) -> f32 { return x; }`,
      cols: (d, body) => `for (var j = 0; j < ${d}; j++) { let r = j; ${body} }`,
    };
  }
  return {
    lanes: 4,
    wgsl: `
enable subgroups;
var<workgroup> claimed : atomic<u32>;
var<private> part = 0;
fn slot() -> i32 {
  let li = localIndex;
  let l1 = quadBroadcast(li, 1u);
  let l2 = quadBroadcast(li, 2u);
  let l3 = quadBroadcast(li, 3u);
  part = select(select(select(0, 1, l1 == li), 2, l2 == li), 3, l3 == li);
  var s = 0u;
  if (part == 0) { s = atomicAdd(&claimed, 1u); }
  return i32(quadBroadcast(s, 0u));
}
fn rowSum(x : f32) -> f32 {
  let y = x + quadSwapX(x);
  return y + quadSwapY(y);
}`,
    cols: (d, body) => `for (var r = 0; part + r * 4 < ${d}; r++) { let j = part + r * 4; ${body} }`,
  };
}

function forwardProgram(b: number, n: number, heads: number, inner: number, stats: boolean, p: Precision, sub: boolean): WebGPUProgram {
  const { prelude, t, stage } = operands(p);
  const { lanes, wgsl, cols } = lanesOf(sub);
  const regs = MAX_HEAD_DIM / lanes;
  return {
    outputShape: stats ? [b * n * (inner + heads)] : [b, n, inner],
    shaderKey: `difftalkAttention_${stats}_${p}_${lanes}`,
    dispatchLayout: { x: [0], y: [1], z: [2] },
    dispatch: [Math.ceil(n / ROWS), b * heads, 1],
    variableNames: ['Q', 'Kt', 'Vt'],
    uniforms: 'B : i32, N : i32, M : i32, H : i32, D : i32, scale : f32,',
    workgroupSize: [ROWS * lanes, 1, 1],
    getUserCode: () => `${prelude}${wgsl}
var<workgroup> ks : array<${t}, 2048>; // [32 keys][64]
var<workgroup> vs : array<${t}, 2048>;
fn main() {
  let lid = i32(localIndex);
  let row = i32(workgroupId.x) * ${ROWS} + slot();
  let bh = i32(workgroupId.y);
  let b = bh / uniforms.H;
  let h = bh % uniforms.H;
  let D = uniforms.D;
  let inner = uniforms.H * D;
  let valid = row < uniforms.N;
  var q : array<${t}, ${regs}>;
  var acc : array<f32, ${regs}>;
  for (var r = 0; r < ${regs}; r++) { q[r] = ${t}(0.0); acc[r] = 0.0; }
  if (valid) {
    ${cols('D', `q[r] = ${stage('f32(Q[(b * uniforms.N + row) * inner + h * D + j])')};`)}
  }
  var mx = -3.0e38;
  var sum = 0.0;
  for (var k0 = 0; k0 < uniforms.M; k0 += 32) {
    for (var e = lid; e < 32 * D; e += ${ROWS * lanes}) {
      let kk = e / D;
      let j = e % D;
      var kv = 0.0;
      var vv = 0.0;
      if (k0 + kk < uniforms.M) {
        let src = (b * uniforms.M + k0 + kk) * inner + h * D + j;
        kv = f32(Kt[src]);
        vv = f32(Vt[src]);
      }
      ks[kk * 64 + j] = ${stage('kv')};
      vs[kk * 64 + j] = ${stage('vv')};
    }
    workgroupBarrier();
    let count = min(32, uniforms.M - k0);
    var s : array<f32, 32>;
    var tmax = -3.0e38;
    for (var kk = 0; kk < count; kk++) {
      var dot = 0.0;
      ${cols('D', 'dot = fma(f32(q[r]), f32(ks[kk * 64 + j]), dot);')}
      s[kk] = rowSum(dot) * uniforms.scale;
      tmax = max(tmax, s[kk]);
    }
    let mnew = max(mx, tmax);
    let corr = exp(mx - mnew);
    sum = sum * corr;
    ${cols('D', 'acc[r] = acc[r] * corr;')}
    for (var kk = 0; kk < count; kk++) {
      let p = exp(s[kk] - mnew);
      sum += p;
      ${cols('D', 'acc[r] = fma(p, f32(vs[kk * 64 + j]), acc[r]);')}
    }
    mx = mnew;
    workgroupBarrier();
  }
  if (valid) {
    ${cols('D', 'result[(b * uniforms.N + row) * inner + h * D + j] = acc[r] / sum;')}
    ${stats ? 'if (part == 0) { result[uniforms.B * uniforms.N * inner + (b * uniforms.N + row) * uniforms.H + h] = mx + log(sum); }' : ''}
  }
}`,
  };
}

/** Cooperative load of `rows` rows × d columns of head h from a [B, len, H·d] input into a workgroup array, staged. */
const tileLoad = (dst: string, src: string, rows: number, d: number, first: string, len: string, stage: (v: string) => string, threads: number) => `
  for (var e = lid; e < ${rows * d}; e += ${threads}) {
    let r = e / ${d};
    let j = e % ${d};
    var val = 0.0;
    if (${first} + r < ${len}) { val = f32(${src}[(b * ${len} + ${first} + r) * inner + h * ${d} + j]); }
    ${dst}[e] = ${stage('val')};
  }`;

const PROLOGUE = (d: number) => `
  let lid = i32(localIndex);
  let row = i32(workgroupId.x) * ${ROWS} + slot();
  let bh = i32(workgroupId.y);
  let b = bh / uniforms.H;
  let h = bh % uniforms.H;
  let inner = uniforms.H * ${d};`;

/** dQ: a row (thread or quad) per query; K/V tiles of 32 keys in workgroup memory. */
function gradQProgram(b: number, n: number, heads: number, d: number, p: Precision, sub: boolean): WebGPUProgram {
  const T = 32;
  const { prelude, t, stage } = operands(p);
  const { lanes, wgsl, cols } = lanesOf(sub);
  const regs = Math.ceil(d / lanes);
  const threads = ROWS * lanes;
  return {
    outputShape: [b, n, heads * d],
    shaderKey: `difftalkAttentionGradQ_${d}_${p}_${lanes}`,
    dispatchLayout: { x: [0], y: [1], z: [2] },
    dispatch: [Math.ceil(n / ROWS), b * heads, 1],
    variableNames: ['Q', 'Kt', 'Vt', 'Dout', 'Lse', 'Dsum'],
    uniforms: 'B : i32, N : i32, M : i32, H : i32, scale : f32,',
    workgroupSize: [threads, 1, 1],
    getUserCode: () => `${prelude}${wgsl}
var<workgroup> ks : array<${t}, ${T * d}>;
var<workgroup> vs : array<${t}, ${T * d}>;
fn main() {${PROLOGUE(d)}
  let valid = row < uniforms.N;
  var q : array<${t}, ${regs}>;
  var g : array<${t}, ${regs}>;
  var dq : array<f32, ${regs}>;
  var lse = 0.0;
  var dd = 0.0;
  for (var r = 0; r < ${regs}; r++) { q[r] = ${t}(0.0); g[r] = ${t}(0.0); dq[r] = 0.0; }
  if (valid) {
    let base = (b * uniforms.N + row) * inner + h * ${d};
    ${cols(`${d}`, `q[r] = ${stage('f32(Q[base + j])')}; g[r] = ${stage('f32(Dout[base + j])')};`)}
    lse = f32(Lse[(b * uniforms.N + row) * uniforms.H + h]);
    dd = f32(Dsum[(b * uniforms.N + row) * uniforms.H + h]);
  }
  for (var k0 = 0; k0 < uniforms.M; k0 += ${T}) {${tileLoad('ks', 'Kt', T, d, 'k0', 'uniforms.M', stage, threads)}${tileLoad('vs', 'Vt', T, d, 'k0', 'uniforms.M', stage, threads)}
    workgroupBarrier();
    let count = min(${T}, uniforms.M - k0);
    for (var kk = 0; kk < count; kk++) {
      var s = 0.0;
      var dp = 0.0;
      ${cols(`${d}`, `s = fma(f32(q[r]), f32(ks[kk * ${d} + j]), s); dp = fma(f32(g[r]), f32(vs[kk * ${d} + j]), dp);`)}
      let ds = exp(rowSum(s) * uniforms.scale - lse) * (rowSum(dp) - dd);
      ${cols(`${d}`, `dq[r] = fma(ds, f32(ks[kk * ${d} + j]), dq[r]);`)}
    }
    workgroupBarrier();
  }
  if (valid) {
    let base = (b * uniforms.N + row) * inner + h * ${d};
    ${cols(`${d}`, 'result[base + j] = dq[r] * uniforms.scale;')}
  }
}`,
  };
}

/** dK and dV: a row (thread or quad) per key; Q, dO, L, D tiles of T queries in workgroup memory. */
function gradKVProgram(b: number, m: number, heads: number, d: number, p: Precision, sub: boolean): WebGPUProgram {
  const T = d <= 32 ? 32 : 16;
  const { prelude, t, stage } = operands(p);
  const { lanes, wgsl, cols } = lanesOf(sub);
  const regs = Math.ceil(d / lanes);
  const threads = ROWS * lanes;
  return {
    outputShape: [2, b, m, heads * d],
    shaderKey: `difftalkAttentionGradKV_${d}_${p}_${lanes}`,
    dispatchLayout: { x: [0], y: [1], z: [2] },
    dispatch: [Math.ceil(m / ROWS), b * heads, 1],
    variableNames: ['Q', 'Kt', 'Vt', 'Dout', 'Lse', 'Dsum'],
    uniforms: 'B : i32, N : i32, M : i32, H : i32, scale : f32,',
    workgroupSize: [threads, 1, 1],
    getUserCode: () => `${prelude}${wgsl}
var<workgroup> qs : array<${t}, ${T * d}>;
var<workgroup> gs : array<${t}, ${T * d}>;
var<workgroup> ls : array<f32, ${T}>;
var<workgroup> ds_ : array<f32, ${T}>;
fn main() {${PROLOGUE(d)}
  let valid = row < uniforms.M;
  var k : array<${t}, ${regs}>;
  var v : array<${t}, ${regs}>;
  var dk : array<f32, ${regs}>;
  var dv : array<f32, ${regs}>;
  for (var r = 0; r < ${regs}; r++) { k[r] = ${t}(0.0); v[r] = ${t}(0.0); dk[r] = 0.0; dv[r] = 0.0; }
  if (valid) {
    let base = (b * uniforms.M + row) * inner + h * ${d};
    ${cols(`${d}`, `k[r] = ${stage('f32(Kt[base + j])')}; v[r] = ${stage('f32(Vt[base + j])')};`)}
  }
  for (var q0 = 0; q0 < uniforms.N; q0 += ${T}) {${tileLoad('qs', 'Q', T, d, 'q0', 'uniforms.N', stage, threads)}${tileLoad('gs', 'Dout', T, d, 'q0', 'uniforms.N', stage, threads)}
    if (lid < ${T}) {
      var l = 0.0;
      var dd = 0.0;
      if (q0 + lid < uniforms.N) {
        l = f32(Lse[(b * uniforms.N + q0 + lid) * uniforms.H + h]);
        dd = f32(Dsum[(b * uniforms.N + q0 + lid) * uniforms.H + h]);
      }
      ls[lid] = l;
      ds_[lid] = dd;
    }
    workgroupBarrier();
    let count = min(${T}, uniforms.N - q0);
    for (var i = 0; i < count; i++) {
      var s = 0.0;
      var dp = 0.0;
      ${cols(`${d}`, `s = fma(f32(qs[i * ${d} + j]), f32(k[r]), s); dp = fma(f32(gs[i * ${d} + j]), f32(v[r]), dp);`)}
      let p = exp(rowSum(s) * uniforms.scale - ls[i]);
      let ds = p * (rowSum(dp) - ds_[i]);
      ${cols(`${d}`, `dv[r] = fma(p, f32(gs[i * ${d} + j]), dv[r]); dk[r] = fma(ds, f32(qs[i * ${d} + j]), dk[r]);`)}
    }
    workgroupBarrier();
  }
  if (valid) {
    let base = (b * uniforms.M + row) * inner + h * ${d};
    let half = uniforms.B * uniforms.M * inner;
    ${cols(`${d}`, 'result[base + j] = dk[r] * uniforms.scale; result[half + base + j] = dv[r];')}
  }
}`,
  };
}

type Args = { inputs: Record<string, tf.TensorInfo>; attrs?: Record<string, unknown>; backend: unknown };

function attentionKernel({ inputs, attrs, backend }: Args): tf.TensorInfo {
  const { heads, stats } = attrs as { heads: number; stats?: boolean };
  const [b, n, inner] = inputs.q!.shape as [number, number, number];
  const m = inputs.k!.shape[1]!;
  const d = inner / heads;
  const p = forwardProgram(b, n, heads, inner, Boolean(stats), kernelPrecision(), subgroupsWanted());
  return (backend as WebGPUBackendLike).runWebGPUProgram(p, [inputs.q!, inputs.k!, inputs.v!], 'float32', [
    { type: 'int32', data: [b] },
    { type: 'int32', data: [n] },
    { type: 'int32', data: [m] },
    { type: 'int32', data: [heads] },
    { type: 'int32', data: [d] },
    { type: 'float32', data: [1 / Math.sqrt(d)] },
  ]);
}

function gradKernel(which: 'q' | 'kv') {
  return ({ inputs, attrs, backend }: Args): tf.TensorInfo => {
    const heads = (attrs as { heads: number }).heads;
    const [b, n, inner] = inputs.q!.shape as [number, number, number];
    const m = inputs.k!.shape[1]!;
    const d = inner / heads;
    const prec = kernelPrecision();
    const sub = subgroupsWanted();
    const p = which === 'q' ? gradQProgram(b, n, heads, d, prec, sub) : gradKVProgram(b, m, heads, d, prec, sub);
    const ins = [inputs.q!, inputs.k!, inputs.v!, inputs.dy!, inputs.lse!, inputs.dsum!];
    return (backend as WebGPUBackendLike).runWebGPUProgram(p, ins, 'float32', [
      { type: 'int32', data: [b] },
      { type: 'int32', data: [n] },
      { type: 'int32', data: [m] },
      { type: 'int32', data: [heads] },
      { type: 'float32', data: [1 / Math.sqrt(d)] },
    ]);
  };
}

export const ATTENTION_KERNELS: Record<string, (args: Args) => tf.TensorInfo> = {
  [KERNEL]: attentionKernel,
  [GRAD_Q]: gradKernel('q'),
  [GRAD_KV]: gradKernel('kv'),
};

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

const run = (name: string, inputs: Record<string, tf.Tensor>, attrs: Record<string, unknown>): tf.Tensor =>
  tf.engine().runKernel(name, inputs as unknown as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;

/**
 * q [B,N,H·d], k/v [B,M,H·d] → [B,N,H·d]. Outside a gradient tape: the forward program alone. Under one: the forward
 * with log-sum-exp rows, and the fused dQ and dK/dV programs as its gradient.
 */
export function fusedAttention(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, heads: number): tf.Tensor3D {
  if (!(tf.engine() as unknown as { isTapeOn(): boolean }).isTapeOn()) return run(KERNEL, { q, k, v }, { heads, stats: false }) as tf.Tensor3D;
  const op = tf.customGrad(((qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor, save: (t: tf.Tensor[]) => void) => {
    const [b, n, inner] = qq.shape as [number, number, number];
    const both = run(KERNEL, { q: qq, k: kk, v: vv }, { heads, stats: true });
    const value = tf.slice(both, 0, b * n * inner).reshape([b, n, inner]);
    const lse = tf.slice(both, b * n * inner).reshape([b, n, heads]);
    both.dispose();
    save([qq, kk, vv, value, lse]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sq, sk, sv, so, sl] = saved as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor3D];
        const m = sk.shape[1];
        const dsum = tf.sum(tf.mul(dy, so).reshape([b, n, heads, inner / heads]), -1);
        const ins = { q: sq, k: sk, v: sv, dy, lse: sl, dsum };
        const dq = run(GRAD_Q, ins, { heads });
        const [dk, dv] = tf.split(run(GRAD_KV, ins, { heads }), 2, 0).map((t) => t.reshape([b, m, inner]));
        return [dq, dk!, dv!];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(q, k, v) as tf.Tensor3D;
}
