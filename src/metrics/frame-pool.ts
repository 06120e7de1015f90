/**
 * PSNR and SSIM of frame batches on every core: a {@link WorkerPool} of `frame-worker` threads. A batch is cut into
 * contiguous runs of frames (about two per thread, for balance on a busy machine); each run's pixels are copied once
 * into fresh buffers that are transferred (not cloned) to a worker, and its per-frame values transferred back, in
 * frame order. Values equal the single-thread kernels' bit for bit (the same functions run on the worker).
 * The code that needs a pool opens it and closes it when done (`close()`); an idle pool never keeps the process alive.
 */
import { siblingScript, WorkerPool } from '../util/worker-pool.js';
import { checkPair, type RgbFrames } from './metric.js';
import type { SsimVariant } from './ssim.js';

/** One run of frame pairs for a worker: `count` interleaved RGB frames of `width`×`height` in each buffer. */
export type FrameRequest = { width: number; height: number; count: number; pred: ArrayBuffer; target: ArrayBuffer } & (
  { op: 'psnr' } | { op: 'ssim'; variant: SsimVariant }
);

/** Per-frame values of a run: `identical` (1 where MSE = 0) for PSNR, `perChannel` (3 per frame, RGB) for SSIM. */
export interface FrameReply {
  values: Float64Array;
  identical?: Uint8Array;
  perChannel?: Float64Array;
}

export class FramePool {
  private readonly pool: WorkerPool<FrameRequest, FrameReply>;

  /** `size`: threads (default: all cores). No thread starts before the first batch. */
  constructor(options: { size?: number } = {}) {
    this.pool = new WorkerPool(siblingScript(import.meta.url, 'frame-worker'), options);
  }

  get size(): number {
    return this.pool.size;
  }

  /** Per-frame PSNR (capped as psnrFrame) and which frames were identical. */
  async psnr(pred: RgbFrames, target: RgbFrames): Promise<{ values: Float64Array; identical: Uint8Array }> {
    const r = await this.runAll(pred, target, { op: 'psnr' });
    return { values: r.values, identical: r.identical! };
  }

  /** Per-frame SSIM of `variant` and its per-channel values (3 per frame). */
  async ssim(pred: RgbFrames, target: RgbFrames, variant: SsimVariant): Promise<{ values: Float64Array; perChannel: Float64Array }> {
    const r = await this.runAll(pred, target, { op: 'ssim', variant });
    return { values: r.values, perChannel: r.perChannel! };
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  private async runAll(pred: RgbFrames, target: RgbFrames, op: { op: 'psnr' } | { op: 'ssim'; variant: SsimVariant }): Promise<FrameReply> {
    checkPair(pred, target, op.op);
    const { width, height, count } = pred;
    const n = width * height * 3;
    const parts = Math.min(count, 2 * this.pool.size);
    const runs: Array<Promise<FrameReply>> = [];
    for (let p = 0; p < parts; p++) {
      const from = Math.floor((p * count) / parts);
      const to = Math.floor(((p + 1) * count) / parts);
      const a = pred.data.slice(from * n, to * n).buffer;
      const b = target.data.slice(from * n, to * n).buffer;
      runs.push(this.pool.run({ ...op, width, height, count: to - from, pred: a, target: b }, [a, b]));
    }
    const replies = await Promise.all(runs);
    const out: FrameReply = { values: new Float64Array(count) };
    if (op.op === 'psnr') out.identical = new Uint8Array(count);
    else out.perChannel = new Float64Array(3 * count);
    let at = 0;
    for (const r of replies) {
      out.values.set(r.values, at);
      if (r.identical) out.identical!.set(r.identical, at);
      if (r.perChannel) out.perChannel!.set(r.perChannel, 3 * at);
      at += r.values.length;
    }
    return out;
  }
}
