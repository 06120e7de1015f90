/**
 * `npm run bench`: throughput on this machine (not a test; numbers go into the issues' closing notes).
 * - prep: frames/s per stage and end to end on the real HDTF clip (../shared), as a user runs it (`--input`),
 *   one run with the clip alone (startup included) and one with several copies (startup amortised);
 * - metrics: frames/s of each frame metric at 256² (bench/metrics.ts).
 * Options (env): BENCH_ONLY=prep|metrics, BENCH_COPIES (default 4), BENCH_LANDMARKER=mediapipe|tfjs.
 */
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { renderPrepSummary, table } from '../src/cli/summary.js';
import { DEFAULT_PREP_CONFIG, runPrep, type PrepResult } from '../src/preprocess/pipeline.js';
import { tf } from '../src/util/tf.js';
import { benchMetrics } from './metrics.js';

const SHARED = process.env.DIFFTALK_SHARED ?? path.resolve(import.meta.dirname, '..', '..', 'shared');
const CLIP = path.join(SHARED, 'data', 'media', 'WDA_AlexandriaOcasioCortez_000.mp4');
const MODEL = path.join(SHARED, 'data', 'models', 'fm478md.task');
const out = (s: string) => process.stdout.write(`${s}\n`);

async function prepOnce(inputs: string[], landmarker: 'mediapipe' | 'tfjs'): Promise<PrepResult> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'difftalk-bench-'));
  try {
    return await runPrep(
      { kind: 'input', paths: inputs },
      { ...DEFAULT_PREP_CONFIG, landmarker, faceModel: landmarker === 'mediapipe' ? MODEL : undefined },
      { out: path.join(dir, 'out'), concurrency: 1, retries: 0, retryFailed: false, preview: false },
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function benchPrep(): Promise<void> {
  const landmarker = (process.env.BENCH_LANDMARKER as 'mediapipe' | 'tfjs' | undefined) ?? 'mediapipe';
  const copies = Number(process.env.BENCH_COPIES ?? 4);
  out(`## prep (--input, ${landmarker} landmarks, 256², jpeg 95, mfcc+mel) on ${path.basename(CLIP)}\n`);
  out('### one clip (200 frames), startup included');
  out(renderPrepSummary(await prepOnce([CLIP], landmarker)));
  const dir = await mkdtemp(path.join(os.tmpdir(), 'difftalk-bench-in-'));
  try {
    await mkdir(dir, { recursive: true });
    const inputs: string[] = [];
    for (let i = 0; i < copies; i++) {
      const f = path.join(dir, `clip${i}.mp4`);
      await copyFile(CLIP, f);
      inputs.push(f);
    }
    out(`\n### ${copies} clips (${copies * 200} frames)`);
    out(renderPrepSummary(await prepOnce(inputs, landmarker)));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const only = process.env.BENCH_ONLY;
out(`# difftalk bench — ${os.cpus().length} cores, ${os.cpus()[0]?.model ?? ''}, node ${process.version}\n`);
if (!only || only === 'prep') await benchPrep();
if (!only || only === 'metrics') {
  out('\n## metrics (frames/s at 256², one prediction/target pair per frame)');
  const r = await benchMetrics();
  out(`(TensorFlow.js backend: ${tf.getBackend()})`);
  out(table([['metric', 'frames/s'], ...Object.entries(r).map(([k, v]) => [k, v.toFixed(1)])]));
}
