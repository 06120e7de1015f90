/**
 * A pool of landmark engines for prep's clip workers. An engine is stateful (VIDEO-mode tracking), so one user holds
 * it at a time; with several engines, the landmark passes of different clips run at the same time. Engines are
 * started on first need, up to `size`, and every user resets the engine it gets (crop-track and landmarkClip do), so
 * a clip's landmarks do not depend on which engine it got or what that engine saw before.
 */
import type { LandmarkEngine } from '../types.js';
import type { LandmarkerInfo } from './index.js';

export interface PooledEngine {
  engine: LandmarkEngine;
  info: LandmarkerInfo;
}

export class EnginePool {
  private readonly started: Promise<PooledEngine>[] = [];
  private readonly idle: PooledEngine[] = [];
  private readonly waiting: { resolve: (e: PooledEngine) => void; reject: (err: unknown) => void }[] = [];

  /** `size`: engines at most (≥ 1); `create` starts one. */
  constructor(
    private readonly create: () => Promise<PooledEngine>,
    private readonly size: number,
  ) {
    if (!(size >= 1)) throw new RangeError(`engine pool size ${size} must be at least 1`);
  }

  /** Run `fn` with an engine of its own; the engine goes back to the pool afterwards, whatever happened. */
  async use<T>(fn: (engine: LandmarkEngine, info: LandmarkerInfo) => Promise<T>): Promise<T> {
    const e = await this.acquire();
    try {
      return await fn(e.engine, e.info);
    } finally {
      this.release(e);
    }
  }

  /** Engines started so far. */
  get count(): number {
    return this.started.length;
  }

  async close(): Promise<void> {
    const all = await Promise.all(this.started.map((p) => p.catch(() => undefined)));
    await Promise.all(all.map((e) => e?.engine.close().catch(() => undefined)));
  }

  private async acquire(): Promise<PooledEngine> {
    const free = this.idle.pop();
    if (free) return free;
    if (this.started.length < this.size) {
      const p = this.create();
      this.started.push(p);
      try {
        return await p;
      } catch (e) {
        // A failed start is not an engine: a user waiting for one tries to start it again (and fails the same way
        // when the cause is permanent, e.g. no Chromium), so nobody waits for an engine that will never come.
        this.started.splice(this.started.indexOf(p), 1);
        const w = this.waiting.shift();
        if (w) this.acquire().then(w.resolve, w.reject);
        throw e;
      }
    }
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  private release(e: PooledEngine): void {
    const next = this.waiting.shift();
    if (next) next.resolve(e);
    else this.idle.push(e);
  }
}
