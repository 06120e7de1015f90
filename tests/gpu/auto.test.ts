/**
 * Backends explained (issue 13 point 3): `auto` picks without stack traces and says what it picked and why (each
 * skipped backend with its reason; a software WebGPU adapter such as lavapipe is skipped for wasm); `cpu` warns that it
 * is a slow reference; the --backend flag's help says which backend to use where. Runs in a child process so that the
 * stderr of the whole selection can be checked for stack traces.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { backendFlag } from '../../src/cli/flags.js';
import { ROOT } from '../helpers.js';

const SCRIPT = `
import { initBackend } from './src/util/tf.ts';
const events = [];
const a = await initBackend('auto', (e) => events.push(e));
const c = await initBackend('cpu', (e) => events.push(e));
console.log(JSON.stringify({ a, c, events }));
`;

test('auto says what it picked and why, with no stack trace; cpu warns', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', SCRIPT], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace on stderr');
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { a: string; c: string; events: { level: string; message: string }[] };
  assert.ok(['tensorflow', 'webgpu', 'wasm'].includes(out.a), `auto picked ${out.a}`);
  assert.equal(out.c, 'cpu');
  const picked = out.events[0]!;
  assert.equal(picked.level, 'info');
  assert.match(picked.message, new RegExp(`^TensorFlow.js backend: ${out.a} \\(auto: `));
  if (out.a === 'wasm') assert.match(picked.message, /tensorflow skipped: .*webgpu skipped: /);
  assert.ok(out.events.some((e) => e.level === 'warn' && /reference.*orders of magnitude slower than wasm/.test(e.message)));
});

test('the --backend help says which backend to use where', () => {
  const f = backendFlag() as { summary?: string; description?: string };
  const help = `${f.summary} ${f.description}`;
  assert.match(help, /webgpu on a GPU/);
  assert.match(help, /wasm on a CPU/);
  assert.match(help, /cpu.*slow/);
});
