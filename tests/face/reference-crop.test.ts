/**
 * run_pipeline.py's track_shot and crop_video (face/reference-crop.ts; metrics/sync-reference.ts for the crops) against
 * tests/reference/syncnet_pipeline_reference.py (numpy/scipy: interp1d, signal.medfilt; the original's loop with its
 * remove-while-iterating), on given box lists: two faces, detection gaps inside and beyond the 25 allowed, a short
 * track, a small face, duplicate overlapping boxes in one frame; and the crops of a real clip's JPEG frames.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { referenceCropTrack, trackFaces } from '../../src/face/reference-crop.js';
import type { FaceBox } from '../../src/face/sync-crop.js';
import { referenceFrames, trackCrops, type ReferenceFrames } from '../../src/metrics/sync-reference.js';
import { runProcess } from '../../src/util/exec.js';
import { AOC_CLIP, ROOT, tmpDir } from '../helpers.js';

const ORACLE = path.join(ROOT, 'tests/reference/syncnet_pipeline_reference.py');

interface OracleTrack {
  frames: number[];
  bbox: number[][];
  s: number[];
  x: number[];
  y: number[];
  /** bsi, r0, r1, c0, c1 in the padded frame */
  slices: number[][];
}

async function oracleTracks(dir: string, dets: number[][][], size: { width: number; height: number }, name: string): Promise<OracleTrack[]> {
  const file = path.join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ dets, ...size }));
  return JSON.parse((await runProcess('/usr/bin/python3', [ORACLE, 'track', file])).stdout.toString()) as OracleTrack[];
}

const box = (x1: number, y1: number, w: number, h: number, score = 0.99): number[] => [x1, y1, x1 + w, y1 + h, score];
const toBoxes = (dets: number[][][]): FaceBox[][] => dets.map((d) => d.map(([x1, y1, x2, y2]) => ({ x1: x1!, y1: y1!, x2: x2!, y2: y2! })));

/** A synthetic clip of `n` frames: per frame, the detections (best first). */
function scene(n: number): number[][][] {
  const dets: number[][][] = [];
  for (let f = 0; f < n; f++) {
    const d: number[][] = [];
    // face A: drifts right and grows; missed at frames 40–49 (a gap of 10 ≤ 25) and jittered
    if (f < 40 || f >= 50) d.push(box(100 + 0.7 * f + 3 * Math.sin(f), 80 + 0.2 * f, 150 + 0.1 * f + 2 * Math.cos(1.3 * f), 170 + 0.05 * f));
    // a duplicate overlapping box of face A every 7th frame (the reference skips the one after a taken box)
    if (f % 7 === 3 && f < 40) d.push(box(104 + 0.7 * f, 82 + 0.2 * f, 146, 168, 0.95));
    // face B: the whole clip, elsewhere
    d.push(box(420 + Math.sin(0.2 * f) * 5, 300, 130, 140, 0.97));
    // face C: small (60 px), the whole clip → dropped by min_face_size
    d.push(box(20, 400, 60, 60, 0.93));
    // face D: 0..59, then missing 30 frames (> 25), then 90.. → two short tracks
    if (f < 60 || f >= 90) d.push(box(300, 40, 120, 120, 0.92));
    // a false positive burst of 20 frames → short track
    if (f >= 100 && f < 120) d.push(box(600, 10, 110, 110, 0.91));
    dets.push(d);
  }
  return dets;
}

describe('reference face tracking and crop (run_pipeline.py)', () => {
  const dir = tmpDir('difftalk-refcrop-');
  const size = { width: 720, height: 576 };

  it('tracks as track_shot: two faces kept, gaps, short, small and duplicate boxes handled (boxes 1e-9, slices exact)', async () => {
    const dets = scene(160);
    const want = await oracleTracks(dir, dets, size, 'scene');
    const got = trackFaces(toBoxes(dets));
    assert.equal(want.length, 2, 'the oracle keeps faces A and B');
    assert.equal(got.tracks.length, want.length);
    assert.ok(got.dropped.short >= 3 && got.dropped.small === 1, JSON.stringify(got.dropped));
    got.tracks.forEach((t, i) => {
      const w = want[i]!;
      assert.deepEqual(t.frames, w.frames, `track ${i} frames`);
      t.boxes.forEach((b, k) => [b.x1, b.y1, b.x2, b.y2].forEach((v, j) => assert.ok(Math.abs(v - w.bbox[k]![j]!) < 1e-9, `track ${i} box ${k}`)));
      const rects = referenceCropTrack(t, size).rects;
      rects.forEach((r, k) => {
        const [bsi, r0, r1, c0, c1] = w.slices[k]!;
        assert.deepEqual([r.x0, r.y0, r.w, r.h], [c0! - bsi!, r0! - bsi!, c1! - c0!, r1! - r0!], `track ${i} frame ${k} crop`);
      });
    });
  });

  it('needs more than min_track (100) detections and a shot of at least 100 frames', async () => {
    // exactly 100 detections of one face: not kept (len(track) > 100 is required); 101: kept
    for (const n of [100, 101]) {
      const dets = Array.from({ length: 130 }, (_, f) => (f < n ? [box(100, 100, 150, 150)] : []));
      const want = await oracleTracks(dir, dets, size, `min${n}`);
      const got = trackFaces(toBoxes(dets));
      assert.equal(got.tracks.length, want.length);
      assert.equal(got.tracks.length, n === 101 ? 1 : 0);
    }
    const short = trackFaces(toBoxes(Array.from({ length: 99 }, () => [box(100, 100, 150, 150)])));
    assert.equal(short.shotTooShort, true);
    assert.equal(short.tracks.length, 0);
  });

  it('sends raw frames (aligned or frames inputs) through the same avi/JPEG steps at 25 fps', async () => {
    async function* frames(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 30; i++) yield new Uint8Array(64 * 48 * 3).fill(8 * i);
    }
    const r = await referenceFrames({ kind: 'raw', width: 64, height: 48, fps: 25, frames: frames() }, path.join(dir, 'raw'));
    assert.equal(r.files.length, 30);
    assert.deepEqual([r.width, r.height, r.audio], [64, 48, undefined]);
  });

  describe('crops of a real clip (JPEG frames of run_pipeline.py step 1)', () => {
    let fr: ReferenceFrames;
    before(async () => {
      fr = await referenceFrames({ kind: 'file', file: AOC_CLIP, hasAudio: true }, path.join(dir, 'aoc'));
    });

    it('extracts 25 fps JPEG frames and 16 kHz audio as run_pipeline.py', () => {
      // AOC clip: 200 frames at 25 fps, 512², 8.1 s of audio; `-async 1 -r 25` into the avi repeats frames to cover the
      // audio's timeline (measured here: 202 frames, what run_pipeline.py's own command gives with this ffmpeg)
      assert.ok(fr.files.length >= 200 && fr.files.length <= 203, `${fr.files.length} frames`);
      assert.deepEqual([fr.width, fr.height], [512, 512]);
      assert.equal(fr.audio!.sampleRate, 16000);
      assert.ok(Math.abs(fr.audio!.samples.length - fr.files.length * 640) <= 1280, `${fr.audio!.samples.length} samples for ${fr.files.length} frames`);
    });

    it('crops a track like crop_video (pad 110, slice, 224² bilinear; ≤ 1 level; measured: identical)', async () => {
      // a face box near the AOC face (about x 170–340, y 110–330), moving, partly outside the frame at the end
      const frames = Array.from({ length: 120 }, (_, k) => k + 40);
      const boxes = frames.map((f) => ({ x1: 170 + f, y1: 110 + 0.5 * f, x2: 340 + f, y2: 330 + 0.5 * f }));
      const got = await trackCrops(fr.files, { frames, boxes });
      const trackFile = path.join(dir, 'track.json');
      writeFileSync(trackFile, JSON.stringify({ frames, bbox: boxes.map((b) => [b.x1, b.y1, b.x2, b.y2]) }));
      const npy = path.join(dir, 'crops.npy');
      await runProcess('/usr/bin/python3', [ORACLE, 'crop', path.dirname(fr.files[0]!), trackFile, npy]);
      const { readFileSync } = await import('node:fs');
      const b = readFileSync(npy);
      const want = b.subarray(10 + b.readUInt16LE(8));
      assert.equal(want.length, got.length * 224 * 224 * 3);
      let maxDiff = 0;
      let diffs = 0;
      got.forEach((c, k) =>
        c.forEach((v, i) => {
          const d = Math.abs(v - want[k * 224 * 224 * 3 + i]!);
          maxDiff = Math.max(maxDiff, d);
          if (d) diffs++;
        }),
      );
      console.log(`# crops vs numpy: max diff ${maxDiff}, ${diffs} of ${want.length} values differ`);
      assert.ok(maxDiff <= 1, `max difference ${maxDiff}`);
    });
  });
});
