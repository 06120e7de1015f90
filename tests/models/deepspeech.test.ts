/**
 * DeepSpeech 0.1.0 features the AD-NeRF way, against tests/reference/deepspeech_reference.py: a GraphDef of the real
 * structure and names (small hidden sizes, deterministic weights) written by google.protobuf, and AD-NeRF's pipeline
 * (python_speech_features MFCC re-derived in NumPy, input vector, the BiRNN in float64, np.interp, the window loop) on
 * the real jfk.wav. Plus the GraphDef reader on hostile files. The real 0.1.0 graph is not here (no network): what
 * that leaves unchecked is listed in docs/data-format.md.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { DifftalkError } from '../../src/util/errors.js';
import { initBackend, tf } from '../../src/util/tf.js';
import { parseGraphDef, readGraphDef } from '../../src/weights/graphdef.js';
import { readWav } from '../../src/audio/wav.js';
import { frameWindows } from '../../src/audio/windows.js';
import { deepspeechInput, deepspeechRowCount, deepspeechWindows, roundHalfEven } from '../../src/audio/deepspeech.js';
import { createDeepSpeechFeature, DeepSpeechNet, loadDeepSpeechWeights } from '../../src/models/deepspeech.js';
import { fetchWeights } from '../../src/models/weights-store.js';
import { MEDIA, tmpDir } from '../helpers.js';
import { deepspeechFixture, readF32 } from './deepspeech-fixture.js';
import { writeZip } from '../weights/zip-writer.js';

const JFK = path.join(MEDIA, 'jfk.wav');

const f32 = readF32;

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'same length');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
const maxAbs = (a: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
};

describe('deepspeech features vs the NumPy reference (AD-NeRF rules, DeepSpeech 0.1.0 structure)', () => {
  let fx: Awaited<ReturnType<typeof deepspeechFixture>>;
  let dir: string;
  before(async () => {
    await tf.setBackend('cpu');
    dir = tmpDir('difftalk-ds-');
    fx = await deepspeechFixture(dir);
  });

  test('the GraphDef reader sees every node, op, input and Const tensor (content, float_val list, broadcast float_val, int_val)', async () => {
    const g = await readGraphDef(fx.graph);
    assert.equal(g.byName.get('input_node')?.op, 'Placeholder');
    assert.equal(g.byName.get('input_node')?.dtype, 1);
    assert.equal(g.byName.get('input_lengths')?.dtype, 3);
    assert.deepEqual(g.byName.get('MatMul')?.inputs, ['Reshape', 'h1/read']);
    assert.equal(g.byName.get('logits')?.op, 'Reshape');
    const h1 = g.byName.get('h1')!.tensor!;
    assert.deepEqual(h1.shape, [494, 12]);
    assert.equal(h1.data!.length, 494 * 12);
    const b2 = g.byName.get('b2')!.tensor!;
    assert.deepEqual([...b2.data!], new Array(10).fill(0.25), 'one float_val broadcast over the shape');
    assert.equal(g.byName.get('b6')!.tensor!.data!.length, 29);
    const shp = g.byName.get('Reshape/shape')!.tensor!;
    assert.equal(shp.dtype, 'int32');
    assert.deepEqual([...shp.data!], [-1, 1, 29]);
    assert.deepEqual(g.byName.get('bidirectional_rnn/bw/basic_lstm_cell/kernel')!.tensor!.shape, [14, 24]);
  });

  test('input vector of jfk.wav = AD-NeRF conv_audio_to_deepspeech_input_vector (tolerance 2e-5 absolute on the normalised float32 values)', async () => {
    const wav = await readWav(JFK);
    const x = deepspeechInput(wav.samples, wav.sampleRate);
    assert.equal(x.steps, fx.meta.steps);
    assert.equal(x.steps, 550, '176000 samples → 1099 MFCC frames → 550 kept rows');
    const ref = f32(path.join(fx.out, 'input.f32'));
    const err = maxAbsDiff(x.data, ref);
    assert.ok(err < 2e-5, `max |ts − numpy| = ${err}`);
    // the first row is 9 context rows of zeros and 10 MFCC rows: its first values are the normalised zero (−mean/std)
    assert.ok(Math.abs(x.data[0]! - -x.mean / x.std) < 1e-6);
  });

  test('logits of the TensorFlow.js BiRNN = the float64 NumPy BiRNN on the same input, on cpu (plain-loop recurrence) and wasm (tfjs ops) (tolerance 1e-4 × max |logit|)', async () => {
    const w = await loadDeepSpeechWeights(fx.graph);
    const input = f32(path.join(fx.out, 'input.f32'));
    const ref = f32(path.join(fx.out, 'logits.f32'));
    const scale = maxAbs(ref);
    assert.ok(scale > 1, `logits are not trivially small (max ${scale})`);
    for (const backend of ['cpu', 'wasm'] as const) {
      if (backend === 'wasm') await initBackend('wasm');
      else await tf.setBackend('cpu');
      const net = new DeepSpeechNet(w, fx.graph);
      assert.deepEqual(net.sizes, { input: 494, hidden1: 12, hidden2: 10, hidden3: 8, cell: 6, hidden5: 7, classes: 29 });
      const logits = await net.logits(input, fx.meta.steps);
      net.dispose();
      const err = maxAbsDiff(logits, ref);
      assert.ok(err <= 1e-4 * scale, `${backend}: max |ts − numpy| = ${err} (max |logit| ${scale})`);
    }
    await tf.setBackend('cpu');
  });

  test('windows: 8 zero rows each side, 16 rows every 2 → one 16×29 window per 25 fps frame, exactly as the AD-NeRF loop', () => {
    const ref = f32(path.join(fx.out, 'logits.f32'));
    const win = deepspeechWindows(ref, fx.meta.steps, fx.meta.rows);
    assert.equal(win.windows, fx.meta.windows);
    assert.equal(win.windows, 275, '11 s at 25 fps');
    assert.equal(maxAbsDiff(win.data, f32(path.join(fx.out, 'windows.f32'))), 0);
    // window 0 = 8 zero rows then logit rows 0..7
    assert.equal(maxAbs(win.data.subarray(0, 8 * 29)), 0);
    assert.deepEqual([...win.data.subarray(8 * 29, 9 * 29)], [...ref.subarray(0, 29)]);
  });

  test("row count = Python's round(duration · 50) (halves to even), and np.interp repeats the last logit row past the end", () => {
    for (const [n, want] of Object.entries(fx.meta.round_rows)) assert.equal(deepspeechRowCount(Number(n), 16000), want, `${n} samples`);
    assert.equal(roundHalfEven(2.5), 2);
    assert.equal(roundHalfEven(3.5), 4);
    const logits = Float32Array.from({ length: 3 * 29 }, (_, i) => i);
    const win = deepspeechWindows(logits, 3, 5); // 5 rows from 3 logit rows: rows 3, 4 = row 2
    assert.equal(win.windows, 3);
    const w1 = win.data.subarray(16 * 29, 2 * 16 * 29); // window 1 = rows −6 … 9
    assert.deepEqual([...w1.subarray(6 * 29, 7 * 29)], [...logits.subarray(0, 29)]);
    assert.deepEqual([...w1.subarray(9 * 29, 10 * 29)], [...logits.subarray(2 * 29, 3 * 29)]);
    assert.deepEqual([...w1.subarray(10 * 29, 11 * 29)], [...logits.subarray(2 * 29, 3 * 29)]);
    assert.equal(maxAbs(w1.subarray(11 * 29)), 0);
  });

  test('the deepspeech extractor end to end on jfk.wav = the reference windows (1e-4 × max), and DiffTalk frames i−4…i+3 zero-padded', async () => {
    const wav = await readWav(JFK);
    const ex = await createDeepSpeechFeature({ model: fx.graph });
    assert.equal(ex.name, 'deepspeech');
    const seq = await ex.extract(wav.samples, wav.sampleRate);
    assert.equal(seq.frames, 275);
    assert.equal(seq.dim, 464);
    assert.equal(seq.rate, 25);
    const ref = f32(path.join(fx.out, 'windows.f32'));
    const err = maxAbsDiff(seq.data, ref);
    assert.ok(err <= 1e-4 * maxAbs(ref), `max |ts − numpy| = ${err}`);

    const frames = 275;
    const fw = frameWindows(seq, frames, 25, 8);
    assert.equal(fw.data.length, frames * 8 * 464);
    // independent stacking: frame i, slot s ← window i − 4 + s, zero outside 0 … 274
    for (const i of [0, 1, 3, 4, 100, 271, 272, 274]) {
      for (let s = 0; s < 8; s++) {
        const w = i - 4 + s;
        const got = fw.data.subarray((i * 8 + s) * 464, (i * 8 + s + 1) * 464);
        if (w < 0 || w >= frames) assert.equal(maxAbs(got), 0, `frame ${i} slot ${s} is zero padding`);
        else assert.deepEqual([...got], [...seq.data.subarray(w * 464, (w + 1) * 464)], `frame ${i} slot ${s} = window ${w}`);
      }
    }
    await assert.rejects(async () => frameWindows(seq, frames, 30, 8), /25 fps/);
    // a dataset's recorded params re-create the same extractor (render does this); another file is refused
    const again = await createDeepSpeechFeature({ ...ex.params });
    assert.deepEqual(again.params, ex.params);
    await assert.rejects(
      createDeepSpeechFeature({ ...ex.params, weights: '0123456789abcdef' }),
      (e: unknown) => e instanceof DifftalkError && e.code === 'audio-feature-mismatch',
    );
  });

  test('`weights fetch deepspeech` (the .pb.zip from a local mirror) → weights cache → the `deepspeech` feature without model= gives the same windows', async () => {
    const zipName = 'deepspeech-0_1_0-b90017e8.pb.zip';
    // with the resource-fork entry a zip made on macOS carries
    const zip = writeZip(
      [
        { name: '__MACOSX/._output_graph.pb', data: Buffer.from('not a graph') },
        { name: 'output_graph.pb', data: readFileSync(fx.graph) },
      ],
      { deflate: true },
    );
    const server = http.createServer((req, res) => {
      if (req.url !== `/${zipName}`) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-length': zip.length }).end(zip);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const root = path.join(dir, 'cache-root');
    const saved = process.env.DIFFTALK_CACHE;
    try {
      const mirror = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const r = await fetchWeights('deepspeech', { mirror, cacheDir: path.join(root, 'weights') });
      assert.equal(r.downloads[0]!.url, `${mirror}/${zipName}`);
      assert.match(r.label, /^unverified file [0-9a-f]{12}$/, 'no published hash: labelled unverified');
      const a = await loadDeepSpeechWeights(fx.graph);
      const c = await loadDeepSpeechWeights(r.imported!.path);
      for (const k of a.keys()) assert.deepEqual([...c.get(k)!.data], [...a.get(k)!.data], k);
      process.env.DIFFTALK_CACHE = root;
      const ex = await createDeepSpeechFeature({});
      assert.equal(ex.params.model, 'weights-cache');
      const wav = await readWav(JFK);
      const seq = await ex.extract(wav.samples, wav.sampleRate);
      const ref = f32(path.join(fx.out, 'windows.f32'));
      assert.ok(maxAbsDiff(seq.data, ref) <= 1e-4 * maxAbs(ref));
    } finally {
      if (saved === undefined) delete process.env.DIFFTALK_CACHE;
      else process.env.DIFFTALK_CACHE = saved;
      server.close();
    }
  });

  test('a graph without the DeepSpeech 0.1.0 names or with other sizes is refused by name', async () => {
    const g = parseGraphDef(readFileSync(fx.graph), 'g');
    g.nodes = g.nodes.filter((n) => n.name !== 'bidirectional_rnn/fw/basic_lstm_cell/kernel');
    const { deepspeechWeightsFromGraph } = await import('../../src/models/deepspeech.js');
    assert.throws(
      () => deepspeechWeightsFromGraph(g, 'g'),
      (e: unknown) => e instanceof DifftalkError && e.code === 'bad-weights' && /fw\/basic_lstm_cell\/kernel/.test(e.message),
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------
// hostile GraphDefs, encoded by hand

const varint = (n: number): number[] => {
  const out: number[] = [];
  let v = n;
  while (v >= 128) {
    out.push((v % 128) | 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
};
const field = (num: number, wire: number, payload: number[]): number[] =>
  wire === 2 ? [...varint(num * 8 + 2), ...varint(payload.length), ...payload] : [...varint(num * 8 + wire), ...payload];
const str = (s: string): number[] => [...Buffer.from(s)];
const shape = (dims: number[]): number[] => dims.flatMap((d) => field(2, 2, field(1, 0, varint(d))));
function constNode(name: string, tensor: number[]): number[] {
  const attr = field(5, 2, [...field(1, 2, str('value')), ...field(2, 2, field(8, 2, tensor))]);
  return field(1, 2, [...field(1, 2, str(name)), ...field(2, 2, str('Const')), ...attr]);
}
const floatTensor = (dims: number[], content: number[]): number[] => [...field(1, 0, varint(1)), ...field(2, 2, shape(dims)), ...field(4, 2, content)];

function rejects(bytes: number[], pattern: RegExp, what: string): void {
  assert.throws(
    () => parseGraphDef(Uint8Array.from(bytes), 'hostile.pb'),
    (e: unknown) => e instanceof DifftalkError && e.code === 'bad-graphdef' && pattern.test(e.message),
    what,
  );
}

describe('GraphDef reader on hostile input: one bad-graphdef error, no huge allocation', () => {
  const good = constNode('w', floatTensor([2], [0, 0, 128, 63, 0, 0, 0, 64]));

  test('a well-formed tiny graph parses', () => {
    const g = parseGraphDef(Uint8Array.from(good));
    assert.deepEqual([...g.byName.get('w')!.tensor!.data!], [1, 2]);
  });

  test('every truncation of a valid graph is refused (or parses as a shorter valid prefix of whole nodes)', () => {
    const two = [...good, ...constNode('v', floatTensor([1], [0, 0, 64, 64]))];
    for (let cut = 1; cut < two.length; cut++) {
      if (cut === good.length) continue; // exactly the first node: a valid graph
      rejects(two.slice(0, cut), /./, `cut at ${cut}`);
    }
  });

  test('declared lengths and sizes beyond the file', () => {
    rejects([...varint(10), ...varint(2 ** 40)], /declares \d+ bytes but only/, 'node length 2^40');
    rejects(constNode('big', floatTensor([1_000_000_000, 1_000_000_000], [0, 0, 0, 0])), /more elements than the file has bytes/, 'shape 1e18');
    rejects(
      constNode('big', [...field(1, 0, varint(1)), ...field(2, 2, shape([100_000])), ...field(5, 5, [0, 0, 128, 63])]),
      /more elements than the file has bytes/,
      'broadcast bomb',
    );
    // many broadcast tensors, each within the file size, together far beyond it
    const many: number[] = [];
    for (let i = 0; i < 200; i++) many.push(...constNode(`n${i}`, [...field(1, 0, varint(1)), ...field(2, 2, shape([5000])), ...field(5, 5, [0, 0, 128, 63])]));
    rejects(many, /past one element per byte/, 'many broadcast tensors');
    rejects(constNode('short', floatTensor([4], [0, 0, 128, 63])), /tensor_content has 4 bytes, shape \[4\] of float32 needs 16/, 'content too short');
    rejects(
      constNode('neg', [...field(1, 0, varint(1)), ...field(2, 2, field(2, 2, field(1, 0, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])))]),
      /negative dimension/,
      'dim −1',
    );
    rejects(
      [...varint(10), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
      /varint longer than 10 bytes|larger than 2\^53/,
      'overlong varint',
    );
    rejects([...varint(1 * 8 + 3)], /wire type 3/, 'group wire type');
    rejects([], /no nodes/, 'empty file');
    rejects(constNode('w', []).concat(constNode('w', [])), /two nodes are named 'w'/, 'duplicate names');
    rejects([...field(1, 2, field(2, 2, str('Const')))], /has no name/, 'nameless node');
  });

  test('a file that is not a graph at all (a WAV) is one clear error', async () => {
    await assert.rejects(
      readGraphDef(JFK),
      (e: unknown) => e instanceof DifftalkError && e.code === 'bad-graphdef' && /not a valid TensorFlow GraphDef/.test(e.message),
    );
    await assert.rejects(loadDeepSpeechWeights(path.join(MEDIA, 'nope.pb')), (e: unknown) => e instanceof DifftalkError && e.code === 'not-found');
    // a truncated .pb.zip: one bad-weights error saying what was expected
    const dir = tmpDir('difftalk-ds-zip-');
    const zip = writeZip([{ name: 'output_graph.pb', data: Buffer.from(constNode('w', floatTensor([1], [0, 0, 128, 63]))) }]);
    const cut = path.join(dir, 'cut.pb.zip');
    writeFileSync(cut, zip.subarray(0, zip.length - 30));
    await assert.rejects(
      loadDeepSpeechWeights(cut),
      (e: unknown) => e instanceof DifftalkError && e.code === 'bad-weights' && /not a usable \.pb\.zip/.test(e.message),
    );
    // a zip holding a valid graph that is not DeepSpeech
    const other = path.join(dir, 'other.pb.zip');
    writeFileSync(other, zip);
    await assert.rejects(
      loadDeepSpeechWeights(other),
      (e: unknown) => e instanceof DifftalkError && e.code === 'bad-weights' && /no Const node named 'h1'/.test(e.message),
    );
  });
});
