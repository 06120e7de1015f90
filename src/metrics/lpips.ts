/**
 * LPIPS v0.1 (richzhang/PerceptualSimilarity, ../shared/docs/eval-metrics.md §3) on TensorFlow.js, float32:
 * input x/127.5 − 1, scaling layer (x − shift)/scale, torchvision AlexNet / VGG16 `.features` taps, per tap a unit
 * normalisation over channels `f/(‖f‖₂ + 1e-10)`, squared difference, 1×1 linear layer without bias (`lin{k}`),
 * spatial mean; LPIPS = sum over taps. Lower means more similar. The caller selects the tfjs backend (initBackend).
 */
import type { RgbFrames } from '../media/types.js';
import { DifftalkError } from '../util/errors.js';
import { tf } from '../util/tf.js';
import { FEATURE_NETS, FeatureExtractor, type FeatureNet, type NamedWeight } from '../models/torchvision-features.js';
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

/** An LPIPS model (backbone + linear layers) living in tf memory; `dispose()` when done. */
export class Lpips {
  private readonly backbone: FeatureExtractor;
  private readonly lins: tf.Tensor1D[];
  private readonly shift: tf.Tensor1D;
  private readonly scale: tf.Tensor1D;

  /** `weights`: torchvision `features.{i}.weight|bias` + LPIPS `lin{k}.model.1.weight` (1, C, 1, 1), float32. */
  constructor(
    readonly net: LpipsNet,
    weights: ReadonlyMap<string, NamedWeight>,
  ) {
    const channels = FEATURE_NETS[net].channels;
    const lins = channels.map((c, k) => {
      const w = weights.get(`lin${k}.model.1.weight`);
      if (!w) throw new DifftalkError('bad-weights', `lpips-${net}: linear layer lin${k}.model.1.weight is missing`);
      if (w.data.length !== c || !(w.data instanceof Float32Array)) {
        throw new DifftalkError('bad-weights', `lpips-${net}: lin${k}.model.1.weight must be float32 (1, ${c}, 1, 1), got [${w.shape}]`);
      }
      return w.data;
    });
    this.backbone = new FeatureExtractor(net, weights);
    this.lins = lins.map((w) => tf.tensor1d(w));
    this.shift = tf.tensor1d(SHIFT);
    this.scale = tf.tensor1d(SCALE);
  }

  get name(): string {
    return `lpips(${this.net}-v0.1)`;
  }

  /**
   * LPIPS of NHWC float32 batches already in [-1, 1] (`n` images of `height`×`width`×3 each, as the reference's
   * `forward(in0, in1)` with normalize=False).
   */
  async distancesScaled(pred: Float32Array, target: Float32Array, n: number, height: number, width: number): Promise<LpipsDistances> {
    const perLayerT = tf.tidy(() => {
      const x = tf.tensor4d(pred, [n, height, width, 3]);
      const y = tf.tensor4d(target, [n, height, width, 3]);
      const inp = tf.div(tf.sub(tf.concat([x, y], 0), this.shift), this.scale) as tf.Tensor4D;
      const feats = this.backbone.features(inp);
      const layers = feats.map((f, k) => {
        const norm = tf.div(f, tf.add(tf.sqrt(tf.sum(tf.square(f), -1, true)), EPS));
        const [a, b] = tf.split(norm, [n, n], 0);
        const d = tf.square(tf.sub(a!, b!));
        return tf.mean(tf.sum(tf.mul(d, this.lins[k]!), -1), [1, 2]); // [n]
      });
      return tf.stack(layers, 1); // [n, taps]
    });
    const values = (await perLayerT.data()) as Float32Array;
    perLayerT.dispose();
    const taps = this.lins.length;
    const perLayer: number[][] = [];
    const total: number[] = [];
    for (let i = 0; i < n; i++) {
      const row = Array.from(values.subarray(i * taps, (i + 1) * taps));
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
    this.backbone.dispose();
    for (const t of this.lins) t.dispose();
    this.shift.dispose();
    this.scale.dispose();
  }
}

/**
 * Load LPIPS weights from the weights cache (throws the requireWeights error when they were never imported; with
 * `fetch`, downloads and imports them on first use, logging what comes from where).
 */
export async function loadLpips(net: LpipsNet, options: { cacheDir?: string; fetch?: boolean; onEvent?: OnEvent } = {}): Promise<Lpips> {
  const weights = await loadWeights(`lpips-${net}`, options);
  const named = new Map<string, NamedWeight>();
  for (const [k, t] of weights) {
    if (!(t.data instanceof Float32Array)) throw new DifftalkError('bad-weights', `lpips-${net}: ${k} is ${t.dtype}, expected float32`);
    named.set(k, { shape: t.shape, data: t.data });
  }
  return new Lpips(net, named);
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
