/**
 * Independent face boxes for the face tests: scikit-image's LBP frontal-face cascade (tests/reference/
 * face_box_reference.py) on frames or images decoded by ffmpeg to PNG. No MediaPipe or tfjs model is involved.
 */
import path from 'node:path';
import { runProcess, runTool } from '../../src/util/exec.js';
import { ROOT, tmpDir } from '../helpers.js';

export interface ReferenceFace {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** The largest LBP-cascade face in the frame at each time of `video` (or in a still image: times = [0]), or null. */
export async function referenceFaces(video: string, times: readonly number[]): Promise<(ReferenceFace | null)[]> {
  const dir = tmpDir();
  const pngs: string[] = [];
  for (const [k, t] of times.entries()) {
    const png = path.join(dir, `${k}.png`);
    await runTool('ffmpeg', ['-v', 'error', '-nostdin', ...(t > 0 ? ['-ss', String(t)] : []), '-i', video, '-frames:v', '1', png]);
    pngs.push(png);
  }
  const { stdout } = await runProcess('/usr/bin/python3', [path.join(ROOT, 'tests/reference/face_box_reference.py'), ...pngs]);
  return JSON.parse(stdout.toString()) as (ReferenceFace | null)[];
}

/** Centre of a box. */
export const centre = (b: ReferenceFace): { x: number; y: number } => ({ x: b.x + b.w / 2, y: b.y + b.h / 2 });
