/**
 * `difftalk doctor` on this machine: every check is there, what it reports matches the tools themselves (asked
 * independently here), and a missing tool is reported with its fix and exit code 1 instead of a stack trace.
 */
import assert from 'node:assert/strict';
import { statfsSync } from 'node:fs';
import { describe, test } from 'node:test';
import type { DoctorReport } from '../../src/doctor/index.js';
import { runProcess } from '../../src/util/exec.js';
import { ROOT, runCli } from '../helpers.js';

const GIB = 1024 ** 3;
const NAMES = [
  'node',
  'ffmpeg',
  'ffprobe',
  'yt-dlp',
  'chromium',
  'face model cache',
  'tfjs backend wasm',
  'tfjs backend cpu',
  'tfjs backend tensorflow',
  'tfjs backend webgpu',
  'onnxruntime-node',
  'weights cache',
  'free disk',
];

describe('difftalk doctor', () => {
  test('--json lists every part; versions, encoders, yt-dlp age and disk agree with the tools', async () => {
    const run = await runCli(['doctor', '--json']);
    const report = JSON.parse(run.stdout) as DoctorReport;
    assert.deepEqual(
      report.checks.map((c) => c.name),
      NAMES,
    );
    const by = new Map(report.checks.map((c) => [c.name, c]));
    assert.equal(by.get('node')!.detail, process.version);
    for (const c of report.checks) if (c.status !== 'ok') assert.ok(c.fix, `${c.name} has a fix`);
    // ffmpeg's own encoder list (by `-h encoder=<name>`, a different query than doctor's `-encoders`).
    const ffmpeg = by.get('ffmpeg')!;
    for (const [codec, has] of Object.entries((ffmpeg.data as { encoders: Record<string, boolean> }).encoders)) {
      const h = await runProcess('ffmpeg', ['-hide_banner', '-h', `encoder=${codec}`]);
      assert.equal(has, !/is not recognized/.test(h.stdout.toString()), codec);
    }
    const yt = (await runProcess('yt-dlp', ['--version'])).stdout.toString().trim();
    const ytCheck = by.get('yt-dlp')!;
    assert.match(ytCheck.detail, new RegExp(yt.replace(/\./g, '\\.')));
    assert.equal(ytCheck.status, Number(yt.slice(0, 4)) < 2025 ? 'warn' : 'ok');
    if (ytCheck.status === 'warn') assert.match(ytCheck.fix!, /yt-dlp/);
    // wasm and cpu ship with difftalk and must run.
    assert.equal(by.get('tfjs backend wasm')!.status, 'ok');
    assert.equal(by.get('tfjs backend cpu')!.status, 'ok');
    const s = statfsSync(ROOT);
    assert.ok(Math.abs((by.get('free disk')!.data as { bytes: number }).bytes - s.bavail * s.bsize) < GIB, 'free disk within 1 GiB');
    assert.equal(run.code, report.ok ? 0 : 1);
  });

  test('a missing tool is reported with the exact fix, exit 1, no stack trace', async () => {
    const saved = process.env.FFPROBE_PATH;
    process.env.FFPROBE_PATH = '/nonexistent/ffprobe';
    try {
      const run = await runCli(['doctor']);
      assert.equal(run.code, 1);
      assert.match(run.stdout, /MISS {2}ffprobe: FFPROBE_PATH=\/nonexistent\/ffprobe is not an executable file\n\s+fix: apt-get install ffmpeg/);
      assert.doesNotMatch(run.stdout + run.stderr, /\n\s+at .+:\d+:\d+/);
    } finally {
      if (saved === undefined) delete process.env.FFPROBE_PATH;
      else process.env.FFPROBE_PATH = saved;
    }
  });
});
