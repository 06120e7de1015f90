/**
 * The ONNX executor (src/models/onnx-emit.ts: the network description emitted as an ONNX model, run by onnxruntime-node
 * on the CPU) against the tfjs executor (src/models/netgraph-tf.ts, wasm backend) and the PyTorch references:
 * - LPIPS alex / vgg (det backbone + the real LPIPS v0.1 linear layers): on the astronaut pairs, totals within 1e-5
 *   relative of fixtures/expected.json (PyTorch float32; the tfjs test's tolerance); on 6 real 256² frames of
 *   ../shared/data/media/WDA_AlexandriaOcasioCortez_000.mp4 (pred = frames 0–5, target = frames 3–8), per-frame totals
 *   within 1e-4 relative of the tfjs executor (float32 on both sides with different conv algorithms; measured ≤ 2e-5).
 * - FID Inception (deterministic full-rank He weights; no PyTorch fixture exists for it, tests/metrics/fid.test.ts):
 *   pool3 features of 3 real 256² frames (resized to 299² inside the network) against the tfjs executor, max
 *   difference ≤ 1e-4 × max |feature| (float32, 94 convolutions, different algorithms; the wasm-vs-webgpu bound).
 * - single ops on hand-computed values: padded average pool excludes the padding, padded max pool never picks it
 *   (1e-6 absolute).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { decodeFrames } from '../../src/media/frames.js';
import type { RgbFrames } from '../../src/media/types.js';
import { Lpips, type LpipsNet } from '../../src/metrics/lpips.js';
import { FidInception } from '../../src/models/inception.js';
import { heWeights } from '../metrics/inception-weights.js';
import type { NetGraph } from '../../src/models/netgraph.js';
import { TfNet } from '../../src/models/netgraph-tf.js';
import { OnnxNet } from '../../src/models/onnx-emit.js';
import type { NamedWeight } from '../../src/models/torchvision-features.js';
import { initBackend } from '../../src/util/tf.js';
import { det } from '../../src/weights/det.js';
import { readTorchFile, stateDict } from '../../src/weights/torch.js';
import { AOC_CLIP, FIXTURES, SHARED } from '../helpers.js';
import { crop, frames, loadAstronaut } from '../metrics/astronaut.js';

const expected = JSON.parse(readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8'));

async function lpipsWeights(net: LpipsNet): Promise<Map<string, NamedWeight>> {
  const w = new Map<string, NamedWeight>();
  for (const [name, shape] of expected.lpips[net].backbone_params as [string, number[]][]) w.set(name, { shape, data: det(name, shape) });
  const lin = stateDict(await readTorchFile(path.join(SHARED, 'data', 'weights', 'lpips-v0.1', `${net}.pth`)));
  for (const [k, t] of lin) w.set(k, { shape: t.shape, data: t.data as Float32Array });
  return w;
}

function rel(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);
}

let video: RgbFrames;
before(async () => {
  await initBackend('wasm');
  video = await decodeFrames(AOC_CLIP, { width: 256, height: 256, count: 9 });
});

function slice(f: RgbFrames, start: number, count: number): RgbFrames {
  const n = f.width * f.height * 3;
  return { ...f, count, data: f.data.subarray(start * n, (start + count) * n) };
}

describe('ONNX executor', () => {
  for (const net of ['alex', 'vgg'] as const) {
    it(`LPIPS ${net}: onnxruntime matches the PyTorch reference and the tfjs executor on real frames`, async () => {
      const w = await lpipsWeights(net);
      const onnx = await Lpips.create(net, w, 'onnx');
      const tfjs = await Lpips.create(net, w, 'tfjs');
      try {
        assert.match(onnx.executor, /^onnxruntime-cpu \(\d+ threads\)$/);
        assert.equal(tfjs.executor, 'tfjs-wasm');
        const a = await loadAstronaut();
        const r = await onnx.distances(frames(crop(a, 0, 0, 128, 128)), frames(crop(a, 1, 1, 128, 128)));
        const ref = expected.lpips[net].values.crop128_shift1.lpips as number;
        assert.ok(rel(r.total[0]!, ref) <= 1e-5, `astronaut total ${r.total[0]} vs PyTorch ${ref}`);
        const pred = slice(video, 0, 6);
        const target = slice(video, 3, 6);
        const got = await onnx.distances(pred, target, 4);
        const want = await tfjs.distances(pred, target, 4);
        assert.equal(got.total.length, 6);
        // 1e-4 relative: both float32, different conv algorithms and summation orders (vgg: 13 layers; measured ≤ 2e-5)
        got.total.forEach((v, i) => assert.ok(rel(v, want.total[i]!) <= 1e-4, `frame ${i}: onnx ${v} vs tfjs ${want.total[i]}`));
        assert.ok(want.total.every((v) => v > 1e-4)); // real differences, not a degenerate zero
      } finally {
        onnx.dispose();
        tfjs.dispose();
      }
    });
  }

  it('FID Inception: onnxruntime pool3 features match the tfjs executor on real frames', async () => {
    const w = heWeights();
    const onnx = await FidInception.create(w, 'onnx');
    const tfjs = await FidInception.create(w, 'tfjs');
    try {
      const n = 3;
      const px = new Float32Array(n * 256 * 256 * 3);
      for (let i = 0; i < px.length; i++) px[i] = video.data[i]! / 255;
      const got = await onnx.featuresOf(px, n, 256, 256);
      const want = await tfjs.featuresOf(px, n, 256, 256);
      assert.equal(got.length, n * 2048);
      let maxAbs = 0;
      let maxDiff = 0;
      for (let i = 0; i < got.length; i++) {
        maxAbs = Math.max(maxAbs, Math.abs(want[i]!));
        maxDiff = Math.max(maxDiff, Math.abs(got[i]! - want[i]!));
      }
      assert.ok(maxAbs > 1e-3, `features are not degenerate (max ${maxAbs})`);
      assert.ok(maxDiff <= 1e-4 * maxAbs, `max diff ${maxDiff} vs max |feature| ${maxAbs}`);
    } finally {
      onnx.dispose();
      tfjs.dispose();
    }
  });

  it('padded pools: average excludes the padding, max never picks it (hand loops, 1e-6)', async () => {
    const [H, W] = [4, 5];
    const vals = Float32Array.from({ length: H * W }, (_, k) => Math.sin(1.3 * k) * 3 - 4); // all negative: zero padding would win a max
    const g: NetGraph = {
      name: 'pools',
      inputs: [{ name: 'x', channels: 1 }],
      outputs: ['avg', 'max', 'max2'],
      ops: [
        { op: 'avgpool', x: 'x', y: 'avg', k: [3, 3], stride: [1, 1], pad: [1, 1, 1, 1] },
        { op: 'maxpool', x: 'x', y: 'max', k: [3, 3], stride: [1, 1], pad: [1, 1, 1, 1] },
        { op: 'maxpool', x: 'x', y: 'max2', k: [3, 3], stride: [2, 2], pad: [1, 1, 1, 1] },
      ],
      params: new Map(),
    };
    const window = (y0: number, x0: number) => {
      let s = 0;
      let n = 0;
      let m = -Infinity;
      for (let y = y0; y < y0 + 3; y++)
        for (let x = x0; x < x0 + 3; x++) {
          if (y < 0 || y >= H || x < 0 || x >= W) continue;
          s += vals[y * W + x]!;
          n++;
          m = Math.max(m, vals[y * W + x]!);
        }
      return { avg: s / n, max: m };
    };
    const onnx = await OnnxNet.create(g);
    const tfjs = new TfNet(g);
    try {
      for (const runner of [onnx, tfjs]) {
        const [avg, max, max2] = await runner.run({ x: { data: vals, shape: [1, H, W, 1] } });
        assert.deepEqual(max2!.shape, [1, 2, 3, 1]); // floor((4 + 2 − 3) / 2) + 1, floor((5 + 2 − 3) / 2) + 1
        for (let y = 0; y < H; y++)
          for (let x = 0; x < W; x++) {
            const e = window(y - 1, x - 1);
            assert.ok(Math.abs(avg!.data[y * W + x]! - e.avg) < 1e-6, `${runner.executor} avg [${y},${x}]`);
            assert.ok(Math.abs(max!.data[y * W + x]! - e.max) < 1e-6, `${runner.executor} max [${y},${x}]`);
          }
        for (let y = 0; y < 2; y++) for (let x = 0; x < 3; x++) assert.ok(Math.abs(max2!.data[y * 3 + x]! - window(2 * y - 1, 2 * x - 1).max) < 1e-6);
      }
    } finally {
      onnx.dispose();
      tfjs.dispose();
    }
  });
});
