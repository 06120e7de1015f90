import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { DifftalkError } from '../../src/util/errors.js';
import {
  applySplitFile,
  clipIdFromListedName,
  findIdentityLeaks,
  identityHashUnit,
  parseSplitFile,
  readSplitFile,
  resolveSplits,
  splitByIdentity,
} from '../../src/dataset/split.js';
import { HDTF } from '../helpers.js';

const DERIVED = path.join(HDTF, 'difftalk_split_derived.tsv');

test('identity hash: documented sha256 value, in [0,1), independent of the other clips', () => {
  // Reference: Python hashlib — first 52 bits of sha256('difftalk-split:<seed>:<identity>') / 2^52; exact.
  assert.equal(identityHashUnit('AlexandriaOcasioCortez', 0), 0.4423112636096507);
  assert.equal(identityHashUnit('Radio', 7), 0.6069407181442779);
});

test('default split is identity-disjoint, ~testFraction of identities, stable on subsets', () => {
  const clips = Array.from({ length: 100 }, (_, p) => [0, 1, 2].map((k) => ({ id: `P${p}_00${k}`, identity: `P${p}` }))).flat();
  const s = splitByIdentity(clips, { testFraction: 0.2 });
  const labelled = clips.map((c) => ({ ...c, split: s.get(c.id)! }));
  assert.deepEqual(findIdentityLeaks(labelled), []);
  const testIds = new Set(labelled.filter((c) => c.split === 'test').map((c) => c.identity));
  // Binomial(100, 0.2): mean 20, std 4; accept 8..32 (3 sigma)
  assert.ok(testIds.size >= 8 && testIds.size <= 32, `${testIds.size} test identities`);
  // a subset (as an array job would see it) gets the same split for every clip it has
  const sub = clips.filter((_, i) => i % 7 === 0);
  const s2 = splitByIdentity(sub, { testFraction: 0.2 });
  for (const c of sub) assert.equal(s2.get(c.id), s.get(c.id));
  // another seed gives another split
  const s3 = splitByIdentity(clips, { testFraction: 0.2, seed: 1 });
  assert.ok(clips.some((c) => s3.get(c.id) !== s.get(c.id)));
});

test('tiny datasets: 1 identity → all train; 2 identities → one in each set', () => {
  const one = splitByIdentity([
    { id: 'a0', identity: 'A' },
    { id: 'a1', identity: 'A' },
  ]);
  assert.deepEqual([...one.values()], ['train', 'train']);
  for (const seed of [0, 1, 2, 3, 4, 5]) {
    const two = splitByIdentity(
      [
        { id: 'a0', identity: 'A' },
        { id: 'b0', identity: 'B' },
      ],
      { seed },
    );
    assert.deepEqual([...two.values()].sort(), ['test', 'train']);
  }
  assert.throws(() => splitByIdentity([{ id: 'a', identity: 'A' }], { testFraction: 1.5 }), DifftalkError);
});

test('split file: <clip_id> <train|test> lines', () => {
  const f = parseSplitFile('# my split\nWDA_A_000 train\nWDA_B_000\ttest\n\nWDA_C_000 test # comment\n', 'mine.txt');
  assert.equal(f.kind, 'assignments');
  const clips = [
    { id: 'WDA_A_000', identity: 'A' },
    { id: 'WDA_B_000', identity: 'B' },
    { id: 'WDA_C_000', identity: 'C' },
  ];
  assert.deepEqual(Object.fromEntries(applySplitFile(clips, f)), { WDA_A_000: 'train', WDA_B_000: 'test', WDA_C_000: 'test' });
  assert.throws(
    () => applySplitFile([...clips, { id: 'WDA_D_000', identity: 'D' }], f),
    (e: DifftalkError) => e.code === 'split-file-invalid' && /WDA_D_000/.test(e.message),
  );
  assert.throws(
    () => parseSplitFile('a train\nb validation\n', 'x'),
    (e: DifftalkError) => /line 2/.test(e.message),
  );
  assert.throws(() => parseSplitFile('a train\na test\n', 'x'), /both train and test/);
  assert.throws(
    () => parseSplitFile('a.mp4\nb train\n', 'x'),
    (e: DifftalkError) => e.code === 'split-file-invalid' && /line 2/.test(e.message),
  );
  assert.throws(() => parseSplitFile('\n# nothing\n', 'x'), /lists no clips/);
});

test('split file: DiffTalk train_name.txt style list → listed are train, the rest test', () => {
  const f = parseSplitFile('RD_Radio34_003.mp4\nHDTF/WDA_JoeCrowley1_001.mp4\r\n', 'train_name.txt');
  assert.equal(f.kind, 'train-list');
  assert.equal(clipIdFromListedName('a/b/WRA_X_001.MP4'), 'WRA_X_001');
  const s = applySplitFile(
    [
      { id: 'RD_Radio34_003', identity: 'Radio34' },
      { id: 'WDA_JoeCrowley1_001', identity: 'JoeCrowley' },
      { id: 'WDA_Other_000', identity: 'Other' },
    ],
    f,
  );
  assert.deepEqual(Object.fromEntries(s), { RD_Radio34_003: 'train', WDA_JoeCrowley1_001: 'train', WDA_Other_000: 'test' });
});

test('split file: the derived DiffTalk table (../shared/data/hdtf/difftalk_split_derived.tsv)', async () => {
  const f = await readSplitFile(DERIVED);
  assert.equal(f.kind, 'train-list');
  if (f.kind !== 'train-list') return;
  // Reference: docs/difftalk-reference.md §1.4 — train_name.txt names 98 clips: 60 RD, 21 WDA, 17 WRA.
  assert.equal(f.train.size, 98);
  const bySubset = { RD: 0, WDA: 0, WRA: 0 } as Record<string, number>;
  for (const id of f.train) bySubset[id.split('_')[0] as string]! += 1;
  assert.deepEqual(bySubset, { RD: 60, WDA: 21, WRA: 17 });
  assert.ok(f.train.has('RD_Radio34_003') && f.train.has('WDA_JoeCrowley1_001'));
  // same as reading its text
  assert.equal(parseSplitFile(readFileSync(DERIVED, 'utf8')).kind, 'train-list');
});

test('identity leaks are an error (or reported when allowed)', () => {
  const clips = [
    { id: 'WDA_JoeCrowley0_000', identity: 'JoeCrowley' },
    { id: 'WDA_JoeCrowley1_001', identity: 'JoeCrowley' },
    { id: 'WDA_Other_000', identity: 'Other' },
  ];
  const file = parseSplitFile('WDA_JoeCrowley1_001.mp4\n', 'train_name.txt');
  assert.throws(
    () => resolveSplits(clips, { splitFile: file }),
    (e: DifftalkError) => e.code === 'split-identity-leak' && /JoeCrowley/.test(e.message),
  );
  const r = resolveSplits(clips, { splitFile: file, allowIdentityLeak: true });
  assert.deepEqual(r.leaks, ['JoeCrowley']);
  assert.equal(r.method, 'split-file');
  const d = resolveSplits(clips);
  assert.equal(d.method, 'identity-hash');
  assert.deepEqual(d.leaks, []);
  assert.throws(() => resolveSplits([clips[0]!, clips[0]!]), /appears twice/);
});
