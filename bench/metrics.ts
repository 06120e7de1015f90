/**
 * Throughput of the frame metrics at 256×256 RGB, in frames per second (a frame = one prediction/target pair).
 * LPIPS runs on the tfjs backend `initBackend(backend)` picks (auto: tensorflow → webgpu → wasm → cpu) with
 * det() weights: same shapes and FLOPs as the real networks, so the timing is representative; values are not.
 */
import { Lpips } from '../src/metrics/lpips.js';
import { psnr } from '../src/metrics/psnr.js';
import { ssim } from '../src/metrics/ssim.js';
import { featureParams, FEATURE_NETS, type NamedWeight } from '../src/models/torchvision-features.js';
import type { RgbFrames } from '../src/media/types.js';
import { initBackend, type BackendName } from '../src/util/tf.js';
import { det } from '../src/weights/det.js';
import { inceptionFeatures } from '../src/metrics/fid.js';
import { ibug68FromResults, lmd } from '../src/metrics/lmd.js';
import { syncScores } from '../src/metrics/lse.js';
import { FidInception, fidInceptionParams } from '../src/models/inception.js';
import { SyncNet, syncnetParamShapes } from '../src/models/syncnet.js';
import { decodeFrames } from '../src/media/frames.js';
import { createLandmarkEngine } from '../src/face/landmarks/index.js';
import path from 'node:path';

const AOC = path.join(
  process.env.DIFFTALK_SHARED ?? path.resolve(import.meta.dirname, '..', '..', 'shared'),
  'data',
  'media',
  'WDA_AlexandriaOcasioCortez_000.mp4',
);

const SIZE = 256;

function synthetic(count: number, seed: number): RgbFrames {
  const n = SIZE * SIZE * 3;
  const data = new Uint8Array(count * n);
  for (let k = 0; k < data.length; k++) data[k] = Math.round(127.5 + 127.5 * Math.sin(0.37 * k + seed + 0.001 * (k % 977) * (k % 131)));
  return { width: SIZE, height: SIZE, count, data };
}

async function rate(frames: number, minSeconds: number, fn: () => Promise<unknown> | unknown): Promise<number> {
  await fn(); // warm-up
  let runs = 0;
  const t0 = performance.now();
  do {
    await fn();
    runs++;
  } while ((performance.now() - t0) / 1000 < minSeconds);
  return (runs * frames) / ((performance.now() - t0) / 1000);
}

/**
 * Frames/s per metric (keys `<metric>.fps`): psnr, ssim-gaussian, ssim-skimage, lpips-alex, lpips-vgg, lse (full-size
 * SyncNet v2, both branches, video frames/s = windows/s), lmd (tfjs landmark engine on both videos + the distance),
 * fid (InceptionV3 pool3 features at 299², per frame).
 */
export async function benchMetrics(options: { backend?: BackendName; minSeconds?: number } = {}): Promise<Record<string, number>> {
  const minSeconds = options.minSeconds ?? 2;
  await initBackend(options.backend ?? 'auto');
  const a = synthetic(8, 0);
  const b = synthetic(8, 1);
  const out: Record<string, number> = {};
  out['psnr.fps'] = await rate(8, minSeconds, () => psnr(a, b));
  out['ssim-gaussian.fps'] = await rate(8, minSeconds, () => ssim(a, b, 'gaussian'));
  out['ssim-skimage.fps'] = await rate(8, minSeconds, () => ssim(a, b, 'skimage'));
  for (const net of ['alex', 'vgg'] as const) {
    const w = new Map<string, NamedWeight>();
    for (const [name, shape] of featureParams(net)) w.set(name, { shape, data: det(name, shape) });
    FEATURE_NETS[net].channels.forEach((c, k) => {
      const name = `lin${k}.model.1.weight`;
      w.set(name, { shape: [1, c, 1, 1], data: det(name, [1, c, 1, 1]).map(Math.abs) });
    });
    const model = new Lpips(net, w);
    try {
      const n = 2;
      const pa = { ...a, count: n, data: a.data.subarray(0, n * SIZE * SIZE * 3) };
      const pb = { ...b, count: n, data: b.data.subarray(0, n * SIZE * SIZE * 3) };
      out[`lpips-${net}.fps`] = await rate(n, minSeconds, () => model.distances(pa, pb, n));
    } finally {
      model.dispose();
    }
  }
  // LSE: the real architecture (det() weights: same FLOPs), 24 face crops + 1 s of audio → 19 windows.
  {
    const net = SyncNet.fromTensors(new Map(syncnetParamShapes().map(([name, shape]) => [name, { shape, data: det(name, shape) }])));
    try {
      const crops = Array.from({ length: 24 }, (_, i) => synthetic(1, i).data.subarray(0, 224 * 224 * 3));
      const samples = Float32Array.from({ length: 16000 }, (_, k) => 3000 * Math.sin(k / 7) * Math.sin(k / 1700));
      const windows = 19;
      out['lse.fps'] = await rate(windows, minSeconds, () => syncScores(net, { frames: crops, samples, sampleRate: 16000 }));
    } finally {
      net.dispose();
    }
  }
  // LMD: landmarks of prediction and GT frames (tfjs engine, 478 → 68) plus the distance, on the real clip's frames.
  {
    const clip = await decodeFrames(AOC, { width: SIZE, height: SIZE, count: 16 });
    const { engine } = await createLandmarkEngine({ engine: 'tfjs' });
    try {
      out['lmd.fps'] = await rate(clip.count, minSeconds, async () => {
        await engine.reset();
        const p = ibug68FromResults(await engine.detect(clip));
        await engine.reset();
        const g = ibug68FromResults(await engine.detect(clip));
        return lmd(p, g);
      });
    } finally {
      await engine.close();
    }
  }
  // FID features (the distance itself is negligible next to them).
  {
    const net = FidInception.fromTensors(new Map(fidInceptionParams().map(([name, shape]) => [name, { shape, data: det(name, shape) }])));
    try {
      const crops = synthetic(4, 3);
      const c224 = { width: SIZE, height: SIZE, count: 4, data: crops.data };
      out['fid.fps'] = await rate(4, minSeconds, () => inceptionFeatures(c224, { net, batchSize: 4 }));
    } finally {
      net.dispose();
    }
  }
  return out;
}
