/**
 * doctor: what each part of difftalk needs and whether this machine has it, each missing piece with the exact fix.
 * Never prints (the command renders the report); never throws for a missing piece (that is a finding).
 */
import { existsSync, readdirSync, statfsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { OFFICIAL_FACE_MODEL, modelCacheDir } from '../face/landmarks/model.js';
import { weightsDir } from '../models/weights-store.js';
import { errorMessage } from '../util/errors.js';
import { runProcess } from '../util/exec.js';
import { TOOLS, resolveTool, type ToolName } from '../util/tools.js';

export type CheckStatus = 'ok' | 'warn' | 'missing';

export interface DoctorCheck {
  /** What is checked (`ffmpeg`, `tfjs backend webgpu`, …). */
  name: string;
  status: CheckStatus;
  /** What was found (version, path, adapter …) or what is wrong. */
  detail: string;
  /** Which difftalk parts need it. */
  neededBy: string;
  /** The exact fix when status is not ok. */
  fix?: string;
  /** Extra facts (codecs, adapter features, bytes free). */
  data?: Record<string, unknown>;
}

export interface DoctorReport {
  checks: DoctorCheck[];
  ok: boolean;
}

/** Codecs difftalk uses: lossless intermediates (ffvhuff), render output (libx264 + aac), image frames (mjpeg, png). */
export const FFMPEG_ENCODERS = ['ffvhuff', 'libx264', 'aac', 'mjpeg', 'png'] as const;
/** YouTube changes often; a yt-dlp older than this cannot download from it today. */
export const YTDLP_MIN_YEAR = 2025;
/** Free disk below this is flagged (a 5-clip HDTF dataset with downloads needs a few GB). */
export const MIN_FREE_BYTES = 5 * 1024 ** 3;
const BACKENDS = ['wasm', 'cpu', 'tensorflow', 'webgpu'] as const;
const PROBE_TIMEOUT_MS = 60_000;

const here = fileURLToPath(import.meta.url);
const require = createRequire(import.meta.url);

async function version(program: string, args: string[]): Promise<string> {
  const r = await runProcess(program, args, { timeoutMs: PROBE_TIMEOUT_MS });
  return (r.stdout.toString() || r.stderr.toString()).split('\n')[0]!.trim();
}

async function toolCheck(tool: ToolName, neededBy: string): Promise<{ check: DoctorCheck; bin?: string }> {
  let bin: string;
  try {
    bin = resolveTool(tool);
  } catch (e) {
    return { check: { name: tool, status: 'missing', detail: errorMessage(e), neededBy, fix: TOOLS[tool].install } };
  }
  try {
    const v = await version(bin, tool === 'chromium' || tool === 'yt-dlp' ? ['--version'] : ['-version']);
    return { check: { name: tool, status: 'ok', detail: `${v} (${bin})`, neededBy }, bin };
  } catch (e) {
    return { check: { name: tool, status: 'missing', detail: `${bin} does not run: ${errorMessage(e)}`, neededBy, fix: TOOLS[tool].install } };
  }
}

async function ffmpegCodecs(check: DoctorCheck, bin: string): Promise<void> {
  const r = await runProcess(bin, ['-hide_banner', '-encoders'], { timeoutMs: PROBE_TIMEOUT_MS });
  const have = new Set(
    r.stdout
      .toString()
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[1]),
  );
  const missing = FFMPEG_ENCODERS.filter((c) => !have.has(c));
  check.data = { encoders: Object.fromEntries(FFMPEG_ENCODERS.map((c) => [c, have.has(c)])) };
  if (missing.length) {
    check.status = 'missing';
    check.detail += `; encoders missing: ${missing.join(', ')}`;
    check.fix = 'install a full ffmpeg build (Debian/Ubuntu: apt-get install ffmpeg), or set FFMPEG_PATH to one';
  } else check.detail += `; encoders ${FFMPEG_ENCODERS.join(', ')} present`;
}

function ytdlpAge(check: DoctorCheck): void {
  const m = /(\d{4})\.(\d{2})\.(\d{2})/.exec(check.detail);
  if (!m) return;
  check.data = { version: m[0] };
  if (Number(m[1]) < YTDLP_MIN_YEAR) {
    check.status = 'warn';
    check.detail += ` — too old for YouTube today (older than ${YTDLP_MIN_YEAR})`;
    check.fix =
      'install a current yt-dlp: pipx install yt-dlp (or python3 -m pip install --user -U yt-dlp, or the release binary from ' +
      'https://github.com/yt-dlp/yt-dlp/releases) and put it first on PATH or set YTDLP_PATH';
  }
}

async function probeBackend(name: (typeof BACKENDS)[number]): Promise<DoctorCheck> {
  const neededBy = 'train, render, eval (--backend)';
  const script = here.endsWith('.ts') ? path.join(path.dirname(here), 'probe-backend.ts') : path.join(path.dirname(here), 'probe-backend.js');
  const args = here.endsWith('.ts') ? ['--import', 'tsx', script, name] : [script, name];
  const fixes: Record<string, string> = {
    wasm: 'reinstall difftalk (npm ci): @tensorflow/tfjs-backend-wasm is a dependency',
    cpu: 'reinstall difftalk (npm ci)',
    tensorflow: 'npm install @tensorflow/tfjs-node (native CPU) or @tensorflow/tfjs-node-gpu (CUDA 11); the install downloads libtensorflow',
    webgpu: 'npm install webgpu, and a Vulkan driver (GPU driver, or Mesa lavapipe on a CPU: apt-get install mesa-vulkan-drivers); export XDG_RUNTIME_DIR=/tmp',
  };
  let out: { ok?: boolean; backend?: string; error?: string; adapter?: string; features?: string[] };
  try {
    const r = await runProcess(process.execPath, args, {
      timeoutMs: PROBE_TIMEOUT_MS,
      env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
    });
    out = JSON.parse(r.stdout.toString().trim().split('\n').at(-1) ?? '{}') as typeof out;
  } catch (e) {
    out = { ok: false, error: `probe crashed: ${errorMessage(e)}` };
  }
  const check: DoctorCheck = out.ok
    ? { name: `tfjs backend ${name}`, status: 'ok', detail: out.adapter ? `runs; adapter ${out.adapter}` : 'runs', neededBy }
    : {
        name: `tfjs backend ${name}`,
        status: name === 'wasm' || name === 'cpu' ? 'missing' : 'warn',
        detail: (out.error ?? 'did not start') + (out.adapter ? ` (adapter found: ${out.adapter})` : ''),
        neededBy,
        fix: fixes[name],
      };
  if (out.adapter) check.data = { adapter: out.adapter, features: out.features ?? [] };
  return check;
}

function onnxCheck(): DoctorCheck {
  const neededBy = 'prep --audio-feature onnx:…';
  try {
    const pkg = require.resolve('onnxruntime-node/package.json');
    const v = (require(pkg) as { version?: string }).version ?? '?';
    return { name: 'onnxruntime-node', status: 'ok', detail: `onnxruntime-node ${v}`, neededBy };
  } catch {
    return { name: 'onnxruntime-node', status: 'warn', detail: 'not installed (optional)', neededBy, fix: 'npm install onnxruntime-node' };
  }
}

function faceModelCheck(): DoctorCheck {
  const file = path.join(modelCacheDir(), OFFICIAL_FACE_MODEL.name);
  const neededBy = 'prep, render, eval (--landmark-engine mediapipe)';
  if (existsSync(file)) return { name: 'face model cache', status: 'ok', detail: file, neededBy };
  return {
    name: 'face model cache',
    status: 'warn',
    detail: `${file} not downloaded yet (downloaded on first use, needs internet)`,
    neededBy,
    fix: `with internet nothing to do; offline: download ${OFFICIAL_FACE_MODEL.url} to ${file}, or pass --face-model <file.task>`,
  };
}

function weightsCheck(): DoctorCheck {
  const dir = weightsDir();
  const neededBy = 'eval (LPIPS, LSE), train/render with imported weights';
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.safetensors')) : [];
  if (files.length) return { name: 'weights cache', status: 'ok', detail: `${dir}: ${files.join(', ')}`, neededBy, data: { files } };
  return {
    name: 'weights cache',
    status: 'warn',
    detail: `${dir}: no imported weights`,
    neededBy,
    fix: 'difftalk weights import --kind <kind> … (see docs/commands/weights.md)',
  };
}

function diskCheck(dir: string): DoctorCheck {
  const s = statfsSync(dir);
  const free = s.bavail * s.bsize;
  const gb = (free / 1024 ** 3).toFixed(1);
  const check: DoctorCheck = {
    name: 'free disk',
    status: 'ok',
    detail: `${gb} GiB free at ${dir}`,
    neededBy: 'prep (downloads, shards), train (checkpoints)',
    data: { bytes: free },
  };
  if (free < MIN_FREE_BYTES) Object.assign(check, { status: 'warn', fix: `free space at ${dir} (a 5-clip HDTF dataset needs a few GiB)` });
  return check;
}

/** Run every check; `cwd` is where free disk is measured. */
export async function runDoctor(opts: { cwd?: string } = {}): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  const nodeMajor = Number(process.versions.node.split('.')[0]);
  checks.push(
    nodeMajor >= 20
      ? { name: 'node', status: 'ok', detail: `v${process.versions.node}`, neededBy: 'everything' }
      : { name: 'node', status: 'missing', detail: `v${process.versions.node} (needs ≥ 20)`, neededBy: 'everything', fix: 'install Node.js 20 or newer' },
  );
  const ffmpeg = await toolCheck('ffmpeg', 'prep, render, eval');
  if (ffmpeg.bin) await ffmpegCodecs(ffmpeg.check, ffmpeg.bin);
  checks.push(ffmpeg.check);
  checks.push((await toolCheck('ffprobe', 'prep, render, eval')).check);
  const yt = await toolCheck('yt-dlp', 'prep --hdtf (downloads)');
  if (yt.bin) ytdlpAge(yt.check);
  checks.push(yt.check);
  checks.push((await toolCheck('chromium', 'prep/render --landmarker mediapipe (default)')).check);
  checks.push(faceModelCheck());
  for (const b of BACKENDS) checks.push(await probeBackend(b));
  checks.push(onnxCheck());
  checks.push(weightsCheck());
  checks.push(diskCheck(opts.cwd ?? process.cwd()));
  return { checks, ok: checks.every((c) => c.status !== 'missing') };
}
