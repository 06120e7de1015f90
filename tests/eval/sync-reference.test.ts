/**
 * `difftalk eval --sync-crop reference` end to end through the built CLI, on a real clip (the AOC clip at 128², 8 s,
 * with its audio), with det() weights for S3FD (written as a PyTorch sfd_face.pth and fetched with `weights fetch s3fd`
 * from a mirror on 127.0.0.1, as a user gets the official file) and SyncNet.
 * det() weights score every prior ≈ 0.52 (< conf_th 0.9), so S3FD finds no face: the reference pipeline
 * (tests/reference/syncnet_pipeline_reference.py `frames`: run_pipeline.py's ffmpeg steps, then S3FD in PyTorch on
 * every JPEG frame) finds none either, and the clip gets the "no face track" note instead of LSE — not a crash.
 * Numbers of the pieces are checked in tests/models/s3fd.test.ts and tests/face/reference-crop.test.ts.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import type { PickleValue } from '../../src/weights/pickle-writer.js';
import { s3fdParamShapes } from '../../src/models/s3fd.js';
import { syncnetParamShapes } from '../../src/models/syncnet.js';
import { runProcess, runTool } from '../../src/util/exec.js';
import { det } from '../../src/weights/det.js';
import { writeSafetensors } from '../../src/weights/safetensors.js';
import type { TensorData } from '../../src/weights/torch.js';
import { stateDictValue, writeTorchFile } from '../../src/weights/torch-writer.js';
import { AOC_CLIP, ROOT, runCli, tmpDir } from '../helpers.js';

const ORACLE = path.join(ROOT, 'tests/reference/syncnet_pipeline_reference.py');

const detTensors = (shapes: Array<[string, number[]]>): Map<string, TensorData> =>
  new Map(shapes.filter(([n]) => !n.endsWith('num_batches_tracked')).map(([n, s]) => [n, { dtype: 'float32', shape: s, data: det(n, s) }]));

describe('eval --sync-crop reference (CLI, det weights)', () => {
  const dir = tmpDir('difftalk-syncref-');
  const clip = path.join(dir, 'aoc128.mp4');
  const cache = path.join(dir, 'cache');
  const syncnet = path.join(dir, 'det-syncnet.safetensors');

  before(async () => {
    await runTool('ffmpeg', ['-v', 'error', '-y', '-i', AOC_CLIP, '-vf', 'scale=128:128', '-c:v', 'libx264', '-crf', '18', '-c:a', 'copy', clip]);
    const pth = path.join(dir, 'sfd_face.pth');
    await writeTorchFile(pth, (tensor) => stateDictValue(detTensors(s3fdParamShapes()), tensor) as PickleValue);
    await writeSafetensors(syncnet, detTensors(syncnetParamShapes()));
    // `weights fetch s3fd` from a mirror on 127.0.0.1 serving the det file under its upstream name (no published hash:
    // labelled "unverified file <sha256[:12]>")
    const body = readFileSync(pth);
    const server = http.createServer((req, res) => {
      if (req.url === '/sfd_face.pth') res.writeHead(200, { 'content-length': body.length }).end(body);
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const mirror = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const f = await runCli(['weights', 'fetch', 's3fd', '--mirror', mirror, '--cache-dir', cache]);
      assert.equal(f.code, 0, f.stderr);
      assert.match(f.stdout, /stored s3fd: .*s3fd\.safetensors/);
      assert.match(f.stdout, /label: unverified file [0-9a-f]{12}/);
    } finally {
      server.close();
    }
  });

  it('scores with the reference crop; no S3FD face → a recorded note, no LSE, exit 0; the PyTorch pipeline agrees', async () => {
    const out = path.join(dir, 'out');
    const r = await runCli([
      'eval',
      '--pred',
      clip,
      '--gt',
      clip,
      '--out',
      out,
      '--metrics',
      'lse',
      '--sync-crop',
      'reference',
      '--baseline',
      '--syncnet-weights',
      syncnet,
      '--cache-dir',
      cache,
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const csv = readFileSync(path.join(out, 'clips.csv'), 'utf8');
    assert.match(csv, /reference SyncNet crop: no face track \(S3FD found faces in 0\/20\d frames/);
    // --baseline runs the GT through the same pipeline: no track there either, noted with a GT: prefix
    assert.match(csv, /GT: reference SyncNet crop: no face track/);
    const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
    const text = JSON.stringify(summary);
    assert.match(text, /"syncCrop":"reference"/);
    assert.match(text, /"kind":"s3fd"/);
    assert.doesNotMatch(text, /lse-d\(/, 'no LSE value without a face track');
    assert.match(r.stderr + r.stdout, /no face track/, 'the note is on the console too');

    const ref = JSON.parse((await runProcess('/usr/bin/python3', [ORACLE, 'frames', clip, path.join(dir, 'oracle')])).stdout.toString()) as Array<{
      dets: number[][];
      max_face_score: number;
    }>;
    const frames = Number(/found faces in 0\/(\d+) frames/.exec(csv)![1]);
    assert.equal(ref.length, frames, 'same JPEG frame count as run_pipeline.py step 1');
    assert.equal(ref.filter((f) => f.dets.length > 0).length, 0);
    const maxScore = Math.max(...ref.map((f) => f.max_face_score));
    console.log(`# reference S3FD (det weights): best face score ${maxScore} over ${ref.length} frames`);
    assert.ok(maxScore < 0.9);
  });

  it('refuses an unknown --sync-crop with exit 2', async () => {
    const r = await runCli(['eval', '--pred', clip, '--gt', clip, '--out', path.join(dir, 'bad'), '--metrics', 'lse', '--sync-crop', 'mesh']);
    assert.equal(r.code, 2, r.stderr);
  });
});
