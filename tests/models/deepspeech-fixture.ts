/** Test helper: the small DeepSpeech-0.1.0-structured graph and AD-NeRF's NumPy pipeline on a WAV (tests/reference/deepspeech_reference.py). */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { runProcess } from '../../src/util/exec.js';
import { MEDIA, ROOT } from '../helpers.js';

export const PY = '/usr/bin/python3';
export const DEEPSPEECH_REF = path.join(ROOT, 'tests', 'reference', 'deepspeech_reference.py');

export interface DeepSpeechRefMeta {
  samples: number;
  steps: number;
  rows: number;
  windows: number;
  round_rows: Record<string, number>;
}

/** Float32 little-endian file → Float32Array. */
export function readF32(file: string): Float32Array {
  const b = readFileSync(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** Run the NumPy pipeline of `graph` on `wav` into `out` (input.f32, logits.f32, windows.f32, meta.json). */
export async function deepspeechReference(graph: string, wav: string, out: string): Promise<DeepSpeechRefMeta> {
  await runProcess(PY, [DEEPSPEECH_REF, 'run', graph, wav, out]);
  return JSON.parse(readFileSync(path.join(out, 'meta.json'), 'utf8')) as DeepSpeechRefMeta;
}

/** Build a small GraphDef with the reference script and run AD-NeRF's pipeline on jfk.wav (shared by the prep test). */
export async function deepspeechFixture(dir: string): Promise<{ graph: string; out: string; meta: DeepSpeechRefMeta }> {
  const graph = path.join(dir, 'small_deepspeech.pb');
  const out = path.join(dir, 'ref');
  await runProcess(PY, [DEEPSPEECH_REF, 'graph', graph]);
  return { graph, out, meta: await deepspeechReference(graph, path.join(MEDIA, 'jfk.wav'), out) };
}
