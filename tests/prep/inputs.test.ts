/**
 * prep --input file names in any script become safe, distinct, deterministic clip ids (before: a Cyrillic, CJK or
 * emoji file name threw 'unsafe-name' from safeId and aborted the whole run). Real files on disk, no media decoding.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { clipIdFromStem, clipsFromInputs } from '../../src/prep/inputs.js';
import { isSafeName } from '../../src/util/names.js';
import { tmpDir } from '../helpers.js';

const NAMES = ['Лекция', '講演', '🎤🎤', 'my talk', '-rf', 'Интервью_1', 'plain_name'];

test('file names in other scripts, with spaces or a leading "-" give safe, distinct ids; a plain name is kept', async () => {
  const dir = tmpDir();
  for (const n of NAMES) writeFileSync(path.join(dir, `${n}.mp4`), '');
  const clips = await clipsFromInputs([dir]);
  assert.equal(clips.length, NAMES.length);
  const ids = clips.map((c) => c.id);
  for (const id of ids) assert.ok(isSafeName(id), id);
  assert.equal(new Set(ids).size, NAMES.length, 'distinct');
  assert.ok(ids.includes('plain_name'));
  assert.ok(ids.includes('my_talk'), 'an ASCII name keeps its plain safe form');
  assert.ok(!ids.some((id) => id.startsWith('-')));
  // Deterministic: a rerun finds the same ids.
  assert.deepEqual(
    NAMES.map((n) => clipIdFromStem(n)),
    NAMES.map((n) => clipIdFromStem(n)),
  );
  assert.match(clipIdFromStem('Лекция'), /^clip-[0-9a-f]{8}$/);
});
