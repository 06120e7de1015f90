/**
 * GroupNorm (+ SiLU) over NHWC, fused, forward and backward, as four programs registered as their own tfjs kernels
 * (names `Difftalk*`, webgpu only) and tied together by `tf.customGrad` in `groupNormAct`.
 *
 * - stats: one workgroup (256 threads) per (image, group); two passes over the group's H·W·C/G values, each reduced
 *   in workgroup memory: the mean, then the centred (biased) variance, so no E[x²]−E[x]² cancellation. Out: [B, G, 2]
 *   = (mean, 1/√(var+eps)). Where the device has `subgroups` (features.ts), the workgroup sums go through subgroupAdd
 *   (see REDUCE below), else through a tree in workgroup memory; the same for the backward's sums.
 * - apply: elementwise, grid-stride over the tensor: z = (x−mean)·rstd·γ + β, y = z·σ(z) (or z without SiLU).
 * - backward to x: one workgroup per (image, group), recomputing x̂ and z from x and the stats: dz = dy·σ(z)(1+z(1−σ(z))),
 *   g = dz·γ; reduce mean(g) and mean(g·x̂) over the group, then dx = rstd·(g − mean(g) − x̂·mean(g·x̂)).
 * - backward to γ, β: one thread per (channel, block of 64 rows of B·H·W), consecutive threads on consecutive
 *   channels; partial sums [R, 2, C] of dz·x̂ and dz, summed over R with tf.sum.
 * Assumes float32, NHWC, C divisible by the group count. The SiLU is exact (σ via exp), as blocks.silu.
 * Measured on lavapipe (docs/benchmarks.md, a CPU): forward+backward 512 ch 16², 68 ms with subgroupAdd vs 106 ms
 * with the plain tree reductions; both variants tested against the cpu composite within 1e-4 (≤ 4e-7 seen).
 */
import { tf } from '../../util/tf.js';
import { subgroupsWanted } from './features.js';
import type { ProgramUniform, WebGPUBackendLike, WebGPUProgram } from './program.js';

const STATS = 'DifftalkGroupNormStats';
const APPLY = 'DifftalkGroupNormApply';
const GRAD_X = 'DifftalkGroupNormGradX';
const GRAD_PARAMS = 'DifftalkGroupNormGradParams';
const ROWS = 64;

/**
 * WGSL reduce256(v): the sum of v over the 256 threads of the workgroup, returned to all of them. Plain: a tree in
 * workgroup memory (8 barriers). Subgroups: subgroupAdd within each subgroup; its first active lane (exclusive
 * rank 0) leaves the partial at its own slot, the others 0; then every subgroup sums the 256 slots, lane r taking
 * r, r + lanes, … (lanes = active lanes, counted with subgroupAdd(1)), and subgroupAdd again. No assumption on the
 * subgroup size or on which invocations form a subgroup; 2 barriers.
 */
const REDUCE = (sub: boolean) =>
  sub
    ? `
enable subgroups;
var<workgroup> red : array<f32, 256>;
fn reduce256(v : f32) -> f32 {
  let part = subgroupAdd(v);
  let lanes = subgroupAdd(1u);
  let rank = subgroupExclusiveAdd(1u);
  red[localIndex] = select(0.0, part, rank == 0u);
  workgroupBarrier();
  var t = 0.0;
  for (var i = rank; i < 256u; i += lanes) { t += red[i]; }
  let r = subgroupAdd(t);
  workgroupBarrier();
  return r;
}`
    : `
var<workgroup> red : array<f32, 256>;
fn reduce256(v : f32) -> f32 {
  let lid = i32(localIndex);
  red[lid] = v;
  workgroupBarrier();
  for (var s = 128; s > 0; s = s >> 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;

/** WGSL: z and dz/dy-factor for one element (x̂ given). */
const ACT = (silu: boolean) =>
  silu
    ? `fn act(z : f32) -> f32 { return z / (1.0 + exp(-z)); }
fn actGrad(z : f32) -> f32 { let s = 1.0 / (1.0 + exp(-z)); return s * (1.0 + z * (1.0 - s)); }`
    : `fn act(z : f32) -> f32 { return z; }
fn actGrad(z : f32) -> f32 { return 1.0; }`;

interface Dims {
  b: number;
  hw: number;
  c: number;
  g: number;
}

function dimsOf(x: tf.TensorInfo, groups: number): Dims {
  const [b, h, w, c] = x.shape as [number, number, number, number];
  return { b, hw: h * w, c, g: groups };
}

const ints = (vals: number[]): ProgramUniform => vals.map((v) => ({ type: 'int32' as const, data: [v] }));
const DIM_UNIFORMS = 'B : i32, HW : i32, C : i32, G : i32, ';

function statsProgram(d: Dims, sub: boolean): WebGPUProgram {
  return {
    outputShape: [d.b, d.g, 2],
    shaderKey: `difftalkGroupNormStats_${sub}`,
    dispatchLayout: { x: [0], y: [1], z: [2] },
    dispatch: [d.g, d.b, 1],
    variableNames: ['X'],
    uniforms: `${DIM_UNIFORMS}eps : f32,`,
    workgroupSize: [256, 1, 1],
    getUserCode: () => `${REDUCE(sub)}
fn main() {
  let lid = i32(localIndex);
  let g = i32(workgroupId.x);
  let b = i32(workgroupId.y);
  let cg = uniforms.C / uniforms.G;
  let count = uniforms.HW * cg;
  let base = b * uniforms.HW * uniforms.C + g * cg;
  var s = 0.0;
  for (var i = lid; i < count; i += 256) { s += f32(X[base + (i / cg) * uniforms.C + i % cg]); }
  let mean = reduce256(s) / f32(count);
  var q = 0.0;
  for (var i = lid; i < count; i += 256) { let d = f32(X[base + (i / cg) * uniforms.C + i % cg]) - mean; q += d * d; }
  let variance = reduce256(q) / f32(count);
  if (lid == 0) {
    result[(b * uniforms.G + g) * 2] = mean;
    result[(b * uniforms.G + g) * 2 + 1] = inverseSqrt(variance + uniforms.eps);
  }
}`,
  };
}

function applyProgram(shape: number[], silu: boolean, groupsOfWork: number): WebGPUProgram {
  return {
    outputShape: shape,
    shaderKey: `difftalkGroupNormApply_${silu}`,
    dispatchLayout: { x: [0], y: [1], z: [2] },
    dispatch: [groupsOfWork, 1, 1],
    variableNames: ['X', 'Stats', 'Gamma', 'Beta'],
    uniforms: `${DIM_UNIFORMS}total : i32,`,
    workgroupSize: [256, 1, 1],
    getUserCode: () => `${ACT(silu)}
fn main() {
  let cg = uniforms.C / uniforms.G;
  let step = i32(numWorkgroups.x) * 256;
  for (var i = i32(globalId.x); i < uniforms.total; i += step) {
    let c = i % uniforms.C;
    let b = i / (uniforms.HW * uniforms.C);
    let s = (b * uniforms.G + c / cg) * 2;
    let z = (f32(X[i]) - f32(Stats[s])) * f32(Stats[s + 1]) * f32(Gamma[c]) + f32(Beta[c]);
    result[i] = act(z);
  }
}`,
  };
}

function gradXProgram(shape: number[], d: Dims, silu: boolean, sub: boolean): WebGPUProgram {
  return {
    outputShape: shape,
    shaderKey: `difftalkGroupNormGradX_${silu}_${sub}`,
    dispatchLayout: { x: [0], y: [1], z: [2] },
    dispatch: [d.g, d.b, 1],
    variableNames: ['Dy', 'X', 'Stats', 'Gamma', 'Beta'],
    uniforms: DIM_UNIFORMS,
    workgroupSize: [256, 1, 1],
    getUserCode: () => `${REDUCE(sub)}
${ACT(silu)}
fn main() {
  let lid = i32(localIndex);
  let g = i32(workgroupId.x);
  let b = i32(workgroupId.y);
  let cg = uniforms.C / uniforms.G;
  let count = uniforms.HW * cg;
  let base = b * uniforms.HW * uniforms.C + g * cg;
  let mean = f32(Stats[(b * uniforms.G + g) * 2]);
  let rstd = f32(Stats[(b * uniforms.G + g) * 2 + 1]);
  var s1 = 0.0;
  var s2 = 0.0;
  for (var i = lid; i < count; i += 256) {
    let c = g * cg + i % cg;
    let idx = base + (i / cg) * uniforms.C + i % cg;
    let xh = (f32(X[idx]) - mean) * rstd;
    let gx = f32(Dy[idx]) * actGrad(xh * f32(Gamma[c]) + f32(Beta[c])) * f32(Gamma[c]);
    s1 += gx;
    s2 += gx * xh;
  }
  let m1 = reduce256(s1) / f32(count);
  let m2 = reduce256(s2) / f32(count);
  for (var i = lid; i < count; i += 256) {
    let c = g * cg + i % cg;
    let idx = base + (i / cg) * uniforms.C + i % cg;
    let xh = (f32(X[idx]) - mean) * rstd;
    let gx = f32(Dy[idx]) * actGrad(xh * f32(Gamma[c]) + f32(Beta[c])) * f32(Gamma[c]);
    result[idx] = rstd * (gx - m1 - xh * m2);
  }
}`,
  };
}

function gradParamsProgram(d: Dims, silu: boolean, chunks: number): WebGPUProgram {
  return {
    outputShape: [chunks, 2, d.c],
    shaderKey: `difftalkGroupNormGradParams_${silu}`,
    dispatchLayout: { x: [0], y: [1], z: [2] },
    dispatch: [Math.ceil(d.c / 64), chunks, 1],
    variableNames: ['Dy', 'X', 'Stats', 'Gamma', 'Beta'],
    uniforms: `${DIM_UNIFORMS}rows : i32,`,
    workgroupSize: [64, 1, 1],
    getUserCode: () => `${ACT(silu)}
fn main() {
  let c = i32(workgroupId.x) * 64 + i32(localId.x);
  let chunk = i32(workgroupId.y);
  if (c >= uniforms.C) { return; }
  let cg = uniforms.C / uniforms.G;
  let total = uniforms.B * uniforms.HW;
  let end = min(total, (chunk + 1) * uniforms.rows);
  var dg = 0.0;
  var db = 0.0;
  for (var r = chunk * uniforms.rows; r < end; r++) {
    let b = r / uniforms.HW;
    let s = (b * uniforms.G + c / cg) * 2;
    let idx = r * uniforms.C + c;
    let xh = (f32(X[idx]) - f32(Stats[s])) * f32(Stats[s + 1]);
    let dz = f32(Dy[idx]) * actGrad(xh * f32(Gamma[c]) + f32(Beta[c]));
    dg += dz * xh;
    db += dz;
  }
  result[(chunk * 2) * uniforms.C + c] = dg;
  result[(chunk * 2 + 1) * uniforms.C + c] = db;
}`,
  };
}

type Args = { inputs: Record<string, tf.TensorInfo>; attrs?: Record<string, unknown>; backend: unknown };
type Attrs = { groups: number; eps: number; silu: boolean };

function statsKernel({ inputs, attrs, backend }: Args): tf.TensorInfo {
  const { groups, eps } = attrs as unknown as Attrs;
  const d = dimsOf(inputs.x!, groups);
  return (backend as WebGPUBackendLike).runWebGPUProgram(statsProgram(d, subgroupsWanted()), [inputs.x!], 'float32', [
    ...ints([d.b, d.hw, d.c, d.g]),
    { type: 'float32', data: [eps] },
  ]);
}

function applyKernel({ inputs, attrs, backend }: Args): tf.TensorInfo {
  const { groups, silu } = attrs as unknown as Attrs;
  const x = inputs.x!;
  const d = dimsOf(x, groups);
  const total = d.b * d.hw * d.c;
  const p = applyProgram([...x.shape], silu, Math.min(Math.ceil(total / 256), 8192));
  return (backend as WebGPUBackendLike).runWebGPUProgram(p, [x, inputs.stats!, inputs.gamma!, inputs.beta!], 'float32', ints([d.b, d.hw, d.c, d.g, total]));
}

function gradXKernel({ inputs, attrs, backend }: Args): tf.TensorInfo {
  const { groups, silu } = attrs as unknown as Attrs;
  const x = inputs.x!;
  const d = dimsOf(x, groups);
  const p = gradXProgram([...x.shape], d, silu, subgroupsWanted());
  return (backend as WebGPUBackendLike).runWebGPUProgram(
    p,
    [inputs.dy!, x, inputs.stats!, inputs.gamma!, inputs.beta!],
    'float32',
    ints([d.b, d.hw, d.c, d.g]),
  );
}

function gradParamsKernel({ inputs, attrs, backend }: Args): tf.TensorInfo {
  const { groups, silu } = attrs as unknown as Attrs;
  const x = inputs.x!;
  const d = dimsOf(x, groups);
  const chunks = Math.ceil((d.b * d.hw) / ROWS);
  return (backend as WebGPUBackendLike).runWebGPUProgram(
    gradParamsProgram(d, silu, chunks),
    [inputs.dy!, x, inputs.stats!, inputs.gamma!, inputs.beta!],
    'float32',
    ints([d.b, d.hw, d.c, d.g, ROWS]),
  );
}

/** The four programs as tfjs kernels for the webgpu backend (registered by kernels/index.ts). */
export const GROUP_NORM_KERNELS: Record<string, (args: Args) => tf.TensorInfo> = {
  [STATS]: statsKernel,
  [APPLY]: applyKernel,
  [GRAD_X]: gradXKernel,
  [GRAD_PARAMS]: gradParamsKernel,
};

/** Whether groupNormAct can run here: webgpu with the kernels registered, float32 NHWC, C divisible by groups. */
export function groupNormActAvailable(x: tf.Tensor, groups: number): boolean {
  return tf.getBackend() === 'webgpu' && tf.getKernel(STATS, 'webgpu') !== undefined && x.rank === 4 && x.dtype === 'float32' && x.shape[3]! % groups === 0;
}

const run = (name: string, inputs: Record<string, tf.Tensor>, attrs: Attrs): tf.Tensor =>
  tf.engine().runKernel(name, inputs as unknown as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;

/**
 * GroupNorm over NHWC x with per-channel γ, β (biased variance, as torch), then SiLU when `silu`: one custom op
 * with its own gradient (all four programs above). Call only where groupNormActAvailable says so.
 */
export function groupNormAct(x: tf.Tensor4D, gamma: tf.Tensor, beta: tf.Tensor, groups: number, eps: number, silu: boolean): tf.Tensor4D {
  const attrs: Attrs = { groups, eps, silu };
  const op = tf.customGrad(((xx: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor, save: (t: tf.Tensor[]) => void) => {
    const stats = run(STATS, { x: xx }, attrs);
    const value = run(APPLY, { x: xx, stats, gamma: gg, beta: bb }, attrs);
    save([xx, gg, bb, stats]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sg, sb, st] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
        const ins = { dy, x: sx, stats: st, gamma: sg, beta: sb };
        const dx = run(GRAD_X, ins, attrs);
        const parts = run(GRAD_PARAMS, ins, attrs);
        const sums = tf.sum(parts, 0);
        const [dg, db] = tf.split(sums, 2, 0) as [tf.Tensor, tf.Tensor];
        return [dx, dg.reshape(sg.shape), db.reshape(sb.shape)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(x, gamma, beta) as tf.Tensor4D;
}
