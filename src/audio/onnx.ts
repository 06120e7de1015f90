/**
 * An audio feature extractor that runs a user-given ONNX encoder (wav2vec2 / HuBERT / Whisper-encoder style) through
 * onnxruntime-node, loaded with a dynamic import because it is an optional dependency.
 *
 * Model contract: input float32 [1, samples] of 16 kHz mono audio scaled to [−1, 1] (int16 units / 32768; optionally
 * standardised to zero mean, unit variance as wav2vec2's feature extractor does with `standardize=true`); output
 * [1, T, D] (or [T, D]). The feature rate is `rate` when given, else T / duration. The whole clip is one inference.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { DifftalkError, errorMessage } from '../util/errors.js';
import type { AudioFeatureExtractor, FeatureSequence } from './types.js';
import { sha256 } from '../util/fs.js';

export interface OnnxAudioOptions {
  /** Path of the .onnx file. */
  model: string;
  /** Feature frames per second; default T / (samples / sampleRate). */
  rate?: number;
  /** Input tensor name; default the model's first input. */
  input?: string;
  /** Output tensor name; default the model's first output. */
  output?: string;
  /** Sample rate the model expects. Default 16000. */
  sampleRate?: number;
  /** Standardise the waveform to zero mean, unit variance after scaling. Default false. */
  standardize?: boolean;
  /** Extractor name (the Arrow column becomes audio_<id>). Default 'onnx'. */
  id?: string;
  /** Intra-op threads for onnxruntime. Default 1 (prep runs clips in parallel). */
  threads?: number;
  /** Module to import the runtime from. Default 'onnxruntime-node'. */
  runtime?: string;
}

/** The part of the onnxruntime API this module uses. */
export interface OrtTensor {
  readonly dims: readonly number[];
  readonly data: unknown;
  readonly type: string;
}
export interface OrtSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
export interface OrtModule {
  InferenceSession: { create(model: Uint8Array, options?: Record<string, unknown>): Promise<OrtSession> };
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => OrtTensor;
}

export const ONNX_INSTALL_HINT =
  'install the optional runtime: `npm install onnxruntime-node` (on Linux x64 the CPU binary ships inside the package; ' +
  'if it was installed with onnxruntime-node-install=skip and still fails to load, reinstall it without that setting)';

/** Import the runtime or throw DifftalkError('onnx-unavailable') saying how to install it (`purpose`: who needs it). */
export async function loadOnnxRuntime(specifier = 'onnxruntime-node', purpose = 'the ONNX audio feature'): Promise<OrtModule> {
  let mod: unknown;
  try {
    mod = await import(specifier);
  } catch (e) {
    throw new DifftalkError('onnx-unavailable', `${purpose} needs ${specifier}, which cannot be loaded: ${errorMessage(e)}`, {
      suggestion: ONNX_INSTALL_HINT,
      cause: e,
    });
  }
  const m = ((mod as { default?: unknown }).default ?? mod) as Partial<OrtModule>;
  const named = mod as Partial<OrtModule>;
  const ort = { InferenceSession: named.InferenceSession ?? m.InferenceSession, Tensor: named.Tensor ?? m.Tensor };
  if (!ort.InferenceSession || !ort.Tensor) {
    throw new DifftalkError('onnx-unavailable', `${specifier} loaded but has no InferenceSession/Tensor`, { suggestion: ONNX_INSTALL_HINT });
  }
  return ort as OrtModule;
}

/** An extractor with a session to release. */
export interface OnnxAudioFeature extends AudioFeatureExtractor {
  close(): Promise<void>;
}

function parseOptions(params: Record<string, unknown>): OnnxAudioOptions {
  const types: Record<string, string> = {
    model: 'string',
    rate: 'number',
    input: 'string',
    output: 'string',
    sampleRate: 'number',
    standardize: 'boolean',
    id: 'string',
    threads: 'number',
    runtime: 'string',
  };
  for (const [k, v] of Object.entries(params)) {
    if (!types[k]) throw new DifftalkError('bad-audio-params', `onnx: unknown parameter '${k}'`, { suggestion: `known: ${Object.keys(types).join(', ')}` });
    if (v !== undefined && typeof v !== types[k])
      throw new DifftalkError('bad-audio-params', `onnx: parameter '${k}' must be a ${types[k]}, got ${JSON.stringify(v)}`);
  }
  if (typeof params.model !== 'string' || !params.model) {
    throw new DifftalkError('bad-audio-params', 'onnx: the parameter model=<file.onnx> is required');
  }
  const o = params as unknown as OnnxAudioOptions;
  if (o.rate !== undefined && !(o.rate > 0)) throw new DifftalkError('bad-audio-params', `onnx: rate must be positive, got ${o.rate}`);
  if (o.sampleRate !== undefined && !(Number.isInteger(o.sampleRate) && o.sampleRate > 0))
    throw new DifftalkError('bad-audio-params', `onnx: bad sampleRate ${o.sampleRate}`);
  if (o.id !== undefined && !/^[a-z0-9][a-z0-9_-]*$/.test(o.id))
    throw new DifftalkError('bad-audio-params', `onnx: id must match [a-z0-9][a-z0-9_-]*, got '${o.id}'`);
  return o;
}

/** Load the model and build the extractor (registered as 'onnx'). */
export async function createOnnxAudioFeature(params: Record<string, unknown>): Promise<OnnxAudioFeature> {
  const o = parseOptions(params);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(o.model);
  } catch (e) {
    throw new DifftalkError('file-missing', `onnx: cannot read model ${o.model}: ${errorMessage(e)}`, { cause: e });
  }
  const ort = await loadOnnxRuntime(o.runtime);
  let session: OrtSession;
  try {
    session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: o.threads ?? 1, interOpNumThreads: 1 });
  } catch (e) {
    throw new DifftalkError('bad-model', `onnx: onnxruntime cannot load ${o.model}: ${errorMessage(e)}`, { cause: e });
  }
  const inputName = o.input ?? session.inputNames[0];
  const outputName = o.output ?? session.outputNames[0];
  if (!inputName || !session.inputNames.includes(inputName)) {
    throw new DifftalkError('bad-model', `onnx: ${o.model} has no input '${inputName}' (inputs: ${session.inputNames.join(', ')})`);
  }
  if (!outputName || !session.outputNames.includes(outputName)) {
    throw new DifftalkError('bad-model', `onnx: ${o.model} has no output '${outputName}' (outputs: ${session.outputNames.join(', ')})`);
  }
  const expectedRate = o.sampleRate ?? 16000;
  const recorded: Record<string, string | number | boolean> = {
    model: path.basename(o.model),
    sha256: sha256(bytes),
    input: inputName,
    output: outputName,
    sampleRate: expectedRate,
    standardize: o.standardize ?? false,
    rate: o.rate ?? 'from-output',
    scaling: 'int16/32768',
  };
  return {
    name: o.id ?? 'onnx',
    params: recorded,
    async extract(samples: Float32Array, sampleRate: number): Promise<FeatureSequence> {
      if (sampleRate !== expectedRate) {
        throw new DifftalkError('bad-audio-params', `onnx: ${path.basename(o.model)} expects ${expectedRate} Hz audio, got ${sampleRate} Hz`, {
          suggestion: 'decode the audio with loadAudio16k (ffmpeg -ar 16000) or set sampleRate=',
        });
      }
      if (samples.length === 0) throw new DifftalkError('empty-audio', 'onnx: the audio has no samples');
      const x = new Float32Array(samples.length);
      for (let i = 0; i < samples.length; i++) x[i] = samples[i]! / 32768;
      if (o.standardize) {
        let mean = 0;
        for (let i = 0; i < x.length; i++) mean += x[i]!;
        mean /= x.length;
        let v = 0;
        for (let i = 0; i < x.length; i++) v += (x[i]! - mean) ** 2;
        const sd = Math.sqrt(v / x.length + 1e-7);
        for (let i = 0; i < x.length; i++) x[i] = (x[i]! - mean) / sd;
      }
      let out: OrtTensor | undefined;
      try {
        const res = await session.run({ [inputName]: new ort.Tensor('float32', x, [1, x.length]) });
        out = res[outputName];
      } catch (e) {
        throw new DifftalkError('onnx-run-failed', `onnx: running ${path.basename(o.model)} failed: ${errorMessage(e)}`, { cause: e });
      }
      if (!out) throw new DifftalkError('onnx-run-failed', `onnx: no output '${outputName}'`);
      const dims = out.dims;
      const ok = (dims.length === 3 && dims[0] === 1) || dims.length === 2;
      if (!ok || out.type !== 'float32') {
        throw new DifftalkError('bad-model', `onnx: output '${outputName}' must be float32 [1, T, D] or [T, D], got ${out.type} [${dims.join(', ')}]`);
      }
      const frames = dims[dims.length - 2]!;
      const dim = dims[dims.length - 1]!;
      if (frames < 1 || dim < 1) throw new DifftalkError('bad-model', `onnx: output '${outputName}' is empty [${dims.join(', ')}]`);
      const rate = o.rate ?? frames / (samples.length / sampleRate);
      return { data: Float32Array.from(out.data as Float32Array), frames, dim, rate };
    },
    async close() {
      await session.release();
    },
  };
}
