import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DIFFTALK_MIN_FRAMES, clipRandom, difftalkReferenceSampler, isDifftalkReference, referenceCandidates } from '../../src/dataset/reference.js';

/** Reference: docs/difftalk-reference.md §1.3, 1-based: ref ∈ {1..N-1} \ {f-60..f+59}. */
function allowed1Based(f1: number, r1: number, n: number): boolean {
  return r1 >= 1 && r1 <= n - 1 && !(r1 >= f1 - 60 && r1 <= f1 + 59);
}

function sampleOk(n: number, id = `clip${n}`, seed = 23): Int32Array {
  const r = difftalkReferenceSampler({ seed }).sample(id, n);
  assert.ok(r.ok, `N=${n} should be sampled`);
  return r.value;
}

test('the 0-based rule equals DiffTalk 1-based rule on every (f, r) pair', () => {
  for (const n of [122, 200, 300]) {
    for (let f = 0; f < n; f++) {
      let cands = 0;
      for (let r = -2; r < n + 2; r++) {
        assert.equal(isDifftalkReference(f, r, n), allowed1Based(f + 1, r + 1, n), `N=${n} f=${f} r=${r}`);
        if (isDifftalkReference(f, r, n)) cands++;
      }
      const c = referenceCandidates(f, n);
      assert.equal(c.before + c.after, cands);
    }
  }
});

test('every reference obeys the rule (N=200, 1499, and the edge N=122)', () => {
  for (const n of [200, 1499, DIFFTALK_MIN_FRAMES]) {
    const refs = sampleOk(n);
    assert.equal(refs.length, n);
    refs.forEach((r, f) => assert.ok(allowed1Based(f + 1, r + 1, n), `N=${n} f=${f} r=${r}`));
    assert.ok(!refs.includes(n - 1), 'the last frame is never a reference');
  }
});

test('122 is the first N where every frame has a candidate; shorter clips are dropped as too-short', () => {
  assert.equal(DIFFTALK_MIN_FRAMES, 122);
  // N=121: frame 60 (0-based) has none: r <= -1 or r >= 120 > N-2 = 119
  const c = referenceCandidates(60, 121);
  assert.equal(c.before + c.after, 0);
  for (let f = 0; f < 122; f++) {
    const k = referenceCandidates(f, 122);
    assert.ok(k.before + k.after > 0, `f=${f}`);
  }
  const r = difftalkReferenceSampler().sample('short', 121);
  assert.equal(r.ok, false);
  if (!r.ok) {
    assert.equal(r.reason, 'too-short');
    assert.match(r.message, /121 frames.*122/);
  }
});

test("policy 'farthest' keeps short clips: rule where possible, farthest allowed frame otherwise", () => {
  const s = difftalkReferenceSampler({ policy: 'farthest' });
  const n = 100;
  const r = s.sample('short', n);
  assert.ok(r.ok);
  if (!r.ok) return;
  r.value.forEach((ref, f) => {
    const c = referenceCandidates(f, n);
    if (c.before + c.after > 0) assert.ok(isDifftalkReference(f, ref, n));
    else assert.equal(ref, f >= n - 2 - f ? 0 : n - 2);
    assert.ok(ref >= 0 && ref <= n - 2);
  });
  const one = s.sample('one', 1);
  assert.ok(one.ok && one.value[0] === 0);
  assert.equal(s.params.policy, 'farthest');
});

test('deterministic per (seed, clipId), independent of call order; differs between clips and seeds', () => {
  const a1 = sampleOk(500, 'A');
  sampleOk(500, 'B');
  const a2 = sampleOk(500, 'A');
  assert.deepEqual(a1, a2);
  assert.notDeepEqual(a1, sampleOk(500, 'B'));
  assert.notDeepEqual(a1, sampleOk(500, 'A', 24));
  // Reference: an independent Python port of the documented generator (hashlib.sha256 → sfc32, 12 warm-up draws,
  // k = floor(u·candidates)) gave these values for seed 23, 'WDA_AlexandriaOcasioCortez_000', N=1499; exact match.
  const refs = sampleOk(1499, 'WDA_AlexandriaOcasioCortez_000');
  assert.deepEqual([...refs.slice(0, 5)], [151, 1160, 423, 797, 966]);
  assert.deepEqual([...refs.slice(700, 705)], [447, 264, 0, 610, 1268]);
  assert.deepEqual([...refs.slice(-5)], [68, 661, 1068, 1346, 898]);
});

/** chi-square critical value at p=0.001 by the Wilson–Hilferty approximation (accurate to ~1% for k >= 9). */
function chi2Critical999(k: number): number {
  const z = 3.0902;
  return k * (1 - 2 / (9 * k) + z * Math.sqrt(2 / (9 * k))) ** 3;
}

test('roughly uniform over the candidates (chi-square sanity, p=0.001)', () => {
  // (1) one large clip: the rank of each frame's reference among its candidates, 10 bins.
  const n = 20000;
  const refs = sampleOk(n, 'big');
  const bins = new Array(10).fill(0);
  refs.forEach((r, f) => {
    const { before, after } = referenceCandidates(f, n);
    const rank = r <= f - 61 ? r : before + (r - (f + 60));
    bins[Math.floor((rank / (before + after)) * 10)]++;
  });
  const e = n / 10;
  const chi = bins.reduce((s, o) => s + (o - e) ** 2 / e, 0);
  assert.ok(chi < chi2Critical999(9), `chi2=${chi.toFixed(1)} bins=${bins}`);
  // (2) one frame (f=100 of N=200, 79 candidates) across 7900 clip ids: every candidate equally often.
  const counts = new Map<number, number>();
  for (let i = 0; i < 7900; i++) {
    const r = sampleOk(200, `clip-${i}`)[100] as number;
    counts.set(r, (counts.get(r) ?? 0) + 1);
  }
  assert.equal(counts.size, 79);
  const chi2 = [...counts.values()].reduce((s, o) => s + (o - 100) ** 2 / 100, 0);
  assert.ok(chi2 < chi2Critical999(78), `chi2=${chi2.toFixed(1)}`);
});

test('clipRandom gives floats in [0,1) with mean ~0.5', () => {
  const r = clipRandom(23, 'x');
  let s = 0;
  for (let i = 0; i < 100000; i++) {
    const v = r();
    assert.ok(v >= 0 && v < 1);
    s += v;
  }
  // reference: mean of U(0,1) = 0.5, std of the mean = 0.2887/sqrt(1e5) ≈ 0.0009; tolerance 0.005 (> 5 sigma)
  assert.ok(Math.abs(s / 100000 - 0.5) < 0.005);
});
