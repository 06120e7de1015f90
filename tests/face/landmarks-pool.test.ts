/**
 * EnginePool: prep's clip workers each get an engine of their own, at most `size` engines are started, and a
 * failed start reaches its caller (and a waiting caller) instead of hanging, and an engine that failed is replaced. The engines here are plain objects
 * that implement LandmarkEngine and record how they are used; the real engines are exercised by landmarks.test.ts
 * and the pipeline tests.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { EnginePool, type PooledEngine } from '../../src/face/landmarks/pool.js';
import type { FaceLandmarks, LandmarkEngine } from '../../src/face/types.js';
import type { RgbFrames } from '../../src/media/types.js';
import { DifftalkError } from '../../src/util/errors.js';

class CountingEngine implements LandmarkEngine {
  readonly name = 'counting';
  busy = 0;
  maxBusy = 0;
  closed = false;
  async detect(frames: RgbFrames): Promise<FaceLandmarks[]> {
    this.maxBusy = Math.max(this.maxBusy, ++this.busy);
    await sleep(5);
    this.busy--;
    return Array.from({ length: frames.count }, () => ({ status: 'no-face' as const, points: new Float32Array(0), score: 0 }));
  }
  async reset(): Promise<void> {}
  async close(): Promise<void> {
    this.closed = true;
  }
}

const info = { engine: 'mediapipe' as const, model: 'test', sha256: '' };
const frames: RgbFrames = { width: 1, height: 1, count: 1, data: new Uint8Array(3) };

test('at most `size` engines, one user per engine at a time, all closed', async () => {
  const made: CountingEngine[] = [];
  const pool = new EnginePool(async () => {
    const engine = new CountingEngine();
    made.push(engine);
    return { engine, info };
  }, 2);
  await Promise.all(Array.from({ length: 10 }, () => pool.use((e) => e.detect(frames))));
  assert.equal(made.length, 2);
  assert.ok(made.every((e) => e.maxBusy === 1));
  await pool.close();
  assert.ok(made.every((e) => e.closed));
});

test('a failed start reaches the caller and a waiting caller; the next start is tried again', async () => {
  let starts = 0;
  const pool = new EnginePool(async (): Promise<PooledEngine> => {
    starts++;
    await sleep(5);
    if (starts <= 2) throw new Error(`start ${starts} failed`);
    return { engine: new CountingEngine(), info };
  }, 1);
  // The first caller starts the engine; the second waits for it and, when the start fails, tries once more itself.
  const [a, b] = await Promise.allSettled([pool.use((e) => e.detect(frames)), pool.use((e) => e.detect(frames))]);
  assert.equal(a.status, 'rejected');
  assert.equal(b.status, 'rejected');
  assert.equal(starts, 2);
  const c = await pool.use((e) => e.detect(frames));
  assert.equal(c.length, 1);
  assert.equal(pool.count, 1);
  await pool.close();
});

test('an engine that failed (landmarker-failed) is closed and replaced; other errors keep the engine', async () => {
  const made: CountingEngine[] = [];
  const pool = new EnginePool(async () => {
    const engine = new CountingEngine();
    made.push(engine);
    return { engine, info };
  }, 1);
  await assert.rejects(
    pool.use(async () => {
      throw new DifftalkError('video-corrupt', 'bad clip');
    }),
    /bad clip/,
  );
  await pool.use((e) => e.detect(frames));
  assert.equal(made.length, 1, 'a clip error does not cost the engine');
  await assert.rejects(
    pool.use(async () => {
      throw new DifftalkError('landmarker-failed', 'Target closed');
    }),
    /Target closed/,
  );
  assert.ok(made[0]!.closed);
  assert.equal(pool.count, 0);
  await pool.use((e) => e.detect(frames));
  assert.equal(made.length, 2, 'the next user got a new engine');
  await pool.close();
});
