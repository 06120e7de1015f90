import assert from 'node:assert/strict';
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { decodeFrames } from '../../src/media/frames.js';
import { MediapipeEngine, TfjsEngine, createLandmarkEngine, landmarkClip, toIbug68 } from '../../src/face/landmarks/index.js';
import { writePreview } from '../../src/prep/preview.js';
import type { FaceLandmarks } from '../../src/face/types.js';
import type { RgbFrames } from '../../src/media/types.js';
import { DifftalkError } from '../../src/util/errors.js';
import { clearToolCache } from '../../src/util/tools.js';
import { AOC_CLIP, ffmpegRgb, MEDIA, MODELS, tmpDir } from '../helpers.js';
import { centre, referenceFaces } from './reference-faces.js';

const FM478 = path.join(MODELS, 'fm478md.task');
const LATENTSYNC = path.join(MEDIA, 'latentsync_demo1_video.mp4');

/** Decode an image (or video frames) with an ffmpeg filter to rgb24. */
async function decodeImage(file: string, width: number, height: number, vf: string, frames = 1): Promise<RgbFrames> {
  const data = await ffmpegRgb(file, { vf, frames });
  const count = data.length / (width * height * 3);
  assert.equal(count, Math.floor(count));
  return { width, height, count, data };
}

function concatFrames(a: RgbFrames, b: RgbFrames): RgbFrames {
  const data = new Uint8Array(a.data.length + b.data.length);
  data.set(a.data);
  data.set(b.data, a.data.length);
  return { width: a.width, height: a.height, count: a.count + b.count, data };
}

function grayFrames(size: number, count: number): RgbFrames {
  return { width: size, height: size, count, data: new Uint8Array(size * size * 3 * count).fill(128) };
}

const pt = (lm68: Float32Array, k: number) => ({ x: lm68[k * 2]!, y: lm68[k * 2 + 1]! });

function meshBox(points: Float32Array) {
  let x0 = Infinity,
    y0 = Infinity,
    x1 = -Infinity,
    y1 = -Infinity;
  for (let i = 0; i < 478; i++) {
    x0 = Math.min(x0, points[i * 3]!);
    x1 = Math.max(x1, points[i * 3]!);
    y0 = Math.min(y0, points[i * 3 + 1]!);
    y1 = Math.max(y1, points[i * 3 + 1]!);
  }
  return { x0, y0, x1, y1 };
}

/** Anatomical order of the derived 68 points on an upright, frontal face (no numeric reference: geometry). */
function assertAnatomy(r: FaceLandmarks, label: string): void {
  assert.equal(r.status, 'ok', label);
  assert.equal(r.points.length, 478 * 3, label);
  const lm = toIbug68(r.points);
  const box = meshBox(r.points);
  const midY = (box.y0 + box.y1) / 2;
  assert.ok(pt(lm, 36).x < pt(lm, 39).x && pt(lm, 39).x < pt(lm, 42).x && pt(lm, 42).x < pt(lm, 45).x, `${label}: eye corners 36<39<42<45 in x`);
  assert.ok(pt(lm, 30).y > pt(lm, 27).y, `${label}: nose tip 30 below bridge 27`);
  assert.ok(pt(lm, 33).y > pt(lm, 30).y - 2, `${label}: subnasale 33 not above nose tip 30`);
  assert.ok(pt(lm, 62).y > pt(lm, 51).y && pt(lm, 62).y < pt(lm, 57).y, `${label}: inner lip 62 between 51 and 57`);
  assert.ok(pt(lm, 48).x < pt(lm, 54).x, `${label}: mouth corners 48 left of 54`);
  for (let k = 0; k <= 16; k++) if (k !== 8) assert.ok(pt(lm, 8).y >= pt(lm, k).y, `${label}: jaw 8 lowest (vs ${k})`);
  assert.ok(pt(lm, 0).x < pt(lm, 8).x && pt(lm, 8).x < pt(lm, 16).x, `${label}: jaw runs left → chin → right`);
  for (let k = 48; k < 68; k++) {
    const p = pt(lm, k);
    assert.ok(p.y > midY && p.y <= box.y1 && p.x > box.x0 && p.x < box.x1, `${label}: mouth point ${k} in the lower half of the face box`);
  }
  for (let k = 36; k < 48; k++) assert.ok(pt(lm, k).y < pt(lm, 51).y, `${label}: eye point ${k} above the mouth`);
  const meanY = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => pt(lm, a + i).y).reduce((s, y) => s + y, 0) / (b - a);
  assert.ok(meanY(17, 22) < meanY(36, 42) && meanY(22, 27) < meanY(42, 48), `${label}: brows above their eyes`);
  for (let k = 17; k < 22; k++) assert.ok(pt(lm, k).y < Math.max(pt(lm, 40).y, pt(lm, 41).y), `${label}: right brow ${k} above the right lower lid`);
  for (let k = 22; k < 27; k++) assert.ok(pt(lm, k).y < Math.max(pt(lm, 46).y, pt(lm, 47).y), `${label}: left brow ${k} above the left lower lid`);
}

function medianDistance(a: FaceLandmarks[], b: FaceLandmarks[], points = 468): number {
  const d: number[] = [];
  a.forEach((r, f) => {
    const s = b[f]!;
    if (r.points.length && s.points.length)
      for (let i = 0; i < points; i++) d.push(Math.hypot(r.points[i * 3]! - s.points[i * 3]!, r.points[i * 3 + 1]! - s.points[i * 3 + 1]!));
  });
  d.sort((x, y) => x - y);
  return d[d.length >> 1]!;
}

describe('landmark engines on real media', () => {
  let aoc: RgbFrames;
  let mp: MediapipeEngine;
  let tfe: TfjsEngine;
  const results: Record<string, FaceLandmarks[]> = {};
  const fps: Record<string, number> = {};

  before(async () => {
    aoc = await decodeFrames(AOC_CLIP, { width: 256, height: 256 });
    mp = await MediapipeEngine.create({ modelFile: FM478 });
    tfe = await TfjsEngine.create();
  });
  after(async () => {
    await mp?.close();
    await tfe?.close();
  });

  for (const name of ['mediapipe', 'tfjs'] as const) {
    test(`${name}: 200 AOC frames at 256², one face each, anatomically ordered 68 points`, async (t) => {
      assert.equal(aoc.count, 200);
      const engine = name === 'mediapipe' ? mp : tfe;
      await engine.reset();
      const t0 = performance.now();
      const res = await engine.detect(aoc);
      fps[name] = (aoc.count / (performance.now() - t0)) * 1000;
      t.diagnostic(`${name}: ${fps[name]!.toFixed(1)} frames/s on 200 frames at 256²`);
      results[name] = res;
      assert.equal(res.length, 200);
      res.forEach((r, f) => assertAnatomy(r, `${name} frame ${f}`));
      if (name === 'tfjs') for (const r of res) assert.ok(r.score > 0.5 && r.score <= 1);
    });
  }

  test('reset() forgets the previous clip: the first 40 AOC frames give the same points after another clip as fresh', async () => {
    // "Another clip": the last 40 AOC frames mirrored, so the tracked face ends somewhere else.
    const n = 40;
    const w = aoc.width;
    const fb = w * aoc.height * 3;
    const other = new Uint8Array(n * fb);
    for (let f = 0; f < n; f++) {
      for (let y = 0; y < aoc.height; y++) {
        for (let x = 0; x < w; x++) {
          const s = (aoc.count - 1 - f) * fb + (y * w + (w - 1 - x)) * 3;
          other.set(aoc.data.subarray(s, s + 3), f * fb + (y * w + x) * 3);
        }
      }
    }
    const first = { ...aoc, count: n, data: aoc.data.subarray(0, n * fb) };
    for (const engine of [mp, tfe]) {
      await engine.reset();
      const fresh = await engine.detect(first);
      await engine.reset();
      await engine.detect({ ...aoc, count: n, data: other });
      await engine.reset();
      const after = await engine.detect(first);
      assert.deepEqual(
        after.map((r) => r.status),
        fresh.map((r) => r.status),
        engine.name,
      );
      fresh.forEach((r, i) => assert.deepEqual(after[i]!.points, r.points, `${engine.name} frame ${i}`));
    }
  });

  test('landmarkClip over chunks of the clip equals one pass over the whole clip (tracking carries over)', async () => {
    const fb = aoc.width * aoc.height * 3;
    async function* inChunks(n: number): AsyncGenerator<RgbFrames> {
      for (let s = 0; s < aoc.count; s += n) {
        const count = Math.min(n, aoc.count - s);
        yield { ...aoc, count, data: aoc.data.subarray(s * fb, (s + count) * fb) };
      }
    }
    const whole = await landmarkClip(mp, aoc);
    const chunked = await landmarkClip(mp, inChunks(64), { frameCount: aoc.count });
    assert.ok(whole.ok && chunked.ok);
    assert.deepEqual(chunked.value.status, whole.value.status);
    assert.deepEqual(chunked.value.raw, whole.value.raw);
    assert.deepEqual(chunked.value.lm68, whole.value.lm68);
  });

  test('the two engines agree on AOC (reference: each other; measured median 1.2 px, tolerance 3 px at 256²)', (t) => {
    const d = medianDistance(results.mediapipe!, results.tfjs!);
    t.diagnostic(`median distance mediapipe vs tfjs over 468 points × 200 frames: ${d.toFixed(2)} px`);
    assert.ok(d < 3, `median ${d}`);
    const lm = medianDistance(
      results.mediapipe!.map((r) => ({ ...r, points: padTo3(toIbug68(r.points)) })),
      results.tfjs!.map((r) => ({ ...r, points: padTo3(toIbug68(r.points)) })),
      68,
    );
    t.diagnostic(`median distance of the 68 derived points: ${lm.toFixed(2)} px`);
    assert.ok(lm < 3, `lm68 median ${lm}`);
  });

  test('the iris points agree too (tfjs attention heads vs fm478md; measured median 0.53 px, tolerance 1.5 px)', (t) => {
    const d: number[] = [];
    results.mediapipe!.forEach((r, f) => {
      const s = results.tfjs![f]!;
      for (let i = 468; i < 478; i++) d.push(Math.hypot(r.points[i * 3]! - s.points[i * 3]!, r.points[i * 3 + 1]! - s.points[i * 3 + 1]!));
    });
    d.sort((x, y) => x - y);
    t.diagnostic(`iris median distance: ${d[d.length >> 1]!.toFixed(2)} px`);
    assert.ok(d[d.length >> 1]! < 1.5);
  });

  test("tfjs mesh 'facemesh' (468 + derived iris) also agrees on the first 50 frames (measured 1.3 px, tolerance 3 px)", async () => {
    const e = await TfjsEngine.create({ mesh: 'facemesh' });
    try {
      const first = { ...aoc, count: 50, data: aoc.data.subarray(0, 50 * 256 * 256 * 3) };
      const res = await e.detect(first);
      res.forEach((r, f) => assertAnatomy(r, `facemesh frame ${f}`));
      assert.ok(medianDistance(res, results.mediapipe!.slice(0, 50)) < 3);
    } finally {
      await e.close();
    }
  });

  test('obama.jpg (910×1137, face ~1/4 of the width) is found by both engines, at the same place', async () => {
    const img = await decodeImage(path.join(MEDIA, 'obama.jpg'), 910, 1137, 'null');
    await mp.reset();
    await tfe.reset();
    const [a] = await mp.detect(img);
    const [b] = await tfe.detect(img);
    assertAnatomy(a!, 'mediapipe obama');
    assertAnatomy(b!, 'tfjs obama');
    // Reference: scikit-image's LBP face cascade (tests/face/reference-faces.ts): the nose tip lies in the middle
    // third of the detected face box, horizontally and vertically. Regression: x ≈ 498, y ≈ 281 measured, ±25 px.
    const nose = { x: a!.points[3]!, y: a!.points[4]! };
    const [face] = await referenceFaces(path.join(MEDIA, 'obama.jpg'), [0]);
    assert.ok(face, 'the reference detector finds the face');
    assert.ok(
      Math.abs(nose.x - centre(face).x) < face.w / 6 && Math.abs(nose.y - centre(face).y) < face.h / 6,
      `nose ${JSON.stringify(nose)} vs face ${JSON.stringify(face)}`,
    );
    assert.ok(Math.abs(nose.x - 498) < 25 && Math.abs(nose.y - 281) < 25, JSON.stringify(nose));
    assert.ok(medianDistance([a!], [b!]) < 6, 'engines agree within 6 px at 910 px wide');
  });

  test('latentsync portrait 540×960 with a small face: found in every frame by both engines', async () => {
    const frames = await decodeImage(LATENTSYNC, 540, 960, 'scale=540:960', 25);
    assert.equal(frames.count, 25);
    await mp.reset();
    await tfe.reset();
    const a = await mp.detect(frames);
    const b = await tfe.detect(frames);
    for (const [name, res] of [
      ['mediapipe', a],
      ['tfjs', b],
    ] as const) {
      res.forEach((r, f) => {
        assert.equal(r.status, 'ok', `${name} frame ${f}`);
        const box = meshBox(r.points);
        // Reference: the LBP cascade's face box (below, frame 0); regression: x 230–370, y 290–450 measured; < 1/4 of the width
        assert.ok(box.x0 > 200 && box.x1 < 400 && box.y0 > 260 && box.y1 < 480, `${name} frame ${f} box ${JSON.stringify(box)}`);
        assert.ok(box.x1 - box.x0 < 540 / 4, `${name} frame ${f}: small face`);
      });
    }
    assert.ok(medianDistance(a, b) < 4, `engines agree within 4 px: ${medianDistance(a, b)}`);
    // Reference: scikit-image's LBP face cascade on the first frame (at 1080×1920, scaled to 540×960 here): its face
    // box lies inside both engines' mesh boxes grown by 10 % of their side, and its centre within 0.2 × side of theirs.
    const [face] = await referenceFaces(LATENTSYNC, [0]);
    assert.ok(face, 'the reference detector finds the face');
    const f = { x: face.x / 2, y: face.y / 2, w: face.w / 2, h: face.h / 2 };
    for (const [name, r] of [
      ['mediapipe', a[0]!],
      ['tfjs', b[0]!],
    ] as const) {
      const box = meshBox(r.points);
      const side = box.x1 - box.x0;
      const m = 0.1 * side;
      assert.ok(f.x >= box.x0 - m && f.y >= box.y0 - m && f.x + f.w <= box.x1 + m && f.y + f.h <= box.y1 + m, `${name}: ${JSON.stringify({ f, box })}`);
      assert.ok(
        Math.hypot(centre(f).x - (box.x0 + box.x1) / 2, centre(f).y - (box.y0 + box.y1) / 2) < 0.2 * side,
        `${name}: centres ${JSON.stringify({ f, box })}`,
      );
    }
  });

  test('tiny face (≈100 px in a 1080×1920 frame): missed on the whole frame, found by the tile search', async () => {
    // the 540×960 portrait padded into a gray 1080×1920 canvas at (270, 480): the short-range detector sees the
    // whole frame at 128 px, where the face is ~7 px; tiles of 540 px bring it to ~24 px
    const frames = await decodeImage(LATENTSYNC, 1080, 1920, 'scale=540:960,pad=1080:1920:270:480:gray', 2);
    const noTiles = [await MediapipeEngine.create({ modelFile: FM478, tileMinSide: Infinity }), await TfjsEngine.create({ tileMinSide: Infinity })];
    try {
      for (const e of noTiles)
        assert.deepEqual(
          (await e.detect(frames)).map((r) => r.status),
          ['no-face', 'no-face'],
          `${e.name} without tiles`,
        );
    } finally {
      for (const e of noTiles) await e.close();
    }
    for (const engine of [mp, tfe]) {
      await engine.reset();
      const res = await engine.detect(frames);
      assert.deepEqual(
        res.map((r) => r.status),
        ['ok', 'ok'],
        engine.name,
      );
      // reference: nose tip (mesh 1) at the latentsync 540×960 position (≈295, 358; see the test above) + (270, 480)
      const nose = { x: res[0]!.points[3]!, y: res[0]!.points[4]! };
      assert.ok(Math.abs(nose.x - 566) < 15 && Math.abs(nose.y - 840) < 15, `${engine.name} ${JSON.stringify(nose)}`);
    }
  });

  test('no face: flat gray frames and a background crop of astronaut.png', async () => {
    const bg = await decodeImage(path.join(MEDIA, 'astronaut.png'), 256, 256, 'crop=192:192:320:0,scale=256:256');
    const frames = concatFrames(grayFrames(256, 3), bg);
    for (const engine of [mp, tfe]) {
      await engine.reset();
      const res = await engine.detect(frames);
      assert.deepEqual(
        res.map((r) => r.status),
        ['no-face', 'no-face', 'no-face', 'no-face'],
        engine.name,
      );
      for (const r of res) {
        assert.equal(r.points.length, 0);
        assert.equal(r.score, 0);
      }
    }
  });

  test('multi-face: two faces side by side → multi-face', async () => {
    // two copies of the AOC frame 0 (downscaled to 256×256 each) side by side in a 512×256 frame
    const side = new Uint8Array(512 * 256 * 3);
    for (let y = 0; y < 256; y++) {
      for (const dx of [0, 256]) side.set(aoc.data.subarray(y * 256 * 3, (y + 1) * 256 * 3), (y * 512 + dx) * 3);
    }
    const frames: RgbFrames = { width: 512, height: 256, count: 1, data: side };
    for (const engine of [mp, tfe]) {
      await engine.reset();
      const [r] = await engine.detect(frames);
      assert.equal(r!.status, 'multi-face', engine.name);
    }
  });

  test('landmarkClip: bad frames are marked, never smoothed over, and too many drop the clip', async (t) => {
    const half = (start: number, n: number): RgbFrames => ({ ...aoc, count: n, data: aoc.data.subarray(start * 196608, (start + n) * 196608) });
    const withGray = concatFrames(concatFrames(half(0, 100), grayFrames(256, 20)), half(100, 100));
    const res = await landmarkClip(mp, withGray, { smoothing: 'savgol:5', maxBadFrameFraction: 0.2 });
    assert.ok(res.ok);
    const v = res.value;
    t.diagnostic(`jitter raw ${v.jitter.raw.toFixed(3)} px, smoothed (savgol:5) ${v.jitter.smoothed.toFixed(3)} px`);
    assert.deepEqual(
      v.badFrames,
      Array.from({ length: 20 }, (_, i) => 100 + i),
    );
    assert.equal(v.status.filter((s) => s === 'no-face').length, 20);
    for (const f of v.badFrames) {
      assert.ok(Number.isNaN(v.smoothed[f * 1434]!) && Number.isNaN(v.lm68[f * 136]!) && Number.isNaN(v.raw[f * 1434]!));
    }
    // frames next to the gap are smoothed only from their own side: all finite
    for (const f of [99, 120]) assert.ok(v.smoothed.subarray(f * 1434, (f + 1) * 1434).every(Number.isFinite));
    // smoothing lowers jitter (reference: raw vs smoothed of the same clip; raw measured ≈ 0.3–0.4 px at 256²)
    assert.ok(v.jitter.smoothed < v.jitter.raw, JSON.stringify(v.jitter));
    assert.ok(v.jitter.raw > 0 && v.jitter.raw < 2, `raw jitter ${v.jitter.raw} px`);
    // lm68 is the fixed map of the smoothed points
    assert.deepEqual(Array.from(v.lm68.subarray(136 * 10, 136 * 11)), Array.from(toIbug68(v.smoothed.subarray(1434 * 10, 1434 * 11))));

    const dropped = await landmarkClip(mp, concatFrames(half(0, 50), grayFrames(256, 20)), { maxBadFrameFraction: 0.2 });
    assert.equal(dropped.ok, false);
    assert.equal(!dropped.ok && dropped.reason, 'too-many-bad-frames');
  });

  test('preview contact sheet: PNG grid with overlays', async () => {
    const res = await landmarkClip(mp, aoc, { smoothing: 'savgol:5' });
    assert.ok(res.ok);
    const file = path.join(process.env.DIFFTALK_PREVIEW_DIR ?? tmpDir(), 'aoc-preview.png');
    const shown = await writePreview(aoc, { mesh: res.value.smoothed, lm68: res.value.lm68, status: res.value.status }, file, { cells: 12, columns: 4 });
    assert.deepEqual(shown, [0, 18, 36, 54, 72, 90, 109, 127, 145, 163, 181, 199]);
    const meta = await sharp(file).metadata();
    assert.equal(meta.format, 'png');
    assert.equal(meta.width, 4 * 256);
    assert.equal(meta.height, 3 * 256);
    // A selection of frames with their clip frame numbers (what prep's frame pass keeps) gives the same sheet.
    const fb = 256 * 256 * 3;
    const picked = { ...aoc, count: shown.length, data: Buffer.concat(shown.map((f) => aoc.data.subarray(f * fb, (f + 1) * fb))) };
    const file2 = path.join(path.dirname(file), 'aoc-preview-selection.png');
    const lm = { mesh: res.value.smoothed, lm68: res.value.lm68, status: res.value.status };
    assert.deepEqual(await writePreview(picked, lm, file2, { frameNumbers: shown }), shown);
    assert.deepEqual(await readFile(file2), await readFile(file));
    await assert.rejects(writePreview(picked, lm, file2, { frameNumbers: [0, 1] }), (e: unknown) => e instanceof DifftalkError && e.code === 'bad-frames');
  });
});

function padTo3(xy: Float32Array): Float32Array {
  const out = new Float32Array((xy.length / 2) * 3);
  for (let i = 0; i < xy.length / 2; i++) {
    out[i * 3] = xy[i * 2]!;
    out[i * 3 + 1] = xy[i * 2 + 1]!;
  }
  return out;
}

describe('engine creation', () => {
  test('missing Chromium → the DifftalkError from resolveTool', async () => {
    const saved = process.env.CHROMIUM_PATH;
    process.env.CHROMIUM_PATH = '/nonexistent/chromium';
    clearToolCache();
    try {
      await assert.rejects(
        createLandmarkEngine({ engine: 'mediapipe', faceModel: FM478 }),
        (e: unknown) => e instanceof DifftalkError && e.code === 'tool-missing' && /CHROMIUM_PATH/.test(e.message),
      );
    } finally {
      if (saved === undefined) delete process.env.CHROMIUM_PATH;
      else process.env.CHROMIUM_PATH = saved;
      clearToolCache();
    }
  });

  test('a missing --face-model file is a clear error; unknown engine too', async () => {
    await assert.rejects(
      createLandmarkEngine({ faceModel: '/nonexistent/model.task' }),
      (e: unknown) => e instanceof DifftalkError && e.code === 'model-missing',
    );
    await assert.rejects(createLandmarkEngine({ engine: 'dlib' as never }), (e: unknown) => e instanceof DifftalkError && e.code === 'bad-option');
  });

  test('createLandmarkEngine records the model sha256 (reference: models/PROVENANCE.md)', async () => {
    const { engine, info } = await createLandmarkEngine({ engine: 'mediapipe', faceModel: FM478 });
    await engine.close();
    assert.equal(info.sha256, '4c0ac2cafd40d19e11a0c052753cfaa990efb8f88391c789acf069d603442ad4');
    assert.equal(info.engine, 'mediapipe');
  });

  test('createLandmarkEngine tfjs: attention mesh by default, --face-model refused', async () => {
    const { engine, info } = await createLandmarkEngine({ engine: 'tfjs' });
    await engine.close();
    assert.equal(info.engine, 'tfjs');
    assert.match(info.model, /facemesh-attention-pinto/);
    assert.match(info.sha256, /^[0-9a-f]{64}$/);
    await assert.rejects(createLandmarkEngine({ engine: 'tfjs', faceModel: FM478 }), (e: unknown) => e instanceof DifftalkError && e.code === 'bad-option');
  });
});
