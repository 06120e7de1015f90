/**
 * difftalk render end to end on real media: the AOC HDTF clip (512², 25 fps, 8 s) driven by jfk.wav (11.0 s).
 *
 * The checkpoint is a TINY, randomly initialised (untrained) model written with the trainer's own checkpoint writer
 * (saveCheckpoint, the same state.json/model.safetensors/latest.json layout `difftalk train ldm` writes), with a random
 * tiny autoencoder as its first stage. Training one in the test (prep + autoencoder + LDM) would cost many CPU minutes;
 * this test checks the video pipeline (prep stages, loop, conditions, DDIM inpainting, paste-back, encode, mux), not
 * quality. CI uses --steps 2 for the same reason (the reference samples with 200).
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { AOC_CLIP, ffmpegRgb, MEDIA, MODELS, runCli, tmpDir } from '../helpers.js';
import { extractorFromMetadata, renderVideo, DEFAULT_RENDER, type RenderedFace, type RenderResult } from '../../src/render/render.js';
import { createAudioFeature, parseAudioFeatureSpec } from '../../src/audio/registry.js';
import { jawAlpha, sourceFrameIndex } from '../../src/render/paste.js';
import { saveCheckpoint } from '../../src/models/checkpoint.js';
import { Params } from '../../src/models/blocks.js';
import { DifftalkModel, PREFIX } from '../../src/models/difftalk.js';
import { vqParamSpecs } from '../../src/models/vq-f4.js';
import { resolveConfig } from '../../src/models/presets.js';
import { decodeFrames } from '../../src/media/frames.js';
import { runTool } from '../../src/util/exec.js';
import { sha256File } from '../../src/util/fs.js';
import { initBackend } from '../../src/util/tf.js';
import { DifftalkError } from '../../src/util/errors.js';

const JFK = path.join(MEDIA, 'jfk.wav');
const FACE_MODEL = path.join(MODELS, 'fm478md.task');

/** A tiny random LDM run (mel audio, 80 × 16 windows) and its tiny random autoencoder, as the trainer lays them out. */
async function tinyCheckpoint(dir: string): Promise<string> {
  const config = resolveConfig('tiny', { winSize: 16, featureDim: 80 });
  const aeRun = path.join(dir, 'ae');
  const vq = new Params(vqParamSpecs(config.vq), 'init', 5, { trainable: false });
  const aeCkpt = await saveCheckpoint(aeRun, { kind: 'autoencoder', version: 1, step: 1, seed: 5, config }, vq.toTorch(), undefined);
  vq.dispose();
  const ldmRun = path.join(dir, 'ldm');
  const model = new DifftalkModel(config, 'init', 7);
  const tensors = model.toTensors();
  for (const [n, t] of model.unet.toTorch(PREFIX.ema)) tensors.set(n, t);
  model.dispose();
  await saveCheckpoint(
    ldmRun,
    {
      kind: 'ldm',
      version: 1,
      step: 1,
      seed: 7,
      config,
      options: { audioFeature: 'mel', note: 'untrained, written by tests/render/render.test.ts' },
      firstStage: { source: aeCkpt, id: await sha256File(path.join(aeCkpt, 'model.safetensors')) },
      dataset: path.join(dir, 'no-dataset'),
      history: [],
      valHistory: [],
    },
    tensors,
    undefined,
  );
  return ldmRun;
}

async function ffprobe(file: string): Promise<{
  streams: { codec_type: string; width?: number; height?: number; r_frame_rate?: string; avg_frame_rate?: string; nb_frames?: string }[];
  format: { duration: string };
}> {
  const r = await runTool('ffprobe', [
    '-v',
    'error',
    '-show_entries',
    'stream=codec_type,width,height,r_frame_rate,avg_frame_rate,nb_frames:format=duration',
    '-of',
    'json',
    file,
  ]);
  return JSON.parse(r.stdout.toString('utf8'));
}

const meanAbs = (a: Uint8Array, b: Uint8Array, sel: (x: number, y: number) => boolean, W: number, H: number): number => {
  let s = 0;
  let n = 0;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      if (!sel(x, y)) continue;
      const o = (y * W + x) * 3;
      for (let c = 0; c < 3; c++) s += Math.abs(a[o + c]! - b[o + c]!);
      n += 3;
    }
  }
  return s / n;
};

describe('render paste helpers', () => {
  it('ping-pong and wrap loops map output frames to source frames', () => {
    assert.deepEqual(
      Array.from({ length: 10 }, (_, k) => sourceFrameIndex(k, 4)),
      [0, 1, 2, 3, 2, 1, 0, 1, 2, 3],
    );
    assert.deepEqual(
      Array.from({ length: 6 }, (_, k) => sourceFrameIndex(k, 4, 'wrap')),
      [0, 1, 2, 3, 0, 1],
    );
    assert.equal(sourceFrameIndex(5, 1), 0);
  });

  it('the feathered jaw alpha is 1 deep inside, 0 beyond the feather width outside', () => {
    // A synthetic face: jaw points 2..14 on a half circle of radius 40 around (50, 50), pt 33 at (50, 45).
    const lm = new Float32Array(136).fill(0);
    for (let k = 2; k <= 14; k++) {
      const a = Math.PI * ((k - 2) / 12);
      lm[2 * k] = 50 - 40 * Math.cos(a);
      lm[2 * k + 1] = 50 + 40 * Math.sin(a);
    }
    lm[66] = 50;
    lm[67] = 45;
    const alpha = jawAlpha(lm, 100, 100, 8);
    assert.equal(alpha[70 * 100 + 50], 1); // centre of the jaw region
    assert.equal(alpha[20 * 100 + 50], 0); // 25 px above pt 33 (> feather 8)
    assert.equal(alpha[50 * 100 + 0], 0); // 10 px left of the jaw line... (x 0 vs 10)
    const edge = alpha[50 * 100 + 10]!; // on the polygon edge: half blended (tolerance 0.25)
    assert.ok(edge > 0.25 && edge < 0.75, `edge alpha ${edge}`);
  });
});

describe('render audio feature from dataset metadata', () => {
  it('re-creates mel, mfcc and mel:nMels=29 from the params a dataset records', async () => {
    for (const spec of ['mel', 'mfcc', 'mel:nMels=29,fmax=7600', 'mfcc:numcep=20']) {
      const made = await createAudioFeature(parseAudioFeatureSpec(spec));
      const again = await extractorFromMetadata({ name: made.name, params: made.params });
      assert.deepEqual(again.params, made.params, spec);
    }
  });

  it('refuses recorded params it cannot reproduce', async () => {
    const made = await createAudioFeature('mel');
    await assert.rejects(
      extractorFromMetadata({ name: 'mel', params: { ...made.params, scale: 'htk' } }),
      (e: unknown) => e instanceof DifftalkError && e.code === 'audio-feature-mismatch',
    );
  });
});

describe('difftalk render (tiny random checkpoint, --steps 2)', { timeout: 15 * 60_000 }, () => {
  const dir = tmpDir('difftalk-render-');
  let ckpt = '';
  let result: RenderResult;
  const out = path.join(dir, 'out', 'aoc-jfk.mp4');
  const base = { ...DEFAULT_RENDER, steps: 2, landmarker: 'mediapipe' as const, faceModel: FACE_MODEL, audioFeature: 'mel' };

  before(async () => {
    await initBackend('wasm');
    ckpt = await tinyCheckpoint(dir);
  });

  it('renders an 11 s, 25 fps, 512² mp4 with audio; only the jaw region changes', async (t) => {
    const events: string[] = [];
    result = await renderVideo({
      ...base,
      checkpoint: ckpt,
      video: AOC_CLIP,
      audio: JFK,
      out,
      onEvent: (e) => e.type === 'progress' && e.stage === 'render' && events.push(e.detail ?? ''),
    });
    assert.equal(result.frames, 275); // ceil(11.0 s × 25)
    assert.equal(result.sourceFrames, 200);
    assert.equal(result.framesWithoutFace, 0);
    assert.ok(events.length >= 275 && /frames\/s$/.test(events.at(-1)!), 'per-frame progress with frames/s');
    assert.ok(result.framesPerSecond > 0);
    assert.match(result.checkpointId, /^[0-9a-f]{64}$/);

    // Independent reader: ffprobe.
    const p = await ffprobe(out);
    const v = p.streams.find((s) => s.codec_type === 'video')!;
    assert.ok(v, 'video stream');
    assert.ok(
      p.streams.some((s) => s.codec_type === 'audio'),
      'audio stream',
    );
    assert.equal(v.width, 512);
    assert.equal(v.height, 512);
    assert.equal(v.r_frame_rate, '25/1');
    assert.equal(Number(v.nb_frames), 275);
    // Duration ≈ 11.0 s (jfk.wav); tolerance 0.05 s for AAC frame padding.
    assert.ok(Math.abs(Number(p.format.duration) - 11.0) < 0.05, `duration ${p.format.duration}`);

    // Paste-back only touched the face: frames 0..199 map to source frames 0..199 (ping-pong starts forward).
    const W = 512;
    const gen = await decodeFrames(out, { start: 0, count: 50 });
    const srcF = await decodeFrames(AOC_CLIP, { start: 0, count: 50 });
    const c = result.crop;
    const outsideBox = (x: number, y: number) => x < c.x - 2 || x >= c.x + c.w + 2 || y < c.y - 2 || y >= c.y + c.h + 2;
    const topOfBox = (x: number, y: number) => !outsideBox(x, y) && y < c.y + 0.3 * c.h;
    const jawCore = (x: number, y: number) => Math.abs(x - (c.x + c.w / 2)) < 0.12 * c.w && y > c.y + 0.72 * c.h && y < c.y + 0.82 * c.h;
    const F = W * W * 3;
    let dOut = 0;
    let dTop = 0;
    let dJaw = 0;
    for (const k of [0, 25, 49]) {
      const a = gen.data.subarray(k * F, (k + 1) * F);
      const b = srcF.data.subarray(k * F, (k + 1) * F);
      dOut = Math.max(dOut, meanAbs(a, b, outsideBox, W, W));
      dTop = Math.max(dTop, meanAbs(a, b, topOfBox, W, W));
      dJaw = Math.max(dJaw, meanAbs(a, b, jawCore, W, W));
    }
    t.diagnostic(
      `${result.frames} frames, ${result.framesPerSecond.toFixed(2)} frames/s (loop), ${result.totalSeconds.toFixed(1)} s total; crop ${JSON.stringify(c)}, feather ${result.featherPx} px`,
    );
    t.diagnostic(`mean |Δ| vs source: outside box ${dOut.toFixed(3)}, top of box ${dTop.toFixed(3)}, jaw core ${dJaw.toFixed(3)}`);
    // Reference: the source frames; tolerance 3 grey levels mean |Δ| = two lossy H.264 generations (source + crf 18).
    assert.ok(dOut < 3, `outside the crop box mean |Δ| ${dOut}`);
    assert.ok(dTop < 3, `upper 30% of the crop box (eyes, forehead) mean |Δ| ${dTop}`);
    // The untrained model's mouth region differs visibly from the source.
    assert.ok(dJaw > 3 * Math.max(dOut, 1), `jaw region mean |Δ| ${dJaw} vs outside ${dOut}`);
  });

  it('--progressive with a 0.4 s audio: 10 frames, one at a time, reference = previous output', async () => {
    const short = path.join(dir, 'short.wav');
    await runTool('ffmpeg', ['-v', 'error', '-i', JFK, '-t', '0.4', short]);
    const o3 = path.join(dir, 'short.mp4');
    const faces: RenderedFace[] = [];
    const r = await renderVideo({
      ...base,
      checkpoint: ckpt,
      video: AOC_CLIP,
      audio: short,
      out: o3,
      progressive: true,
      loop: 'wrap',
      onFrame: (f) => faces.push(f),
    });
    assert.equal(r.frames, 10);
    const p = await ffprobe(o3);
    assert.equal(Number(p.streams.find((s) => s.codec_type === 'video')!.nb_frames), 10);
    assert.ok(Math.abs(Number(p.format.duration) - 0.4) < 0.05, `duration ${p.format.duration}`);
    // One generated face per output frame, in order.
    assert.deepEqual(
      faces.map((f) => f.index),
      [...Array(10).keys()],
    );
    const S = faces[0]!.size;
    // Frame 0 is sampled with the first frame of the person video. Reference: ffmpeg's own crop (the reported crop
    // box) and bicubic scale of the source's first frame; tolerance 4 grey levels mean |Δ| (the render path goes
    // through the lossless prepared clip and another resize kernel).
    const first = await ffmpegRgb(AOC_CLIP, { frames: 1, vf: `crop=${r.crop.w}:${r.crop.h}:${r.crop.x}:${r.crop.y},scale=${S}:${S}:flags=bicubic` });
    const ref0 = faces[0]!.reference;
    let d0 = 0;
    for (let i = 0; i < first.length; i++) d0 += Math.abs((ref0[i]! + 1) * 127.5 - first[i]!);
    d0 /= first.length;
    assert.ok(d0 < 4, `frame 0's reference vs the source's first frame: mean |Δ| ${d0}`);
    // Every later frame is sampled with exactly the face generated for the frame before it (x/127.5 − 1 of its bytes),
    // which is not the first frame (the untrained model's faces differ from the source).
    for (let k = 1; k < 10; k++) {
      const prev = faces[k - 1]!.face;
      const ref = faces[k]!.reference;
      assert.equal(ref.length, prev.length);
      let same = true;
      for (let i = 0; i < ref.length && same; i++) same = ref[i] === Math.fround(prev[i]! / 127.5 - 1);
      assert.ok(same, `frame ${k}'s reference is frame ${k - 1}'s output`);
      let dFirst = 0;
      for (let i = 0; i < ref.length; i++) dFirst += Math.abs(ref[i]! - ref0[i]!);
      assert.ok(dFirst / ref.length > 1e-3, `frame ${k}'s reference differs from the first frame`);
    }
  });

  it('asks for --audio-feature when the training dataset is gone', async () => {
    await assert.rejects(
      renderVideo({ ...base, audioFeature: undefined, checkpoint: ckpt, video: AOC_CLIP, audio: JFK, out: path.join(dir, 'x.mp4') }),
      (e: unknown) => e instanceof DifftalkError && e.code === 'audio-feature-unknown',
    );
  });

  it('the CLI (bin/run.js over dist/) renders with --json and reports frames/s and the checkpoint id; errors are one JSON error', async () => {
    const cli = (args: string[]) => runCli(['render', ...args, '--json']);
    const short = path.join(dir, 'short-cli.wav');
    await runTool('ffmpeg', ['-v', 'error', '-i', JFK, '-t', '0.2', short]);
    const o4 = path.join(dir, 'cli.mp4');
    const common = ['--video', AOC_CLIP, '--audio', short, '-o', o4, '--steps', '2', '--face-model', FACE_MODEL, '--audio-feature', 'mel', '--backend', 'wasm'];
    const r = await cli(['--checkpoint', ckpt, ...common]);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.equal(res.frames, 5);
    assert.ok(res.framesPerSecond > 0);
    assert.match(res.checkpointId, /^[0-9a-f]{64}$/);
    assert.equal(res.out, o4);
    // --json: per-frame progress events are JSON lines on stderr, with frames/s.
    const events = r.stderr
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l));
    assert.equal(events.filter((e) => e.type === 'progress' && e.stage === 'render' && /frames\/s$/.test(e.detail)).length >= 5, true);
    const bad = await cli(['--checkpoint', path.join(dir, 'missing-run'), ...common, '--force']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stdout + bad.stderr, /checkpoint-missing|not found/);
  });

  it('never overwrites an existing output without force', async () => {
    await assert.rejects(
      renderVideo({ ...base, checkpoint: ckpt, video: AOC_CLIP, audio: JFK, out }),
      (e: unknown) => e instanceof DifftalkError && e.code === 'output-exists',
    );
  });

  it('gives one clear error for a missing checkpoint, unreadable audio, and a video without a face', async () => {
    const o2 = path.join(dir, 'err.mp4');
    await assert.rejects(
      renderVideo({ ...base, checkpoint: path.join(dir, 'nope'), video: AOC_CLIP, audio: JFK, out: o2 }),
      (e: unknown) => e instanceof DifftalkError && e.code === 'checkpoint-missing',
    );
    const badWav = path.join(dir, 'bad.wav');
    await writeFile(badWav, 'this is not audio\n');
    await assert.rejects(
      renderVideo({ ...base, checkpoint: ckpt, video: AOC_CLIP, audio: badWav, out: o2 }),
      (e: unknown) => e instanceof DifftalkError && e.code === 'audio-unreadable',
    );
    const noFace = path.join(dir, 'testsrc.mp4');
    await runTool('ffmpeg', [
      '-v',
      'error',
      '-f',
      'lavfi',
      '-i',
      'testsrc=size=320x240:rate=25:duration=2',
      '-f',
      'lavfi',
      '-i',
      'sine=duration=2',
      '-shortest',
      '-pix_fmt',
      'yuv420p',
      noFace,
    ]);
    await assert.rejects(
      renderVideo({ ...base, checkpoint: ckpt, video: noFace, audio: JFK, out: o2 }),
      (e: unknown) => e instanceof DifftalkError && e.code === 'no-face',
    );
  });
});
