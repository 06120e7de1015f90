/**
 * LSE-D / LSE-C: SyncNet lip-sync distance and confidence, exactly as joonson/syncnet_python
 * `SyncNetInstance.evaluate` computes them (and Wav2Lip / LatentSync reuse unchanged; ../shared/docs/eval-metrics.md §4):
 * - MFCC by python_speech_features 0.6.1 defaults on 16 kHz int16-unit samples (100 Hz, 13 coefficients);
 * - min_length = min(video frames, floor(samples / 640)); N = min_length − 5 windows (the reference drops one usable
 *   window; kept for parity); video window i = frames i..i+4; audio window i = MFCC frames 4i..4i+19;
 * - calc_pdist(vshift = 15): audio embeddings padded with 15 zero vectors at both ends,
 *   d_i[k] = ‖v_i − a_{i+k−15} + 1e-6‖₂ (torch.pairwise_distance adds eps to the difference), k = 0..30;
 * - mdist[k] = mean_i d_i[k]; LSE-D = min mdist; LSE-C = median(mdist) − min; AV offset = 15 − argmin (frames).
 * Dataset aggregation (Wav2Lip LRS script): arithmetic mean over videos of the per-video scores.
 */
import { mfcc } from '../audio/mfcc.js';
import { DifftalkError } from '../util/errors.js';
import type { OnEvent } from '../util/events.js';
import { silent } from '../util/events.js';
import { audioWindowsHost, lipWindowsHost, SYNCNET_FRAMES, SYNCNET_MFCC_DIM, SYNCNET_SIZE, type SyncEmbedder } from '../models/syncnet.js';
import type { MetricDirection } from './metric.js';

/** The scripts pass vshift = 15 (the function default is 10). */
export const SYNC_VSHIFT = 15;
/** Audio samples per 25 fps video frame at 16 kHz. */
export const SAMPLES_PER_VIDEO_FRAME = 640;
const PDIST_EPS = 1e-6;

export interface SyncEmbeddings {
  /** N × dim, row-major. */
  lip: Float32Array;
  aud: Float32Array;
  windows: number;
  dim: number;
}

export interface SyncScores {
  /** LSE-D: minimum of the mean distance curve (lower is better). */
  lseD: number;
  /** LSE-C: median − minimum of the curve (higher is better). */
  lseC: number;
  /** Audio-visual offset in frames (15 − argmin). */
  offset: number;
  /** Mean distance per shift k = 0..2·vshift. */
  mdist: number[];
  windows: number;
}

/** Window count of the reference: min(frames, floor(samples/640)) − 5. */
export function syncWindowCount(videoFrames: number, audioSamples: number): number {
  const minLength = Math.min(videoFrames, Math.floor(audioSamples / SAMPLES_PER_VIDEO_FRAME));
  return Math.max(0, minLength - SYNCNET_FRAMES);
}

/** calc_pdist: N × (2·vshift+1) distances, zero-vector padding, eps inside the norm. */
export function calcPdist(lip: ArrayLike<number>, aud: ArrayLike<number>, n: number, dim: number, vshift = SYNC_VSHIFT): Float64Array {
  const win = 2 * vshift + 1;
  const out = new Float64Array(n * win);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < win; k++) {
      const j = i + k - vshift;
      const inRange = j >= 0 && j < n;
      let s = 0;
      for (let c = 0; c < dim; c++) {
        const d = lip[i * dim + c]! - (inRange ? aud[j * dim + c]! : 0) + PDIST_EPS;
        s += d * d;
      }
      out[i * win + k] = Math.sqrt(s);
    }
  }
  return out;
}

/** Scores from embeddings (the tail of SyncNetInstance.evaluate). */
export function syncScoresFromEmbeddings(e: SyncEmbeddings, vshift = SYNC_VSHIFT): SyncScores {
  if (e.windows < 1) throw new DifftalkError('too-short', 'LSE needs at least 6 video frames (and 0.24 s of audio)');
  const win = 2 * vshift + 1;
  const d = calcPdist(e.lip, e.aud, e.windows, e.dim, vshift);
  const mdist: number[] = [];
  for (let k = 0; k < win; k++) {
    let s = 0;
    for (let i = 0; i < e.windows; i++) s += d[i * win + k]!;
    mdist.push(s / e.windows);
  }
  let minIdx = 0;
  for (let k = 1; k < win; k++) if (mdist[k]! < mdist[minIdx]!) minIdx = k;
  const sorted = [...mdist].sort((a, b) => a - b);
  // torch.median of an odd count is the middle element (for even counts torch takes the lower middle).
  const median = sorted[Math.floor((win - 1) / 2)]!;
  return { lseD: mdist[minIdx]!, lseC: median - mdist[minIdx]!, offset: vshift - minIdx, mdist, windows: e.windows };
}

export interface SyncInput {
  /** Face crops, RGB uint8 interleaved, 224×224 each, 25 fps. */
  frames: readonly Uint8Array[];
  /** Mono 16 kHz samples in int16 units (what scipy.io.wavfile.read returns). */
  samples: ArrayLike<number>;
  sampleRate: number;
}

export interface SyncOptions {
  /** Windows per forward pass (default: the embedder's, 32 on onnxruntime, 8 on tfjs). */
  batch?: number;
  onEvent?: OnEvent;
  /** Stage name for progress events. */
  stage?: string;
}

/** MFCC (python_speech_features defaults) as frames × 13 float64. */
export function syncMfcc(samples: ArrayLike<number>, sampleRate: number): { data: Float64Array; frames: number } {
  if (sampleRate !== 16000) {
    throw new DifftalkError('bad-audio', `LSE needs 16 kHz audio, got ${sampleRate} Hz`, { suggestion: 'decode with loadAudio16k()' });
  }
  const m = mfcc(samples, sampleRate);
  if (m.dim !== SYNCNET_MFCC_DIM) throw new DifftalkError('internal', `MFCC dim ${m.dim} != 13`);
  return { data: m.data, frames: m.frames };
}

/** Lip and audio embeddings of every reference window. */
export async function syncEmbeddings(net: SyncEmbedder, input: SyncInput, opts: SyncOptions = {}): Promise<SyncEmbeddings> {
  const onEvent = opts.onEvent ?? silent;
  const stage = opts.stage ?? 'syncnet';
  const batch = Math.max(1, opts.batch ?? net.batch);
  for (const [i, f] of input.frames.entries()) {
    if (f.length !== SYNCNET_SIZE * SYNCNET_SIZE * 3) {
      throw new DifftalkError('bad-input', `LSE frame ${i} is not a ${SYNCNET_SIZE}×${SYNCNET_SIZE} RGB crop (${f.length} bytes)`);
    }
  }
  const n = syncWindowCount(input.frames.length, input.samples.length);
  if (n < 1) {
    throw new DifftalkError(
      'too-short',
      `LSE needs at least 6 video frames with audio: have ${input.frames.length} frames and ${input.samples.length} samples`,
    );
  }
  const m = syncMfcc(input.samples, input.sampleRate);
  const dim = net.config.embedDim;
  const lip = new Float32Array(n * dim);
  const aud = new Float32Array(n * dim);
  onEvent({ type: 'stage-start', stage, total: n, unit: 'windows' });
  const t0 = performance.now();
  for (let i = 0; i < n; i += batch) {
    const starts = Array.from({ length: Math.min(batch, n - i) }, (_, k) => i + k);
    const e = await net.embed(lipWindowsHost(input.frames, starts), audioWindowsHost(m.data, m.frames, starts));
    lip.set(e.lip, i * dim);
    aud.set(e.aud, i * dim);
    onEvent({ type: 'progress', stage, done: i + starts.length, total: n });
  }
  onEvent({ type: 'stage-done', stage, done: n, seconds: (performance.now() - t0) / 1000 });
  return { lip, aud, windows: n, dim };
}

/** LSE-D, LSE-C and offset of one video (one face track). */
export async function syncScores(net: SyncEmbedder, input: SyncInput, opts: SyncOptions = {}): Promise<SyncScores> {
  return syncScoresFromEmbeddings(await syncEmbeddings(net, input, opts));
}

/**
 * Dataset aggregation of Wav2Lip's LRS script: arithmetic mean over videos of per-video LSE-D and LSE-C
 * (every video weighted equally). State is the per-video list, so shards merge by concatenation.
 */
export class LseMetric {
  /** Direction of each score this metric reports (LSE-D: distance, LSE-C: confidence, AV offset: frames, best at 0). */
  static readonly direction: Readonly<Record<'lse-d' | 'lse-c' | 'av-offset', MetricDirection>> = { 'lse-d': 'lower', 'lse-c': 'higher', 'av-offset': 'zero' };
  private readonly perVideo: Array<{ id: string; scores: SyncScores }> = [];

  update(id: string, scores: SyncScores): void {
    this.perVideo.push({ id, scores });
  }

  compute(): { lseD: number; lseC: number; offset: number; videos: number } {
    return lseMean(this.perVideo.map((v) => v.scores));
  }

  reset(): void {
    this.perVideo.length = 0;
  }

  merge(other: LseMetric): void {
    this.perVideo.push(...other.perVideo);
  }

  get videos(): ReadonlyArray<{ id: string; scores: SyncScores }> {
    return this.perVideo;
  }
}

/** Functional twin of LseMetric.compute. */
export function lseMean(scores: readonly SyncScores[]): { lseD: number; lseC: number; offset: number; videos: number } {
  if (scores.length === 0) throw new DifftalkError('no-data', 'LSE: no videos were scored');
  let d = 0;
  let c = 0;
  let o = 0;
  for (const s of scores) {
    d += s.lseD;
    c += s.lseC;
    o += s.offset;
  }
  return { lseD: d / scores.length, lseC: c / scores.length, offset: o / scores.length, videos: scores.length };
}

/**
 * syncEmbeddings fed frame by frame (issue 11 point 5: bounded memory): face crops arrive in chunks with `push`, each
 * window's lip and audio embeddings are computed in the same batches of `batch` windows as syncEmbeddings (same
 * composition, so the same numbers), and only the last 4 crops plus one batch are kept. `finish` returns the scores.
 */
export class SyncStream {
  private readonly batch: number;
  private readonly mfcc: { data: Float64Array; frames: number };
  private readonly audioWindows: number;
  private readonly samples: number;
  private readonly lip: number[][] = [];
  private readonly aud: number[][] = [];
  private held: Uint8Array[] = [];
  /** Frame index of held[0]. */
  private base = 0;
  private seen = 0;
  private next = 0;

  constructor(
    private readonly net: SyncEmbedder,
    audio: { samples: ArrayLike<number>; sampleRate: number },
    opts: Pick<SyncOptions, 'batch'> = {},
  ) {
    this.batch = Math.max(1, opts.batch ?? net.batch);
    this.mfcc = syncMfcc(audio.samples, audio.sampleRate);
    // syncWindowCount with an unbounded video: the audio's limit on windows.
    this.samples = audio.samples.length;
    this.audioWindows = Math.floor(audio.samples.length / SAMPLES_PER_VIDEO_FRAME) - SYNCNET_FRAMES;
  }

  /** Most crops held at once so far (for the memory bound's test). */
  maxHeld = 0;

  async push(crops: readonly Uint8Array[]): Promise<void> {
    for (const [i, f] of crops.entries()) {
      if (f.length !== SYNCNET_SIZE * SYNCNET_SIZE * 3) {
        throw new DifftalkError('bad-input', `LSE frame ${this.seen + i} is not a ${SYNCNET_SIZE}×${SYNCNET_SIZE} RGB crop (${f.length} bytes)`);
      }
    }
    this.held.push(...crops);
    this.seen += crops.length;
    this.maxHeld = Math.max(this.maxHeld, this.held.length);
    // A full batch whose last window's frames have all arrived, and which the audio still covers.
    // (window s is usable when s < min(frames, audio frames) − 5, the reference's count)
    while (this.next + this.batch <= this.audioWindows && this.next + this.batch + SYNCNET_FRAMES <= this.seen) await this.run(this.batch);
  }

  private async run(count: number): Promise<void> {
    const starts = Array.from({ length: count }, (_, k) => this.next + k);
    const { lip: lv, aud: av } = await this.net.embed(
      lipWindowsHost(
        this.held,
        starts.map((s) => s - this.base),
      ),
      audioWindowsHost(this.mfcc.data, this.mfcc.frames, starts),
    );
    const dim = this.net.config.embedDim;
    for (let b = 0; b < count; b++) {
      this.lip.push(Array.from(lv.subarray(b * dim, (b + 1) * dim)));
      this.aud.push(Array.from(av.subarray(b * dim, (b + 1) * dim)));
    }
    this.next += count;
    const drop = this.next - this.base;
    this.held = this.held.slice(drop);
    this.base = this.next;
  }

  /** Scores of all frames pushed (windows = min(frames, floor(samples/640)) − 5, as the reference). */
  async finish(): Promise<SyncScores> {
    const n = Math.max(0, Math.min(this.seen - SYNCNET_FRAMES, this.audioWindows));
    if (n < 1) throw new DifftalkError('too-short', `LSE needs at least 6 video frames with audio: have ${this.seen} frames and ${this.samples} samples`);
    while (this.next < n) await this.run(Math.min(this.batch, n - this.next));
    const dim = this.net.config.embedDim;
    const lip = new Float32Array(n * dim);
    const aud = new Float32Array(n * dim);
    for (let i = 0; i < n; i++) {
      lip.set(this.lip[i]!, i * dim);
      aud.set(this.aud[i]!, i * dim);
    }
    this.held = [];
    return syncScoresFromEmbeddings({ lip, aud, windows: n, dim });
  }
}
