/**
 * FID (fid.ts, nets/inception.ts).
 *
 * Statistics/distance reference: numpy 1.x / scipy 1.17.1 `linalg.sqrtm` run here on the same formula-generated
 * float32 features (pytorch-fid's calculate_frechet_distance steps: np.cov(rowvar=False), sqrtm of the product,
 * trace). Tolerance 1e-8 absolute (float64 both sides; eigen vs Schur method).
 *
 * Inception network: NUMERICAL PARITY WITH pytorch-fid IS UNVERIFIED. There is no PyTorch here, no copy of
 * pt_inception-2015-12-05-6726825d.pth and no fixture for this network, so no test compares its features with a
 * reference run. What is checked instead:
 * - the exact state_dict name/shape list of pytorch-fid's fid_inception_v3() (count cross-checked against torchvision's
 *   published inception_v3 parameter count);
 * - the input resize against an independent numpy implementation of PyTorch's align_corners=False bilinear rule
 *   (tests/reference/fid_reference.py → fid_reference.json), downsampling and upsampling;
 * - the count_include_pad=False average pool and E_2's max pool against hand-written loops;
 * - BatchNorm folding against the unfolded conv → BN(eps 0.001) → ReLU;
 * - end to end on real face crops with deterministic full-rank weights: finite 2048-d features, FID(X, X) ≈ 0, FID
 *   grows with JPEG degradation; weights-missing error; import of a pytorch-fid-layout .pth (fabricated with the test
 *   torch writer) through the fid-inception converter, then loading from the cache and from the .pth;
 * - runEval's FID of a recompressed video against pytorch-fid's formula in numpy (tests/reference/fid_from_features.py)
 *   on the pool3 features of the same frames decoded by ffmpeg: the eval wiring (frame pairing, feature collection,
 *   the metric's update/compute) has to give that value, not merely a positive one.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import { featureStats, fidFromFeatures, frechetDistance, inceptionFeatures, nuclearNorm, symmetricEigen } from '../../src/metrics/fid.js';
import {
  avgPool3ExcludePad,
  FID_INCEPTION_FC,
  FidInception,
  fidInceptionConvs,
  fidInceptionParams,
  fidPreprocess,
  foldBasicConv,
  loadFidInception,
  maxPool3Same,
} from '../../src/models/inception.js';
import type { RgbFrames } from '../../src/media/types.js';
import { DifftalkError } from '../../src/util/errors.js';
import { initBackend, tf } from '../../src/util/tf.js';
import { det, detInput } from '../../src/weights/det.js';
import { importWeights } from '../../src/models/weights-store.js';
import { runEval } from '../../src/eval/pipeline.js';
import { runProcess, runTool } from '../../src/util/exec.js';
import { encodeNpyFloat32 } from '../../src/weights/npy.js';
import { heWeights } from './inception-weights.js';
import { AOC_CLIP, ffmpegRgb, FIXTURES, MEDIA, ROOT, tmpDir } from '../helpers.js';
import { writeLegacyTorch } from '../weights/legacy-writer.js';

/** x[i][j] = sin(0.37·(7i + j²) + seed) + 0.3·cos(1.7·i·j + seed), cast to float32 (full-rank covariance). */
function feats(n: number, d: number, seed: number): Float32Array {
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) out[i * d + j] = Math.sin(0.37 * (7 * i + j * j) + seed) + 0.3 * Math.cos(1.7 * i * j + seed);
  return out;
}

describe('FID statistics and distance', () => {
  it('matches numpy/scipy on full-rank features', () => {
    const a = featureStats(feats(40, 8, 1), 40, 8);
    const b = featureStats(feats(60, 8, 2), 60, 8);
    assert.ok(Math.abs(a.sigma[0]! - 0.5136004915543114) < 1e-9); // np.cov(a)[0,0]
    assert.ok(Math.abs(a.mu[0]! - 0.18664370661717838) < 1e-12);
    const fid = frechetDistance(a, b);
    assert.ok(Math.abs(fid - 0.10413184642881923) < 1e-8, `fid ${fid}`);
    assert.ok(Math.abs(frechetDistance(a, a)) < 1e-8);
    // fidFromFeatures takes the dense path here (n ≥ d): same scipy value
    assert.ok(Math.abs(fidFromFeatures(feats(40, 8, 1), 40, feats(60, 8, 2), 60, 8) - 0.10413184642881923) < 1e-8);
  });

  it('matches scipy on singular (rank-2) covariances', () => {
    // detinput((40,6), 1.0) vs detinput((50,6), 2.0, 1.5, 0.2): sin sequences give rank-2 covariances
    const a = featureStats(detInput([40, 6], 1), 40, 6);
    const b = featureStats(detInput([50, 6], 2, 1.5, 0.2), 50, 6);
    const fid = frechetDistance(a, b);
    assert.ok(Math.abs(fid - 0.934115997723767) < 1e-6, `fid ${fid}`); // scipy sqrtm of a singular product: ~1e-8 noise
  });

  it('low-rank path (n < d) matches numpy SVD; the dense path agrees to its sqrt(ε) limit', () => {
    // Reference: numpy 2.4.6, same float32 features, Σ svd(X̃a X̃bᵀ) / sqrt((na−1)(nb−1)) with np.cov traces; 1e-12.
    // The dense route loses ~sqrt(ε) on the zero eigenvalues of rank-deficient Σ (sqrt of ±1e-16): 1e-6 relative.
    const cases: [number, number, number, number][] = [
      [5, 7, 12, 0.7776151600102459],
      [9, 4, 16, 1.3135007678428394],
      [3, 3, 10, 1.899520490706342],
    ];
    for (const [na, nb, d, want] of cases) {
      const a = feats(na, d, 0.3);
      const b = feats(nb, d, 1.1);
      const low = fidFromFeatures(a, na, b, nb, d);
      assert.ok(Math.abs(low - want) < 1e-12, `${na},${nb},${d}: low-rank ${low} vs numpy ${want}`);
      const dense = frechetDistance(featureStats(a, na, d), featureStats(b, nb, d));
      assert.ok(Math.abs(dense - want) < 1e-6 * want, `${na},${nb},${d}: dense ${dense} vs numpy ${want}`);
      assert.ok(Math.abs(fidFromFeatures(a, na, a, na, d)) < 1e-12);
    }
  });

  it('decomposes symmetric matrices', () => {
    const m = [4, 1, 0, 1, 3, 1, 0, 1, 2];
    const { values } = symmetricEigen(m, 3);
    const sorted = [...values].sort((x, y) => x - y);
    // numpy.linalg.eigvalsh([[4,1,0],[1,3,1],[0,1,2]]) = [1.26794919, 3.0, 4.73205081] (3 ± √3, 3)
    [3 - Math.sqrt(3), 3, 3 + Math.sqrt(3)].forEach((v, i) => assert.ok(Math.abs(sorted[i]! - v) < 1e-12));
  });

  it('computes nuclear norms (one-sided Jacobi)', () => {
    // [[3,0],[4,5]]: MᵀM = [[25,20],[20,25]], σ = √45, √5 → ‖M‖_* = 4√5 (by hand); 1e-12
    assert.ok(Math.abs(nuclearNorm([3, 0, 4, 5], 2, 2) - 4 * Math.sqrt(5)) < 1e-12);
    // rank-1 3×2 outer product u vᵀ: ‖M‖_* = ‖u‖·‖v‖ = √14·√5, either orientation; 1e-12
    const m = [1, 2, 2, 4, 3, 6]; // u = (1,2,3), v = (1,2)
    assert.ok(Math.abs(nuclearNorm(m, 3, 2) - Math.sqrt(14) * Math.sqrt(5)) < 1e-12);
    assert.ok(Math.abs(nuclearNorm([1, 2, 3, 2, 4, 6], 2, 3) - Math.sqrt(14) * Math.sqrt(5)) < 1e-12);
  });
});

describe('FID InceptionV3 (pytorch-fid) structure', () => {
  it('has the state_dict names and shapes of fid_inception_v3()', () => {
    const params = fidInceptionParams();
    assert.equal(fidInceptionConvs().length, 94); // 5 stem + 3×7 (A) + 4 (B) + 4×10 (C) + 6 (D) + 2×9 (E)
    assert.equal(params.length, 94 * 5);
    assert.deepEqual(params[0], ['Conv2d_1a_3x3.conv.weight', [32, 3, 3, 3]]);
    assert.deepEqual(params[4], ['Conv2d_1a_3x3.bn.running_var', [32]]);
    const shape = new Map(params);
    assert.deepEqual(shape.get('Mixed_5b.branch_pool.conv.weight'), [32, 192, 1, 1]);
    assert.deepEqual(shape.get('Mixed_6a.branch3x3.conv.weight'), [384, 288, 3, 3]);
    assert.deepEqual(shape.get('Mixed_6b.branch7x7_2.conv.weight'), [128, 128, 1, 7]);
    assert.deepEqual(shape.get('Mixed_6e.branch7x7dbl_2.conv.weight'), [192, 192, 7, 1]);
    assert.deepEqual(shape.get('Mixed_7a.branch7x7x3_4.conv.weight'), [192, 192, 3, 3]);
    assert.deepEqual(shape.get('Mixed_7b.branch3x3dbl_1.conv.weight'), [448, 1280, 1, 1]);
    assert.deepEqual(shape.get('Mixed_7c.branch_pool.conv.weight'), [192, 2048, 1, 1]);
    assert.deepEqual(params.at(-1), ['Mixed_7c.branch_pool.bn.running_var', [192]]);
    // Reference count: torchvision documents inception_v3 (aux_logits=True, 1000 classes) as 27,161,264 parameters.
    // Remove AuxLogits (conv0 768·128 + bn 2·128, conv1 128·768·25 + bn 2·768, fc 768·1000 + 1000 = 3,326,696) and
    // widen fc to 1008 classes (+8·2049): 23,850,960 learnable parameters in fid_inception_v3(); its BN buffers
    // (running_mean + running_var) add 34,432, total 23,885,392 floats in the state_dict (+ 94 num_batches_tracked).
    let learnable = 0;
    let buffers = 0;
    for (const [name, s] of [...params, ...FID_INCEPTION_FC]) {
      const n = s.reduce((a, b) => a * b, 1);
      if (name.includes('.running_')) buffers += n;
      else learnable += n;
    }
    assert.equal(learnable, 27_161_264 - 3_326_696 + 8 * 2049);
    assert.equal(learnable, 23_850_960);
    assert.equal(buffers, 34_432);
  });
});

const REF = JSON.parse(readFileSync(path.join(ROOT, 'tests', 'reference', 'fid_reference.json'), 'utf8')) as {
  astronaut_sum_u8: number;
} & Record<'down_512' | 'up_96' | 'rect_120x200', { in_shape: number[]; sum: number; sum_sq: number; probes: [number, number, number, number][] }>;

async function pngRgb(file: string): Promise<{ width: number; height: number; data: Uint8Array }> {
  const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data) };
}

/** uint8 HWC crop → [1, h, w, 3] float in [0,1] (ToTensor). */
function crop01(img: { width: number; data: Uint8Array }, y0: number, x0: number, h: number, w: number): tf.Tensor4D {
  const out = new Float32Array(h * w * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w * 3; x++) out[y * w * 3 + x] = img.data[((y0 + y) * img.width + x0) * 3 + x]! / 255;
  return tf.tensor4d(out, [1, h, w, 3]);
}

describe('FID InceptionV3 layers', () => {
  before(async () => {
    await initBackend('wasm');
  });

  it('resizes exactly like F.interpolate(299, bilinear, align_corners=False) (numpy reference, 1e-5 abs)', async () => {
    const astro = await pngRgb(path.join(MEDIA, 'astronaut.png'));
    let s = 0;
    for (const v of astro.data) s += v;
    assert.equal(s, REF.astronaut_sum_u8); // same decoded pixels as the reference's own PNG decoder
    const cases: [keyof typeof REF, number, number, number, number][] = [
      ['down_512', 0, 0, 512, 512],
      ['up_96', 100, 200, 96, 96],
      ['rect_120x200', 50, 150, 120, 200],
    ];
    for (const [key, y0, x0, h, w] of cases) {
      const ref = REF[key] as (typeof REF)['down_512'];
      assert.deepEqual(ref.in_shape, [h, w, 3]);
      const x = crop01(astro, y0, x0, h, w);
      // fidPreprocess gives 2·resize − 1; undo the affine map to compare with the [0,1] reference
      const pre = fidPreprocess(x);
      const r = tf.tidy(() => tf.div(tf.add(pre, 1), 2));
      const v = await r.data();
      assert.deepEqual(r.shape, [1, 299, 299, 3]);
      let sum = 0;
      let sq = 0;
      for (const u of v) {
        sum += u;
        sq += u * u;
      }
      // sums over 268,203 float32 values: 1e-6 relative
      assert.ok(Math.abs(sum - ref.sum) < 1e-6 * ref.sum, `${key} sum ${sum} vs ${ref.sum}`);
      assert.ok(Math.abs(sq - ref.sum_sq) < 1e-6 * ref.sum_sq, `${key} sum_sq ${sq} vs ${ref.sum_sq}`);
      for (const [py, px, pc, want] of ref.probes) {
        const got = v[(py * 299 + px) * 3 + pc]!;
        assert.ok(Math.abs(got - want) < 1e-5, `${key} [${py},${px},${pc}] ${got} vs ${want}`);
      }
      tf.dispose([x, pre, r]);
    }
  });

  it('avg_pool2d(3,1,1, count_include_pad=False) and max_pool2d(3,1,1) match hand-written loops (1e-6)', async () => {
    const [H, W, C] = [4, 5, 2];
    const vals = Float32Array.from({ length: H * W * C }, (_, k) => Math.sin(1.3 * k) * 3 + (k % 7));
    const x = tf.tensor4d(vals, [1, H, W, C]);
    const avg = await avgPool3ExcludePad(x).data();
    const max = await maxPool3Same(x).data();
    let cornerIncl = 0;
    for (let y = 0; y < H; y++) {
      for (let xx = 0; xx < W; xx++) {
        for (let c = 0; c < C; c++) {
          let s = 0;
          let n = 0;
          let m = -Infinity;
          for (let dy = -1; dy <= 1; dy++) {
            for (let dx = -1; dx <= 1; dx++) {
              const yy = y + dy;
              const xs = xx + dx;
              if (yy < 0 || yy >= H || xs < 0 || xs >= W) continue; // padded cells: not counted, never the max
              const u = vals[(yy * W + xs) * C + c]!;
              s += u;
              n++;
              m = Math.max(m, u);
            }
          }
          const i = (y * W + xx) * C + c;
          assert.ok(Math.abs(avg[i]! - s / n) < 1e-6, `avg [${y},${xx},${c}] ${avg[i]} vs ${s / n}`);
          assert.ok(Math.abs(max[i]! - m) < 1e-6, `max [${y},${xx},${c}]`);
          if (y === 0 && xx === 0 && c === 0) cornerIncl = s / 9;
        }
      }
    }
    assert.ok(Math.abs(avg[0]! - cornerIncl) > 1e-3); // count_include_pad=True would give this different value
    x.dispose();
  });

  it('folds BatchNorm(eps 0.001) into the conv exactly (vs conv → BN → ReLU, 1e-5 relative)', async () => {
    const spec = fidInceptionConvs().find((c) => c.name === 'Mixed_6b.branch7x7_2')!; // 1×7, 'same' padding
    const w = new Map(
      (['conv.weight', 'bn.weight', 'bn.bias', 'bn.running_mean', 'bn.running_var'] as const).map((s) => {
        const name = `${spec.name}.${s}`;
        const shape = s === 'conv.weight' ? [spec.cout, spec.cin, spec.kh, spec.kw] : [spec.cout];
        return [name, { shape, data: det(name, shape) }];
      }),
    );
    const { filter, bias } = foldBasicConv(spec, w);
    const x = tf.tensor4d(detInput([1, 9, 11, spec.cin], 0.5), [1, 9, 11, spec.cin]);
    const folded = tf.fused.conv2d({
      x,
      filter: tf.transpose(tf.tensor4d(filter, [spec.cout, spec.cin, spec.kh, spec.kw]), [2, 3, 1, 0]) as tf.Tensor4D, // PyTorch layout → tf
      strides: 1,
      pad: 'same',
      bias: tf.tensor1d(bias),
      activation: 'relu',
    });
    const ref = tf.tidy(() => {
      const wt = tf.transpose(tf.tensor4d(w.get(`${spec.name}.conv.weight`)!.data, [spec.cout, spec.cin, spec.kh, spec.kw]), [2, 3, 1, 0]) as tf.Tensor4D;
      const padded = tf.pad(x, [
        [0, 0],
        [0, 0],
        [3, 3],
        [0, 0],
      ]); // PyTorch padding=(0, 3)
      const y = tf.conv2d(padded, wt, 1, 'valid');
      const g = (s: string) => tf.tensor1d(w.get(`${spec.name}.bn.${s}`)!.data);
      return tf.relu(tf.add(tf.mul(tf.div(tf.sub(y, g('running_mean')), tf.sqrt(tf.add(g('running_var'), 0.001))), g('weight')), g('bias')));
    });
    assert.deepEqual(folded.shape, ref.shape);
    const a = await folded.data();
    const b = await ref.data();
    let maxAbs = 0;
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(b[i]!));
      maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
    }
    assert.ok(maxAbs > 0.01);
    assert.ok(maxDiff < 1e-5 * maxAbs, `max diff ${maxDiff} (max |ref| ${maxAbs})`);
  });
});

describe('FID end to end (deterministic weights; parity with pytorch-fid UNVERIFIED)', () => {
  let net: FidInception;
  const he = heWeights();
  before(async () => {
    await initBackend('wasm');
    net = FidInception.fromTensors(he);
  });

  async function faceCrops(quality?: number): Promise<RgbFrames> {
    // 4 real 224² face crops (fixtures/syncnet_frames, from the AOC clip), optionally JPEG round-tripped
    const parts: Uint8Array[] = [];
    for (const i of ['00', '06', '12', '18']) {
      let img = sharp(path.join(FIXTURES, 'syncnet_frames', `${i}.png`)).removeAlpha();
      if (quality !== undefined) img = sharp(await img.jpeg({ quality }).toBuffer());
      parts.push(new Uint8Array(await img.raw().toBuffer()));
    }
    const data = new Uint8Array(parts.length * 224 * 224 * 3);
    parts.forEach((p, k) => data.set(p, k * p.length));
    return { width: 224, height: 224, count: parts.length, data };
  }

  it('gives finite 2048-d features; FID(X,X) ≈ 0 and FID grows with JPEG degradation', async () => {
    const gt = await faceCrops();
    const fx = await inceptionFeatures(gt, { net, batchSize: 4 });
    assert.equal(fx.length, 4 * 2048);
    assert.ok(fx.every((v) => Number.isFinite(v) && v >= 0)); // pool3 of ReLU outputs
    // features differ between frames (the network is input-sensitive with these weights)
    let diff = 0;
    for (let j = 0; j < 2048; j++) diff += Math.abs(fx[j]! - fx[3 * 2048 + j]!);
    assert.ok(diff > 1e-3 * 2048 * 1e-2, `frames 0 and 3 give near-identical features (${diff})`);
    const self = fidFromFeatures(fx, 4, fx, 4, 2048);
    const tr = featureStats(fx, 4, 2048).sigma.reduce((s, v, i) => (i % 2049 === 0 ? s + v : s), 0);
    assert.ok(Math.abs(self) < 1e-12 * tr, `FID(X,X) = ${self} (tr Σ ${tr})`); // float64 round-off only
    const q75 = fidFromFeatures(fx, 4, await inceptionFeatures(await faceCrops(75), { net, batchSize: 4 }), 4, 2048);
    const q10 = fidFromFeatures(fx, 4, await inceptionFeatures(await faceCrops(10), { net, batchSize: 4 }), 4, 2048);
    assert.ok(q75 > 0 && q10 > q75, `FID vs JPEG q75 ${q75}, q10 ${q10}`);
  });

  it('imports a pytorch-fid-layout .pth (weights import → cache) and loads .pth / cache with the same features', async () => {
    // A checkpoint fabricated with the test torch writer: the 470 conv/BN tensors + fc, named as in pytorch-fid's file.
    const dir = tmpDir();
    const pth = path.join(dir, 'pt_inception-2015-12-05-6726825d.pth');
    const sd = new Map<string, { shape: readonly number[]; data: Float32Array }>(he);
    for (const [name, shape] of FID_INCEPTION_FC) sd.set(name, { shape, data: new Float32Array(shape.reduce((x, y) => x * y, 1)) });
    writeLegacyTorch(pth, sd);
    const cache = path.join(dir, 'cache');
    const entry = await importWeights('fid-inception', { model: pth }, { cacheDir: cache });
    assert.equal(entry.tensors, 470); // fc checked but not stored
    assert.equal(entry.parameters, 23_885_392 - 2_065_392); // all conv/BN floats, without fc (1008·2048 + 1008)
    const frames = await faceCrops();
    const one: RgbFrames = { ...frames, count: 1, data: frames.data.subarray(0, 224 * 224 * 3) };
    const want = await inceptionFeatures(one, { net });
    assert.deepEqual(await inceptionFeatures(one, { cacheDir: cache }), want);
    assert.deepEqual(await inceptionFeatures(one, { weights: pth }), want);
  });

  it('runs with det() weights: finite 2048-d features (det is rank-2 per layer, so not input-sensitive)', async () => {
    const d = FidInception.fromTensors(new Map(fidInceptionParams().map(([n, s]) => [n, { shape: s, data: det(n, s) }])));
    const x = tf.tensor4d(detInput([1, 64, 64, 3], 0.7, 0.5, 0.5), [1, 64, 64, 3]);
    const f = d.features(x);
    assert.deepEqual(f.shape, [1, 2048]);
    assert.ok((await f.data()).every(Number.isFinite));
    tf.dispose([x, f]);
    d.dispose();
  });

  it('without weights: weights-missing naming the file; wrong file: bad-weights', async () => {
    const frames = await faceCrops();
    await assert.rejects(inceptionFeatures(frames, { cacheDir: tmpDir() }), (e: unknown) => {
      assert.ok(e instanceof DifftalkError && e.code === 'weights-missing', String(e));
      assert.match(e.message, /pt_inception-2015-12-05-6726825d\.pth/);
      assert.match(e.suggestion ?? '', /difftalk weights import --kind fid-inception --model/);
      return true;
    });
    // the registered converter reads a real PyTorch file and rejects one that is not the FID Inception
    await assert.rejects(importWeights('fid-inception', { model: path.join(FIXTURES, 'torch_zip.pt') }, { cacheDir: tmpDir() }), (e: unknown) => {
      assert.ok(e instanceof DifftalkError && e.code === 'bad-weights', String(e));
      assert.match(e.message, /Conv2d_1a_3x3\.conv\.weight is missing/);
      return true;
    });
    await assert.rejects(loadFidInception({ weights: path.join(FIXTURES, 'torch_zip.pt') }), /bad-weights|is missing/);
  });
});

describe('difftalk eval --metrics fid (runEval wiring; deterministic He weights imported like a user file)', () => {
  it("FID of a recompressed copy equals pytorch-fid's formula (numpy/scipy) on the same frames' pool3 features; GT vs GT = 0", async () => {
    const dir = tmpDir();
    const pth = path.join(dir, 'pt_inception-2015-12-05-6726825d.pth');
    const sd = new Map<string, { shape: readonly number[]; data: Float32Array }>(heWeights());
    for (const [name, shape] of FID_INCEPTION_FC) sd.set(name, { shape, data: new Float32Array(shape.reduce((x, y) => x * y, 1)) });
    writeLegacyTorch(pth, sd);
    const cache = path.join(dir, 'cache');
    await importWeights('fid-inception', { model: pth }, { cacheDir: cache });
    // 6 frames of the real clip and a heavily recompressed copy of them.
    const gt = path.join(dir, 'gt', 'clip.mp4');
    const pred = path.join(dir, 'pred', 'clip.mp4');
    await mkdir(path.dirname(gt), { recursive: true });
    await mkdir(path.dirname(pred), { recursive: true });
    await runTool('ffmpeg', ['-v', 'error', '-i', AOC_CLIP, '-frames:v', '6', '-c:v', 'libx264', '-qp', '0', '-an', gt]);
    await runTool('ffmpeg', ['-v', 'error', '-i', gt, '-c:v', 'mpeg4', '-q:v', '31', pred]);
    // Full frames (crop 'none'), so the reference below sees exactly the frames runEval measures.
    const r = await runEval({ pred, gt, out: path.join(dir, 'report'), metrics: ['psnr', 'fid'], crop: 'none', baseline: true, weightsCacheDir: cache });
    const fid = (sys: string) => r.summary[sys]!.find((m) => m.name.startsWith('fid('))!;
    assert.equal(fid('pred').averagedOver, 'dataset');
    assert.equal(fid('pred').count, 6);
    assert.match(fid('pred').name, /^fid\(pytorch-fid-inception-pool3:[0-9a-f]{12}\)$/); // labelled with the weights' sha256
    assert.ok(Math.abs(fid('gt').value) < 1e-9, `FID(GT, GT) = ${fid('gt').value}`);
    // Reference: the frames decoded by ffmpeg (rgb24), pool3 features of the same network, and the Fréchet distance
    // computed by tests/reference/fid_from_features.py (pytorch-fid's formula in numpy, float64, with tr(covmean) as the
    // exact nuclear norm of the 6 × 6 cross matrix; scipy's sqrtm route, 6e-6 off here, is printed beside it). Tolerance
    // 1e-9 relative (measured: equal to 1e-15; float64 both sides from the same float32 features).
    const npy = async (video: string, name: string): Promise<string> => {
      const data = await ffmpegRgb(video);
      const frames: RgbFrames = { width: 512, height: 512, count: data.length / (512 * 512 * 3), data };
      assert.equal(frames.count, 6);
      const f = await inceptionFeatures(frames, { cacheDir: cache });
      const file = path.join(dir, `${name}.npy`);
      writeFileSync(file, encodeNpyFloat32([frames.count, 2048], f));
      return file;
    };
    const { stdout } = await runProcess('/usr/bin/python3', [
      path.join(ROOT, 'tests/reference/fid_from_features.py'),
      await npy(pred, 'pred'),
      await npy(gt, 'gt'),
    ]);
    const ref = JSON.parse(stdout.toString()) as { fid: number; fid_sqrtm: number };
    const want = ref.fid;
    const got = fid('pred').value;
    console.log(`# FID(recompressed, GT): runEval ${got}, numpy ${want}, scipy sqrtm ${ref.fid_sqrtm}`);
    assert.ok(want > 1e-3, `reference FID ${want}: the recompressed copy is measurably different`);
    assert.ok(Math.abs(got - want) <= 1e-9 * want, `runEval FID ${got} vs numpy/scipy ${want}`);
  });
});
