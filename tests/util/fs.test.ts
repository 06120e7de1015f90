import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { DifftalkError } from '../../src/util/errors.js';
import { checkOutputFolder, sweepTempFiles } from '../../src/util/fs.js';
import { tmpDir } from '../helpers.js';

const opts = { marker: 'made-by-me.json', creator: 'difftalk thing', force: false, forceNote: 'files named like its outputs are replaced' };

test('checkOutputFolder: absent, empty, own (marker) and forced folders pass; a foreign one or a file is refused; nothing is created', async () => {
  const dir = tmpDir();
  const absent = path.join(dir, 'absent');
  assert.equal(await checkOutputFolder(absent, opts), 'absent');
  assert.equal(existsSync(absent), false);
  const empty = path.join(dir, 'empty');
  mkdirSync(empty);
  assert.equal(await checkOutputFolder(empty, opts), 'empty');
  const own = path.join(dir, 'own');
  mkdirSync(own);
  writeFileSync(path.join(own, 'made-by-me.json'), '{}');
  writeFileSync(path.join(own, 'x'), '');
  assert.equal(await checkOutputFolder(own, opts), 'own');
  const foreign = path.join(dir, 'foreign');
  mkdirSync(foreign);
  writeFileSync(path.join(foreign, 'notes.txt'), 'mine');
  await assert.rejects(
    checkOutputFolder(foreign, opts),
    (e: unknown) =>
      e instanceof DifftalkError &&
      e.code === 'foreign-folder' &&
      e.message.includes('was not created by difftalk thing (no made-by-me.json)') &&
      /--force .*files named like its outputs are replaced/.test(e.suggestion ?? ''),
  );
  assert.equal(await checkOutputFolder(foreign, { ...opts, force: true }), 'forced');
  const file = path.join(dir, 'file');
  writeFileSync(file, '');
  await assert.rejects(checkOutputFolder(file, { ...opts, force: true }), (e: unknown) => e instanceof DifftalkError && /is not a folder/.test(e.message));
  assert.deepEqual(readdirSync(foreign), ['notes.txt']);
});

test('sweepTempFiles: removes `.<name>.<pid>.<hex>.tmp` down to the given depth, nothing else', async () => {
  const dir = tmpDir();
  mkdirSync(path.join(dir, 'a', 'b'), { recursive: true });
  const tmp = (d: string) => path.join(d, '.f.jpg.123.0a1b2c3d.tmp');
  for (const d of [dir, path.join(dir, 'a'), path.join(dir, 'a', 'b')]) {
    writeFileSync(tmp(d), 'half');
    writeFileSync(path.join(d, 'keep.tmp'), 'user');
  }
  await sweepTempFiles(dir, 1);
  assert.equal(existsSync(tmp(dir)), false);
  assert.equal(existsSync(tmp(path.join(dir, 'a'))), false);
  assert.equal(existsSync(tmp(path.join(dir, 'a', 'b'))), true, 'below the depth');
  for (const d of [dir, path.join(dir, 'a'), path.join(dir, 'a', 'b')]) assert.ok(existsSync(path.join(d, 'keep.tmp')));
});
