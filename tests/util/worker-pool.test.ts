/**
 * src/util/worker-pool.ts with a real worker script (tests/util/pool-task.ts): results reach the right caller,
 * buffers are transferred both ways (the sender's copy detached), a DifftalkError keeps its code and suggestion, a
 * worker that dies fails only its task and the pool goes on, close() ends the workers and refuses new tasks, and a pool
 * that is never closed does not keep the process alive.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { DifftalkError } from '../../src/util/errors.js';
import { runProcess } from '../../src/util/exec.js';
import { WorkerPool } from '../../src/util/worker-pool.js';
import type { PoolTestRequest } from './pool-task.js';
import { ROOT } from '../helpers.js';

const SCRIPT = pathToFileURL(path.join(ROOT, 'tests', 'util', 'pool-task.ts'));

test('WorkerPool: typed tasks on at most `size` workers, transfers, errors, dead worker, close', { timeout: 60_000 }, async () => {
  const pool = new WorkerPool<PoolTestRequest, { sum: number; back: ArrayBuffer }>(SCRIPT, { size: 2 });
  assert.equal(pool.started, 0, 'no worker before the first task');
  const bufs = Array.from({ length: 5 }, (_, i) => new Uint8Array(1000).fill(i + 1).buffer);
  const res = await Promise.all(bufs.map((b) => pool.run({ op: 'sum', data: b }, [b])));
  assert.deepEqual(
    res.map((r) => r.sum),
    [1000, 2000, 3000, 4000, 5000],
  );
  assert.ok(
    bufs.every((b) => b.byteLength === 0),
    'sent buffers are transferred (detached here)',
  );
  assert.equal(res[2]!.back.byteLength, 1000, 'the buffer came back');
  assert.ok(pool.started <= 2);
  await assert.rejects(pool.run({ op: 'fail' }), (e: unknown) => e instanceof DifftalkError && e.code === 'test-code' && e.suggestion === 'do not ask');
  await assert.rejects(pool.run({ op: 'die' }), (e: unknown) => e instanceof DifftalkError && /exited \(code 3\)/.test(e.message));
  const again = new Uint8Array(10).fill(7).buffer;
  assert.equal((await pool.run({ op: 'sum', data: again }, [again])).sum, 70, 'the pool goes on after a worker died');
  await pool.close();
  assert.equal(pool.started, 0);
  await assert.rejects(pool.run({ op: 'fail' }), /closed/);
  await pool.close();
});

test('WorkerPool: a pool left open does not keep the process from exiting', { timeout: 60_000 }, async () => {
  const code = [
    `import { WorkerPool } from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'src', 'util', 'worker-pool.ts')).href)};`,
    `const pool = new WorkerPool(new URL(${JSON.stringify(SCRIPT.href)}), { size: 2 });`,
    `const b = new Uint8Array(4).fill(2).buffer;`,
    `console.log((await pool.run({ op: 'sum', data: b }, [b])).sum);`,
  ].join('\n');
  const t0 = performance.now();
  const r = await runProcess(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: ROOT, timeoutMs: 30_000 });
  assert.equal(r.stdout.toString().trim(), '8');
  assert.ok(performance.now() - t0 < 30_000);
});
