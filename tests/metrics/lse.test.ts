/**
 * LSE-D / LSE-C parity with joonson/syncnet_python `SyncNetInstance.evaluate` (reference: fixtures/expected.json
 * `syncnet`, PyTorch 2.11 float32 CPU, SyncNetModel.S(1024) with det() weights; fixtures/README.md), with the tfjs
 * SyncNet class (the training network) and with eval's scoring network on onnxruntime (SyncNetRunner: the network
 * description, BatchNorm folded), both within the README's 1e-4 relative.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import {
  calcPdist,
  lseMean,
  LseMetric,
  syncEmbeddings,
  syncMfcc,
  syncScoresFromEmbeddings,
  syncWindowCount,
  type SyncEmbeddings,
} from '../../src/metrics/lse.js';
import { SyncNet, SyncNetRunner, syncnetParamShapes } from '../../src/models/syncnet.js';
import { readWav } from '../../src/audio/wav.js';
import { initBackend } from '../../src/util/tf.js';
import { det } from '../../src/weights/det.js';
import { FIXTURES } from '../helpers.js';

interface Summary {
  shape: number[];
  sum: number;
  abs_sum: number;
  first8: number[];
  last8: number[];
}
const exp = JSON.parse(readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8')).syncnet as {
  mfcc_shape: [number, number];
  mfcc_sum: number;
  mfcc_row10: number[];
  num_windows: number;
  lip_emb_all: Summary;
  aud_emb_all: Summary;
  mdist: number[];
  lse_d: number;
  lse_c: number;
  av_offset: number;
};

/** |a − b| ≤ rel·max(1, |b|): the README's 1e-4 relative tolerance for SyncNet (sums over many float32 terms). */
function close(a: number, b: number, rel: number, what: string): void {
  assert.ok(Math.abs(a - b) <= rel * Math.max(1, Math.abs(b)), `${what}: ${a} vs reference ${b} (rel tol ${rel})`);
}

function checkSummary(x: Float32Array, s: Summary, what: string): void {
  let sum = 0;
  let abs = 0;
  for (const v of x) {
    sum += v;
    abs += Math.abs(v);
  }
  close(abs, s.abs_sum, 1e-4, `${what} abs_sum`);
  // The signed sum cancels to ~6 out of ~12000; compare it at the abs_sum scale.
  assert.ok(Math.abs(sum - s.sum) <= 1e-4 * s.abs_sum, `${what} sum ${sum} vs ${s.sum}`);
  s.first8.forEach((v, i) => close(x[i]!, v, 1e-4, `${what}[${i}]`));
  s.last8.forEach((v, i) => close(x[x.length - 8 + i]!, v, 1e-4, `${what}[-${8 - i}]`));
}

describe('LSE on the syncnet fixture (det weights)', () => {
  let emb: SyncEmbeddings;
  let embOnnx: SyncEmbeddings;
  let samples: Float32Array;

  before(async () => {
    await initBackend('wasm');
    const weights = new Map(syncnetParamShapes().map(([n, s]) => [n, { shape: s, data: det(n, s) }]));
    const net = SyncNet.fromTensors(weights);
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 24; i++) {
      const file = path.join(FIXTURES, 'syncnet_frames', `${String(i).padStart(2, '0')}.png`);
      const { data } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      frames.push(new Uint8Array(data)); // PNG RGB; packLipWindows reverses to the BGR array SyncNet takes
    }
    const wav = await readWav(path.join(FIXTURES, 'syncnet_audio.wav'));
    samples = wav.samples;
    emb = await syncEmbeddings(net, { frames, samples: wav.samples, sampleRate: wav.sampleRate }, { batch: 10 });
    net.dispose();
    const onnx = await SyncNetRunner.create(weights, undefined, 'onnx');
    embOnnx = await syncEmbeddings(onnx, { frames, samples: wav.samples, sampleRate: wav.sampleRate }); // its own batch (32)
    onnx.dispose();
  });

  it('uses the reference window rule and MFCC', () => {
    // expected.json: mfcc_shape, mfcc_sum, mfcc_row10 from python_speech_features 0.6.1 (float64; 1e-9 relative)
    const m = syncMfcc(samples, 16000);
    assert.deepEqual([m.frames, 13], exp.mfcc_shape);
    let s = 0;
    for (const v of m.data) s += v;
    close(s, exp.mfcc_sum, 1e-9, 'mfcc sum');
    exp.mfcc_row10.forEach((v, c) => close(m.data[10 * 13 + c]!, v, 1e-9, `mfcc[10][${c}]`));
    assert.equal(syncWindowCount(24, samples.length), exp.num_windows);
    assert.equal(emb.windows, exp.num_windows);
  });

  it('matches the reference embeddings (1e-4 relative)', () => {
    checkSummary(emb.lip, exp.lip_emb_all, 'lip_emb_all');
    checkSummary(emb.aud, exp.aud_emb_all, 'aud_emb_all');
  });

  it('matches mdist, LSE-D, LSE-C and offset (1e-4 relative)', () => {
    const s = syncScoresFromEmbeddings(emb);
    assert.equal(s.mdist.length, 31);
    s.mdist.forEach((v, k) => close(v, exp.mdist[k]!, 1e-4, `mdist[${k}]`));
    close(s.lseD, exp.lse_d, 1e-4, 'lse_d');
    close(s.lseC, exp.lse_c, 1e-4, 'lse_c');
    assert.equal(s.offset, exp.av_offset);
  });

  it("on onnxruntime (eval's scoring network): the reference embeddings, mdist, LSE-D, LSE-C and offset (1e-4 relative)", () => {
    assert.equal(embOnnx.windows, exp.num_windows);
    checkSummary(embOnnx.lip, exp.lip_emb_all, 'onnx lip_emb_all');
    checkSummary(embOnnx.aud, exp.aud_emb_all, 'onnx aud_emb_all');
    const s = syncScoresFromEmbeddings(embOnnx);
    s.mdist.forEach((v, k) => close(v, exp.mdist[k]!, 1e-4, `onnx mdist[${k}]`));
    close(s.lseD, exp.lse_d, 1e-4, 'onnx lse_d');
    close(s.lseC, exp.lse_c, 1e-4, 'onnx lse_c');
    assert.equal(s.offset, exp.av_offset);
  });

  it('pads with zero vectors and adds 1e-6 inside the norm', () => {
    // Hand-computed: v = [3, 4]; a = [0, 0] in range → ‖(3+1e-6, 4+1e-6)‖; out of range → same (zero vector).
    const d = calcPdist([3, 4], [0, 0], 1, 2, 1);
    const want = Math.sqrt((3 + 1e-6) ** 2 + (4 + 1e-6) ** 2);
    assert.equal(d.length, 3);
    for (const v of d) close(v, want, 1e-15, 'pdist');
    assert.ok(Math.abs(want - 5) > 1e-6, 'the eps is visible in the distance');
  });

  it('aggregates as the mean over videos, and merges', () => {
    const s = syncScoresFromEmbeddings(emb);
    const a = new LseMetric();
    const b = new LseMetric();
    a.update('x', s);
    b.update('y', { ...s, lseD: s.lseD + 2, lseC: s.lseC - 2 });
    a.merge(b);
    const m = a.compute();
    close(m.lseD, s.lseD + 1, 1e-12, 'mean lse-d');
    close(m.lseC, s.lseC - 1, 1e-12, 'mean lse-c');
    assert.deepEqual(lseMean([s, { ...s, lseD: s.lseD + 2, lseC: s.lseC - 2 }]), m);
  });
});
