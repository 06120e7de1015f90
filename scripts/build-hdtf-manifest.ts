/**
 * Builds manifests/hdtf-clips.json, the HDTF clip manifest shipped with difftalk (`difftalk prep --hdtf` with no folder),
 * from the 15 upstream HDTF annotation files, with the project's own parser (src/prep/annotations.ts).
 *
 *   node --import tsx scripts/build-hdtf-manifest.ts [annotation folder (default ../shared/data/hdtf)] [out file]
 *
 * The manifest records each source file's sha256 and the HDTF licence and attribution.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import prettier from 'prettier';
import { HDTF_FILE_KINDS, HDTF_SUBSETS, parseHdtfAnnotations, BUILTIN_HDTF_FORMAT, type BuiltinHdtfManifest } from '../src/prep/annotations.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = path.resolve(process.argv[2] ?? path.join(root, '..', 'shared', 'data', 'hdtf'));
const out = path.resolve(process.argv[3] ?? path.join(root, 'manifests', 'hdtf-clips.json'));

const sources: BuiltinHdtfManifest['sources'] = [];
for (const subset of HDTF_SUBSETS) {
  for (const kind of HDTF_FILE_KINDS) {
    const name = `${subset}_${kind}.txt`;
    const bytes = await readFile(path.join(dir, name));
    sources.push({ file: name, bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
  }
}
const subsets: BuiltinHdtfManifest['subsets'] = {};
for (const subset of HDTF_SUBSETS) {
  const m = await parseHdtfAnnotations(dir, { subsets: [subset] });
  subsets[subset] = { clips: m.clips, issues: m.issues, summary: m.summary };
}
const manifest: BuiltinHdtfManifest = {
  format: BUILTIN_HDTF_FORMAT,
  generator: 'scripts/build-hdtf-manifest.ts (parser: src/prep/annotations.ts parseHdtfAnnotations)',
  upstream: {
    repository: 'https://github.com/MRzzm/HDTF',
    commit: 'bbde889bbab954c9a9ebcabe9962885c29f2165e',
    path: 'HDTF_dataset/',
  },
  licence: {
    name: 'CC BY 4.0',
    url: 'https://creativecommons.org/licenses/by/4.0/',
    statement: 'The HDTF dataset is available to download under a Creative Commons Attribution 4.0 International License (HDTF README).',
    attribution:
      'Zhang, Li, Ding, Fan, "Flow-Guided One-Shot Talking Face Generation With a High-Resolution Audio-Visual Dataset", CVPR 2021. ' +
      'The videos are YouTube content and are not included.',
  },
  sources,
  subsets,
};
// Formatted as the repository's prettier check wants it.
const options = (await prettier.resolveConfig(path.join(root, 'manifests', 'hdtf-clips.json'))) ?? {};
await writeFile(out, await prettier.format(JSON.stringify(manifest), { ...options, filepath: out }));
const rows = Object.values(subsets).reduce((n, s) => n + (s?.clips.length ?? 0), 0);
process.stdout.write(`${out}: ${rows} clip rows from ${sources.length} files\n`);
