/**
 * FVD (Fréchet Video Distance, Unterthiner et al. 2018) with the protocol of StyleGAN-V's
 * src/metrics/frechet_video_distance.py and LatentSync's eval/fvd.py (docs/commands/eval.md "FVD"):
 *
 * - Features: the I3D of src/models/i3d.ts (Kinetics-400, the `i3d` weights = i3d_torchscript.pt) on clips of
 *   16 consecutive frames, each frame resized to 224×224 (bilinear, half-pixel centres) and scaled to [-1, 1]; the
 *   400-d pre-softmax logits averaged over time (the TorchScript's `return_features=True` output).
 * - Clips: every complete window of 16 consecutive compared frames of a video, from its first compared frame, non
 *   overlapping (frames 0–15, 16–31, …); the remainder (< 16 frames) is not used. `clipsPerVideo: 1` keeps only
 *   the first window, StyleGAN-V's rule for generated videos (one clip per video). Prediction and GT get the same
 *   windows of the paired frames.
 * - Distance: the Fréchet distance of src/metrics/fid.ts (`fidFromFeatures`: μ, np.cov(rowvar=False) statistics,
 *   ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2·tr sqrtm(Σ1Σ2), the exact low-rank route when a set has fewer clips than 400).
 *
 * The state is the two feature sets, so merging is concatenation and a merged FVD equals the one-pass FVD; one
 * value per run (like FID, biased by the number of clips: compare runs with the same clip count).
 */
import type { RgbFrames } from '../media/types.js';
import { DifftalkError } from '../util/errors.js';
import { silent, type OnEvent } from '../util/events.js';
import { I3D_CLIP_FRAMES, I3D_FEATURE_DIM, type I3d } from '../models/i3d.js';
import { concatFeatures, fidFromFeatures } from './fid.js';
import type { MetricDirection } from './metric.js';

/** I3D features [clips, 400] of `clips` clips given as consecutive frames (uint8 RGB, clip after clip). */
export async function i3dFeatures(net: I3d, frames: RgbFrames, clips: number): Promise<Float32Array> {
  const { width, height, count } = frames;
  if (frames.data.length !== count * width * height * 3)
    throw new DifftalkError('bad-input', `FVD: frames hold ${frames.data.length} bytes for ${count} × ${width}×${height}×3`);
  if (count !== clips * net.clipFrames) throw new DifftalkError('bad-input', `FVD: ${count} frames are not ${clips} clip(s) of ${net.clipFrames}`);
  return net.featuresOf(Float32Array.from(frames.data), clips, height, width);
}

/** Buffers one side's frames of the current video until a clip is complete. */
class ClipBuffer {
  private parts: Uint8Array[] = [];
  private frames = 0;
  constructor(
    readonly width: number,
    readonly height: number,
  ) {}

  get count(): number {
    return this.frames;
  }

  push(data: Uint8Array, n: number): void {
    this.parts.push(data);
    this.frames += n;
  }

  /** The first `n` buffered frames as one batch (the rest stays buffered). */
  take(n: number): RgbFrames {
    const size = this.width * this.height * 3;
    const all = new Uint8Array(this.frames * size);
    let o = 0;
    for (const p of this.parts) {
      all.set(p, o);
      o += p.length;
    }
    this.parts = [all.subarray(n * size)];
    this.frames -= n;
    return { width: this.width, height: this.height, count: n, data: all.slice(0, n * size) };
  }
}

export interface FvdOptions {
  /** Clips per video (default: every complete 16-frame window; 1 = StyleGAN-V's one clip per video). */
  clipsPerVideo?: number;
  onEvent?: OnEvent;
}

/**
 * FVD as a metric object. Per video: `beginVideo()`, then `update(pred, gt)` with its paired frames chunk by chunk
 * (clips are cut and embedded as soon as 16 frames are in), then `endVideo()` (drops the incomplete remainder).
 * `compute()` gives the run's FVD; `merge` adds another instance's features.
 */
export class FvdMetric {
  static readonly metricName = 'fvd';
  static readonly direction: MetricDirection = 'lower';
  readonly direction: MetricDirection = FvdMetric.direction;
  readonly clipFrames = I3D_CLIP_FRAMES;
  private pred: Float32Array[] = [];
  private gt: Float32Array[] = [];
  private bufP?: ClipBuffer;
  private bufG?: ClipBuffer;
  private videoClips = 0;
  /** Frames of the videos seen that fell outside every clip (remainders, or past clipsPerVideo). */
  unusedFrames = 0;

  /** `weightsTag`: the weights' identity in the name (the first 12 hex digits of the weights file's sha256). */
  constructor(
    private readonly net: I3d | undefined,
    readonly weightsTag: string,
    private readonly options: FvdOptions = {},
  ) {
    const k = options.clipsPerVideo;
    if (k !== undefined && !(Number.isInteger(k) && k >= 1)) throw new DifftalkError('bad-option', `FVD clips per video must be a whole number ≥ 1, got ${k}`);
  }

  get name(): string {
    return `fvd(i3d-kinetics400-16f-224:${this.weightsTag})`;
  }

  beginVideo(): void {
    this.endVideo();
    this.videoClips = 0;
  }

  /** Add paired frames of the current video (same size and count). */
  async update(pred: RgbFrames, gt: RgbFrames): Promise<void> {
    if (!this.net) throw new DifftalkError('internal', 'FVD: this instance holds features only (no network)');
    if (pred.count !== gt.count || pred.width !== gt.width || pred.height !== gt.height) {
      throw new DifftalkError('frame-mismatch', `FVD: prediction is ${pred.count}×${pred.width}×${pred.height}, GT is ${gt.count}×${gt.width}×${gt.height}`);
    }
    if (!this.bufP || this.bufP.width !== pred.width || this.bufP.height !== pred.height) {
      if (this.bufP?.count) throw new DifftalkError('frame-mismatch', 'FVD: the frame size changed within a video');
      this.bufP = new ClipBuffer(pred.width, pred.height);
      this.bufG = new ClipBuffer(gt.width, gt.height);
    }
    const limit = this.options.clipsPerVideo ?? Infinity;
    if (this.videoClips >= limit) {
      this.unusedFrames += pred.count;
      return;
    }
    this.bufP.push(pred.data, pred.count);
    this.bufG!.push(gt.data, gt.count);
    const onEvent = this.options.onEvent ?? silent;
    while (this.bufP.count >= this.clipFrames && this.videoClips < limit) {
      this.pred.push(await i3dFeatures(this.net, this.bufP.take(this.clipFrames), 1));
      this.gt.push(await i3dFeatures(this.net, this.bufG!.take(this.clipFrames), 1));
      this.videoClips++;
      onEvent({ type: 'log', level: 'debug', message: `fvd: ${this.counts.pred} clip(s) embedded` });
    }
  }

  /** End of the current video: frames short of a clip are dropped (counted in `unusedFrames`). */
  endVideo(): void {
    this.unusedFrames += this.bufP?.count ?? 0;
    this.bufP = undefined;
    this.bufG = undefined;
  }

  /** Add features directly ([n, 400] each, row-major): for merging stored features and for tests. */
  addFeatures(predFeatures: Float32Array, gtFeatures: Float32Array): void {
    for (const f of [predFeatures, gtFeatures])
      if (f.length % I3D_FEATURE_DIM !== 0) throw new DifftalkError('bad-input', `FVD features of length ${f.length} are not a multiple of ${I3D_FEATURE_DIM}`);
    if (predFeatures.length) this.pred.push(predFeatures);
    if (gtFeatures.length) this.gt.push(gtFeatures);
  }

  get counts(): { pred: number; gt: number } {
    const n = (xs: Float32Array[]) => xs.reduce((a, x) => a + x.length, 0) / I3D_FEATURE_DIM;
    return { pred: n(this.pred), gt: n(this.gt) };
  }

  /** The features seen so far, [clips, 400] row-major per side. */
  features(): { pred: Float32Array; gt: Float32Array } {
    return { pred: concatFeatures(this.pred), gt: concatFeatures(this.gt) };
  }

  /** FVD between all prediction and all GT clips (`gtVsGt`: the GT set against itself, the baseline). */
  compute(gtVsGt = false): { name: string; value: number; clips: number; direction: MetricDirection } {
    const { pred, gt } = this.counts;
    if (gt < 2 || (!gtVsGt && pred < 2)) {
      throw new DifftalkError('no-data', `FVD needs at least 2 clips of ${this.clipFrames} frames per set (prediction ${pred}, GT ${gt})`, {
        suggestion: `evaluate more or longer videos (each complete run of ${this.clipFrames} compared frames is one clip), or leave fvd out of --metrics`,
      });
    }
    const g = concatFeatures(this.gt);
    const p = gtVsGt ? g : concatFeatures(this.pred);
    const np = gtVsGt ? gt : pred;
    return { name: this.name, value: fidFromFeatures(p, np, g, gt, I3D_FEATURE_DIM), clips: np, direction: this.direction };
  }

  merge(other: FvdMetric): void {
    if (other.name !== this.name) throw new DifftalkError('metric-mismatch', `cannot merge ${other.name} into ${this.name}`);
    this.pred.push(...other.pred);
    this.gt.push(...other.gt);
    this.unusedFrames += other.unusedFrames;
  }

  reset(): void {
    this.pred = [];
    this.gt = [];
    this.bufP = undefined;
    this.bufG = undefined;
    this.videoClips = 0;
    this.unusedFrames = 0;
  }
}
