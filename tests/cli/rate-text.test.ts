/**
 * The rate of a finished stage or a bar: items per second, or seconds per item when that is below 1/s (a slow step on
 * a software GPU read "0.0/s" before).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rateText } from '../../src/cli/progress.js';

test('rateText: per second at ≥ 1/s, seconds per item below, "-" before anything is done', () => {
  assert.equal(rateText(200, 1.3, 'frames'), '153.8/s');
  assert.equal(rateText(1, 130, 'clips'), '130.0 s/clip');
  assert.equal(rateText(4, 115.9, 'steps'), '29.0 s/step');
  assert.equal(rateText(3, 1.5, ''), '2.0/s');
  assert.equal(rateText(1, 2, ''), '2.0 s/item');
  assert.equal(rateText(0, 5, 'steps'), '-');
  assert.equal(rateText(3, 0, 'steps'), '-');
});
