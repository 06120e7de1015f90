/** Task script for tests/util/worker-pool.test.ts: sums a transferred buffer, fails with a DifftalkError, or dies. */
import { DifftalkError } from '../../src/util/errors.js';
import { serveTasks } from '../../src/util/worker-pool.js';

export type PoolTestRequest = { op: 'sum'; data: ArrayBuffer } | { op: 'fail' } | { op: 'die' };

serveTasks<PoolTestRequest, { sum: number; back: ArrayBuffer }>((req) => {
  if (req.op === 'fail') throw new DifftalkError('test-code', 'asked to fail', { suggestion: 'do not ask' });
  if (req.op === 'die') process.exit(3);
  const bytes = new Uint8Array(req.data);
  const sum = bytes.reduce((a, b) => a + b, 0);
  return { result: { sum, back: req.data }, transfer: [req.data] };
});
