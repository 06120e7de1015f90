/**
 * DeepSpeech 0.1.0 on TensorFlow.js, with the weights of its frozen graph (`output_graph.pb`, the file AD-NeRF
 * downloads as deepspeech-0_1_0-b90017e8.pb.zip), and the `deepspeech` audio feature built on it.
 *
 * The network (mozilla/DeepSpeech v0.1.0 DeepSpeech.py `BiRNN`, time-major, batch 1, dropout off at inference):
 *   l1 = min(relu(x·h1 + b1), 20); l2 = min(relu(l1·h2 + b2), 20); l3 = min(relu(l2·h3 + b3), 20)
 *   forward and backward BasicLSTMCell (n_cell_dim units, forget_bias 1.0) over l3 — the backward one over the
 *   reversed sequence (sequence_length = the whole clip), its outputs reversed back; gates = [x_t, h_{t−1}]·kernel +
 *   bias split in TensorFlow's order i, j, f, o; c_t = c_{t−1}·σ(f + 1) + σ(i)·tanh(j); h_t = tanh(c_t)·σ(o)
 *   l5 = min(relu([h_fw, h_bw]·h5 + b5), 20); logits = l5·h6 + b6 (29 classes, no softmax) — the graph's `logits`.
 * Weights are the graph's Const nodes `h1 b1 h2 b2 h3 b3 h5 b5 h6 b6` and `bidirectional_rnn/{fw,bw}/basic_lstm_cell/
 * {kernel,bias}` (TF ≥ 1.2 names; `weights`/`biases` of TF 1.0–1.1 accepted too); sizes come from their shapes and are
 * cross-checked (494 inputs, 29 classes). Only names and shapes are trusted from the file; the operations above are
 * fixed here — a graph of a different architecture (DeepSpeech ≥ 0.2 uses other names and a unidirectional LSTM) is
 * refused by name, not run wrongly.
 */
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import { backendInfo, initBackend, tf } from '../util/tf.js';
import { DifftalkError } from '../util/errors.js';
import { sha256File } from '../util/fs.js';
import { parseGraphDef, readGraphDef, type GraphDef } from '../weights/graphdef.js';
import { readSafetensors } from '../weights/safetensors.js';
import { readZipMember, type TensorData } from '../weights/torch.js';
import { pickParams, registerAudioFeature, type AudioFeatureParams } from '../audio/registry.js';
import type { AudioFeatureExtractor, FeatureSequence } from '../audio/types.js';
import {
  DEEPSPEECH_CLASSES,
  DEEPSPEECH_FRAME_OFFSET,
  DEEPSPEECH_INPUT_DIM,
  DEEPSPEECH_WINDOW_RATE,
  DEEPSPEECH_WINDOW_ROWS,
  deepspeechInput,
  deepspeechRowCount,
  deepspeechWindows,
} from '../audio/deepspeech.js';
import { registerWeightKind, requireWeights } from './weights-store.js';

/** ReLU clip of DeepSpeech 0.1.0 (FLAGS.relu_clip default). */
export const DEEPSPEECH_RELU_CLIP = 20;
/** BasicLSTMCell forget_bias in DeepSpeech 0.1.0. */
export const DEEPSPEECH_FORGET_BIAS = 1;

/** The weights by their graph names (dense) or `lstm_fw_kernel`, `lstm_fw_bias`, `lstm_bw_kernel`, `lstm_bw_bias`. */
export type DeepSpeechWeights = Map<string, TensorData>;

export const DENSE_NAMES = ['h1', 'b1', 'h2', 'b2', 'h3', 'b3', 'h5', 'b5', 'h6', 'b6'] as const;
export const LSTM_NAMES = ['lstm_fw_kernel', 'lstm_fw_bias', 'lstm_bw_kernel', 'lstm_bw_bias'] as const;

export interface DeepSpeechSizes {
  input: number;
  hidden1: number;
  hidden2: number;
  hidden3: number;
  cell: number;
  hidden5: number;
  classes: number;
}

function badWeights(source: string, msg: string): DifftalkError {
  return new DifftalkError('bad-weights', `${source}: ${msg}`, {
    suggestion:
      'pass the DeepSpeech 0.1.0 frozen graph (output_graph.pb, or deepspeech-0_1_0-b90017e8.pb.zip as AD-NeRF downloads it; `difftalk weights fetch deepspeech`)',
  });
}

/** Find the Const nodes of the network in a parsed graph. */
export function deepspeechWeightsFromGraph(graph: GraphDef, source: string): DeepSpeechWeights {
  const out: DeepSpeechWeights = new Map();
  const take = (key: string, matches: (name: string) => boolean, what: string): void => {
    const found = graph.nodes.filter((n) => n.op === 'Const' && matches(n.name));
    if (found.length === 0) throw badWeights(source, `no Const node ${what} (not a DeepSpeech 0.1.0 graph?)`);
    if (found.length > 1) throw badWeights(source, `several Const nodes ${what}: ${found.map((n) => n.name).join(', ')}`);
    const t = found[0]!.tensor;
    if (!t || t.dtype !== 'float32' || !t.data) throw badWeights(source, `${found[0]!.name} is not a float32 tensor`);
    out.set(key, { dtype: 'float32', shape: t.shape, data: t.data });
  };
  for (const n of DENSE_NAMES) take(n, (name) => name === n || name.endsWith(`/${n}`), `named '${n}'`);
  for (const dir of ['fw', 'bw'] as const) {
    const cell = new RegExp(`(^|/)bidirectional_rnn/${dir}/(basic_lstm_cell|lstm_cell)/`);
    take(`lstm_${dir}_kernel`, (name) => cell.test(name) && /\/(kernel|weights)$/.test(name), `bidirectional_rnn/${dir}/basic_lstm_cell/kernel`);
    take(`lstm_${dir}_bias`, (name) => cell.test(name) && /\/(bias|biases)$/.test(name), `bidirectional_rnn/${dir}/basic_lstm_cell/bias`);
  }
  deepspeechSizes(out, source);
  return out;
}

/** Sizes from the weights' shapes, every shape cross-checked. */
export function deepspeechSizes(w: DeepSpeechWeights, source: string): DeepSpeechSizes {
  const shape = (k: string): number[] => {
    const t = w.get(k);
    if (!t) throw badWeights(source, `tensor ${k} is missing`);
    if (t.dtype !== 'float32') throw badWeights(source, `${k} is ${t.dtype}, expected float32`);
    return t.shape;
  };
  const expect = (k: string, want: number[]): void => {
    const s = shape(k);
    if (s.length !== want.length || s.some((d, i) => d !== want[i])) throw badWeights(source, `${k} has shape [${s}], expected [${want}]`);
  };
  const h1 = shape('h1');
  if (h1.length !== 2) throw badWeights(source, `h1 has shape [${h1}], expected a matrix`);
  const [input, hidden1] = h1 as [number, number];
  const h2 = shape('h2');
  const h3 = shape('h3');
  const h5 = shape('h5');
  const h6 = shape('h6');
  const fwBias = shape('lstm_fw_bias');
  if (h2.length !== 2 || h3.length !== 2 || h5.length !== 2 || h6.length !== 2 || fwBias.length !== 1 || fwBias[0]! % 4 !== 0) {
    throw badWeights(source, 'the dense weights must be matrices and the LSTM bias a vector of 4 × cells');
  }
  const sizes: DeepSpeechSizes = { input, hidden1, hidden2: h2[1]!, hidden3: h3[1]!, cell: fwBias[0]! / 4, hidden5: h5[1]!, classes: h6[1]! };
  const { hidden2, hidden3, cell, hidden5, classes } = sizes;
  expect('b1', [hidden1]);
  expect('h2', [hidden1, hidden2]);
  expect('b2', [hidden2]);
  expect('h3', [hidden2, hidden3]);
  expect('b3', [hidden3]);
  for (const dir of ['fw', 'bw']) {
    expect(`lstm_${dir}_kernel`, [hidden3 + cell, 4 * cell]);
    expect(`lstm_${dir}_bias`, [4 * cell]);
  }
  expect('h5', [2 * cell, hidden5]);
  expect('b5', [hidden5]);
  expect('h6', [hidden5, classes]);
  expect('b6', [classes]);
  if (input !== DEEPSPEECH_INPUT_DIM)
    throw badWeights(source, `the network takes ${input} inputs; DeepSpeech 0.1.0 takes ${DEEPSPEECH_INPUT_DIM} (26 MFCC × 19 frames)`);
  if (classes !== DEEPSPEECH_CLASSES) throw badWeights(source, `the network has ${classes} output classes; DeepSpeech 0.1.0 has ${DEEPSPEECH_CLASSES}`);
  return sizes;
}

/** Read the weights from a frozen graph (.pb), the .pb.zip AD-NeRF downloads, or the weights cache's safetensors. */
export async function loadDeepSpeechWeights(file: string): Promise<DeepSpeechWeights> {
  let head: Buffer;
  try {
    if (!(await stat(file)).isFile()) throw new Error('not a file');
    const fh = await open(file, 'r');
    try {
      head = Buffer.alloc(8);
      await fh.read(head, 0, 8, 0);
    } finally {
      await fh.close();
    }
  } catch {
    throw new DifftalkError('not-found', `deepspeech model ${file} does not exist or is not a file`, {
      suggestion: 'give model=<path to output_graph.pb or deepspeech-0_1_0-b90017e8.pb.zip>, or run `difftalk weights fetch deepspeech`',
    });
  }
  if (head.readUInt32LE(0) === 0x04034b50) {
    // the one .pb in the archive (macOS's __MACOSX/._* resource forks are not it)
    let member: { name: string; bytes: Uint8Array };
    try {
      member = await readZipMember(file, /^(?!__MACOSX\/)(?:.*\/)?[^/.][^/]*\.pb$/);
    } catch (e) {
      // the zip reader's own errors speak of PyTorch checkpoints: say what was expected here
      if (e instanceof DifftalkError && e.code === 'bad-torch-file') throw badWeights(file, `not a usable .pb.zip (${e.message})`);
      throw e;
    }
    const { name, bytes } = member;
    return deepspeechWeightsFromGraph(parseGraphDef(bytes, `${file}:${name}`), `${file}:${name}`);
  }
  if (file.endsWith('.safetensors')) {
    const st = await readSafetensors(file);
    const w: DeepSpeechWeights = new Map();
    for (const k of [...DENSE_NAMES, ...LSTM_NAMES]) {
      const t = st.tensors.get(k);
      if (!t) throw badWeights(file, `tensor ${k} is missing`);
      w.set(k, t);
    }
    deepspeechSizes(w, file);
    return w;
  }
  return deepspeechWeightsFromGraph(await readGraphDef(file), file);
}

/** The network on TensorFlow.js (the active backend). `dispose()` frees its weights. */
export class DeepSpeechNet {
  readonly sizes: DeepSpeechSizes;
  private readonly w = new Map<string, tf.Tensor>();

  constructor(weights: DeepSpeechWeights, source = 'deepspeech') {
    this.sizes = deepspeechSizes(weights, source);
    for (const [k, t] of weights)
      this.w.set(k, tf.tensor(t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as ArrayLike<number>), t.shape, 'float32'));
  }

  private get(k: string): tf.Tensor {
    return this.w.get(k)!;
  }

  private dense(x: tf.Tensor2D, layer: string, clip: boolean): tf.Tensor2D {
    const y = tf.add(tf.matMul(x, this.get(`h${layer}`) as tf.Tensor2D), this.get(`b${layer}`)) as tf.Tensor2D;
    return clip ? tf.minimum(tf.relu(y), DEEPSPEECH_RELU_CLIP) : y;
  }

  /**
   * One direction of the BiLSTM over l3 [T, H3] → [T, C] (time order of the input). The input part x_t·Wx + bias of
   * every step is one batched matMul on the backend; the recurrence h_{t−1}·Wh is a float64-accumulated loop over the
   * row-major Wh here (a [1 × C]·[C × 4C] product per step is far faster in a plain loop than as a tfjs kernel call).
   */
  private async lstm(l3: tf.Tensor2D, dir: 'fw' | 'bw'): Promise<Float32Array> {
    const { hidden3, cell: C } = this.sizes;
    const T = l3.shape[0];
    const xw = tf.tidy(() => {
      const kernel = this.get(`lstm_${dir}_kernel`) as tf.Tensor2D;
      const wx = tf.slice(kernel, [0, 0], [hidden3, 4 * C]);
      return tf.add(tf.matMul(l3, wx), this.get(`lstm_${dir}_bias`)) as tf.Tensor2D;
    });
    if (tf.getBackend() !== 'cpu') return this.lstmOnBackend(xw, dir);
    const gx = (await xw.data()) as Float32Array; // [T, 4C]
    xw.dispose();
    const wh = this.recurrent(dir); // [C, 4C]
    const out = new Float32Array(T * C);
    const h = new Float64Array(C);
    const c = new Float64Array(C);
    const g = new Float64Array(4 * C);
    const sigmoid = (v: number): number => 1 / (1 + Math.exp(-v));
    for (let s = 0; s < T; s++) {
      const t = dir === 'fw' ? s : T - 1 - s;
      for (let n = 0; n < 4 * C; n++) g[n] = gx[t * 4 * C + n]!;
      for (let k = 0; k < C; k++) {
        const hk = h[k]!;
        if (hk === 0) continue;
        const row = k * 4 * C;
        for (let n = 0; n < 4 * C; n++) g[n] = g[n]! + hk * wh[row + n]!;
      }
      for (let n = 0; n < C; n++) {
        // TensorFlow BasicLSTMCell: i, j, f, o = split(gates, 4)
        const i = g[n]!;
        const j = g[C + n]!;
        const f = g[2 * C + n]!;
        const o = g[3 * C + n]!;
        c[n] = c[n]! * sigmoid(f + DEEPSPEECH_FORGET_BIAS) + sigmoid(i) * Math.tanh(j);
        h[n] = Math.tanh(c[n]!) * sigmoid(o);
        out[t * C + n] = h[n]!;
      }
    }
    return out;
  }

  /** The same recurrence as tfjs ops on the active backend (wasm, webgpu, tensorflow: faster than the loop there). */
  private async lstmOnBackend(xw: tf.Tensor2D, dir: 'fw' | 'bw'): Promise<Float32Array> {
    const { hidden3, cell: C } = this.sizes;
    const T = xw.shape[0];
    const wh = tf.slice(this.get(`lstm_${dir}_kernel`), [hidden3, 0], [C, 4 * C]) as tf.Tensor2D;
    let h = tf.zeros([1, C]) as tf.Tensor2D;
    let c = tf.zeros([1, C]) as tf.Tensor2D;
    const outs: tf.Tensor2D[] = new Array<tf.Tensor2D>(T);
    for (let s = 0; s < T; s++) {
      const t = dir === 'fw' ? s : T - 1 - s;
      const prevH = h;
      const prevC = c;
      [h, c] = tf.tidy(() => {
        const g = tf.add(tf.slice(xw, [t, 0], [1, 4 * C]), tf.matMul(prevH, wh));
        const [i, j, f, o] = tf.split(g, 4, 1) as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
        const c2 = tf.add(tf.mul(prevC, tf.sigmoid(tf.add(f, DEEPSPEECH_FORGET_BIAS))), tf.mul(tf.sigmoid(i), tf.tanh(j))) as tf.Tensor2D;
        return [tf.mul(tf.tanh(c2), tf.sigmoid(o)) as tf.Tensor2D, c2];
      });
      prevC.dispose();
      if (s === 0) prevH.dispose(); // the zero state; later h's are kept as outputs
      outs[t] = h;
    }
    c.dispose();
    wh.dispose();
    xw.dispose();
    const stacked = tf.concat(outs, 0);
    for (const o of outs) o.dispose();
    const data = (await stacked.data()) as Float32Array;
    stacked.dispose();
    return data;
  }

  private readonly whCache = new Map<string, Float32Array>();

  /** The recurrent rows of the LSTM kernel (rows H3 … H3+C−1), as a row-major Float32Array. */
  private recurrent(dir: 'fw' | 'bw'): Float32Array {
    let wh = this.whCache.get(dir);
    if (!wh) {
      const { hidden3, cell: C } = this.sizes;
      wh = (this.get(`lstm_${dir}_kernel`).dataSync() as Float32Array).slice(hidden3 * 4 * C, (hidden3 + C) * 4 * C);
      this.whCache.set(dir, wh);
    }
    return wh;
  }

  /** Logits [steps × classes] of a network input [steps × input] (deepspeechInput's). */
  async logits(input: Float32Array, steps: number): Promise<Float32Array> {
    const { input: D } = this.sizes;
    if (steps < 1 || input.length !== steps * D)
      throw new DifftalkError('bad-audio-params', `deepspeech: ${input.length} input values for ${steps} steps of ${D}`);
    const x = tf.tensor2d(input, [steps, D]);
    const l3 = tf.tidy(() => this.dense(this.dense(this.dense(x, '1', true), '2', true), '3', true));
    x.dispose();
    const { cell: C } = this.sizes;
    const fw = tf.tensor2d(await this.lstm(l3, 'fw'), [steps, C]);
    const bw = tf.tensor2d(await this.lstm(l3, 'bw'), [steps, C]);
    l3.dispose();
    const out = tf.tidy(() => this.dense(this.dense(tf.concat([fw, bw], 1) as tf.Tensor2D, '5', true), '6', false));
    fw.dispose();
    bw.dispose();
    const data = (await out.data()) as Float32Array;
    out.dispose();
    return data;
  }

  dispose(): void {
    for (const t of this.w.values()) t.dispose();
    this.w.clear();
    this.whCache.clear();
  }
}

/** The DeepSpeech windows of a clip: one row of 16 × 29 = 464 values per 25 fps frame (AD-NeRF's .npy rows). */
export async function deepspeechFeatures(net: DeepSpeechNet, samples: Float32Array, sampleRate: number): Promise<FeatureSequence> {
  const input = deepspeechInput(samples, sampleRate);
  const logits = await net.logits(input.data, input.steps);
  const win = deepspeechWindows(logits, input.steps, deepspeechRowCount(samples.length, sampleRate));
  return {
    data: win.data,
    frames: win.windows,
    dim: DEEPSPEECH_WINDOW_ROWS * DEEPSPEECH_CLASSES,
    rate: DEEPSPEECH_WINDOW_RATE,
    frameOffset: DEEPSPEECH_FRAME_OFFSET,
  };
}

const MODEL_FROM_CACHE = 'weights-cache';

/** Whether initBackend chose the active backend (else it is tfjs's default). */
const backendChosen = (): boolean => backendInfo() !== undefined;

/**
 * The `deepspeech` audio feature: params `model` (output_graph.pb, the .pb.zip, or absent = the weights cache's
 * `deepspeech` kind from `difftalk weights fetch deepspeech`). Recorded params: the model as given, the sha256 of the
 * file read, and the rules (so a dataset says what its column holds).
 */
export async function createDeepSpeechFeature(params: AudioFeatureParams = {}): Promise<AudioFeatureExtractor> {
  const opts = pickParams<{ model?: string; weights?: string; reference?: string; layout?: string }>('deepspeech', params, {
    model: 'string',
    weights: 'string',
    reference: 'string',
    layout: 'string',
  });
  const given = opts.model && opts.model !== MODEL_FROM_CACHE ? opts.model : undefined;
  const file = given ? path.resolve(given) : await requireWeights('deepspeech');
  const weights = await loadDeepSpeechWeights(file);
  const hash = (await sha256File(file)).slice(0, 16);
  if (opts.weights !== undefined && opts.weights !== hash) {
    throw new DifftalkError('audio-feature-mismatch', `deepspeech: ${file} has sha256 ${hash}…, the dataset was made with ${opts.weights}…`, {
      suggestion: 'give model= the file the dataset was prepared with',
    });
  }
  // tfjs's default Node backend is the plain-JS 'cpu' one (≈ 27× slower matMul than wasm here): when nobody chose a
  // backend, run on wasm, as the tfjs landmark engine does; a chosen backend (render --backend, tests) is kept.
  if (tf.getBackend() === 'cpu' && !backendChosen()) {
    try {
      await initBackend('wasm');
    } catch {
      // stays on cpu: slower, same results
    }
  }
  const net = new DeepSpeechNet(weights, file);
  return {
    name: 'deepspeech',
    params: {
      model: given ?? MODEL_FROM_CACHE,
      weights: hash,
      reference: 'AD-NeRF data_util/deepspeech_features, DeepSpeech 0.1.0 logits',
      layout: '8 windows (frames i-4..i+3) x 16 logit rows (50/s) x 29 classes',
    },
    extract: (samples, sampleRate) => deepspeechFeatures(net, samples, sampleRate),
  };
}

registerAudioFeature('deepspeech', createDeepSpeechFeature);

const MB = 1024 * 1024;
export const DEEPSPEECH_URL = 'https://github.com/osmr/deepspeech_features/releases/download/v0.0.1/deepspeech-0_1_0-b90017e8.pb.zip';

registerWeightKind({
  kind: 'deepspeech',
  description: 'DeepSpeech 0.1.0 frozen graph (AD-NeRF / DiffTalk audio features)',
  sources: [
    {
      flag: 'model',
      fileName: 'deepspeech-0_1_0-b90017e8.pb.zip',
      url: `${DEEPSPEECH_URL} (the file AD-NeRF's data_util/deepspeech_features downloads; output_graph.pb of mozilla/DeepSpeech v0.1.0 zipped)`,
      description: 'DeepSpeech 0.1.0 output_graph.pb, zipped',
      // b90017e8 in the name is not a published sha256: a fetched file is labelled "unverified file <sha256[:12]>"
      download: { url: DEEPSPEECH_URL, maxBytes: 1024 * MB },
    },
  ],
  convert: async ({ inputs }) => {
    const w = await loadDeepSpeechWeights(inputs.model!);
    return { tensors: w, metadata: { format: 'difftalk-deepspeech', version: '0.1.0' } };
  },
});
