/**
 * FVD (src/metrics/fvd.ts) and its I3D (src/models/i3d.ts, weights kind `i3d`).
 *
 * Reference: tests/reference/i3d_reference.py, an I3D written in PyTorch from the published architecture (Debian
 * torch 1.13, CPU, float32), with seeded weights (torch.Generator seed 0; the det() formula collapses this 60-layer
 * network to input-independent features, so it is not used here), saved with torch.jit.script + torch.jit.save as a
 * TorchScript archive in the layout of StyleGAN-V's i3d_torchscript.pt. difftalk reads the weights only from that
 * archive (the same path a user's file takes). The oracle's FVD is StyleGAN-V's / LatentSync's formula with
 * scipy.linalg.sqrtm.
 *
 * Tolerances (measured values are printed):
 * - I3D features, real frames (AOC clip and the LatentSync demo, 512² → 224²): max |difference| ≤ 1e-4 · max |feature|
 *   (float32 both sides, different summation orders; measured 5e-6 on features up to 6, ≈ 1e-6 relative).
 * - FVD vs the oracle on the oracle's own features: ≤ 1e-5 relative (measured 7e-7; the two sets have 2 clips each, so the
 *   covariances are rank 1 and scipy's sqrtm of the singular product carries its own error; difftalk's exact
 *   low-rank route is checked against numpy in tests/metrics/fid.test.ts).
 * - eval CLI (`--metrics fvd`) on lossless videos of the same frames: equal to the metric's value above (1e-9 relative).
 *
 * Time: 8 clips of 16 frames through the I3D on tfjs-wasm (≈ 7–15 s a clip on this shared 2-core machine): 137–188 s in all
 * measured (`node --import tsx --test tests/metrics/fvd.test.ts`, after `npx tsc -p tsconfig.json` for the CLI test).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { FvdMetric } from '../../src/metrics/fvd.js';
import { I3d, I3D_FEATURE_DIM, i3dParams, i3dTensorsFrom, loadI3d } from '../../src/models/i3d.js';
import { fetchWeights, importWeights, weightsLabel } from '../../src/models/weights-store.js';
import type { RgbFrames } from '../../src/media/types.js';
import { DifftalkError } from '../../src/util/errors.js';
import { runProcess, runTool } from '../../src/util/exec.js';
import { initBackend } from '../../src/util/tf.js';
import { encodeNpyFloat32 } from '../../src/weights/npy.js';
import { readTorchFile, type TensorData } from '../../src/weights/torch.js';
import { AOC_CLIP, ffmpegRgb, MEDIA, ROOT, runCli, tmpDir } from '../helpers.js';

const PY = '/usr/bin/python3';
const ORACLE = path.join(ROOT, 'tests/reference/i3d_reference.py');
const LATENTSYNC = path.join(MEDIA, 'latentsync_demo1_video.mp4');
/** The LatentSync demo is 1080×1920: its upper square, at the AOC clip's 512². */
const LS_VF = 'crop=1080:1080:0:300,scale=512:512';
const SIDE = 512;
const FRAMES = 40; // two 16-frame clips + 8 frames left over

const dir = tmpDir('difftalk-fvd-');
const pt = path.join(dir, 'i3d_torchscript.pt');
const cache = path.join(dir, 'cache');

function frames(data: Uint8Array, start: number, count: number): RgbFrames {
  const n = SIDE * SIDE * 3;
  return { width: SIDE, height: SIDE, count, data: data.subarray(start * n, (start + count) * n) };
}

before(async () => {
  await initBackend('wasm');
  await runProcess(PY, [ORACLE, 'save', pt]);
});

describe('i3d weights: TorchScript import', () => {
  it('imports i3d_torchscript.pt (module tree → canonical names, float32) into the cache, labelled unverified', async () => {
    const r = await importWeights('i3d', { model: pt }, { cacheDir: cache });
    // The oracle's state_dict without num_batches_tracked: 287 tensors, 12,711,824 values (counted by PyTorch).
    assert.equal(r.tensors, 287);
    assert.equal(i3dParams().length, 287);
    assert.equal(r.parameters, 12_711_824);
    assert.match(weightsLabel(r), /^unverified file [0-9a-f]{12}$/);
  });

  it('weights fetch i3d: downloads i3d_torchscript.pt (from a local mirror) and imports it like weights import', async () => {
    const body = readFileSync(pt);
    const server = http.createServer((req, res) => {
      if (req.url !== '/i3d_torchscript.pt') return void res.writeHead(404).end();
      res.writeHead(200, { 'content-length': body.length }).end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const mirror = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const r = await fetchWeights('i3d', { cacheDir: path.join(dir, 'cache-fetch'), mirror });
      assert.equal(r.downloads[0]!.verified, 'unverified'); // no published hash for this file
      assert.match(r.label, /^unverified file [0-9a-f]{12}$/);
      assert.equal(r.imported!.tensors, 287);
      const imported = await importWeights('i3d', { model: pt }, { cacheDir: path.join(dir, 'cache-again') });
      assert.equal(r.imported!.sha256, imported.sha256); // the same converted file as `weights import`
    } finally {
      server.close();
    }
  });

  it('refuses an I3D whose shapes differ, with one error naming the tensor and both shapes', async () => {
    const bad = path.join(dir, 'bad.pt');
    await runProcess(PY, [ORACLE, 'save-bad', bad]);
    await assert.rejects(
      () => importWeights('i3d', { model: bad }, { cacheDir: path.join(dir, 'cache-bad') }),
      (e: unknown) =>
        e instanceof DifftalkError &&
        e.code === 'bad-weights' &&
        /not the Kinetics-400 I3D/.test(e.message) &&
        /Mixed_4c\.b1b\.conv3d\.weight is \[200, 112, 3, 3, 3\], expected \[224, 112, 3, 3, 3\]/.test(e.message) &&
        /i3d_torchscript\.pt/.test(e.suggestion ?? ''),
    );
  });

  it('maps TF-Hub variable names (scopes with /, no BatchNorm scale) to the same tensors', async () => {
    const { tensors } = await readTorchFile(pt);
    const canonical = i3dTensorsFrom(tensors, pt);
    const tfNames = new Map<string, TensorData>();
    const branch: Record<string, string> = {
      b0: 'Branch_0/Conv3d_0a_1x1',
      b1a: 'Branch_1/Conv3d_0a_1x1',
      b1b: 'Branch_1/Conv3d_0b_3x3',
      b2a: 'Branch_2/Conv3d_0a_1x1',
      b2b: 'Branch_2/Conv3d_0b_3x3',
      b3b: 'Branch_3/Conv3d_0b_1x1',
    };
    const param: Record<string, string> = {
      'conv3d.weight': 'conv_3d/w',
      'conv3d.bias': 'conv_3d/b',
      'bn.bias': 'batch_norm/beta',
      'bn.running_mean': 'batch_norm/moving_mean',
      'bn.running_var': 'batch_norm/moving_variance',
    };
    for (const [name, t] of canonical) {
      const m = /^(.*?)\.(conv3d\.\w+|bn\.\w+)$/.exec(name)!;
      if (m[2] === 'bn.weight') continue; // TF-Hub's BatchNorm has no scale
      const unit = m[1]!.replace(/^(Mixed_\w+)\.(\w+)$/, (_, a: string, b: string) => `${a}/${branch[b]}`).replace(/^logits$/, 'Logits/Conv3d_0c_1x1');
      tfNames.set(`RGB/inception_i3d/${unit}/${param[m[2]!]}`, t);
    }
    const back = i3dTensorsFrom(tfNames, 'tf-names');
    assert.equal(back.size, canonical.size);
    assert.deepEqual([...back.get('Mixed_5b.b2b.conv3d.weight')!.data.slice(0, 5)], [...canonical.get('Mixed_5b.b2b.conv3d.weight')!.data.slice(0, 5)]);
    assert.ok(back.get('Conv3d_1a_7x7.bn.weight')!.data.every((v) => v === 1)); // γ = 1 when the file has none
  });
});

describe('FVD on real frames vs the PyTorch I3D oracle', () => {
  let aoc: Uint8Array;
  let ls: Uint8Array;
  let fvdValue = 0;
  /** The oracle's features of the first AOC clip (set by the first test). */
  let oracleClip0: Float32Array | undefined;

  it('streams frames into 16-frame clips: features and FVD match the oracle (features 1e-4 rel., FVD 1e-5 rel.)', async () => {
    aoc = await ffmpegRgb(AOC_CLIP, { frames: FRAMES });
    ls = await ffmpegRgb(LATENTSYNC, { frames: FRAMES, vf: LS_VF });
    let net: I3d | undefined;
    try {
      net = (await loadI3d({ cacheDir: cache, executor: 'auto' })).net; // what eval picks without --backend
      console.log(`# I3D executor: ${net.executor}`);
      const metric = new FvdMetric(net, 'test');
      metric.beginVideo();
      // Uneven chunks (a clip is cut across chunk boundaries).
      for (const [s, n] of [
        [0, 10],
        [10, 13],
        [23, 17],
      ] as const)
        await metric.update(frames(aoc, s, n), frames(ls, s, n));
      metric.endVideo();
      assert.deepEqual(metric.counts, { pred: 2, gt: 2 });
      assert.equal(metric.unusedFrames, FRAMES - 32);
      const got = metric.compute();
      assert.equal(got.clips, 2);
      assert.equal(got.direction, 'lower');
      fvdValue = got.value;
      const feats = metric.features();

      // Oracle: the same frames, clip after clip: [clips, 16, 512, 512, 3].
      const clipsNpy = (data: Uint8Array, name: string) => {
        const file = path.join(dir, `${name}.npy`);
        writeFileSync(file, encodeNpyFloat32([2, 16, SIDE, SIDE, 3], Float32Array.from(data.subarray(0, 32 * SIDE * SIDE * 3))));
        return file;
      };
      const refP = path.join(dir, 'ref-pred.npy');
      const refG = path.join(dir, 'ref-gt.npy');
      await runProcess(PY, [ORACLE, 'features', clipsNpy(aoc, 'aoc'), refP]);
      await runProcess(PY, [ORACLE, 'features', clipsNpy(ls, 'ls'), refG]);
      const readNpy = (file: string) => {
        const buf = readFileSync(file);
        const hlen = buf.readUInt16LE(8);
        return new Float32Array(buf.buffer.slice(buf.byteOffset + 10 + hlen, buf.byteOffset + buf.length));
      };
      const ref = { pred: readNpy(refP), gt: readNpy(refG) };
      oracleClip0 = ref.pred.slice(0, I3D_FEATURE_DIM);
      for (const side of ['pred', 'gt'] as const) {
        assert.equal(ref[side].length, 2 * I3D_FEATURE_DIM);
        let maxDiff = 0;
        let maxAbs = 0;
        for (let i = 0; i < ref[side].length; i++) {
          maxDiff = Math.max(maxDiff, Math.abs(ref[side][i]! - feats[side][i]!));
          maxAbs = Math.max(maxAbs, Math.abs(ref[side][i]!));
        }
        console.log(`# I3D features (${side}): max |${net.executor} − torch| ${maxDiff.toExponential(2)}, max |feature| ${maxAbs.toFixed(3)}`);
        assert.ok(maxAbs > 0.1, 'features are not degenerate');
        assert.ok(maxDiff <= 1e-4 * maxAbs, `features differ by ${maxDiff}`);
      }
      const { stdout } = await runProcess(PY, [ORACLE, 'fvd', refP, refG]);
      const want = Number(stdout.toString().trim());
      console.log(`# FVD(AOC, LatentSync demo), 2 + 2 clips: difftalk ${fvdValue}, oracle (scipy sqrtm) ${want}`);
      assert.ok(want > 1, `oracle FVD ${want}: the two sets differ`);
      assert.ok(Math.abs(fvdValue - want) <= 1e-5 * want, `FVD ${fvdValue} vs oracle ${want}`);

      // merge: two halves (one clip each) give the one-pass value; the GT against itself is 0.
      const a = new FvdMetric(undefined, 'test');
      const b = new FvdMetric(undefined, 'test');
      a.addFeatures(feats.pred.slice(0, I3D_FEATURE_DIM), feats.gt.slice(0, I3D_FEATURE_DIM));
      b.addFeatures(feats.pred.slice(I3D_FEATURE_DIM), feats.gt.slice(I3D_FEATURE_DIM));
      assert.throws(
        () => a.compute(),
        (e: unknown) => e instanceof DifftalkError && e.code === 'no-data' && /at least 2 clips of 16 frames/.test(e.message),
      );
      a.merge(b);
      assert.equal(a.compute().value, fvdValue);
      assert.ok(Math.abs(a.compute(true).value) < 1e-9 * fvdValue);
    } finally {
      net?.dispose();
    }
  });

  it('both executors of the one I3D description (tfjs-wasm, onnxruntime) match the oracle and each other on a real clip (1e-4 rel.)', async () => {
    assert.ok(oracleClip0, 'runs after the test above');
    const { tensors } = await readTorchFile(pt);
    const clip = Float32Array.from(aoc.subarray(0, 16 * SIDE * SIDE * 3));
    const got: Record<string, Float32Array> = {};
    for (const executor of ['tfjs', 'onnx'] as const) {
      const net = await I3d.create(tensors, { executor });
      try {
        const t0 = performance.now();
        got[executor] = await net.featuresOf(clip, 1, SIDE, SIDE);
        console.log(`# I3D on ${net.executor}: ${((performance.now() - t0) / 1000).toFixed(1)} s for one 16-frame clip`);
      } finally {
        net.dispose();
      }
    }
    const maxAbs = oracleClip0.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
    for (const [what, d] of [
      ['tfjs − torch', maxDiff(got.tfjs!, oracleClip0)],
      ['onnx − torch', maxDiff(got.onnx!, oracleClip0)],
      ['onnx − tfjs', maxDiff(got.onnx!, got.tfjs!)],
    ] as const) {
      console.log(`# I3D features, first AOC clip: max |${what}| ${d.toExponential(2)} (max |feature| ${maxAbs.toFixed(3)})`);
      // float32 on every side, ~60 convolutions with different algorithms and summation orders
      assert.ok(d <= 1e-4 * maxAbs, `${what}: ${d}`);
    }
  });

  it('difftalk eval --metrics fvd (CLI, lossless videos of the same frames) reports the same FVD', async () => {
    assert.ok(fvdValue > 0, 'runs after the test above');
    const pred = path.join(dir, 'pred', 'clip.mkv');
    const gt = path.join(dir, 'gt', 'clip.mkv');
    await mkdir(path.dirname(pred), { recursive: true });
    await mkdir(path.dirname(gt), { recursive: true });
    // libx264rgb -qp 0 is lossless in RGB: eval decodes exactly the frames the test above used.
    await runTool('ffmpeg', ['-v', 'error', '-i', AOC_CLIP, '-frames:v', String(FRAMES), '-c:v', 'libx264rgb', '-qp', '0', '-an', pred]);
    await runTool('ffmpeg', ['-v', 'error', '-i', LATENTSYNC, '-frames:v', String(FRAMES), '-vf', LS_VF, '-c:v', 'libx264rgb', '-qp', '0', '-an', gt]);
    const out = path.join(dir, 'report');
    const run = await runCli(['eval', '--pred', pred, '--gt', gt, '--out', out, '--metrics', 'fvd', '--crop', 'none', '--cache-dir', cache]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /fvd\(i3d-kinetics400-16f-224:[0-9a-f]{12}\) = [\d.]+ \(lower is better; one statistic over 2 16-frame clips\)/);
    assert.match(run.stderr + run.stdout, /8 of 40 frames fall outside its 16-frame clips/);
    const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as {
      summary: { pred: { name: string; value: number; averagedOver: string; count: number }[] };
      protocol: { weights: { kind: string }[] };
    };
    const row = summary.summary.pred.find((m) => m.name.startsWith('fvd('))!;
    assert.equal(row.averagedOver, 'clips');
    assert.equal(row.count, 2);
    assert.ok(summary.protocol.weights.some((w) => w.kind === 'i3d'));
    console.log(`# eval CLI FVD ${row.value} (metric above ${fvdValue})`);
    assert.ok(Math.abs(row.value - fvdValue) <= 1e-9 * fvdValue, `CLI FVD ${row.value} vs ${fvdValue}`);
  });
});
