/**
 * Shared building blocks for the DiffTalk networks on TensorFlow.js.
 *
 * Parameters live in a {@link Params} store keyed by the **PyTorch state_dict names** of the reference code, so
 * checkpoints map 1:1 onto upstream weights. Internally everything is NHWC: conv weights are kept as HWIO
 * (PyTorch OIHW transposed), Conv1d as [k, in, out], Linear as [in, out]. `toTorch()` / `loadTorch()` convert back.
 */
import { tf } from '../util/tf.js';
import { DifftalkError } from '../util/errors.js';
import { det } from '../weights/det.js';
import type { TensorData } from '../weights/torch.js';
// our WGSL kernels replace tfjs-webgpu's matmul and conv2d whenever the webgpu backend starts (see kernels/index.ts)
import { fusedAttention, fusedAttentionAvailable } from './kernels/attention.js';
import { groupNormAct, groupNormActAvailable } from './kernels/group-norm.js';
import { customKernelsActive } from './kernels/index.js';
import { mulberry32 } from '../util/random.js';

export type ParamKind = 'conv2d' | 'conv1d' | 'linear' | 'norm-weight' | 'bias' | 'embedding';
/** How a freshly built parameter is initialised (PyTorch defaults; 'zeros' for LDM's zero_module convs). */
export type ParamInit = 'default' | 'zeros' | 'ones' | 'embedding';

export interface ParamSpec {
  /** PyTorch state_dict key. */
  name: string;
  /** PyTorch shape (OIHW for convs, [out, in] for Linear). */
  shape: number[];
  kind: ParamKind;
  init: ParamInit;
  /** Fan-in used by the PyTorch default init of the owning layer (bias init needs it too). */
  fanIn: number;
}

export const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** Count parameters from specs only (no allocation). */
export function countParams(specs: readonly ParamSpec[]): number {
  return specs.reduce((s, p) => s + numel(p.shape), 0);
}

/** Small spec helpers used by every model's `*ParamSpecs(config)` function. */
export const spec = {
  conv2d(name: string, cin: number, cout: number, k: number, opts: { zero?: boolean; bias?: boolean } = {}): ParamSpec[] {
    const fanIn = cin * k * k;
    const init: ParamInit = opts.zero ? 'zeros' : 'default';
    const out: ParamSpec[] = [{ name: `${name}.weight`, shape: [cout, cin, k, k], kind: 'conv2d', init, fanIn }];
    if (opts.bias !== false) out.push({ name: `${name}.bias`, shape: [cout], kind: 'bias', init, fanIn });
    return out;
  },
  conv1d(name: string, cin: number, cout: number, k: number): ParamSpec[] {
    const fanIn = cin * k;
    return [
      { name: `${name}.weight`, shape: [cout, cin, k], kind: 'conv1d', init: 'default', fanIn },
      { name: `${name}.bias`, shape: [cout], kind: 'bias', init: 'default', fanIn },
    ];
  },
  linear(name: string, cin: number, cout: number, opts: { bias?: boolean; zero?: boolean } = {}): ParamSpec[] {
    const init: ParamInit = opts.zero ? 'zeros' : 'default';
    const out: ParamSpec[] = [{ name: `${name}.weight`, shape: [cout, cin], kind: 'linear', init, fanIn: cin }];
    if (opts.bias !== false) out.push({ name: `${name}.bias`, shape: [cout], kind: 'bias', init, fanIn: cin });
    return out;
  },
  norm(name: string, ch: number): ParamSpec[] {
    return [
      { name: `${name}.weight`, shape: [ch], kind: 'norm-weight', init: 'ones', fanIn: ch },
      { name: `${name}.bias`, shape: [ch], kind: 'bias', init: 'zeros', fanIn: ch },
    ];
  },
  embedding(name: string, n: number, dim: number): ParamSpec[] {
    return [{ name: `${name}.weight`, shape: [n, dim], kind: 'embedding', init: 'embedding', fanIn: n }];
  },
};

/** The tfjs-layout shape of a PyTorch-layout parameter. */
export function tfShape(s: ParamSpec): number[] {
  const [a, b, c, d] = s.shape;
  if (s.kind === 'conv2d') return [c!, d!, b!, a!];
  if (s.kind === 'conv1d') return [c!, b!, a!];
  if (s.kind === 'linear') return [b!, a!];
  return [...s.shape];
}

/** Reorder row-major PyTorch data into the tfjs layout (pure JS, no tensors). */
export function torchToTfData(s: ParamSpec, data: Float32Array): Float32Array {
  if (s.kind === 'conv2d') return permute(data, s.shape, [2, 3, 1, 0]);
  if (s.kind === 'conv1d') return permute(data, s.shape, [2, 1, 0]);
  if (s.kind === 'linear') return permute(data, s.shape, [1, 0]);
  return data;
}

/** Inverse of {@link torchToTfData}. */
export function tfToTorchData(s: ParamSpec, data: Float32Array): Float32Array {
  const ts = tfShape(s);
  if (s.kind === 'conv2d') return permute(data, ts, [3, 2, 0, 1]);
  if (s.kind === 'conv1d') return permute(data, ts, [2, 1, 0]);
  if (s.kind === 'linear') return permute(data, ts, [1, 0]);
  return data;
}

/** Row-major transpose: out[permuted index] = data[index]; output axis i is input axis perm[i]. */
export function permute(data: Float32Array, shape: readonly number[], perm: readonly number[]): Float32Array {
  const rank = shape.length;
  const outShape = perm.map((p) => shape[p]!);
  const inStrides = new Array<number>(rank);
  let st = 1;
  for (let i = rank - 1; i >= 0; i--) {
    inStrides[i] = st;
    st *= shape[i]!;
  }
  const strideForOut = perm.map((p) => inStrides[p]!);
  const out = new Float32Array(data.length);
  const idx = new Array<number>(rank).fill(0);
  for (let o = 0; o < out.length; o++) {
    let src = 0;
    for (let i = 0; i < rank; i++) src += idx[i]! * strideForOut[i]!;
    out[o] = data[src]!;
    for (let i = rank - 1; i >= 0; i--) {
      if (++idx[i]! < outShape[i]!) break;
      idx[i] = 0;
    }
  }
  return out;
}

function hashName(name: string, seed: number): number {
  let h = (2166136261 ^ seed) >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619) >>> 0;
  return h;
}

/** PyTorch default init (kaiming_uniform(a=√5) ⇒ U(±1/√fan_in) for weight and bias), seeded per parameter name. */
export function initData(s: ParamSpec, seed: number): Float32Array {
  const n = numel(s.shape);
  const out = new Float32Array(n);
  if (s.init === 'zeros') return out;
  if (s.init === 'ones') return out.fill(1);
  const rnd = mulberry32(hashName(s.name, seed));
  const bound = s.init === 'embedding' ? 1 / s.fanIn : 1 / Math.sqrt(s.fanIn);
  for (let i = 0; i < n; i++) out[i] = (rnd() * 2 - 1) * bound;
  return out;
}

export type ParamSource = 'init' | 'det';

/** A named parameter store (tf.Variables in tfjs layout, keyed by PyTorch names). */
export class Params {
  readonly vars = new Map<string, tf.Variable>();
  readonly specs = new Map<string, ParamSpec>();

  constructor(specs: readonly ParamSpec[], source: ParamSource = 'init', seed = 0, opts: { prefix?: string; trainable?: boolean } = {}) {
    for (const s of specs) {
      if (this.specs.has(s.name)) throw new DifftalkError('model-config', `duplicate parameter name ${s.name}`);
      this.specs.set(s.name, s);
      const data = source === 'det' ? det(`${opts.prefix ?? ''}${s.name}`, s.shape) : initData(s, seed);
      this.vars.set(s.name, tf.variable(tf.tensor(torchToTfData(s, data), tfShape(s), 'float32'), opts.trainable ?? true));
    }
  }

  /** A store over existing variables (e.g. EMA shadows) with the same specs; disposing it disposes nothing it shares. */
  static view(specs: ReadonlyMap<string, ParamSpec>, vars: ReadonlyMap<string, tf.Variable>): Params {
    const p = new Params([]);
    for (const [n, s] of specs) {
      const v = vars.get(n);
      if (!v) throw new DifftalkError('model-config', `view: no variable for ${n}`);
      p.specs.set(n, s);
      p.vars.set(n, v);
    }
    return p;
  }

  get(name: string): tf.Variable {
    const v = this.vars.get(name);
    if (!v) throw new DifftalkError('model-config', `unknown parameter ${name}`);
    return v;
  }

  has(name: string): boolean {
    return this.vars.has(name);
  }

  count(): number {
    return countParams([...this.specs.values()]);
  }

  /** Trainable variables in a stable order (by name). */
  list(): tf.Variable[] {
    return [...this.vars.keys()].sort().map((k) => this.vars.get(k)!);
  }

  /** Export in PyTorch layout (row-major float32). */
  toTorch(prefix = ''): Map<string, TensorData> {
    const out = new Map<string, TensorData>();
    for (const [name, v] of this.vars) {
      const s = this.specs.get(name)!;
      out.set(prefix + name, { dtype: 'float32', shape: [...s.shape], data: tfToTorchData(s, v.dataSync() as Float32Array) });
    }
    return out;
  }

  /** toTorch with async device reads (the checkpoint save path; no synchronous read blocks the backend). */
  async toTorchAsync(prefix = ''): Promise<Map<string, TensorData>> {
    const out = new Map<string, TensorData>();
    for (const [name, v] of this.vars) {
      const s = this.specs.get(name)!;
      out.set(prefix + name, { dtype: 'float32', shape: [...s.shape], data: tfToTorchData(s, (await v.data()) as Float32Array) });
    }
    return out;
  }

  /** Assign from PyTorch-layout tensors. Missing or mis-shaped entries are errors (strict by default). */
  loadTorch(tensors: ReadonlyMap<string, TensorData>, opts: { prefix?: string; strict?: boolean; source?: string } = {}): void {
    const prefix = opts.prefix ?? '';
    const missing: string[] = [];
    for (const [name, s] of this.specs) {
      const t = tensors.get(prefix + name);
      if (!t) {
        missing.push(prefix + name);
        continue;
      }
      if (t.shape.length !== s.shape.length || t.shape.some((d, i) => d !== s.shape[i])) {
        throw new DifftalkError('weights-mismatch', `${opts.source ?? 'weights'}: ${prefix + name} has shape [${t.shape}] but the model expects [${s.shape}]`);
      }
      const data = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as ArrayLike<number>);
      this.get(name).assign(tf.tensor(torchToTfData(s, data), tfShape(s), 'float32'));
    }
    if (missing.length && opts.strict !== false) {
      throw new DifftalkError(
        'weights-mismatch',
        `${opts.source ?? 'weights'}: ${missing.length} parameters missing (first: ${missing.slice(0, 3).join(', ')})`,
        {
          suggestion: 'Check that the checkpoint was made for the same model configuration.',
        },
      );
    }
  }

  dispose(): void {
    for (const v of this.vars.values()) v.dispose();
    this.vars.clear();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Ops (NHWC). All take the store and the PyTorch module name.

/**
 * Conv2d with PyTorch-style symmetric zero padding (`pad`), or LDM's VQ (0,1,0,1) asymmetric pad.
 * Computed as im2col + one matMul (1×1 convs as a plain matMul): the gradients then come from slice/concat/matMul,
 * which every backend has and which are fast on cpu/wasm (tfjs-cpu's Conv2DBackpropFilter takes ~50 s for one
 * 3×3 32-channel 64² batch-8 layer, and wasm has no Conv2DBackpropFilter at all). On webgpu with difftalk's kernels
 * on, tf.fused.conv2d (conv + bias) instead: our implicit-GEMM forward and gradient kernels (kernels/conv2d.ts).
 */
export function conv2d(p: Params, name: string, x: tf.Tensor4D, opts: { stride?: number; pad?: number | [number, number, number, number] } = {}): tf.Tensor4D {
  const w = p.get(`${name}.weight`) as unknown as tf.Tensor4D;
  const [kh, kw, cin, cout] = w.shape;
  const stride = opts.stride ?? 1;
  const pad = opts.pad ?? (kh - 1) / 2;
  const [t, b, l, r] = typeof pad === 'number' ? [pad, pad, pad, pad] : pad;
  const [n, h, wd] = x.shape;
  const ho = Math.floor((h + t + b - kh) / stride) + 1;
  const wo = Math.floor((wd + l + r - kw) / stride) + 1;
  let y: tf.Tensor;
  const bias = p.has(`${name}.bias`) ? p.get(`${name}.bias`) : undefined;
  if (customKernelsActive() && tf.getBackend() === 'webgpu') {
    // difftalk's implicit-GEMM kernels (kernels/conv2d.ts) for the forward pass (bias added in its store) and both
    // gradients: no im2col copy; tf.fused.conv2d's gradient is the two backprop passes plus Σ dy for the bias
    const explicit: [[0, 0], [number, number], [number, number], [0, 0]] = [
      [0, 0],
      [t, b],
      [l, r],
      [0, 0],
    ];
    return tf.fused.conv2d({ x, filter: w, strides: stride, pad: explicit, bias });
  } else if (kh === 1 && kw === 1 && stride === 1 && !(t || b || l || r)) {
    y = tf.matMul(x.reshape([n * h * wd, cin]), w.reshape([cin, cout]));
  } else {
    // pad so every tap's strided window fits (extra zeros past the PyTorch padding are never sampled)
    const needH = kh - 1 + stride * ho;
    const needW = kw - 1 + stride * wo;
    const xp = tf.pad(x, [
      [0, 0],
      [t, Math.max(b, needH - h - t)],
      [l, Math.max(r, needW - wd - l)],
      [0, 0],
    ]);
    const taps: tf.Tensor[] = [];
    for (let ky = 0; ky < kh; ky++) {
      for (let kx = 0; kx < kw; kx++) {
        let s4: tf.Tensor = tf.slice(xp, [0, ky, kx, 0], [n, stride * ho, stride * wo, cin]);
        if (stride > 1) {
          s4 = tf.slice(s4.reshape([n, ho, stride, stride * wo * cin]), [0, 0, 0, 0], [n, ho, 1, stride * wo * cin]);
          s4 = tf.slice(s4.reshape([n * ho, wo, stride, cin]), [0, 0, 0, 0], [n * ho, wo, 1, cin]);
        }
        taps.push(s4.reshape([n * ho * wo, cin]));
      }
    }
    y = tf.matMul(tf.concat(taps, 1), w.reshape([kh * kw * cin, cout]));
  }
  if (bias) y = tf.add(y, bias);
  return y.reshape([n, ho, wo, cout]);
}

/** Conv1d on [B, L, C] with symmetric padding, as im2col + matMul (see conv2d for why). */
export function conv1d(p: Params, name: string, x: tf.Tensor3D, opts: { stride?: number; pad?: number } = {}): tf.Tensor3D {
  const w = p.get(`${name}.weight`) as unknown as tf.Tensor3D;
  const [k, cin, cout] = w.shape;
  const stride = opts.stride ?? 1;
  const pad = opts.pad ?? 0;
  const [n, len] = x.shape;
  const lo = Math.floor((len + 2 * pad - k) / stride) + 1;
  const need = k - 1 + stride * lo;
  const xp = tf.pad(x, [
    [0, 0],
    [pad, Math.max(pad, need - len - pad)],
    [0, 0],
  ]);
  const taps: tf.Tensor[] = [];
  for (let j = 0; j < k; j++) {
    let s3: tf.Tensor = tf.slice(xp, [0, j, 0], [n, stride * lo, cin]);
    if (stride > 1) s3 = tf.slice(s3.reshape([n * lo, stride, cin]), [0, 0, 0], [n * lo, 1, cin]);
    taps.push(s3.reshape([n * lo, cin]));
  }
  const y = tf.add(tf.matMul(tf.concat(taps, 1), w.reshape([k * cin, cout])), p.get(`${name}.bias`));
  return y.reshape([n, lo, cout]);
}

/** Linear on the last axis of any-rank input. */
export function linear(p: Params, name: string, x: tf.Tensor): tf.Tensor {
  const w = p.get(`${name}.weight`) as unknown as tf.Tensor2D;
  const shape = x.shape;
  const x2 = x.reshape([-1, shape[shape.length - 1]!]) as tf.Tensor2D;
  const bias = p.has(`${name}.bias`) ? p.get(`${name}.bias`) : undefined;
  let y: tf.Tensor;
  // webgpu with difftalk's kernels: the bias add happens in the matmul's store (kernels/matmul.ts, _FusedMatMul)
  if (bias && customKernelsActive() && tf.getBackend() === 'webgpu') y = tf.fused.matMul({ a: x2, b: w, bias });
  else y = bias ? tf.add(tf.matMul(x2, w), bias) : tf.matMul(x2, w);
  return y.reshape([...shape.slice(0, -1), w.shape[1]]);
}

/**
 * GroupNorm over NHWC (biased variance, as torch). On webgpu with difftalk's kernels on, one fused op with its own
 * gradient (kernels/group-norm.ts); elsewhere moments + normalise.
 */
export function groupNorm(p: Params, name: string, x: tf.Tensor4D, groups: number, eps: number): tf.Tensor4D {
  if (groupNormActAvailable(x, groups)) return groupNormAct(x, p.get(`${name}.weight`), p.get(`${name}.bias`), groups, eps, false);
  const [b, h, w, c] = x.shape;
  const g = x.reshape([b, h, w, groups, c / groups]);
  const { mean, variance } = tf.moments(g, [1, 2, 4], true);
  const n = tf.mul(tf.sub(g, mean), tf.rsqrt(tf.add(variance, eps))).reshape([b, h, w, c]);
  return tf.add(tf.mul(n, p.get(`${name}.weight`)), p.get(`${name}.bias`)) as tf.Tensor4D;
}

/** silu(groupNorm(x)): the UNet's and VQ's norm layers; one fused op (forward and backward) on webgpu with our kernels. */
export function groupNormSilu(p: Params, name: string, x: tf.Tensor4D, groups: number, eps: number): tf.Tensor4D {
  if (groupNormActAvailable(x, groups)) return groupNormAct(x, p.get(`${name}.weight`), p.get(`${name}.bias`), groups, eps, true);
  return silu(groupNorm(p, name, x, groups, eps));
}

/** LayerNorm over the last axis. */
export function layerNorm(p: Params, name: string, x: tf.Tensor, eps = 1e-5): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  const n = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
  return tf.add(tf.mul(n, p.get(`${name}.weight`)), p.get(`${name}.bias`));
}

export function silu<T extends tf.Tensor>(x: T): T {
  return tf.mul(x, tf.sigmoid(x)) as T;
}

export function leakyRelu<T extends tf.Tensor>(x: T, alpha = 0.02): T {
  return tf.leakyRelu(x, alpha) as T;
}

/** Exact (erf) GELU, as torch.nn.functional.gelu. */
export function gelu<T extends tf.Tensor>(x: T): T {
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))) as T;
}

/** Nearest-neighbour 2× upsampling (F.interpolate(scale_factor=2, mode='nearest')). */
export function upsample2x(x: tf.Tensor4D): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  // two rank-4 tiles (tfjs has no Tile gradient above rank 5): columns, then rows
  const cols = tf.tile(x.reshape([b * h, w, 1, c]), [1, 1, 2, 1]);
  return tf.tile(cols.reshape([b, h, 1, 2 * w * c]), [1, 1, 2, 1]).reshape([b, 2 * h, 2 * w, c]);
}

/** Multi-head scaled dot-product attention: q [B,N,h·d], k/v [B,M,h·d] → [B,N,h·d]. */
export function attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, heads: number): tf.Tensor3D {
  // webgpu with difftalk's kernels: fused softmax(QKᵀ)V forward, no score matrix (kernels/attention.ts)
  if (fusedAttentionAvailable(q, k, heads)) return fusedAttention(q as tf.Tensor3D, k as tf.Tensor3D, v as tf.Tensor3D, heads);
  const [b, n, inner] = q.shape as [number, number, number];
  const m = k.shape[1]!;
  const d = inner / heads;
  const split = (t: tf.Tensor, len: number) => t.reshape([b, len, heads, d]).transpose([0, 2, 1, 3]) as tf.Tensor4D;
  const qh = split(q, n);
  const kh = split(k, m);
  const vh = split(v, m);
  const sim = tf.mul(tf.matMul(qh, kh, false, true), 1 / Math.sqrt(d));
  const attn = tf.softmax(sim, -1);
  return tf.matMul(attn, vh).transpose([0, 2, 1, 3]).reshape([b, n, inner]) as tf.Tensor3D;
}

/** Identity in the forward pass, zero gradient (torch's `.detach()`). */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  const f = tf.customGrad(((a: tf.Tensor) => ({ value: a.clone(), gradFunc: (dy: tf.Tensor) => [tf.zerosLike(dy)] })) as unknown as Parameters<
    typeof tf.customGrad
  >[0]);
  return f(x) as T;
}
