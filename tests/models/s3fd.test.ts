/**
 * S3FD (syncnet_python detectors/s3fd) on TensorFlow.js wasm against tests/reference/syncnet_pipeline_reference.py
 * (PyTorch 1.13 CPU float32, the same det() weights) on a real frame: frame 0 of the AOC clip, decoded to PNG by
 * ffmpeg (both sides read the same RGB pixels).
 * det() weights score every prior near 0.5, so the network outputs are compared directly (loc, softmax conf, priors)
 * and decoding + both NMS steps are checked on synthetic head outputs with distinct scores (conf_th 0.9 and 0.5).
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import { cvResizeLinear, S3fd, s3fdDetections, s3fdParamShapes, s3fdPriors, type Detection } from '../../src/models/s3fd.js';
import { runProcess, runTool } from '../../src/util/exec.js';
import { initBackend } from '../../src/util/tf.js';
import { det, detInput } from '../../src/weights/det.js';
import { encodeNpyFloat32 } from '../../src/weights/npy.js';
import { AOC_CLIP, ROOT, tmpDir } from '../helpers.js';

const ORACLE = path.join(ROOT, 'tests/reference/syncnet_pipeline_reference.py');

/** Minimal .npy (v1, little-endian float32, C order) reader for the oracle's outputs. */
export function readNpyF32(file: string): { shape: number[]; data: Float32Array } {
  const b = readFileSync(file);
  const hl = b.readUInt16LE(8);
  const header = b.subarray(10, 10 + hl).toString('latin1');
  assert.match(header, /'descr': '<f4'/);
  const shape = /'shape': \(([^)]*)\)/
    .exec(header)![1]!
    .split(',')
    .filter((s) => s.trim())
    .map(Number);
  const bytes = b.subarray(10 + hl);
  return { shape, data: new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)) };
}

export function detS3fd(): S3fd {
  return S3fd.fromTensors(new Map(s3fdParamShapes().map(([n, s]) => [n, { shape: s, data: det(n, s) }])));
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('S3FD network and detection', () => {
  const dir = tmpDir('difftalk-s3fd-');
  const png = path.join(dir, 'f0.png');
  let rgb: Uint8Array;
  let oracle: { feature_maps: number[][]; dets_at: number[][]; max_face_score: number };

  before(async () => {
    await initBackend('wasm');
    await runTool('ffmpeg', ['-v', 'error', '-y', '-i', AOC_CLIP, '-frames:v', '1', png]);
    rgb = new Uint8Array((await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true })).data);
    const { stdout } = await runProcess('/usr/bin/python3', [ORACLE, 's3fd', png, dir, '0.5']);
    oracle = JSON.parse(stdout.toString());
  });

  it('has the state_dict names and shapes of sfd_face.pth (S3FDNet)', () => {
    const p = s3fdParamShapes();
    assert.equal(p.length, 2 * (15 + 4 + 12) + 3);
    assert.deepEqual(p.find(([n]) => n === 'vgg.31.weight')![1], [1024, 512, 3, 3]);
    assert.deepEqual(p.find(([n]) => n === 'conf.0.weight')![1], [4, 256, 3, 3]);
    assert.deepEqual(p.find(([n]) => n === 'L2Norm4_3.weight')![1], [512]);
    // total parameter count of S3FDNet: 22,459,110 (torch: sum(p.numel()) of the oracle's module)
    assert.equal(
      p.reduce((a, [, s]) => a + s.reduce((x, y) => x * y, 1), 0),
      22459110,
    );
  });

  it('resizes by 0.25 as cv2 INTER_LINEAR (mean of the 2×2 pixels at 4i+1, rounded half up)', () => {
    const r = cvResizeLinear(rgb, 512, 512, 0.25);
    assert.equal(r.width, 128);
    // hand-computed from the definition, independent of the general bilinear code
    for (const [y, x, c] of [
      [0, 0, 0],
      [37, 91, 1],
      [127, 127, 2],
    ] as const) {
      const p = (yy: number, xx: number) => rgb[(yy * 512 + xx) * 3 + c]!;
      const s = p(4 * y + 1, 4 * x + 1) + p(4 * y + 1, 4 * x + 2) + p(4 * y + 2, 4 * x + 1) + p(4 * y + 2, 4 * x + 2);
      assert.equal(r.data[(y * 128 + x) * 3 + c], (s + 2) >> 2);
    }
  });

  it('matches the reference network outputs on a real frame (loc 1e-4, conf 1e-6 absolute; priors 1e-7)', async () => {
    const net = detS3fd();
    const x = S3fd.preprocess(rgb, 512, 512);
    const raw = await net.forwardRaw(x);
    x.dispose();
    net.dispose();
    assert.deepEqual(raw.featureMaps, oracle.feature_maps);
    const loc = readNpyF32(path.join(dir, 'loc.npy'));
    const conf = readNpyF32(path.join(dir, 'conf.npy'));
    const pri = readNpyF32(path.join(dir, 'priors.npy'));
    assert.deepEqual(loc.shape, [raw.priors.length / 4, 4]);
    // measured: loc 4.9e-7, conf 1.2e-7 (float32, wasm vs torch 1.13)
    const dl = maxAbs(raw.loc, loc.data);
    const dc = maxAbs(raw.conf, conf.data);
    console.log(`# S3FD vs torch: max |Δloc| ${dl}, max |Δconf| ${dc}`);
    assert.ok(dl < 1e-4, `loc differs by ${dl}`);
    assert.ok(dc < 1e-6, `conf differs by ${dc}`);
    assert.ok(maxAbs(raw.priors, pri.data) < 1e-7);
  });

  it('decodes and applies both NMS steps as the reference (distinct synthetic scores; boxes 1e-3 px, scores 1e-7)', async () => {
    // det() weights give many exactly tied scores (translated copies of one response), where the order of ties decides
    // NMS; so the decode + NMS check runs on synthetic outputs with distinct scores: loc = detinput(seed 1),
    // face score a permutation of 0.06…0.99 over the priors of a 128×128 input (the AOC frame at scale 0.25).
    const maps: Array<[number, number]> = [
      [32, 32],
      [16, 16],
      [8, 8],
      [4, 4],
      [2, 2],
      [1, 1],
    ];
    const priors = s3fdPriors(128, 128, maps);
    const P = priors.length / 4;
    const loc = detInput([P, 4], 1, 1);
    const conf = new Float32Array(P * 2);
    for (let i = 0; i < P; i++) {
      const sc = Math.fround(0.06 + (0.93 * ((i * 7919) % P)) / P);
      conf[i * 2] = 1 - sc;
      conf[i * 2 + 1] = sc;
    }
    const sd = path.join(dir, 'synthetic');
    mkdirSync(sd, { recursive: true });
    writeFileSync(path.join(sd, 'loc.npy'), encodeNpyFloat32([P, 4], loc));
    writeFileSync(path.join(sd, 'conf.npy'), encodeNpyFloat32([P, 2], conf));
    writeFileSync(path.join(sd, 'priors.npy'), encodeNpyFloat32([P, 4], Float32Array.from(priors)));
    for (const th of [0.9, 0.5]) {
      const { stdout } = await runProcess('/usr/bin/python3', [ORACLE, 'detect', sd, '512', '512', String(th)]);
      const want = JSON.parse(stdout.toString()) as number[][];
      const got = s3fdDetections({ loc, conf, priors, featureMaps: maps }, 512, 512, { confTh: th }).map((d: Detection) => [d.x1, d.y1, d.x2, d.y2, d.score]);
      assert.ok(want.length > 3, `conf_th ${th}: the reference keeps ${want.length} boxes`);
      assert.equal(got.length, want.length, `conf_th ${th}: TS ${got.length} boxes, reference ${want.length}`);
      got.forEach((row, i) =>
        row.forEach((v, k) => assert.ok(Math.abs(v - want[i]![k]!) < (k === 4 ? 1e-7 : 1e-3), `conf_th ${th} box ${i}: [${row}] vs [${want[i]}]`)),
      );
    }
  });

  it('finds no face at the reference conf_th 0.9 with det weights (as the reference)', async () => {
    const net = detS3fd();
    const d = await net.detectFaces(rgb, 512, 512);
    net.dispose();
    assert.ok(oracle.max_face_score < 0.9);
    assert.deepEqual(d, []);
  });
});
