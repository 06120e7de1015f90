/**
 * `prep --audio-feature deepspeech:model=<graph>` on the real HDTF clip: the `audio_deepspeech` column is
 * FixedSizeList<Float32>[3712] = (8, 16, 29) per video frame (DiffTalk's windows i−4 … i+3), zero-padded at the clip
 * ends, with the values of AD-NeRF's pipeline (tests/reference/deepspeech_reference.py, NumPy) on the clip's audio.
 * The network is the small DeepSpeech-0.1.0-structured graph the reference script writes (the real one needs the
 * internet). Then `export difftalk` of that dataset: numpy loads each audio_smooth .npy as float32 (8, 16, 29) = the row.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { tableFromIPC } from 'apache-arrow';
import { runProcess, runTool } from '../../src/util/exec.js';
import { exportDifftalk } from '../../src/export/difftalk.js';
import { DEFAULT_PREP_CONFIG, runPrep } from '../../src/prep/pipeline.js';
import { AOC_CLIP, MODELS, tmpDir } from '../helpers.js';
import { deepspeechFixture, deepspeechReference, readF32 } from '../models/deepspeech-fixture.js';

const FACE_MODEL = path.join(MODELS, 'fm478md.task');
const DIM = 16 * 29;
/**
 * Relative to the largest |value|: float32 network (TS) vs float64 NumPy; prep's own audio (its ffmpeg cut) vs a plain
 * ffmpeg decode of the same clip (measured: 2.9e-6 absolute on values up to 16.5, i.e. the same samples).
 */
const TOL = 1e-4;

describe('prep with the deepspeech audio feature on the real clip', () => {
  const rows: Float32Array[] = [];
  let meta: { name: string; column: string; window: number; dim: number; rate: number; params: Record<string, unknown> }[] = [];
  let fieldType = '';
  let ref: Float32Array;
  let refWindows = 0;
  let dataset = '';
  let work = '';

  before(async () => {
    const dir = tmpDir('difftalk-ds-prep-');
    const fx = await deepspeechFixture(dir);
    const out = path.join(dir, 'data');
    dataset = out;
    work = dir;
    await runPrep(
      { kind: 'input', paths: [AOC_CLIP] },
      { ...DEFAULT_PREP_CONFIG, faceModel: FACE_MODEL, audioFeatures: [`deepspeech:model=${fx.graph}`] },
      { out, concurrency: 1, retries: 0, retryFailed: false, preview: false },
    );
    for (const f of readdirSync(path.join(out, 'shards')).sort()) {
      const t = tableFromIPC(readFileSync(path.join(out, 'shards', f)));
      fieldType = String(t.schema.fields.find((x) => x.name === 'audio_deepspeech')?.type);
      meta = JSON.parse(t.schema.metadata.get('difftalk.audio_features')!) as typeof meta;
      const col = t.getChild('audio_deepspeech')!;
      for (let i = 0; i < t.numRows; i++) rows.push(Float32Array.from(col.get(i) as ArrayLike<number>));
    }
    // Reference: the same clip decoded by ffmpeg to 16 kHz mono s16 and run through the NumPy pipeline.
    const wav = path.join(dir, 'clip16k.wav');
    await runTool('ffmpeg', ['-nostdin', '-v', 'error', '-i', AOC_CLIP, '-vn', '-ac', '1', '-ar', '16000', '-c:a', 'pcm_s16le', wav]);
    await deepspeechReference(fx.graph, wav, path.join(dir, 'clipref'));
    ref = readF32(path.join(dir, 'clipref', 'windows.f32'));
    refWindows = ref.length / DIM;
  });

  test('the column is FixedSizeList<Float32>[3712] and the schema describes it as deepspeech, window 8, dim 464, rate 25', () => {
    assert.match(fieldType, /FixedSizeList\[3712\]<Float(32)?>/);
    const m = meta.find((x) => x.name === 'deepspeech')!;
    assert.equal(m.column, 'audio_deepspeech');
    assert.equal(m.window, 8);
    assert.equal(m.dim, 464);
    assert.equal(m.rate, 25);
    assert.ok(typeof m.params.model === 'string' && typeof m.params.weights === 'string');
  });

  test('200 frames; frame i holds windows i−4 … i+3 with zero windows before the clip and after its last window', () => {
    assert.equal(rows.length, 200);
    assert.equal(refWindows, 200, '8 s → 400 logit rows → 200 windows');
    let maxErr = 0;
    let maxRef = 0;
    for (let i = 0; i < rows.length; i++) {
      for (let s = 0; s < 8; s++) {
        const w = i - 4 + s;
        const got = rows[i]!.subarray(s * DIM, (s + 1) * DIM);
        if (w < 0 || w >= refWindows) {
          assert.ok(
            got.every((v) => v === 0),
            `frame ${i} slot ${s} (window ${w}) is zero padding`,
          );
          continue;
        }
        for (let k = 0; k < DIM; k++) {
          maxErr = Math.max(maxErr, Math.abs(got[k]! - ref[w * DIM + k]!));
          maxRef = Math.max(maxRef, Math.abs(ref[w * DIM + k]!));
        }
      }
    }
    assert.ok(maxErr <= TOL * maxRef, `max |prep − numpy| = ${maxErr} (max |value| ${maxRef})`);
    // inside each window: window 0 starts with 8 zero logit rows (AD-NeRF's padding), seen in frame 4 slot 0
    assert.ok(rows[4]!.subarray(0, 8 * 29).every((v) => v === 0));
    assert.ok(rows[4]!.subarray(8 * 29, DIM).some((v) => v !== 0));
  });

  test('export difftalk writes each row as audio_smooth/<vid>_<frame>.npy that numpy loads as float32 (8, 16, 29), equal to the column', async () => {
    const exp = path.join(work, 'export');
    const r = await exportDifftalk({ dataset, out: exp });
    assert.equal(r.videos.length, 1);
    const vid = r.videos[0]!.vid;
    const frames = [1, 2, 5, 100, 200]; // 1-based, as the loader names them
    const files = frames.map((f) => path.join(exp, 'data', 'HDTF', 'audio_smooth', `${vid}_${f}.npy`));
    const py =
      'import json,sys\nimport numpy as np\nout=[]\nfor f in sys.argv[1:]:\n    a=np.load(f)\n    out.append([list(a.shape),str(a.dtype),a.ravel().astype(float).tolist()])\nprint(json.dumps(out))';
    const { stdout } = await runProcess('/usr/bin/python3', ['-c', py, ...files]);
    const loaded = JSON.parse(stdout.toString('utf8')) as [number[], string, number[]][];
    frames.forEach((f, n) => {
      const [shape, dtype, values] = loaded[n]!;
      assert.deepEqual(shape, [8, 16, 29]);
      assert.equal(dtype, 'float32');
      assert.deepEqual(values, [...rows[f - 1]!], `frame ${f} = column row ${f - 1}`);
    });
  });
});
