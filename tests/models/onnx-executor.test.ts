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
 * - SyncNet v2 (det() weights, BatchNorm folded into the convs / linears of the description): embeddings of 8 real
 *   windows (../shared/data/fixtures/syncnet_frames + syncnet_audio.wav) on onnxruntime and on the tfjs executor
 *   against the tfjs `SyncNet` class (unfolded BatchNorm, the training network): max difference ≤ 1e-5 × max |embedding|
 *   (float32 with different conv algorithms and the BN fold's rounding; measured ≤ 2.1e-6); window 0 against the
 *   PyTorch fixture (expected.json syncnet, 1e-4 relative, as tests/models/syncnet.test.ts).
 * - single ops on hand-computed values: padded average pool excludes the padding, padded max pool never picks it
 *   (1e-6 absolute); flatten keeps PyTorch's NCHW order and linear is x·Wᵀ + b with the fused ReLU (1e-6 absolute);
 *   the 3-D ops of the I3D (clips, conv3d with time/space strides and asymmetric padding, −∞-padded maxpool3d,
 *   avgpool3d, mean-dhw) against hand loops on a 2-clip 5×4×5 input (1e-5 absolute; the I3D itself is checked against
 *   its PyTorch oracle on both executors in tests/metrics/fvd.test.ts).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { decodeFrames } from '../../src/media/frames.js';
import type { RgbFrames } from '../../src/media/types.js';
import { Lpips, type LpipsNet } from '../../src/metrics/lpips.js';
import { FidInception } from '../../src/models/inception.js';
import { audioWindowsHost, lipWindowsHost, SyncNet, SyncNetRunner, syncnetParamShapes } from '../../src/models/syncnet.js';
import { syncMfcc } from '../../src/metrics/lse.js';
import { readWav } from '../../src/audio/wav.js';
import sharp from 'sharp';
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

  it('SyncNet: onnxruntime and tfjs executors match the tfjs SyncNet class on real windows, and PyTorch on window 0', async () => {
    const w = new Map(syncnetParamShapes().map(([n, s]) => [n, { shape: s, data: det(n, s) }]));
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 24; i++) {
      const file = path.join(FIXTURES, 'syncnet_frames', `${String(i).padStart(2, '0')}.png`);
      frames.push(new Uint8Array(await sharp(file).removeAlpha().raw().toBuffer()));
    }
    const wav = await readWav(path.join(FIXTURES, 'syncnet_audio.wav'));
    const m = syncMfcc(wav.samples, wav.sampleRate);
    const starts = Array.from({ length: 8 }, (_, i) => 2 * i);
    const lip = lipWindowsHost(frames, starts);
    const aud = audioWindowsHost(m.data, m.frames, starts);
    const cls = SyncNet.fromTensors(w);
    const want = await cls.embed(lip, aud);
    cls.dispose();
    const ref = expected.syncnet as Record<'lip_emb_window0' | 'aud_emb_window0', { abs_sum: number; first8: number[]; last8: number[] }>;
    for (const executor of ['onnx', 'tfjs'] as const) {
      const net = await SyncNetRunner.create(w, undefined, executor);
      try {
        assert.match(net.executor, executor === 'onnx' ? /^onnxruntime-cpu \(\d+ threads\)$/ : /^tfjs-wasm$/);
        const got = await net.embed(lip, aud);
        for (const k of ['lip', 'aud'] as const) {
          assert.equal(got[k].length, 8 * 1024);
          let maxAbs = 0;
          let maxDiff = 0;
          for (let i = 0; i < got[k].length; i++) {
            maxAbs = Math.max(maxAbs, Math.abs(want[k][i]!));
            maxDiff = Math.max(maxDiff, Math.abs(got[k][i]! - want[k][i]!));
          }
          assert.ok(maxAbs > 0.1, `${k} embeddings are not degenerate (max ${maxAbs})`);
          assert.ok(maxDiff <= 1e-5 * maxAbs, `${executor} ${k}: max diff ${maxDiff} vs max |embedding| ${maxAbs}`);
          const r = ref[`${k}_emb_window0`];
          const close = (a: number, b: number, what: string) =>
            assert.ok(Math.abs(a - b) <= 1e-4 * Math.max(1, Math.abs(b)), `${executor} ${what}: ${a} vs ${b}`);
          close(
            got[k].subarray(0, 1024).reduce((a, v) => a + Math.abs(v), 0),
            r.abs_sum,
            `${k} abs_sum`,
          );
          r.first8.forEach((v, i) => close(got[k][i]!, v, `${k}[${i}]`));
          r.last8.forEach((v, i) => close(got[k][1016 + i]!, v, `${k}[${1016 + i}]`));
        }
      } finally {
        net.dispose();
      }
    }
  });

  it('flatten keeps the NCHW order; linear is x·Wᵀ + b with a fused ReLU (hand loops, 1e-6)', async () => {
    const [H, W, C, O] = [2, 3, 2, 3];
    const x = Float32Array.from({ length: H * W * C }, (_, k) => Math.cos(0.7 * k) * 2); // NHWC
    const wt = Float32Array.from({ length: O * C * H * W }, (_, k) => Math.sin(0.3 * k + 1));
    const b = Float32Array.from([0.5, -4, 0.25]);
    const g: NetGraph = {
      name: 'fc',
      inputs: [{ name: 'x', channels: C }],
      outputs: ['flat', 'y'],
      ops: [
        { op: 'flatten', x: 'x', y: 'flat' },
        { op: 'linear', x: 'flat', y: 'y', weight: 'w', bias: 'b', relu: true },
      ],
      params: new Map([
        ['w', { shape: [O, C * H * W], data: wt }],
        ['b', { shape: [O], data: b }],
      ]),
    };
    // PyTorch order: flat[c·H·W + h·W + w] = x[h, w, c]
    const flat = new Float32Array(C * H * W);
    for (let c = 0; c < C; c++) for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) flat[(c * H + h) * W + w] = x[(h * W + w) * C + c]!;
    const y = Array.from({ length: O }, (_, o) =>
      Math.max(
        0,
        flat.reduce((a, v, i) => a + v * wt[o * flat.length + i]!, b[o]!),
      ),
    );
    assert.ok(y.some((v) => v === 0) && y.some((v) => v > 0), `the ReLU is exercised: ${y}`);
    const onnx = await OnnxNet.create(g);
    const tfjs = new TfNet(g);
    try {
      for (const runner of [onnx, tfjs]) {
        const [f, out] = await runner.run({ x: { data: x, shape: [1, H, W, C] } });
        assert.deepEqual(
          [f!.shape, out!.shape],
          [
            [1, C * H * W],
            [1, O],
          ],
        );
        flat.forEach((v, i) => assert.ok(Math.abs(f!.data[i]! - v) < 1e-6, `${runner.executor} flat[${i}]`));
        y.forEach((v, i) => assert.ok(Math.abs(out!.data[i]! - v) < 1e-6, `${runner.executor} y[${i}] ${out!.data[i]} vs ${v}`));
      }
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

  it('3-D ops (clips, conv3d with strides and asymmetric padding, maxpool3d, avgpool3d, mean-dhw): both executors match hand loops (1e-5)', async () => {
    const [N, T, H, W, C, O] = [2, 5, 4, 5, 2, 3];
    const K = [3, 2, 3] as const;
    const wgt = Float32Array.from({ length: O * C * K[0] * K[1] * K[2] }, (_, k) => Math.sin(0.7 * k + 0.3));
    const bias = Float32Array.from([0.1, -0.2, 0.05]);
    const x = Float32Array.from({ length: N * T * H * W * C }, (_, k) => Math.cos(0.91 * k) * 2 - 2.5); // mostly negative
    const at = (n: number, t: number, h: number, w: number, c: number) => x[(((n * T + t) * H + h) * W + w) * C + c]!;
    const conv = { stride: [2, 1, 2] as const, pad: [1, 0, 1, 1, 1, 0] as const };
    const pool = { k: [2, 2, 2] as const, stride: [2, 1, 2] as const, pad: [0, 1, 0, 1, 0, 1] as const };
    const g: NetGraph = {
      name: 'ops3d',
      inputs: [{ name: 'x', channels: C }],
      outputs: ['conv', 'max', 'avg', 'mean'],
      ops: [
        { op: 'clips', x: 'x', y: 'v', frames: T },
        { op: 'conv3d', x: 'v', y: 'conv', weight: 'w', bias: 'b', ...conv, relu: true },
        { op: 'maxpool3d', x: 'v', y: 'max', ...pool },
        { op: 'avgpool3d', x: 'v', y: 'avg', k: [2, 3, 3], stride: [1, 1, 1] },
        { op: 'mean-dhw', x: 'conv', y: 'mean' },
      ],
      params: new Map([
        ['w', { shape: [O, C, ...K], data: wgt }],
        ['b', { shape: [O], data: bias }],
      ]),
    };
    const outSize = (size: number, k: number, s: number, before: number, after: number) => Math.floor((size + before + after - k) / s) + 1;
    const dims = (k: readonly number[], s: readonly number[], p: readonly number[]) =>
      [T, H, W].map((size, a) => outSize(size, k[a]!, s[a]!, p[a]!, p[a + 3]!));
    /** Hand loop over output positions: f(n, t0, h0, w0, channel) for the window starting at (t0, h0, w0). */
    const loop = (d: number[], channels: number, f: (n: number, t0: number, h0: number, w0: number, o: number) => number) => {
      const out: number[] = [];
      for (let n = 0; n < N; n++)
        for (let t = 0; t < d[0]!; t++)
          for (let h = 0; h < d[1]!; h++) for (let w = 0; w < d[2]!; w++) for (let o = 0; o < channels; o++) out.push(f(n, t, h, w, o));
      return out;
    };
    const inside = (t: number, h: number, w: number) => t >= 0 && t < T && h >= 0 && h < H && w >= 0 && w < W;
    const dc = dims(K, conv.stride, conv.pad);
    const wantConv = loop(dc, O, (n, t0, h0, w0, o) => {
      let s = bias[o]!;
      for (let c = 0; c < C; c++)
        for (let a = 0; a < K[0]; a++)
          for (let b = 0; b < K[1]; b++)
            for (let e = 0; e < K[2]; e++) {
              const [t, h, w] = [t0 * conv.stride[0] - conv.pad[0] + a, h0 * conv.stride[1] - conv.pad[1] + b, w0 * conv.stride[2] - conv.pad[2] + e];
              if (inside(t, h, w)) s += at(n, t, h, w, c) * wgt[(((o * C + c) * K[0] + a) * K[1] + b) * K[2] + e]!;
            }
      return Math.max(s, 0);
    });
    const dm = dims(pool.k, pool.stride, pool.pad);
    const wantMax = loop(dm, C, (n, t0, h0, w0, c) => {
      let m = -Infinity;
      for (let a = 0; a < 2; a++)
        for (let b = 0; b < 2; b++)
          for (let e = 0; e < 2; e++) {
            const [t, h, w] = [t0 * pool.stride[0] - pool.pad[0] + a, h0 * pool.stride[1] - pool.pad[1] + b, w0 * pool.stride[2] - pool.pad[2] + e];
            if (inside(t, h, w)) m = Math.max(m, at(n, t, h, w, c));
          }
      return m;
    });
    const da = dims([2, 3, 3], [1, 1, 1], [0, 0, 0, 0, 0, 0]);
    const wantAvg = loop(da, C, (n, t0, h0, w0, c) => {
      let s = 0;
      for (let a = 0; a < 2; a++) for (let b = 0; b < 3; b++) for (let e = 0; e < 3; e++) s += at(n, t0 + a, h0 + b, w0 + e, c);
      return s / 18;
    });
    const per = dc[0]! * dc[1]! * dc[2]!;
    const wantMean = loop([1, 1, 1], O, (n, _t, _h, _w, o) => {
      let s = 0;
      for (let k = 0; k < per; k++) s += wantConv[(n * per + k) * O + o]!;
      return s / per;
    });
    assert.deepEqual(
      [dc, dm, da],
      [
        [3, 4, 2],
        [3, 4, 3],
        [4, 2, 3],
      ],
    );
    assert.ok(wantConv.some((v) => v > 0) && wantConv.some((v) => v === 0), 'the ReLU is exercised');
    const onnx = await OnnxNet.create(g);
    const tfjs = new TfNet(g);
    try {
      for (const runner of [onnx, tfjs]) {
        const outs = await runner.run({ x: { data: x, shape: [N * T, H, W, C] } });
        const want = [wantConv, wantMax, wantAvg, wantMean];
        const shapes = [
          [N, ...dc, O],
          [N, ...dm, C],
          [N, ...da, C],
          [N, O],
        ];
        outs.forEach((o, i) => {
          assert.deepEqual(o.shape, shapes[i], `${runner.executor} ${g.outputs[i]} shape`);
          o.data.forEach((v, k) => assert.ok(Math.abs(v - want[i]![k]!) <= 1e-5, `${runner.executor} ${g.outputs[i]}[${k}]: ${v} vs ${want[i]![k]}`));
        });
      }
    } finally {
      onnx.dispose();
      tfjs.dispose();
    }
  });
});
