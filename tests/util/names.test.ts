/** Safe-name rules shared by the HDTF manifest (video names) and --input file stems. Exact string expectations. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DifftalkError } from '../../src/util/errors.js';
import { assertSafeName, isSafeName, safeId, unsafeNameReason, unsafeUrlReason } from '../../src/util/names.js';

test('unsafe names are refused with a reason', () => {
  for (const s of ['', '.', '..', '../x', '..x', 'a/b', 'a\\b', '/abs', '-rf', '--exec', '.hidden', 'a\0b', 'a b', 'x'.repeat(129), 'é']) {
    assert.equal(isSafeName(s), false, JSON.stringify(s));
    assert.ok(unsafeNameReason(s));
  }
  for (const s of ['AdamSchiff', 'JoeCrowley0', 'LucilleRoybal-Allard', 'WDA_AlexandriaOcasioCortez_000', 'a.b', '0']) assert.equal(isSafeName(s), true, s);
  assert.throws(
    () => assertSafeName('../x', 'video name'),
    (e) => e instanceof DifftalkError && e.code === 'unsafe-name' && /video name "..\/x"/.test(e.message),
  );
  assert.equal(assertSafeName('ok'), 'ok');
});

test('safeId turns file stems into safe ids deterministically', () => {
  assert.equal(safeId('my video (1)'), 'my_video_1_');
  assert.equal(safeId('-rf'), 'rf');
  assert.equal(safeId('../../etc/passwd'), 'etc_passwd');
  assert.equal(safeId('Café talk'), 'Cafe_talk');
  assert.equal(safeId('latentsync_demo1_video'), 'latentsync_demo1_video');
  assert.throws(
    () => safeId('...'),
    (e) => e instanceof DifftalkError && e.code === 'unsafe-name',
  );
  assert.throws(
    () => safeId('---'),
    (e) => e instanceof DifftalkError && e.code === 'unsafe-name',
  );
});

test('URLs: http(s) only, never option-like', () => {
  assert.equal(unsafeUrlReason('https://www.youtube.com/watch?v=abc'), undefined);
  assert.equal(unsafeUrlReason('http://127.0.0.1:8080/a.mp4'), undefined);
  assert.match(unsafeUrlReason('file:///etc/passwd')!, /file: is not allowed/);
  assert.match(unsafeUrlReason('-o/tmp/x')!, /option/);
  assert.match(unsafeUrlReason('https://x/a b')!, /spaces/);
  assert.match(unsafeUrlReason('not a url')!, /spaces|parsed/);
});
