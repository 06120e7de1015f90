/**
 * The fatal-code table (src/util/errors.ts) replaces prep's hand-kept set of strings: a configuration or environment
 * code stops a run, a per-item code drops the item, and a raw exception is never taken for a configuration error.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DifftalkError, isFatal } from '../../src/util/errors.js';

test('isFatal: run-level codes stop the run, per-clip codes and raw exceptions do not', () => {
  for (const code of ['tool-missing', 'bad-flag', 'model-missing', 'config-mismatch', 'foreign-folder', 'interrupted']) {
    assert.ok(isFatal(new DifftalkError(code, 'x')), code);
  }
  for (const code of ['exec-failed', 'video-corrupt', 'landmarker-failed', 'no-such-code']) assert.ok(!isFatal(new DifftalkError(code, 'x')), code);
  assert.ok(!isFatal(new RangeError('bad')));
  assert.ok(!isFatal('tool-missing'), 'a bare string is not an error code');
  // Inherited object keys (Object.prototype's) are not codes.
  assert.ok(!isFatal(new DifftalkError('constructor', 'x')));
});
