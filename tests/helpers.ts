import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runTool } from '../src/util/exec.js';

/** Repository root (tests run from TypeScript sources through tsx). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** ../shared beside the checkout: real media, annotations, models and fixtures (read-only). */
export const SHARED = process.env.DIFFTALK_SHARED ?? path.resolve(ROOT, '..', 'shared');
export const MEDIA = path.join(SHARED, 'data', 'media');
export const HDTF = path.join(SHARED, 'data', 'hdtf');
export const MODELS = path.join(SHARED, 'data', 'models');
export const FIXTURES = path.join(SHARED, 'data', 'fixtures');
export const AOC_CLIP = path.join(MEDIA, 'WDA_AlexandriaOcasioCortez_000.mp4');

/** A fresh temp directory, removed when the test process exits unless DIFFTALK_KEEP_TMP is set. */
export function tmpDir(prefix = 'difftalk-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  if (!process.env.DIFFTALK_KEEP_TMP) process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Run the built CLI (bin/run.js over dist/) as a user would. `killWhen` is polled every 50 ms; when it returns true
 * the whole process group (the CLI and what it started: ffmpeg, Chromium) gets `signal` (default SIGKILL; SIGTERM as a
 * terminal's Ctrl-C or a job scheduler's stop reaches them all).
 */
export function runCli(args: string[], killWhen?: () => boolean, signal: NodeJS.Signals = 'SIGKILL'): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'run.js'), ...args], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    let timer: NodeJS.Timeout | undefined;
    if (killWhen) {
      timer = setInterval(() => {
        if (killWhen()) {
          clearInterval(timer);
          process.kill(-child.pid!, signal);
        }
      }, 50);
    }
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (timer) clearInterval(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * Frames of a video or image decoded by ffmpeg itself (rgb24 over a pipe), optionally through a filter graph: the
 * tests' independent decode, apart from src/media/frames.ts.
 */
export async function ffmpegRgb(file: string, opts: { frames?: number; vf?: string } = {}): Promise<Uint8Array> {
  const args = ['-v', 'error', '-nostdin', '-i', file];
  if (opts.vf) args.push('-vf', opts.vf);
  if (opts.frames !== undefined) args.push('-frames:v', String(opts.frames));
  const { stdout } = await runTool('ffmpeg', [...args, '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1']);
  return new Uint8Array(stdout);
}
