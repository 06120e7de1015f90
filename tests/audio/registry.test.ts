import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { mfcc } from '../../src/audio/mfcc.js';
import { createAudioFeature, listAudioFeatures, parseAudioFeatureSpec, registerAudioFeature } from '../../src/audio/registry.js';
import type { OnnxAudioFeature } from '../../src/audio/onnx.js';
import { readWav } from '../../src/audio/wav.js';
import { frameWindows } from '../../src/audio/windows.js';
import type { AudioFeatureExtractor } from '../../src/audio/types.js';
import { DifftalkError } from '../../src/util/errors.js';
import { MEDIA, tmpDir } from '../helpers.js';

const JFK = path.join(MEDIA, 'jfk.wav');
const code = (c: string) => (e: unknown) => e instanceof DifftalkError && e.code === c;

test('built-ins are registered; specs parse from flags; unknown names and parameters are clear errors', async () => {
  for (const n of ['mfcc', 'mel', 'onnx']) assert.ok(listAudioFeatures().includes(n));
  assert.equal(parseAudioFeatureSpec('mfcc'), 'mfcc');
  assert.deepEqual(parseAudioFeatureSpec('mel:nMels=64, fmax=7600'), { name: 'mel', nMels: 64, fmax: 7600 });
  assert.deepEqual(parseAudioFeatureSpec('onnx:model=/m/a.onnx,standardize=true,id=hubert'), {
    name: 'onnx',
    model: '/m/a.onnx',
    standardize: true,
    id: 'hubert',
  });
  assert.throws(() => parseAudioFeatureSpec('mel:nMels'), code('bad-audio-feature'));
  await assert.rejects(
    createAudioFeature('deepspeech'),
    (e: unknown) => code('bad-audio-feature')(e) && /available: .*mel/.test((e as DifftalkError).suggestion ?? ''),
  );
  await assert.rejects(createAudioFeature({ name: 'mfcc', nceps: 13 }), (e: unknown) => code('bad-audio-params')(e) && /nceps/.test((e as Error).message));
  await assert.rejects(createAudioFeature({ name: 'mel', nMels: 'many' }), code('bad-audio-params'));
  await assert.rejects(createAudioFeature({ name: 'mfcc', highfreq: 9000, winstep: 0 }), DifftalkError);
  assert.throws(() => registerAudioFeature('mfcc', () => ({}) as AudioFeatureExtractor), code('bad-audio-feature'));
  assert.throws(() => registerAudioFeature('../x', () => ({}) as AudioFeatureExtractor), code('bad-audio-feature'));
});

test('a spec with parameters changes the extractor; the built-in mfcc extractor equals mfcc() (float32 of the float64 values)', async () => {
  const wav = await readWav(JFK);
  const mel64 = await createAudioFeature(parseAudioFeatureSpec('mel:nMels=64,fmax=7600'));
  const s = await mel64.extract(wav.samples, wav.sampleRate);
  assert.deepEqual([s.frames, s.dim, s.rate], [1099, 64, 100]);
  assert.equal(mel64.params.fmax, 7600);
  const mf = await createAudioFeature('mfcc');
  const seq = await mf.extract(wav.samples, wav.sampleRate);
  assert.deepEqual(seq.data, Float32Array.from(mfcc(wav.samples, 16000).data));
});

test('a third-party extractor plugs in by name (an RMS-energy feature written here)', async () => {
  registerAudioFeature('rms-test', (params) => {
    const hop = Number(params.hop ?? 160);
    return {
      name: 'rms-test',
      params: { hop },
      async extract(samples, sampleRate) {
        const frames = Math.floor(samples.length / hop);
        const data = new Float32Array(frames);
        for (let j = 0; j < frames; j++) {
          let e = 0;
          for (let i = 0; i < hop; i++) e += samples[j * hop + i]! ** 2;
          data[j] = Math.sqrt(e / hop);
        }
        return { data, frames, dim: 1, rate: sampleRate / hop };
      },
    };
  });
  const x = await createAudioFeature({ name: 'rms-test', hop: 320 });
  const seq = await x.extract((await readWav(JFK)).samples, 16000);
  assert.deepEqual([seq.frames, seq.rate], [550, 50]);
  assert.ok(seq.data[0] === 0 && Math.max(...seq.data) > 1000);
});

// ---------- ONNX ----------
// A tiny ONNX model written byte by byte (protobuf wire format, onnx.proto field numbers):
// waveform float[1, n] → Reshape([1, −1, 160]) → Mul(2) → features float[1, t, 160].
function varint(n: number | bigint): number[] {
  let v = BigInt.asUintN(64, BigInt(n));
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return out;
}
const fieldVarint = (f: number, v: number): number[] => [...varint((f << 3) | 0), ...varint(v)];
const fieldBytes = (f: number, b: number[] | Uint8Array | string): number[] => {
  const bytes = typeof b === 'string' ? [...Buffer.from(b, 'utf8')] : [...b];
  return [...varint((f << 3) | 2), ...varint(bytes.length), ...bytes];
};
const dimValue = (v: number) => fieldBytes(1, fieldVarint(1, v));
const dimParam = (p: string) => fieldBytes(1, fieldBytes(2, p));
const valueInfo = (name: string, dims: number[][]) => [
  ...fieldBytes(1, name),
  ...fieldBytes(2, fieldBytes(1, [...fieldVarint(1, 1), ...fieldBytes(2, dims.flat())])),
];
function tinyEncoder(): Uint8Array {
  const shape = Buffer.alloc(24);
  [1n, -1n, 160n].forEach((v, i) => shape.writeBigInt64LE(v, i * 8));
  const two = Buffer.alloc(4);
  two.writeFloatLE(2, 0);
  const shapeInit = [...fieldVarint(1, 3), ...fieldVarint(2, 7), ...fieldBytes(8, 'shape'), ...fieldBytes(9, shape)]; // INT64 [3]
  const twoInit = [...fieldVarint(2, 1), ...fieldBytes(8, 'two'), ...fieldBytes(9, two)]; // FLOAT scalar
  const reshape = [
    ...fieldBytes(1, 'waveform'),
    ...fieldBytes(1, 'shape'),
    ...fieldBytes(2, 'frames'),
    ...fieldBytes(3, 'reshape'),
    ...fieldBytes(4, 'Reshape'),
  ];
  const mul = [...fieldBytes(1, 'frames'), ...fieldBytes(1, 'two'), ...fieldBytes(2, 'features'), ...fieldBytes(3, 'mul'), ...fieldBytes(4, 'Mul')];
  const graph = [
    ...fieldBytes(1, reshape),
    ...fieldBytes(1, mul),
    ...fieldBytes(2, 'tiny-encoder'),
    ...fieldBytes(5, shapeInit),
    ...fieldBytes(5, twoInit),
    ...fieldBytes(11, valueInfo('waveform', [dimValue(1), dimParam('n')])),
    ...fieldBytes(12, valueInfo('features', [dimValue(1), dimParam('t'), dimValue(160)])),
  ];
  const model = [
    ...fieldVarint(1, 8),
    ...fieldBytes(2, 'difftalk-test'),
    ...fieldBytes(7, graph),
    ...fieldBytes(8, [...fieldBytes(1, ''), ...fieldVarint(2, 13)]),
  ];
  return Uint8Array.from(model);
}

async function runtimeLoads(): Promise<boolean> {
  try {
    const m = (await import('onnxruntime-node')) as { InferenceSession?: unknown };
    return !!m.InferenceSession;
  } catch {
    return false;
  }
}

test('onnx: parameter and file errors are DifftalkErrors; an unloadable runtime says how to install it', async () => {
  const dir = tmpDir();
  const model = path.join(dir, 'tiny.onnx');
  await writeFile(model, tinyEncoder());
  await assert.rejects(createAudioFeature('onnx'), (e: unknown) => code('bad-audio-params')(e) && /model=/.test((e as Error).message));
  await assert.rejects(createAudioFeature({ name: 'onnx', model, sampels: 1 }), code('bad-audio-params'));
  await assert.rejects(createAudioFeature({ name: 'onnx', model: path.join(dir, 'missing.onnx') }), code('file-missing'));
  // a runtime module that does not exist: the real dynamic-import failure path
  await assert.rejects(
    createAudioFeature({ name: 'onnx', model, runtime: 'onnxruntime-node-not-installed-here' }),
    (e: unknown) => code('onnx-unavailable')(e) && /npm install onnxruntime-node/.test((e as DifftalkError).suggestion ?? ''),
  );
  if (!(await runtimeLoads())) {
    // onnxruntime-node is optional: where it cannot load, the default path is the same clear error
    await assert.rejects(createAudioFeature({ name: 'onnx', model }), code('onnx-unavailable'));
    return;
  }
  const garbage = path.join(dir, 'garbage.onnx');
  await writeFile(garbage, Buffer.from('not a protobuf model'));
  await assert.rejects(createAudioFeature({ name: 'onnx', model: garbage }), code('bad-model'));
  await assert.rejects(
    createAudioFeature({ name: 'onnx', model, output: 'logits' }),
    (e: unknown) => code('bad-model')(e) && /features/.test((e as Error).message),
  );
});

test('onnx: a hand-built encoder runs through onnxruntime-node on jfk.wav; rate from T/duration; windows follow (exact)', async (t) => {
  if (!(await runtimeLoads())) {
    t.skip('onnxruntime-node cannot load on this machine (the error path is tested above)');
    return;
  }
  const dir = tmpDir();
  const model = path.join(dir, 'tiny.onnx');
  await writeFile(model, tinyEncoder());
  const x = (await createAudioFeature({ name: 'onnx', model, id: 'tiny' })) as OnnxAudioFeature;
  try {
    assert.equal(x.name, 'tiny');
    assert.equal(x.params.input, 'waveform');
    assert.equal(x.params.output, 'features');
    assert.match(String(x.params.sha256), /^[0-9a-f]{64}$/);
    const wav = await readWav(JFK); // 176000 samples = 1100 × 160
    const seq = await x.extract(wav.samples, 16000);
    assert.deepEqual([seq.frames, seq.dim, seq.rate], [1100, 160, 100]);
    // the model doubles the [-1, 1] waveform: output = 2·s/32768 exactly in float32
    assert.deepEqual(
      seq.data,
      Float32Array.from(wav.samples, (s) => (s / 32768) * 2),
    );
    const w = frameWindows(seq, 275, 25, 16);
    assert.deepEqual(w.data.subarray(50 * 16 * 160, 51 * 16 * 160), seq.data.subarray(194 * 160, 210 * 160)); // 4·50−6
    await assert.rejects(x.extract(wav.samples, 44100), code('bad-audio-params'));
    // standardize: zero mean, unit variance before the model (output / 2)
    const z = (await createAudioFeature({ name: 'onnx', model, standardize: true })) as OnnxAudioFeature;
    const zs = await z.extract(wav.samples, 16000);
    let mean = 0;
    for (const v of zs.data) mean += v / 2;
    mean /= zs.data.length;
    let v2 = 0;
    for (const v of zs.data) v2 += (v / 2 - mean) ** 2;
    assert.ok(Math.abs(mean) < 1e-4 && Math.abs(v2 / zs.data.length - 1) < 1e-3);
    await z.close();
  } finally {
    await x.close();
  }
});
