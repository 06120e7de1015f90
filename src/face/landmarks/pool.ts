/**
 * A pool of landmark engines for prep's clip workers. An engine is stateful (VIDEO-mode tracking), so one user holds
 * it at a time; with several engines, the landmark passes of different clips run at the same time. Engines are
 * started on first need, up to `size`, and every user resets the engine it gets (crop-track and landmarkClip do), so
 * a clip's landmarks do not depend on which engine it got or what that engine saw before.
 */
import { DifftalkError } from '../../util/errors.js';
import type { LandmarkEngine } from '../types.js';
import type { LandmarkerInfo } from './index.js';

export interface PooledEngine {
  engine: LandmarkEngine;
  info: LandmarkerInfo;
}

export class EnginePool {
  /** Engines running or starting. */
  private slots = 0;
  private readonly live = new Set<PooledEngine>();
  private readonly idle: PooledEngine[] = [];
  private readonly waiting: { resolve: (e: PooledEngine) => void; reject: (err: unknown) => void }[] = [];

  /** `size`: engines at most (≥ 1); `create` starts one. */
  constructor(
    private readonly create: () => Promise<PooledEngine>,
    private readonly size: number,
  ) {
    if (!(size >= 1)) throw new RangeError(`engine pool size ${size} must be at least 1`);
  }

  /**
   * Run `fn` with an engine of its own. The engine goes back to the pool afterwards, unless the engine itself failed
   * (DifftalkError 'landmarker-failed', e.g. Chromium died): then it is closed and a later user starts a new one, so
   * one crash costs one clip, not the rest of the run.
   */
  async use<T>(fn: (engine: LandmarkEngine, info: LandmarkerInfo) => Promise<T>): Promise<T> {
    const e = await this.acquire();
    let broken = false;
    try {
      return await fn(e.engine, e.info);
    } catch (err) {
      broken = err instanceof DifftalkError && err.code === 'landmarker-failed';
      throw err;
    } finally {
      if (broken) await this.discard(e);
      else this.release(e);
    }
  }

  /** Engines running now. */
  get count(): number {
    return this.live.size;
  }

  async close(): Promise<void> {
    const all = [...this.live];
    this.live.clear();
    this.idle.length = 0;
    await Promise.all(all.map((e) => e.engine.close().catch(() => undefined)));
  }

  private async acquire(): Promise<PooledEngine> {
    const free = this.idle.pop();
    if (free) return free;
    if (this.slots < this.size) {
      this.slots++;
      try {
        const e = await this.create();
        this.live.add(e);
        return e;
      } catch (err) {
        // A failed start is not an engine: a user waiting for one tries to start it again (and fails the same way
        // when the cause is permanent, e.g. no Chromium), so nobody waits for an engine that will never come.
        this.freeSlot();
        throw err;
      }
    }
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  private release(e: PooledEngine): void {
    const next = this.waiting.shift();
    if (next) next.resolve(e);
    else this.idle.push(e);
  }

  private async discard(e: PooledEngine): Promise<void> {
    this.live.delete(e);
    await e.engine.close().catch(() => undefined);
    this.freeSlot();
  }

  private freeSlot(): void {
    this.slots--;
    const w = this.waiting.shift();
    if (w) this.acquire().then(w.resolve, w.reject);
  }
}
