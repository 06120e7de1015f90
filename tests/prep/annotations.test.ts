/**
 * HDTF manifest stage on the real upstream annotation files (../shared/data/hdtf, byte-identical to MRzzm/HDTF).
 * Reference values: the counts table and quirk list in ../shared/docs/hdtf-annotations.md (exact integers;
 * annotated durations compared at the table's 0.1-minute precision).
 */
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { type HdtfManifest, parseHdtfAnnotations, parseTimestamp, parseVideoUrl } from '../../src/prep/annotations.js';
import { DifftalkError } from '../../src/util/errors.js';
import { HDTF, tmpDir } from '../helpers.js';
import { writeHdtfAnnotations } from './hdtf-fixture.js';

describe('parseHdtfAnnotations on the real HDTF files', () => {
  let m: HdtfManifest;
  before(async () => {
    m = await parseHdtfAnnotations(HDTF);
  });
  const issues = (code: string) => m.issues.filter((i) => i.code === code);
  const clip = (id: string) => {
    const c = m.clips.find((x) => x.id === id);
    assert.ok(c, `clip ${id}`);
    return c;
  };

  test('436 clip rows, 421 usable (doc counts table)', () => {
    assert.equal(m.summary.rows, 436);
    assert.equal(m.summary.usable, 421);
    assert.equal(m.summary.unusable, 15);
    assert.equal(m.summary.videos, 369);
    assert.deepEqual(m.summary.bySubset, {
      RD: { videos: 56, rows: 66, usable: 64 },
      WDA: { videos: 183, rows: 195, usable: 189 },
      WRA: { videos: 130, rows: 175, usable: 168 },
    });
    assert.deepEqual(m.summary.byReason, { 'annotation-invalid': 15 });
    assert.equal(new Set(m.clips.map((c) => c.id)).size, 436);
    for (const c of m.clips) assert.match(c.id, /^(RD|WDA|WRA)_[A-Za-z0-9-]+_\d{3}$/);
  });

  test('the 15 clips without a crop box are the ones the doc lists', () => {
    const unusable = m.clips
      .filter((c) => c.unusable)
      .map((c) => c.id)
      .sort();
    assert.deepEqual(
      unusable,
      [
        'RD_Radio15_000',
        'RD_Radio6_000',
        'WDA_ByronDorgan0_000',
        'WDA_DeanPhillips_000',
        'WDA_JeffMerkley0_000',
        'WDA_JimMcGovern1_000',
        'WDA_JimMcGovern_000',
        'WDA_LindaSnchez_000',
        'WRA_BillCassidy_000',
        'WRA_CandiceMiller_000',
        'WRA_DuncanHunter_001',
        'WRA_JaimeHerreraBeutler_000',
        'WRA_KevinBrady0_000',
        'WRA_MittRomney_001',
        'WRA_RudyGiuliani_000',
      ].sort(),
    );
    for (const c of m.clips.filter((x) => x.unusable)) assert.match(c.unusable!.message, /no crop box/);
    assert.equal(issues('no-crop-box').length, 15);
  });

  test('annotated durations per subset (doc table: 71.9 / 666.0 / 286.3 min, 0.1 min precision)', () => {
    const minutes = (s: string) => m.clips.filter((c) => c.subset === s).reduce((a, c) => a + (c.endS! - c.startS!), 0) / 60;
    assert.equal(minutes('RD').toFixed(1), '71.9');
    assert.equal(minutes('WDA').toFixed(1), '666.0');
    assert.equal(minutes('WRA').toFixed(1), '286.3');
  });

  test('UTF-8 BOM: reported and stripped from the first name', () => {
    assert.deepEqual(
      issues('bom').map((i) => [i.file, i.line]),
      [['WDA_video_url.txt', 1]],
    );
    const c = clip('WDA_CarolynMaloney2_000');
    assert.equal(c.video, 'CarolynMaloney2');
    assert.equal(c.youtubeId, 'RApGxN-O9Qc');
    assert.ok(c.notes?.some((n) => /byte-order mark/.test(n)));
  });

  test('missing final newlines and trailing spaces are reported with line numbers', () => {
    assert.deepEqual(
      issues('no-final-newline')
        .map((i) => i.file)
        .sort(),
      ['WDA_annotion_time.txt', 'WDA_video_url.txt', 'WRA_video_url.txt'],
    );
    assert.deepEqual(
      issues('trailing-space').map((i) => `${i.file}:${i.line}`),
      [3, 33, 34, 60, 76, 80, 103].map((l) => `WRA_annotion_time.txt:${l}`),
    );
    assert.ok(clip('WRA_AdamKinzinger2_002').notes?.some((n) => /ends with whitespace/.test(n)));
    assert.equal(clip('WRA_AdamKinzinger2_002').endS, 3 * 60 + 50);
  });

  test('&t= URL parameters: the id comes from v=, 13 reported', () => {
    assert.equal(issues('url-extra-params').length, 13);
    const r2 = clip('RD_Radio2_000');
    assert.equal(r2.youtubeId, 'uBWJJvynXpA');
    assert.equal(r2.url, 'https://www.youtube.com/watch?v=uBWJJvynXpA');
    assert.ok(r2.notes?.some((n) => /t=6s/.test(n)));
    assert.equal(clip('WDA_JimmyGomez_000').youtubeId, '1_HfHtBlQKs');
  });

  test('Radio24 has a URL but no time stamps: reported, no clip rows', () => {
    const i = issues('no-time-stamps');
    assert.deepEqual(
      i.map((x) => [x.file, x.line]),
      [['RD_video_url.txt', 24]],
    );
    assert.ok(!m.clips.some((c) => c.video === 'Radio24'));
  });

  test('resolution 0 (KevinMcCarthy1): reported, reference height inferred from the box (720)', () => {
    assert.deepEqual(
      issues('resolution-invalid').map((x) => [x.file, x.line]),
      [['WRA_resolution.txt', 76]],
    );
    for (const id of ['WRA_KevinMcCarthy1_000', 'WRA_KevinMcCarthy1_001']) {
      const c = clip(id);
      assert.equal(c.unusable, undefined);
      assert.equal(c.crop?.refHeight, 720);
      assert.ok(c.notes?.some((n) => /inferred/.test(n)));
    }
    assert.deepEqual(clip('WRA_KevinMcCarthy1_001').crop, { x: 421, y: 14, w: 459, h: 459, refHeight: 720 });
  });

  test('boxes outside a 16:9 frame of the listed height are reported (kept, clamped later)', () => {
    assert.deepEqual(
      issues('box-outside-frame')
        .map((i) => i.clips?.[0])
        .sort(),
      ['WDA_MaggieHassan_000', 'WDA_MazieHirono1_000', 'WRA_PeterKing_000'],
    );
    assert.equal(clip('WRA_PeterKing_000').unusable, undefined);
    assert.equal(issues('box-non-square').length, 0, 'all 421 real boxes are square');
  });

  test('every quirk category of the real files is counted; no errors besides the 15 missing boxes', () => {
    assert.deepEqual(m.summary.byIssue, {
      bom: 1,
      'no-final-newline': 3,
      'trailing-space': 7,
      'url-extra-params': 13,
      'no-time-stamps': 1,
      'resolution-invalid': 1,
      'no-crop-box': 15,
      'no-crop-ratio': 15,
      'box-outside-frame': 3,
    });
    assert.deepEqual(
      m.issues.filter((i) => i.severity === 'error').map((i) => i.code),
      Array(15).fill('no-crop-box'),
    );
  });

  test('fields of one clip; identity strips trailing digits; every DiffTalk split name is a usable clip', async () => {
    assert.deepEqual(clip('WDA_AlexandriaOcasioCortez_000'), {
      id: 'WDA_AlexandriaOcasioCortez_000',
      identity: 'AlexandriaOcasioCortez',
      subset: 'WDA',
      video: 'AlexandriaOcasioCortez',
      clipIndex: 0,
      youtubeId: 'SP0MG9TecVM',
      url: 'https://www.youtube.com/watch?v=SP0MG9TecVM',
      startS: 5,
      endS: 95,
      crop: { x: 342, y: 0, w: 591, h: 591, refHeight: 720 },
      cropRatio: 1.2,
    });
    assert.equal(clip('WDA_JoeCrowley0_000').identity, 'JoeCrowley');
    assert.equal(clip('RD_Radio34_009').identity, 'Radio34');
    // crop_wh field order is x, w, y, h: AdamKinzinger0_0.mp4 306 480 41 480
    assert.deepEqual(clip('WRA_AdamKinzinger0_000').crop, { x: 306, y: 41, w: 480, h: 480, refHeight: 720 });
    const tsv = await readFile(path.join(HDTF, 'difftalk_split_derived.tsv'), 'utf8');
    const names = [
      ...new Set(
        tsv
          .split('\n')
          .filter((l) => l && !l.startsWith('#'))
          .map((l) => l.split('\t')[5]!)
          .filter((n) => /_\d{3}$/.test(n)),
      ),
    ];
    assert.equal(names.length, 98);
    const usable = new Set(m.clips.filter((c) => !c.unusable).map((c) => c.id));
    for (const n of names) assert.ok(usable.has(n), n);
  });

  test('subset selection', async () => {
    const wda = await parseHdtfAnnotations(HDTF, { subsets: ['WDA'] });
    assert.deepEqual(wda.subsets, ['WDA']);
    assert.equal(wda.summary.rows, 195);
    await assert.rejects(parseHdtfAnnotations(HDTF, { subsets: ['XX' as 'RD'] }), (e) => e instanceof DifftalkError && e.code === 'invalid-subset');
  });
});

describe('parseHdtfAnnotations on broken and hostile folders', () => {
  const box = { x: 10, y: 0, w: 400, h: 400 };
  let m: HdtfManifest;
  let dir: string;
  before(async () => {
    dir = await writeHdtfAnnotations(path.join(tmpDir(), 'hdtf'), [
      { subset: 'WDA', name: 'Good', url: 'https://youtu.be/abcdefghijk?t=3', resolution: 720, clips: [{ start: '00:05', end: '00:20', crop: box }] },
      {
        subset: 'WDA',
        name: '../x',
        url: 'https://www.youtube.com/watch?v=abcdefghijk',
        resolution: 720,
        clips: [{ start: '00:05', end: '00:20', crop: box }],
      },
      { subset: 'WDA', name: '-rf', url: 'https://www.youtube.com/watch?v=abcdefghijk', resolution: 720, clips: [{ start: '00:05', end: '00:20', crop: box }] },
      { subset: 'WDA', name: 'FileUrl', url: 'file:///etc/passwd', resolution: 720, clips: [{ start: '00:05', end: '00:20', crop: box }] },
      {
        subset: 'WDA',
        name: 'Local',
        url: 'http://127.0.0.1:9/v.mp4',
        resolution: 512,
        clips: [{ start: '00:00', end: '00:08', crop: { x: 0, y: 0, w: 512, h: 500 } }],
      },
      {
        subset: 'WRA',
        name: 'Broken',
        url: 'https://www.youtube.com/watch?v=bbbbbbbbbbb',
        resolution: 'abc',
        clips: [
          { start: '01:00', end: '00:30', crop: box },
          { start: '00:05', end: '0x:20', crop: box },
          { start: '00:05', end: '00:20', crop: box },
        ],
      },
      { subset: 'WRA', name: 'NoId', url: 'https://www.youtube.com/watch?t=5', resolution: 720, clips: [{ start: '00:05', end: '00:20', crop: box }] },
      {
        subset: 'RD',
        name: 'Radio9',
        url: 'https://www.youtube.com/watch?v=ccccccccccc',
        resolution: 720,
        clips: [
          { start: '00:05', end: '00:20', crop: box },
          { start: '00:30', end: '00:40', crop: box },
        ],
      },
    ]);
    // Hand-made breakage on top of the well-formed files.
    const crop = path.join(dir, 'RD_crop_wh.txt');
    await writeFile(crop, 'Radio9_0.mp4 10 400 0\r\nRadio9_1.mp4 10 400 0 400\r\n\r\nRadio9_1.mp4 1 2 3 4\r\nRadio7_0.mp4 1 1 1 1\r\n');
    await writeFile(path.join(dir, 'RD_video_url.txt'), 'Radio9 https://www.youtube.com/watch?v=ccccccccccc\nRadio9 too many fields here\n');
    await writeFile(path.join(dir, 'RD_annotion_time.txt'), 'Radio9.mp4 00:05-00:20 00:30-00:40\nRadio8.mp4 00:01-00:02\n');
    m = await parseHdtfAnnotations(dir);
  });
  const byVideo = (v: string) => m.clips.filter((c) => c.video === v);
  const has = (code: string, file: string, line: number) =>
    assert.ok(
      m.issues.some((i) => i.code === code && i.file === file && i.line === line),
      `${code} ${file}:${line} in ${JSON.stringify(m.issues)}`,
    );

  test('names that escape the folder or look like options are unsafe; ids never contain them', () => {
    for (const v of ['../x', '-rf']) {
      const [c] = byVideo(v);
      assert.equal(c?.unusable?.reason, 'unsafe-name', v);
      assert.match(c!.id, /^WDA_unsafe-[0-9a-f]{12}_000$/);
      assert.ok(!c!.id.includes('..') && !c!.id.includes('/'));
    }
    assert.match(byVideo('../x')[0]!.unusable!.message, /escape/);
    assert.match(byVideo('-rf')[0]!.unusable!.message, /option/);
    const [f] = byVideo('FileUrl');
    assert.equal(f?.unusable?.reason, 'unsafe-name');
    assert.match(f!.unusable!.message, /file: is not allowed/);
    assert.equal(f!.url, undefined);
  });

  test('non-YouTube http URL accepted without a youtubeId; youtu.be parsed; non-square box noted', () => {
    const [l] = byVideo('Local');
    assert.equal(l?.unusable, undefined);
    assert.equal(l!.url, 'http://127.0.0.1:9/v.mp4');
    assert.equal(l!.youtubeId, undefined);
    assert.ok(l!.notes?.some((n) => /not square/.test(n)));
    const [g] = byVideo('Good');
    assert.equal(g!.youtubeId, 'abcdefghijk');
    assert.equal(g!.url, 'https://www.youtube.com/watch?v=abcdefghijk');
  });

  test('broken rows: bad intervals are unusable with a message; a bad resolution is inferred from the box; the rest is intact', () => {
    const b = byVideo('Broken');
    assert.equal(b.length, 3);
    assert.equal(b[0]!.unusable?.reason, 'annotation-invalid');
    assert.equal(b[1]!.unusable?.reason, 'annotation-invalid');
    assert.match(b[0]!.unusable!.message, /ends before it starts/);
    assert.match(b[1]!.unusable!.message, /not MM:SS-MM:SS/);
    // resolution "abc": box x=10 w=400 needs a 16:9 frame >= 410x400 -> smallest standard height 480.
    assert.equal(b[2]!.unusable, undefined);
    assert.equal(b[2]!.crop?.refHeight, 480);
    assert.ok(b[2]!.notes?.some((n) => /resolution "abc".*inferred/.test(n)));
    assert.match(byVideo('NoId')[0]!.unusable!.message, /no valid video id/);
    assert.equal(byVideo('Good')[0]!.unusable, undefined);
  });

  test('malformed, duplicate, orphan and CRLF lines are reported with line numbers', () => {
    has('crlf', 'RD_crop_wh.txt', 0);
    has('malformed-line', 'RD_crop_wh.txt', 1);
    has('blank-line', 'RD_crop_wh.txt', 3);
    has('duplicate-key', 'RD_crop_wh.txt', 4);
    has('orphan-key', 'RD_crop_wh.txt', 5);
    has('malformed-line', 'RD_video_url.txt', 2);
    has('no-url', 'RD_annotion_time.txt', 2);
    const [r0, r1] = byVideo('Radio9');
    assert.match(r0!.unusable!.message, /RD_crop_wh.txt line 1 .* malformed/);
    assert.deepEqual(r1!.crop, { x: 10, y: 0, w: 400, h: 400, refHeight: 720 }, 'first of the duplicate lines wins');
    assert.equal(byVideo('Radio8')[0]!.unusable?.reason, 'annotation-invalid');
    assert.equal(m.summary.rows, 12);
    assert.equal(m.summary.usable, 4);
    assert.deepEqual(m.summary.byReason, { 'unsafe-name': 3, 'annotation-invalid': 5 });
  });

  test('a missing file is one clear error', async () => {
    await rm(path.join(dir, 'WRA_crop_ratio.txt'));
    await assert.rejects(
      parseHdtfAnnotations(dir),
      (e) => e instanceof DifftalkError && e.code === 'annotation-missing' && /WRA_crop_ratio.txt/.test(e.message),
    );
    const rdWda = await parseHdtfAnnotations(dir, { subsets: ['RD', 'WDA'] });
    assert.equal(rdWda.summary.rows, 8);
  });

  test('URL and time-stamp helpers', () => {
    assert.equal(parseTimestamp('01:35'), 95);
    assert.equal(parseTimestamp('1:02:03'), 3723);
    assert.equal(parseTimestamp('00:60'), undefined);
    assert.deepEqual(parseVideoUrl('https://www.youtube.com/watch?v=uBWJJvynXpA&t=6s'), {
      url: 'https://www.youtube.com/watch?v=uBWJJvynXpA',
      youtubeId: 'uBWJJvynXpA',
      extraParams: ['t=6s'],
    });
    assert.equal(parseVideoUrl('https://www.youtube.com/shorts/abcdefghijk').youtubeId, 'abcdefghijk');
    assert.throws(
      () => parseVideoUrl('-https://x'),
      (e) => e instanceof DifftalkError && e.code === 'unsafe-name',
    );
    assert.throws(
      () => parseVideoUrl('javascript:alert(1)'),
      (e) => e instanceof DifftalkError && e.code === 'unsafe-name',
    );
  });
});
