/**
 * `difftalk export difftalk` as a user runs it (bin/run.js over dist/), checked by an independent reader:
 * tests/reference/difftalk_loader.py reimplements the reading lines of DiffTalk's TALKBase.__getitem__ (numpy, PIL) and
 * runs them on every listed frame of the export (shapes, dtypes, value ranges, the mask rule, the reference rule; numpy
 * loads every .npy). The datasets are real: frames and MediaPipe landmarks of the HDTF sample clip from `runPrep`, with
 * an `audio_deepspeech` column of known values written by the project's shard writer (the DeepSpeech extractor is built
 * elsewhere; the export only copies the column).
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import sharp from 'sharp';
import { openDataset, readClipFrames } from '../../src/dataset/dataset.js';
import { buildDatasetManifest, writeDatasetManifest, type DatasetClip } from '../../src/dataset/manifest.js';
import { difftalkReferenceSampler } from '../../src/dataset/reference.js';
import { iterateRows } from '../../src/dataset/shard-reader.js';
import { encodeFrames, maskRowsFromLandmarks68, writeClipShards, type ShardMetadata } from '../../src/dataset/shard-writer.js';
import { DEFAULT_PREP_CONFIG, runPrep } from '../../src/prep/pipeline.js';
import { runProcess } from '../../src/util/exec.js';
import { sha256 } from '../../src/util/fs.js';
import { AOC_CLIP, MODELS, ROOT, runCli, tmpDir } from '../helpers.js';

const LOADER = path.join(ROOT, 'tests/reference/difftalk_loader.py');
const DS_VALUES = 8 * 16 * 29;
const LM478 = 478 * 3;
const LM68 = 68 * 2;

/** The deterministic audio_deepspeech row of frame `i` of clip number `c`. */
function deepspeechRow(c: number, i: number): Float32Array {
  return Float32Array.from({ length: DS_VALUES }, (_, j) => Math.sin(c * 1.7 + i * 0.37 + j * 0.011) * 3);
}

/** The prepared clip's columns, all frames. */
interface Source {
  images: Uint8Array[];
  status: string[];
  score: number[];
  lm478: Float32Array[];
  lm478raw: Float32Array[];
  lm68: Float32Array[];
}

async function readSource(dir: string): Promise<Source> {
  const s: Source = { images: [], status: [], score: [], lm478: [], lm478raw: [], lm68: [] };
  for await (const { batch } of iterateRows(dir)) {
    for (let r = 0; r < batch.numRows; r++) {
      const arr = (name: string) => Float32Array.from((batch.getChild(name)!.get(r) as { toArray(): Float32Array }).toArray());
      s.images.push(batch.getChild('image')!.get(r) as Uint8Array);
      s.status.push(batch.getChild('face_status')!.get(r) as string);
      s.score.push(batch.getChild('face_score')!.get(r) as number);
      s.lm478.push(arr('landmarks_478'));
      s.lm478raw.push(arr('landmarks_478_raw'));
      s.lm68.push(arr('landmarks_68'));
    }
  }
  return s;
}

interface ClipPlan {
  id: string;
  split: 'train' | 'test';
  /** Source frames [from, from + frames). */
  from: number;
  frames: number;
  /** 0-based frames (of the new clip) made face-less (NaN landmarks), as prep writes a frame without one face. */
  noFace?: number[];
}

/** A dataset at `size`² whose clips are ranges of the prepared clip, with an audio_deepspeech column of known values. */
async function makeDataset(dir: string, src: Source, meta: ShardMetadata, clips: ClipPlan[], size = 256): Promise<void> {
  const metadata: ShardMetadata = {
    ...meta,
    size,
    audioFeatures: [{ name: 'deepspeech', column: 'audio_deepspeech', window: 8, dim: 464, rate: 25, params: { test: 'sin(1.7c + 0.37i + 0.011j)·3' } }],
  };
  const k = size / 256;
  const entries: DatasetClip[] = [];
  for (const [c, p] of clips.entries()) {
    const n = p.frames;
    const range = Array.from({ length: n }, (_, i) => p.from + i);
    let images = range.map((i) => src.images[i]!);
    if (size !== 256) {
      const raw = new Uint8Array(n * size * size * 3);
      for (const [i, b] of images.entries()) raw.set(await sharp(b).resize(size, size, { kernel: 'cubic' }).raw().toBuffer(), i * size * size * 3);
      images = await encodeFrames({ width: size, height: size, count: n, data: raw }, { format: 'jpeg', quality: 95 });
    }
    const noFace = new Set(p.noFace ?? []);
    const flat = (rows: Float32Array[], len: number, scale: boolean) => {
      const a = new Float32Array(n * len);
      range.forEach((i, f) => a.set(noFace.has(f) ? new Float32Array(len).fill(NaN) : rows[i]!.map((v) => (scale ? v * k : v)), f * len));
      return a;
    };
    const lm68 = flat(src.lm68, LM68, true);
    const masks = maskRowsFromLandmarks68(lm68, size);
    const refs = difftalkReferenceSampler({ seed: 23, policy: 'farthest' }).sample(p.id, n);
    assert.ok(refs.ok);
    const audio = new Float32Array(n * DS_VALUES);
    for (let i = 0; i < n; i++) audio.set(deepspeechRow(c, i), i * DS_VALUES);
    const res = await writeClipShards(
      dir,
      {
        clipId: p.id,
        split: p.split,
        fps: 25,
        images,
        faceStatus: range.map((i, f) => (noFace.has(f) ? 'no-face' : (src.status[i] as 'ok'))),
        faceScore: Float32Array.from(range, (i, f) => (noFace.has(f) ? 0 : src.score[i]!)),
        landmarks478: flat(src.lm478, LM478, true),
        landmarks478Raw: flat(src.lm478raw, LM478, true),
        landmarks68: lm68,
        maskRowTrain: masks.train,
        maskRowTest: masks.test,
        audio: [{ name: 'deepspeech', windows: { data: audio, frames: n, window: 8, dim: 464 } }],
        refFrameIndex: refs.value,
      },
      { maxRows: 128, metadata },
    );
    entries.push({ id: p.id, identity: p.id, split: p.split, status: 'done', frames: n, shards: res.files, notes: [] });
  }
  await writeDatasetManifest(dir, buildDatasetManifest({ config: {}, clips: entries }));
}

/** Every file under `dir` → size and mtime. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else {
        const s = statSync(p);
        out.set(path.relative(dir, p), `${s.size}@${s.mtimeMs}`);
      }
    }
  };
  walk(dir);
  return out;
}

interface LoaderReport {
  data_txt_lines: number;
  splits: Record<'train' | 'test', number>;
  npy_files: number;
  samples: Record<
    string,
    { split: string; mask_row: number; y30: number; cond_first: [number, number]; audio_sha256: string; image_mean: number; ref: string }
  >;
}

async function loader(root: string): Promise<LoaderReport> {
  const { stdout } = await runProcess('/usr/bin/python3', [LOADER, root]);
  return JSON.parse(stdout.toString()) as LoaderReport;
}

/** DiffTalk's rule written out as the loader does: {1..n-1} minus {f-60..f+59} is not empty (1-based f). */
function referenceExists(f: number, n: number): boolean {
  for (let r = 1; r <= n - 1; r++) if (r < f - 60 || r > f + 59) return true;
  return false;
}

function psnr(a: Uint8Array, b: Uint8Array): number {
  let se = 0;
  for (let i = 0; i < a.length; i++) se += (a[i]! - b[i]!) ** 2;
  return 10 * Math.log10((255 * 255) / (se / a.length));
}

const PLAN_A: ClipPlan[] = [
  { id: 'WDA_AOC_000', split: 'train', from: 0, frames: 200, noFace: [5, 6, 7] },
  { id: 'RD_Short_000', split: 'test', from: 0, frames: 100 },
  { id: 'WRA_Tail_000', split: 'test', from: 50, frames: 150 },
];

describe('difftalk export difftalk', { timeout: 900_000 }, () => {
  let work: string;
  let prepared: string;
  let dsA: string;
  let dsB: string;
  let outA: string;

  before(async () => {
    work = tmpDir('difftalk-export-');
    prepared = path.join(work, 'prepared');
    const prep = await runPrep(
      { kind: 'input', paths: [AOC_CLIP] },
      { ...DEFAULT_PREP_CONFIG, audioFeatures: ['mel'], faceModel: path.join(MODELS, 'fm478md.task'), testFraction: 0 },
      { out: prepared, concurrency: 1, retries: 0, retryFailed: false, preview: false },
    );
    assert.equal(prep.frames, 200);
    const src = await readSource(prepared);
    const meta = (await openDataset(prepared)).metadata;
    dsA = path.join(work, 'dsA');
    dsB = path.join(work, 'dsB');
    await makeDataset(dsA, src, meta, PLAN_A);
    await makeDataset(dsB, src, meta, [{ id: 'WDA_Big_000', split: 'train', from: 0, frames: 130 }], 384);
    outA = path.join(work, 'outA');
  });

  test('256² dataset: the layout, the mapping, and the official loader reading lines on every listed frame', async () => {
    const r = await runCli(['export', 'difftalk', '--data', dsA, '--out', outA, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.equal(res.images.mode, 'copied');
    // --json progress events on stderr
    assert.ok(r.stderr.split('\n').some((l) => l.includes('"stage-done"') && l.includes('"export"')));

    // vids: train first, then test, each in dataset (id) order
    const ds = await openDataset(dsA);
    const expectVids = ['WDA_AOC_000', 'RD_Short_000', 'WRA_Tail_000'];
    assert.deepEqual(
      res.videos.map((v: { vid: number; clipId: string }) => [v.vid, v.clipId]),
      expectVids.map((id, i) => [i + 1, id]),
    );
    const hd = path.join(outA, 'data', 'HDTF');
    const csv = readFileSync(path.join(hd, 'clip_ids.csv'), 'utf8').trim().split('\n');
    assert.equal(csv[0], 'vid,clip_id,split,frames,listed_frames');
    const dataTxt = readFileSync(path.join(hd, 'data.txt'), 'utf8').split('\n').slice(0, -1);
    assert.equal(dataTxt.length, 3);

    // expected listing, from the dataset columns and the loader's rule written out
    const expected = new Map<string, { split: string; y30: number; mask: number; audio: string; jpeg: Uint8Array }>();
    for (const [i, id] of expectVids.entries()) {
      const vid = i + 1;
      const c = ds.clip(id);
      const plan = PLAN_A.find((p) => p.id === id)!;
      assert.equal(dataTxt[vid - 1], `${id} ${c.frames}`);
      let listed = 0;
      for await (const { batch } of ds.rows({ clips: [id] })) {
        for (let r2 = 0; r2 < batch.numRows; r2++) {
          const k = batch.getChild('frame_index')!.get(r2) as number;
          const f = k + 1;
          const lm = (batch.getChild('landmarks_68')!.get(r2) as { toArray(): Float32Array }).toArray();
          const name = `${vid}_${f}`;
          // every frame has its image (a reference may be any frame 1..N-1) and its audio
          assert.deepEqual(
            new Uint8Array(readFileSync(path.join(hd, 'images', `${name}.jpg`))),
            batch.getChild('image')!.get(r2),
            `${name}.jpg = the stored JPEG`,
          );
          const ok = batch.getChild('face_status')!.get(r2) === 'ok';
          assert.equal(existsSync(path.join(hd, 'landmarks', `${name}.lms`)), ok, `${name}.lms only with a face`);
          if (!ok || !referenceExists(f, c.frames)) continue;
          listed++;
          const audio = deepspeechRow(PLAN_A.indexOf(plan), k);
          expected.set(name, {
            split: c.split,
            y30: lm[61]!,
            mask: batch.getChild('mask_row_train')!.get(r2) as number,
            audio: sha256(new Uint8Array(audio.buffer)),
            jpeg: batch.getChild('image')!.get(r2) as Uint8Array,
          });
        }
      }
      assert.equal(csv[vid], `${vid},${id},${c.split},${c.frames},${listed}`);
    }
    // 3 face-less frames in the train clip; frames 40…61 of the 100-frame clip have no reference candidate
    assert.deepEqual(res.frames.notListed, { noFace: 3, noReference: 22 });
    assert.equal(res.files.written, 450 * 2 + 447);

    const rep = await loader(outA);
    assert.equal(rep.data_txt_lines, 3);
    assert.equal(rep.npy_files, 450);
    assert.deepEqual(rep.splits, { train: 197, test: 78 + 150 });
    assert.deepEqual(Object.keys(rep.samples).sort(), [...expected.keys()].sort());
    let maxMean = 0;
    for (const [name, s] of Object.entries(rep.samples)) {
      const e = expected.get(name)!;
      assert.equal(s.split, e.split);
      assert.equal(s.y30, e.y30, `${name}: landmark 30 read back exactly`);
      assert.equal(s.mask_row, e.mask, `${name}: the loader's mask row = the dataset's mask_row_train`);
      assert.equal(s.audio_sha256, e.audio, `${name}: audio_smooth = the audio_deepspeech row`);
      const { data } = await sharp(e.jpeg).raw().toBuffer({ resolveWithObject: true });
      const mean = data.reduce((a, v) => a + v / 127.5 - 1, 0) / data.length;
      maxMean = Math.max(maxMean, Math.abs(mean - s.image_mean));
    }
    // PIL and libvips decode the same JPEG (libjpeg-turbo) within 1 grey level; the means agree far closer.
    console.log(`loader samples ${Object.keys(rep.samples).length}; max |mean(PIL) − mean(sharp)| ${maxMean.toExponential(2)}`);
    assert.ok(maxMean < 1 / 127.5, `image mean differs by ${maxMean}`);
  });

  test('rerun is a no-op; a deleted file is rewritten, nothing else', async () => {
    const before = snapshot(outA);
    const r = await runCli(['export', 'difftalk', '--data', dsA, '--out', outA, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.equal(res.resumed, true);
    assert.deepEqual(res.files, { written: 0, kept: 1347 });
    assert.deepEqual(snapshot(outA), before, 'no file touched');

    const hd = path.join(outA, 'data', 'HDTF');
    const gone = ['images/1_10.jpg', 'images/3_150.jpg', 'audio_smooth/2_1.npy', 'landmarks/1_100.lms'];
    const bytes = gone.map((g) => readFileSync(path.join(hd, g)));
    for (const g of gone) rmSync(path.join(hd, g));
    const r2 = await runCli(['export', 'difftalk', '--data', dsA, '--out', outA, '--json']);
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual(JSON.parse(r2.stdout).files, { written: 4, kept: 1343 });
    gone.forEach((g, i) => assert.deepEqual(readFileSync(path.join(hd, g)), bytes[i], g));
    const after = snapshot(outA);
    for (const [f, v] of before) if (!gone.some((g) => f.endsWith(g)) && f !== 'difftalk-export.json') assert.equal(after.get(f), v, f);
  });

  test('killed with SIGKILL mid-export, the rerun completes it to the same files as an uninterrupted run', async () => {
    const out = path.join(work, 'killed');
    const images = path.join(out, 'data/HDTF/images');
    const killed = await runCli(['export', 'difftalk', '--data', dsA, '--out', out, '--json'], () => existsSync(images) && readdirSync(images).length >= 100);
    assert.equal(killed.signal, 'SIGKILL');
    assert.equal(JSON.parse(readFileSync(path.join(out, 'difftalk-export.json'), 'utf8')).complete, false, 'the marker says incomplete');
    const r = await runCli(['export', 'difftalk', '--data', dsA, '--out', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.ok(res.files.kept >= 100 && res.files.written > 0, JSON.stringify(res.files));
    assert.equal(res.files.kept + res.files.written, 1347);
    const a = snapshot(outA);
    const b = snapshot(out);
    assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort(), 'the same files (no temp file left)');
    for (const f of a.keys()) assert.ok(readFileSync(path.join(out, f)).equals(readFileSync(path.join(outA, f))), f);
  });

  test('another dataset into the export folder is refused (exit 2) without --force', async () => {
    const r = await runCli(['export', 'difftalk', '--data', dsB, '--out', outA, '--json']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(JSON.parse(r.stdout).error.code, 'config-mismatch');
  });

  test('a 384² dataset: images resized to 256² (libvips cubic, PSNR ≥ 40 dB against the same frames resized by openDataset), landmarks × 2/3', async () => {
    const out = path.join(work, 'outB');
    const r = await runCli(['export', 'difftalk', '--data', dsB, '--out', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.deepEqual(
      { mode: res.images.mode, kernel: res.images.kernel, q: res.images.jpegQuality, from: res.images.sourceSize },
      { mode: 'resized', kernel: 'libvips cubic', q: 95, from: 384 },
    );
    const rep = await loader(out);
    assert.equal(rep.splits.train, 130);
    const ds = await openDataset(dsB);
    const gt = await readClipFrames(ds, 'WDA_Big_000', { size: 256 });
    let worst = Infinity;
    for (let k = 0; k < 130; k++) {
      const { data, info } = await sharp(readFileSync(path.join(out, 'data/HDTF/images', `1_${k + 1}.jpg`)))
        .raw()
        .toBuffer({ resolveWithObject: true });
      assert.deepEqual([info.width, info.height, info.channels], [256, 256, 3]);
      worst = Math.min(worst, psnr(new Uint8Array(data), gt.data.subarray(k * 256 * 256 * 3, (k + 1) * 256 * 256 * 3)));
    }
    console.log(`384² → 256²: worst PSNR of the exported JPEG vs openDataset's 256² frame ${worst.toFixed(2)} dB`);
    assert.ok(worst >= 40, `PSNR ${worst}`);
    let maxErr = 0;
    for await (const { batch } of ds.rows()) {
      for (let r2 = 0; r2 < batch.numRows; r2++) {
        const f = (batch.getChild('frame_index')!.get(r2) as number) + 1;
        const lm = (batch.getChild('landmarks_68')!.get(r2) as { toArray(): Float32Array }).toArray();
        const s = rep.samples[`1_${f}`]!;
        maxErr = Math.max(maxErr, Math.abs(s.y30 - (lm[61]! * 256) / 384));
        assert.equal(s.mask_row, Math.floor(Math.fround((lm[61]! * 256) / 384)));
      }
    }
    assert.ok(maxErr < 1e-4, `landmark scaling error ${maxErr}`);
  });

  test('a non-empty foreign --out is refused (exit 2, nothing written); --force writes beside the user’s files', async () => {
    const out = path.join(work, 'foreign');
    mkdirSync(out);
    writeFileSync(path.join(out, 'notes.txt'), 'mine');
    const r = await runCli(['export', 'difftalk', '--data', dsB, '--out', out, '--json']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(JSON.parse(r.stdout).error.code, 'foreign-folder');
    assert.deepEqual(readdirSync(out), ['notes.txt']);
    const f = await runCli(['export', 'difftalk', '--data', dsB, '--out', out, '--force', '--json']);
    assert.equal(f.code, 0, f.stderr);
    assert.equal(readFileSync(path.join(out, 'notes.txt'), 'utf8'), 'mine');
    assert.ok(existsSync(path.join(out, 'data/HDTF/images/1_130.jpg')));
  });

  test('a dataset without audio_deepspeech: exit 2 naming the prep feature, nothing written', async () => {
    const out = path.join(work, 'nodeepspeech');
    const r = await runCli(['export', 'difftalk', '--data', prepared, '--out', out, '--json']);
    assert.equal(r.code, 2, r.stderr);
    const e = JSON.parse(r.stdout).error;
    assert.equal(e.code, 'audio-feature-missing');
    assert.match(e.message, /no audio_deepspeech column \(its audio columns: audio_mel\)/);
    assert.match(JSON.stringify(e), /--audio-feature deepspeech/);
    assert.equal(existsSync(out), false);
  });

  test('a hostile clip id in dataset.json does not escape --out (exit 2, nothing written anywhere)', async () => {
    const dir = path.join(work, 'hostile');
    const box = path.join(work, 'box');
    mkdirSync(box);
    const src = await readSource(prepared);
    await makeDataset(dir, src, (await openDataset(prepared)).metadata, [{ id: 'evil', split: 'train', from: 0, frames: 130 }]);
    const manifest = JSON.parse(readFileSync(path.join(dir, 'dataset.json'), 'utf8'));
    manifest.clips[0].id = '../../evil';
    writeFileSync(path.join(dir, 'dataset.json'), JSON.stringify(manifest));
    const listing = readdirSync(work).sort();
    const out = path.join(box, 'out');
    const r = await runCli(['export', 'difftalk', '--data', dir, '--out', out, '--json']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(JSON.parse(r.stdout).error.message, /clip id "\.\.\/\.\.\/evil"/);
    assert.deepEqual(readdirSync(box), []);
    assert.deepEqual(readdirSync(work).sort(), listing);
  });
});
