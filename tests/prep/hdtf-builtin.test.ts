/**
 * The HDTF clip manifest shipped in manifests/: it is exactly what scripts/build-hdtf-manifest.ts makes from the 15
 * upstream annotation files with the project's parser, and `difftalk prep --hdtf` without a folder uses it (all 436
 * clip rows), then fails at download with a clear message when YouTube cannot be reached (forced here by a proxy
 * on a closed local port, so the test behaves the same with or without internet).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { runProcess } from '../../src/util/exec.js';
import { BUILTIN_HDTF_MANIFEST, parseHdtfAnnotations } from '../../src/prep/annotations.js';
import { HDTF, MODELS, ROOT, runCli, tmpDir } from '../helpers.js';

const HDTF_ROWS = 436;

describe('built-in HDTF manifest', () => {
  test('is what the build script makes from the upstream files (sha256 recorded, licence present)', async () => {
    const out = path.join(tmpDir(), 'hdtf-clips.json');
    await runProcess(process.execPath, ['--import', 'tsx', path.join(ROOT, 'scripts', 'build-hdtf-manifest.ts'), HDTF, out]);
    assert.equal(
      readFileSync(out, 'utf8'),
      readFileSync(BUILTIN_HDTF_MANIFEST, 'utf8'),
      'manifests/hdtf-clips.json is stale: rerun scripts/build-hdtf-manifest.ts',
    );
    const m = JSON.parse(readFileSync(BUILTIN_HDTF_MANIFEST, 'utf8'));
    assert.equal(m.sources.length, 15);
    for (const s of m.sources) {
      assert.equal(
        s.sha256,
        createHash('sha256')
          .update(readFileSync(path.join(HDTF, s.file)))
          .digest('hex'),
        s.file,
      );
    }
    assert.match(m.licence.name, /CC BY 4\.0/);
    assert.match(m.licence.attribution, /Flow-Guided One-Shot Talking Face Generation/);
  });

  test('loads the same clips as parsing the folder, per subset selection', async () => {
    for (const subsets of [undefined, ['WDA' as const], ['RD' as const, 'WRA' as const]]) {
      const shipped = await parseHdtfAnnotations(BUILTIN_HDTF_MANIFEST, { subsets });
      const parsed = await parseHdtfAnnotations(HDTF, { subsets });
      assert.deepEqual(shipped.clips, parsed.clips);
      assert.deepEqual(shipped.summary, parsed.summary);
      assert.deepEqual(shipped.issues, parsed.issues);
    }
    assert.equal((await parseHdtfAnnotations(BUILTIN_HDTF_MANIFEST)).clips.length, HDTF_ROWS);
  });

  test('prep --hdtf without a folder finds all 436 rows, then fails at download with a clear message', async () => {
    // yt-dlp honours the proxy variables: a closed local port makes every download fail without the network.
    for (const v of ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY']) process.env[v] = 'http://127.0.0.1:9';
    const out = path.join(tmpDir(), 'hdtf');
    // the offline face model: prep checks the face model before any clip, and must get as far as the download here
    const run = await runCli(['prep', '--hdtf', '--limit', '1', '--retries', '0', '--out', out, '--face-model', path.join(MODELS, 'fm478md.task')]);
    assert.match(run.stderr, new RegExp(`annotations: ${HDTF_ROWS} clip rows`));
    assert.match(run.stderr, /dropped RD_Radio1_000 \(download-failed\): \[youtube\]/);
    assert.doesNotMatch(run.stderr + run.stdout, /\n\s+at .+:\d+:\d+/, 'no stack trace');
    const manifest = JSON.parse(readFileSync(path.join(out, 'dataset.json'), 'utf8'));
    assert.deepEqual(manifest.drop_reasons, { 'download-failed': 1 });
  });

  test('a folder still overrides the shipped manifest; a folder without --hdtf is refused', async () => {
    const run = await runCli(['prep', '--hdtf', path.join(ROOT, 'manifests'), '--out', path.join(tmpDir(), 'x')]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /RD_video_url\.txt/);
    const stray = await runCli(['prep', HDTF, '--out', path.join(tmpDir(), 'y')]);
    assert.equal(stray.code, 2);
    assert.match(stray.stderr, /annotation folder goes after --hdtf/);
  });
});
