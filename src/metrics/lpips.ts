/**
 * LPIPS v0.1 (richzhang/PerceptualSimilarity, ../shared/docs/eval-metrics.md §3) on TensorFlow.js, float32:
 * input x/127.5 − 1, scaling layer (x − shift)/scale, torchvision AlexNet / VGG16 `.features` taps, per tap a unit
 * normalisation over channels `f/(‖f‖₂ + 1e-10)`, squared difference, 1×1 linear layer without bias (`lin{k}`),
 * spatial mean; LPIPS = sum over taps. Lower means more similar. One network description, run by the tfjs executor
 * (the backend the caller selected with initBackend) or onnxruntime on the CPU (`Lpips.create(…, 'onnx' | 'auto')`).
 */
import type { RgbFrames } from '../media/types.js';
import { DifftalkError } from '../util/errors.js';
import { checkFeatureWeights, FEATURE_NETS, featureOps, featureParams, type FeatureNet, type NamedWeight } from '../models/torchvision-features.js';
import { pad2, type NetGraph, type NetOp, type NetParam } from '../models/netgraph.js';
import { TfNet } from '../models/netgraph-tf.js';
import { createNetRunner, type NetExecutor, type NetRunner } from '../models/net-runner.js';
import { loadWeights } from '../models/weights-store.js';
import type { OnEvent } from '../util/events.js';
import { checkPair, MeanFrameMetric, type MetricDirection } from './metric.js';

export type LpipsNet = FeatureNet;

const SHIFT = [-0.03, -0.088, -0.188];
const SCALE = [0.458, 0.448, 0.45];
const EPS = 1e-10;

export interface LpipsDistances {
  /** LPIPS per frame pair. */
  total: number[];
  /** perLayer[frame][tap]. */
  perLayer: number[][];
}

/**
 * The LPIPS network as one description (src/models/netgraph.ts) for every executor: inputs `pred`, `target` (NHWC in
 * [-1, 1]); each through the scaling layer and the backbone (shared weights); per tap unit-normalise, squared
 * difference, the `lin{k}` 1×1 conv, spatial mean; outputs `layer{k}` [N, 1].
 * `weights`: torchvision `features.{i}.weight|bias` + LPIPS `lin{k}.model.1.weight` (1, C, 1, 1), float32.
 */
export function lpipsGraph(net: LpipsNet, weights: ReadonlyMap<string, NamedWeight>): NetGraph {
  checkFeatureWeights(net, weights);
  const channels = FEATURE_NETS[net].channels;
  const params = new Map<string, NetParam>();
  for (const [name] of featureParams(net)) params.set(name, weights.get(name)!);
  channels.forEach((c, k) => {
    const name = `lin${k}.model.1.weight`;
    const w = weights.get(name);
    if (!w) throw new DifftalkError('bad-weights', `lpips-${net}: linear layer ${name} is missing`);
    if (w.data.length !== c || !(w.data instanceof Float32Array)) {
      throw new DifftalkError('bad-weights', `lpips-${net}: ${name} must be float32 (1, ${c}, 1, 1), got [${w.shape}]`);
    }
    params.set(name, { shape: [1, c, 1, 1], data: w.data });
  });
  const ops: NetOp[] = [];
  const taps = (['pred', 'target'] as const).map((side) => {
    ops.push({ op: 'affine', x: side, y: `${side}.scaled`, sub: SHIFT, div: SCALE });
    const b = featureOps(net, `${side}.scaled`, `${side}.f`);
    ops.push(...b.ops);
    return b.taps.map((t, k) => {
      ops.push({ op: 'l2norm', x: t, y: `${side}.n${k}`, eps: EPS });
      return `${side}.n${k}`;
    });
  });
  const outputs = channels.map((_, k) => {
    ops.push({ op: 'sqdiff', a: taps[0]![k]!, b: taps[1]![k]!, y: `d${k}` });
    ops.push({ op: 'conv', x: `d${k}`, y: `lin${k}`, weight: `lin${k}.model.1.weight`, stride: [1, 1], pad: pad2(0) });
    ops.push({ op: 'mean-hw', x: `lin${k}`, y: `layer${k}` });
    return `layer${k}`;
  });
  return {
    name: `lpips-${net}`,
    inputs: [
      { name: 'pred', channels: 3 },
      { name: 'target', channels: 3 },
    ],
    outputs,
    ops,
    params,
  };
}

/** An LPIPS model on one executor (tfjs or onnxruntime); `dispose()` when done. */
export class Lpips {
  private readonly runner: NetRunner;

  /** On the tfjs executor (the active backend); `runner` is for `Lpips.create`. */
  constructor(
    readonly net: LpipsNet,
    weights: ReadonlyMap<string, NamedWeight>,
    runner?: NetRunner,
  ) {
    this.runner = runner ?? new TfNet(lpipsGraph(net, weights));
  }

  /** An LPIPS model on `executor` ('auto': onnxruntime on the CPU when it loads, else tfjs). */
  static async create(net: LpipsNet, weights: ReadonlyMap<string, NamedWeight>, executor: NetExecutor = 'tfjs'): Promise<Lpips> {
    return new Lpips(net, weights, await createNetRunner(lpipsGraph(net, weights), executor));
  }

  /** What runs the network (`tfjs-wasm`, `onnxruntime-cpu (2 threads)` …). */
  get executor(): string {
    return this.runner.executor;
  }

  get name(): string {
    return `lpips(${this.net}-v0.1)`;
  }

  /**
   * LPIPS of NHWC float32 batches already in [-1, 1] (`n` images of `height`×`width`×3 each, as the reference's
   * `forward(in0, in1)` with normalize=False).
   */
  async distancesScaled(pred: Float32Array, target: Float32Array, n: number, height: number, width: number): Promise<LpipsDistances> {
    const shape = [n, height, width, 3];
    const layers = await this.runner.run({ pred: { data: pred, shape }, target: { data: target, shape } });
    const perLayer: number[][] = [];
    const total: number[] = [];
    for (let i = 0; i < n; i++) {
      const row = layers.map((l) => l.data[i]!);
      perLayer.push(row);
      total.push(row.reduce((s, v) => s + v, 0));
    }
    return { total, perLayer };
  }

  /** LPIPS of uint8 RGB frame pairs (mapped to [-1, 1] as x/127.5 − 1 in float32), in batches of `batch` frames. */
  async distances(pred: RgbFrames, target: RgbFrames, batch = 4): Promise<LpipsDistances> {
    checkPair(pred, target, this.name);
    const frame = pred.width * pred.height * 3;
    const out: LpipsDistances = { total: [], perLayer: [] };
    for (let i = 0; i < pred.count; i += batch) {
      const n = Math.min(batch, pred.count - i);
      const toFloat = (src: Uint8Array) => {
        const f = new Float32Array(n * frame);
        const s = src.subarray(i * frame, (i + n) * frame);
        for (let j = 0; j < f.length; j++) f[j] = Math.fround(s[j]! / 127.5) - 1;
        return f;
      };
      const r = await this.distancesScaled(toFloat(pred.data), toFloat(target.data), n, pred.height, pred.width);
      out.total.push(...r.total);
      out.perLayer.push(...r.perLayer);
    }
    return out;
  }

  dispose(): void {
    this.runner.dispose();
  }
}

/**
 * Load LPIPS weights from the weights cache (throws the requireWeights error when they were never imported; with
 * `fetch`, downloads and imports them on first use, logging what comes from where).
 */
export async function loadLpips(
  net: LpipsNet,
  options: { cacheDir?: string; fetch?: boolean; onEvent?: OnEvent; executor?: NetExecutor } = {},
): Promise<Lpips> {
  const weights = await loadWeights(`lpips-${net}`, options);
  const named = new Map<string, NamedWeight>();
  for (const [k, t] of weights) {
    if (!(t.data instanceof Float32Array)) throw new DifftalkError('bad-weights', `lpips-${net}: ${k} is ${t.dtype}, expected float32`);
    named.set(k, { shape: t.shape, data: t.data });
  }
  return Lpips.create(net, named, options.executor);
}

/** LPIPS as a frame metric: mean of per-frame LPIPS; `extra.perLayer` is the mean per tap. */
export class LpipsMetric extends MeanFrameMetric {
  static readonly metricName = 'lpips';
  static readonly variants: readonly LpipsNet[] = ['alex', 'vgg'];
  static readonly direction: MetricDirection = 'lower';
  readonly name: string;
  readonly direction: MetricDirection = 'lower';

  constructor(
    readonly model: Lpips,
    readonly batch = 4,
  ) {
    super();
    this.name = model.name;
  }

  async update(pred: RgbFrames, target: RgbFrames): Promise<void> {
    const r = await this.model.distances(pred, target, this.batch);
    r.total.forEach((v, i) => this.add(v, { perLayer: r.perLayer[i]! }));
  }
}
