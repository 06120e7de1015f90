/**
 * The reference SyncNet pipeline after detection (metrics/sync-reference.ts) on a real clip against
 * tests/reference/syncnet_pipeline_reference.py `score` (numpy/scipy track_shot and crop_video, the same ffmpeg round
 * trip, PIL JPEG decoding, SyncNetModel.S in PyTorch 1.13 and python_speech_features' MFCC in numpy — that oracle
 * reproduces fixtures/expected.json `syncnet` to float32 round-off), SyncNet with det() weights on both sides.
 * det() S3FD weights find no face, so the detections are given: a face box over the AOC face in frames 0–105 with a
 * 4-frame gap, and a small second face (dropped by min_face_size). SyncNet runs as eval runs it by default (the network
 * description on onnxruntime, models/syncnet.ts SyncNetRunner). Tolerance: LSE-D, LSE-C and all 31 mdist values
 * within 1e-4 relative (the SyncNet parity tolerance of fixtures/README.md), offset equal.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { trackFaces } from '../../src/face/reference-crop.js';
import { cropRoundTrip, referenceFrames, scoreTrackCrops, trackCrops, type ReferenceFrames } from '../../src/metrics/sync-reference.js';
import { SyncNetRunner, syncnetParamShapes } from '../../src/models/syncnet.js';
import { runProcess } from '../../src/util/exec.js';
import { initBackend } from '../../src/util/tf.js';
import { det } from '../../src/weights/det.js';
import { AOC_CLIP, ROOT, tmpDir } from '../helpers.js';

const ORACLE = path.join(ROOT, 'tests/reference/syncnet_pipeline_reference.py');

function close(a: number, b: number, rel: number, what: string): void {
  assert.ok(Math.abs(a - b) <= rel * Math.max(1, Math.abs(b)), `${what}: ${a} vs reference ${b} (rel tol ${rel})`);
}

describe('reference SyncNet pipeline on given detections (AOC clip)', () => {
  const dir = tmpDir('difftalk-syncref-score-');
  const work = path.join(dir, 'work');
  let fr: ReferenceFrames;

  before(async () => {
    await initBackend('wasm');
    fr = await referenceFrames({ kind: 'file', file: AOC_CLIP, hasAudio: true }, work);
  });

  it('scores the track as syncnet_python (LSE-D, LSE-C, mdist 1e-4 relative; offset equal)', async () => {
    const dets: number[][][] = fr.files.map((_, f) => {
      const d: number[][] = [];
      if (f <= 105 && (f < 50 || f > 53)) d.push([170 + 0.3 * f, 105 + 0.1 * f + 2 * Math.sin(f), 345 + 0.3 * f, 330 + 0.1 * f, 0.99]);
      d.push([430, 20, 480, 70, 0.95]);
      return d;
    });
    const detFile = path.join(dir, 'dets.json');
    writeFileSync(detFile, JSON.stringify({ dets }));
    const want = JSON.parse((await runProcess('/usr/bin/python3', [ORACLE, 'score', work, detFile])).stdout.toString()) as Array<{
      first: number;
      last: number;
      lse_d: number;
      lse_c: number;
      offset: number;
      mdist: number[];
    }>;
    const tracking = trackFaces(dets.map((d) => d.map(([x1, y1, x2, y2]) => ({ x1: x1!, y1: y1!, x2: x2!, y2: y2! }))));
    assert.equal(want.length, 1);
    assert.equal(tracking.tracks.length, 1);
    assert.equal(tracking.dropped.small, 1);
    const t = tracking.tracks[0]!;
    assert.deepEqual([t.frames[0], t.frames.at(-1)], [want[0]!.first, want[0]!.last]);
    // eval's scoring network on onnxruntime (what `difftalk eval` uses without --backend)
    const net = await SyncNetRunner.create(new Map(syncnetParamShapes().map(([n, s]) => [n, { shape: s, data: det(n, s) }])), undefined, 'onnx');
    const crops = await cropRoundTrip(await trackCrops(fr.files, t), work);
    assert.equal(crops.length, t.frames.length);
    const got = await scoreTrackCrops(net, crops, t.frames[0]!, t.frames.at(-1)!, fr.audio!);
    net.dispose();
    const w = want[0]!;
    console.log(`# reference pipeline: LSE-D ${got.lseD} vs ${w.lse_d}, LSE-C ${got.lseC} vs ${w.lse_c}, offset ${got.offset} vs ${w.offset}`);
    close(got.lseD, w.lse_d, 1e-4, 'LSE-D');
    close(got.lseC, w.lse_c, 1e-4, 'LSE-C');
    got.mdist.forEach((v, k) => close(v, w.mdist[k]!, 1e-4, `mdist[${k}]`));
    assert.equal(got.offset, w.offset);
  });
});
