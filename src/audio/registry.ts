/**
 * Audio feature extractors as plug-ins: a factory per name, built-ins 'mfcc' (python_speech_features 0.6.1) and
 * 'mel' (80-bin log-mel), plus 'onnx' (a user's ONNX encoder, onnx.ts). `createAudioFeature('mfcc')`,
 * `createAudioFeature({ name: 'mel', nMels: 64 })` or, from a CLI flag, `createAudioFeature(parseAudioFeatureSpec('mel:nMels=64'))`.
 */
import { DifftalkError } from '../util/errors.js';
import type { AudioFeatureExtractor, FeatureSequence } from './types.js';
import { logMel, resolveMelOptions, type MelOptions } from './mel.js';
import { mfcc, resolveMfccOptions, type MfccOptions } from './mfcc.js';
import { createOnnxAudioFeature } from './onnx.js';

/** Parameter values as they arrive from JSON manifests or `key=value` flags. */
export type AudioFeatureParams = Record<string, unknown>;

export type AudioFeatureFactory = (params: AudioFeatureParams) => AudioFeatureExtractor | Promise<AudioFeatureExtractor>;

/** A name, or a name plus parameters. */
export type AudioFeatureSpec = string | ({ name: string } & AudioFeatureParams);

const factories = new Map<string, AudioFeatureFactory>();

/** Register a factory. Names are [a-z0-9_-]+; registering a taken name throws unless `replace` is set. */
export function registerAudioFeature(name: string, factory: AudioFeatureFactory, opts: { replace?: boolean } = {}): void {
  if (!/^[a-z0-9][a-z0-9_-]*$/.test(name)) throw new DifftalkError('bad-audio-feature', `invalid audio feature name '${name}' (use a-z, 0-9, _ and -)`);
  if (factories.has(name) && !opts.replace) throw new DifftalkError('bad-audio-feature', `audio feature '${name}' is already registered`);
  factories.set(name, factory);
}

export function listAudioFeatures(): string[] {
  return [...factories.keys()].sort();
}

/** Build an extractor from a spec; unknown names and unknown or invalid parameters are DifftalkErrors. */
export async function createAudioFeature(spec: AudioFeatureSpec): Promise<AudioFeatureExtractor> {
  const { name, ...params } = typeof spec === 'string' ? { name: spec } : spec;
  const factory = factories.get(name);
  if (!factory) {
    throw new DifftalkError('bad-audio-feature', `unknown audio feature '${name}'`, { suggestion: `available: ${listAudioFeatures().join(', ')}` });
  }
  return factory(params);
}

/** Parse a CLI spec `name` or `name:key=value,key=value` (values: numbers, true/false, else strings). */
export function parseAudioFeatureSpec(text: string): AudioFeatureSpec {
  const idx = text.indexOf(':');
  const name = (idx < 0 ? text : text.slice(0, idx)).trim();
  if (!name) throw new DifftalkError('bad-audio-feature', `empty audio feature spec '${text}'`);
  if (idx < 0) return name;
  const spec: { name: string } & AudioFeatureParams = { name };
  for (const part of text.slice(idx + 1).split(',')) {
    if (!part.trim()) continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new DifftalkError('bad-audio-feature', `bad parameter '${part}' in '${text}' (expected key=value)`);
    const key = part.slice(0, eq).trim();
    const raw = part.slice(eq + 1).trim();
    spec[key] = raw === 'true' ? true : raw === 'false' ? false : raw !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
  }
  return spec;
}

/** Take typed options out of a params bag; any key not in `types` is an error naming it. */
export function pickParams<T>(feature: string, params: AudioFeatureParams, types: Record<string, 'number' | 'boolean' | 'string'>): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(params)) {
    const want = types[k];
    if (!want) {
      throw new DifftalkError('bad-audio-params', `${feature}: unknown parameter '${k}'`, { suggestion: `known: ${Object.keys(types).join(', ')}` });
    }
    if (v === undefined) continue;
    let val: unknown = v;
    if (want === 'number' && typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) val = Number(v);
    if (want === 'boolean' && (v === 'true' || v === 'false')) val = v === 'true';
    if (typeof val !== want || (want === 'number' && !Number.isFinite(val as number))) {
      throw new DifftalkError('bad-audio-params', `${feature}: parameter '${k}' must be a ${want}, got ${JSON.stringify(v)}`);
    }
    out[k] = val;
  }
  return out as T;
}

function toSequence(r: { data: Float64Array; frames: number; dim: number; rate: number }): FeatureSequence {
  return { data: Float32Array.from(r.data), frames: r.frames, dim: r.dim, rate: r.rate };
}

/** Record every option, 'auto' for the ones that depend on the sample rate and were not given. */
function recordParams(given: object, resolved: object, auto: string[]): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(resolved))
    out[k] = auto.includes(k) && (given as Record<string, unknown>)[k] === undefined ? 'auto' : (v as number | boolean);
  return out;
}

const MFCC_PARAM_TYPES = {
  winlen: 'number',
  winstep: 'number',
  numcep: 'number',
  nfilt: 'number',
  nfft: 'number',
  lowfreq: 'number',
  highfreq: 'number',
  preemph: 'number',
  ceplifter: 'number',
  appendEnergy: 'boolean',
} as const;

const MEL_PARAM_TYPES = {
  nMels: 'number',
  winlen: 'number',
  winstep: 'number',
  nfft: 'number',
  fmin: 'number',
  fmax: 'number',
  logFloor: 'number',
} as const;

/** The built-in MFCC extractor (python_speech_features 0.6.1 `mfcc`). */
export function createMfccExtractor(params: AudioFeatureParams = {}): AudioFeatureExtractor {
  const opts = pickParams<MfccOptions>('mfcc', params, MFCC_PARAM_TYPES);
  // Validate now (at 16 kHz, or higher when highfreq needs it); sample-rate-dependent values are re-resolved per call.
  const resolved = resolveMfccOptions(Math.max(16000, 2 * (opts.highfreq ?? 0)), opts);
  return {
    name: 'mfcc',
    params: { ...recordParams(opts, resolved, ['nfft', 'highfreq']), reference: 'python_speech_features 0.6.1 mfcc', input: 'int16 units' },
    extract: async (samples, sampleRate) => toSequence(mfcc(samples, sampleRate, opts)),
  };
}

/** The built-in log-mel extractor (mel.ts). */
export function createMelExtractor(params: AudioFeatureParams = {}): AudioFeatureExtractor {
  const opts = pickParams<MelOptions>('mel', params, MEL_PARAM_TYPES);
  const resolved = resolveMelOptions(Math.max(16000, 2 * (opts.fmax ?? 0)), opts);
  return {
    name: 'mel',
    params: { ...recordParams(opts, resolved, ['nfft', 'fmax']), scale: 'slaney', norm: 'slaney', window: 'hann-periodic', log: 'ln', input: 'int16/32768' },
    extract: async (samples, sampleRate) => toSequence(logMel(samples, sampleRate, opts)),
  };
}

registerAudioFeature('mfcc', createMfccExtractor);
registerAudioFeature('mel', createMelExtractor);
registerAudioFeature('onnx', createOnnxAudioFeature);
