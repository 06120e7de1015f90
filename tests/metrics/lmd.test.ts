/**
 * LMD (RAD-NeRF LMDMeter rule, ../shared/docs/eval-metrics.md §6) on real landmarks of the AOC clip (tfjs engine),
 * and the SyncNet face-crop rule (§4). References are analytic: centring removes translation exactly; scaling the mouth
 * by (1+a) about its centroid gives LMD = a · mean distance to the centroid; crop rectangles computed by hand below.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { applyCropTrack, medfilt, meshBox, syncnetCropTrack } from '../../src/face/sync-crop.js';
import { ibug68FromResults, lmd, lmdFrame, LmdMetric } from '../../src/metrics/lmd.js';
import { decodeFrames } from '../../src/media/frames.js';
import { createLandmarkEngine } from '../../src/face/landmarks/index.js';
import type { FaceLandmarks, LandmarkEngine } from '../../src/face/types.js';
import type { RgbFrames } from '../../src/media/types.js';
import { initBackend } from '../../src/util/tf.js';
import { AOC_CLIP } from '../helpers.js';

describe('LMD and SyncNet face crops on the AOC clip', () => {
  let frames: RgbFrames;
  let engine: LandmarkEngine;
  let lms: FaceLandmarks[];
  let lm68: Float32Array;

  before(async () => {
    await initBackend('wasm');
    frames = await decodeFrames(AOC_CLIP, { count: 20 });
    engine = (await createLandmarkEngine({ engine: 'tfjs' })).engine;
    lms = await engine.detect(frames);
    lm68 = ibug68FromResults(lms);
  });
  after(async () => engine.close());

  it('is zero for identical and translated landmarks (tolerance 1e-4 px, float32 coordinates)', () => {
    const a = lm68.subarray(0, 136);
    assert.equal(lmdFrame(a, a), 0);
    const moved = a.map((v, i) => v + (i % 2 === 0 ? 5 : -7));
    assert.ok(lmdFrame(moved, a) < 1e-4);
  });

  it('equals a · mean centroid distance for a mouth scaled by (1 + a) (1e-4 px)', () => {
    const a = Float64Array.from(lm68.subarray(0, 136));
    let cx = 0;
    let cy = 0;
    for (let k = 48; k < 68; k++) {
      cx += a[2 * k]! / 20;
      cy += a[2 * k + 1]! / 20;
    }
    const scaled = Float64Array.from(a);
    let meanR = 0;
    for (let k = 48; k < 68; k++) {
      scaled[2 * k] = cx + 1.1 * (a[2 * k]! - cx);
      scaled[2 * k + 1] = cy + 1.1 * (a[2 * k + 1]! - cy);
      meanR += Math.hypot(a[2 * k]! - cx, a[2 * k + 1]! - cy) / 20;
    }
    scaled[0]! += 50; // a jaw point: outside the mouth region, must not matter
    const v = lmdFrame(scaled, a);
    assert.ok(meanR > 5, `mouth radius ${meanR} px on a 512² face`);
    assert.ok(Math.abs(v - 0.1 * meanR) < 1e-4, `${v} vs ${0.1 * meanR}`);
  });

  it('runs the engine per frame, names the engine, and is small between neighbouring frames', async () => {
    assert.ok(lms.every((l) => l.status === 'ok'));
    const m = new LmdMetric(engine, 'tfjs');
    assert.equal(m.name, 'lmd(mouth-48-67,tfjs)');
    const half = frames.width * frames.height * 3 * 10;
    await m.update({ ...frames, count: 10, data: frames.data.subarray(0, half) }, { ...frames, count: 10, data: frames.data.subarray(half, 2 * half) });
    const r = m.compute();
    assert.equal(r.frames, 10);
    assert.ok(r.value > 0 && r.value < 10, `LMD frames 0–9 vs 10–19: ${r.value} px`);
    assert.deepEqual(lmd(lm68, lm68), new Array(20).fill(0));
  });

  it('medfilt matches scipy.signal.medfilt (zero padding)', () => {
    // scipy.signal.medfilt([5, 1, 4, 2, 3], 3) = [1, 4, 2, 3, 2]
    assert.deepEqual(medfilt([5, 1, 4, 2, 3], 3), [1, 4, 2, 3, 2]);
  });

  it('crops by the SyncNet rule', () => {
    // box (100,100)-(200,220): s = 60, centre (150,160), bsi = int(1.8·60) = 108; padded rows [208, 376), cols [174, 342)
    // → frame rect x0 = 66, y0 = 100, 168 × 168.
    const box = { x1: 100, y1: 100, x2: 200, y2: 220 };
    const t = syncnetCropTrack(new Array(15).fill(box));
    assert.deepEqual(t.rects[7], { x0: 66, y0: 100, w: 168, h: 168 });
    // Outside the frame the crop reads the pad value 110.
    const tiny: RgbFrames = { width: 4, height: 4, count: 1, data: new Uint8Array(48).fill(200) };
    const c = applyCropTrack(tiny, { rects: [{ x0: -8, y0: -8, w: 8, h: 8 }], interpolated: [] }, 8)[0]!;
    assert.equal(c[0], 110);
    const real = syncnetCropTrack(lms.map(meshBox));
    const crops = applyCropTrack(frames, real, 224);
    assert.equal(crops.length, 20);
    assert.equal(crops[0]!.length, 224 * 224 * 3);
    const r = real.rects[10]!;
    assert.ok(r.w > 150 && r.w < 512 && r.x0 > -100 && r.y0 > -100, JSON.stringify(r));
  });

  it('interpolates missing faces and fails clearly when there is none', () => {
    const box = { x1: 0, y1: 0, x2: 10, y2: 10 };
    const t = syncnetCropTrack([box, null, { x1: 10, y1: 10, x2: 20, y2: 20 }]);
    assert.deepEqual(t.interpolated, [1]);
    assert.throws(() => syncnetCropTrack([null, null]), /no face found in any frame/);
  });
});
