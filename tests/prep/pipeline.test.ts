/**
 * End-to-end `prep` on real media (../shared): the --input and --hdtf entry points (the latter through the real yt-dlp
 * download path against a local HTTP server on 127.0.0.1), both landmark engines, bad input in the same run, and the
 * shards read back by apache-arrow in a fresh process.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runProcess, runTool } from '../../src/util/exec.js';
import { DEFAULT_PREP_CONFIG, runPrep, type PrepConfig, type PrepResult } from '../../src/prep/pipeline.js';
import { readDatasetManifest } from '../../src/dataset/manifest.js';
import { mfcc } from '../../src/audio/mfcc.js';
import { loadAudio16k } from '../../src/audio/wav.js';
import { frameWindows } from '../../src/audio/windows.js';
import { AOC_CLIP, MEDIA, MODELS, ROOT, tmpDir } from '../helpers.js';
import { startMediaServer, writeHdtfAnnotations, type MediaServer } from './hdtf-fixture.js';

const FACE_MODEL = path.join(MODELS, 'fm478md.task');
const config = (over: Partial<PrepConfig> = {}): PrepConfig => ({ ...DEFAULT_PREP_CONFIG, faceModel: FACE_MODEL, ...over });
const runOpts = { concurrency: 2, retries: 1, retryFailed: false, preview: false };

/** What a fresh Node process with apache-arrow alone reads from a dataset's shards. */
interface ShardDump {
  files: string[];
  rows: number;
  fields: { name: string; type: string; listSize?: number }[];
  metadata: Record<string, string>;
  clipIds: string[];
  frameIndex: number[];
  timeS: number[];
  refs: number[];
  split: string[];
  status: string[];
  imageMagic: string[];
  lm478: number[][]; // per row, flattened x,y,z
  lm68: number[][];
  maskTrain: number[];
  maskTest: number[];
  audio: Record<string, number[][]>;
}

const READER = `
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { tableFromIPC } from 'apache-arrow';
const dir = path.join(process.argv[1], 'shards');
const files = readdirSync(dir).filter((f) => f.endsWith('.arrow')).sort();
const out = { files, rows: 0, fields: [], metadata: {}, clipIds: [], frameIndex: [], timeS: [], refs: [], split: [], status: [],
  imageMagic: [], lm478: [], lm68: [], maskTrain: [], maskTest: [], audio: {} };
for (const f of files) {
  const t = tableFromIPC(readFileSync(path.join(dir, f)));
  out.rows += t.numRows;
  out.fields = t.schema.fields.map((x) => ({ name: x.name, type: String(x.type), listSize: x.type.listSize }));
  out.metadata = Object.fromEntries(t.schema.metadata);
  const col = (n) => t.getChild(n);
  for (let i = 0; i < t.numRows; i++) {
    out.clipIds.push(col('clip_id').get(i));
    out.frameIndex.push(col('frame_index').get(i));
    out.timeS.push(col('time_s').get(i));
    out.refs.push(col('ref_frame_index').get(i));
    out.split.push(col('split').get(i));
    out.status.push(col('face_status').get(i));
    out.imageMagic.push(Buffer.from(col('image').get(i).subarray(0, 4)).toString('hex'));
    out.lm478.push(Array.from(col('landmarks_478').get(i)));
    out.lm68.push(Array.from(col('landmarks_68').get(i)));
    out.maskTrain.push(col('mask_row_train').get(i));
    out.maskTest.push(col('mask_row_test').get(i));
    for (const fld of t.schema.fields) if (fld.name.startsWith('audio_')) (out.audio[fld.name] ??= []).push(Array.from(col(fld.name).get(i)));
  }
}
process.stdout.write(JSON.stringify(out));
`;

async function readShardsFresh(datasetDir: string): Promise<ShardDump> {
  const { stdout } = await runProcess(process.execPath, ['--input-type=module', '-e', READER, datasetDir], { cwd: ROOT });
  return JSON.parse(stdout.toString('utf8')) as ShardDump;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

describe('prep --input on the real HDTF clip', () => {
  let out: string;
  let result: PrepResult;
  let dump: ShardDump;

  before(async () => {
    out = path.join(tmpDir(), 'aoc');
    result = await runPrep({ kind: 'input', paths: [AOC_CLIP] }, config(), { out, ...runOpts, preview: true });
    dump = await readShardsFresh(out);
  });

  test('200 frames at 25 fps, one clip done, manifest and preview written', async () => {
    assert.equal(result.clips.done, 1);
    assert.equal(result.clips.dropped, 0);
    assert.equal(result.frames, 200);
    assert.equal(dump.rows, 200);
    assert.deepEqual(
      dump.frameIndex,
      Array.from({ length: 200 }, (_, i) => i),
    );
    dump.timeS.forEach((t, i) => assert.ok(Math.abs(t - i / 25) < 1e-9));
    assert.ok(dump.clipIds.every((c) => c === 'WDA_AlexandriaOcasioCortez_000'));
    const m = await readDatasetManifest(out);
    assert.equal(m.clips[0]!.status, 'done');
    assert.deepEqual(
      m.clips[0]!.shards,
      dump.files.map((f) => `shards/${f}`),
    );
    // Per-clip measurements: a square crop inside the 512² source, sub-pixel-to-pixel landmark jitter, smoothing lowers it.
    const st = m.clips[0]!.stats!;
    assert.equal(st.crop.w, st.crop.h);
    assert.ok(st.crop.x >= 0 && st.crop.y >= 0 && st.crop.x + st.crop.w <= 512 && st.crop.y + st.crop.h <= 512);
    assert.equal(st.source_width, 512);
    assert.ok(st.jitter_raw_px > 0 && st.jitter_raw_px < 3, `jitter ${st.jitter_raw_px} px`);
    assert.ok(st.jitter_smoothed_px <= st.jitter_raw_px);
    const png = await readFile(path.join(out, 'previews', 'WDA_AlexandriaOcasioCortez_000.png'));
    assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
  });

  test('schema matches docs/data-format.md', async () => {
    const doc = await readFile(path.join(ROOT, 'docs', 'data-format.md'), 'utf8');
    const byName = Object.fromEntries(dump.fields.map((f) => [f.name, f]));
    for (const name of [
      'clip_id',
      'frame_index',
      'time_s',
      'image',
      'face_status',
      'face_score',
      'landmarks_478',
      'landmarks_478_raw',
      'landmarks_68',
      'mask_row_train',
      'mask_row_test',
      'audio_mfcc',
      'audio_mel',
      'ref_frame_index',
      'split',
    ]) {
      assert.ok(byName[name], `column ${name} present`);
      assert.ok(doc.includes(name), `docs/data-format.md documents ${name}`);
    }
    assert.equal(byName.landmarks_478!.listSize, 1434);
    assert.equal(byName.landmarks_68!.listSize, 136);
    assert.equal(dump.metadata['difftalk.schema_version'], '1');
    assert.equal(dump.metadata['difftalk.fps'], '25');
    assert.equal(dump.metadata['difftalk.size'], '256');
    for (const key of Object.keys(dump.metadata)) assert.ok(doc.includes(key), `docs/data-format.md documents ${key}`);
    assert.ok(
      dump.imageMagic.every((m) => m.startsWith('ffd8ff')),
      'images are JPEG',
    );
  });

  test('landmarks lie on the face: mouth in the lower half of the face box, eyes above the mouth', () => {
    let checked = 0;
    for (let i = 0; i < dump.rows; i++) {
      if (dump.status[i] !== 'ok') continue;
      const p = dump.lm68[i]!;
      const xs = p.filter((_, k) => k % 2 === 0);
      const ys = p.filter((_, k) => k % 2 === 1);
      const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
      assert.ok(x0 >= 0 && x1 <= 256 && y0 >= 0 && y1 <= 256, `frame ${i}: points inside the 256² frame`);
      const midY = (y0 + y1) / 2;
      for (let k = 48; k < 68; k++) {
        assert.ok(p[2 * k + 1]! > midY, `frame ${i}: mouth point ${k} below the face box centre`);
        assert.ok(p[2 * k]! > x0 && p[2 * k]! < x1, `frame ${i}: mouth point ${k} inside the face box horizontally`);
      }
      const mouthTop = Math.min(...Array.from({ length: 20 }, (_, j) => p[2 * (48 + j) + 1]!));
      for (let k = 36; k < 48; k++) assert.ok(p[2 * k + 1]! < mouthTop, `frame ${i}: eye point ${k} above the mouth`);
      assert.ok(dump.maskTrain[i]! > 0 && dump.maskTrain[i]! < mouthTop + 1, `frame ${i}: training mask row (nose tip) above the mouth`);
      assert.ok(dump.maskTest[i]! >= dump.maskTrain[i]!, `frame ${i}: subnasale (33) not above the nose tip (30)`);
      checked++;
    }
    assert.ok(checked >= 190, `at least 190 of 200 frames have one face (got ${checked})`);
  });

  test("every reference frame obeys DiffTalk's rule (ref <= f-61 or ref >= f+60, never the last frame)", () => {
    const n = dump.rows;
    dump.refs.forEach((r, f) => {
      assert.ok(r >= 0 && r <= n - 2, `frame ${f}: ref ${r} in [0, N-2]`);
      assert.ok(r <= f - 61 || r >= f + 60, `frame ${f}: ref ${r} at least 60 frames away`);
    });
  });

  test('audio windows have the declared shape, vary over time, and hold python_speech_features MFCC', async () => {
    const meta = JSON.parse(dump.metadata['difftalk.audio_features']!) as { name: string; column: string; window: number; dim: number }[];
    for (const a of meta) {
      const rows = dump.audio[a.column]!;
      assert.equal(rows.length, 200);
      assert.ok(
        rows.every((r) => r.length === a.window * a.dim),
        `${a.column}: ${a.window}×${a.dim} per frame`,
      );
      const distinct = new Set(
        rows.map((r) =>
          r
            .slice(0, a.dim * 2)
            .map((v) => v.toFixed(3))
            .join(','),
        ),
      );
      assert.ok(distinct.size > 150, `${a.column}: windows vary over time (${distinct.size} distinct)`);
    }
    // Reference: mfcc() (python_speech_features 0.6.1, golden values in tests/audio/mfcc.test.ts) of the
    // clip's own audio decoded by ffmpeg, windowed by frameWindows; float32 storage → tolerance 1e-3 absolute.
    const audio = await loadAudio16k(AOC_CLIP);
    const m = mfcc(audio.samples, 16000);
    const w = frameWindows({ data: Float32Array.from(m.data), frames: m.frames, dim: m.dim, rate: m.rate }, 200, 25, 20);
    const row = dump.audio.audio_mfcc![100]!;
    const expected = w.data.subarray(100 * 20 * 13, 101 * 20 * 13);
    let maxErr = 0;
    for (let i = 0; i < row.length; i++) maxErr = Math.max(maxErr, Math.abs(row[i]! - expected[i]!));
    assert.ok(maxErr < 1e-3, `stored MFCC window equals mfcc() of the source audio (max error ${maxErr})`);
  });

  test('rerun skips the finished clip and leaves the shards byte-identical', async () => {
    const before = await readFile(path.join(out, 'shards', dump.files[0]!));
    const again = await runPrep({ kind: 'input', paths: [AOC_CLIP] }, config(), { out, ...runOpts });
    assert.equal(again.clips.skippedAsFinished, 1);
    assert.deepEqual(await readFile(path.join(out, 'shards', dump.files[0]!)), before);
  });

  test('streaming the clip in small chunks (37 frames) gives byte-identical shards and the same preview', async () => {
    const chunked = path.join(path.dirname(out), 'aoc-chunked');
    const r = await runPrep({ kind: 'input', paths: [AOC_CLIP] }, config(), { out: chunked, ...runOpts, preview: true, chunkFrames: 37 });
    assert.equal(r.frames, 200);
    for (const f of dump.files) assert.deepEqual(await readFile(path.join(chunked, 'shards', f)), await readFile(path.join(out, 'shards', f)), f);
    const sheet = (d: string) => readFile(path.join(d, 'previews', `${path.basename(AOC_CLIP, '.mp4')}.png`));
    assert.deepEqual(await sheet(chunked), await sheet(out));
  });

  test('a different configuration in the same folder is refused, not mixed', async () => {
    await assert.rejects(
      runPrep({ kind: 'input', paths: [AOC_CLIP] }, config({ jpegQuality: 80 }), { out, ...runOpts }),
      (e: Error & { code?: string }) => e.code === 'config-mismatch' && /jpegQuality/.test(e.message),
    );
  });

  test('the tfjs landmark engine agrees with MediaPipe-in-Chromium (median distance a few px at 256²)', async () => {
    const out2 = path.join(tmpDir(), 'aoc-tfjs');
    const r = await runPrep({ kind: 'input', paths: [AOC_CLIP] }, config({ landmarker: 'tfjs', faceModel: undefined }), { out: out2, ...runOpts });
    assert.equal(r.clips.done, 1);
    const d2 = await readShardsFresh(out2);
    assert.equal(d2.rows, 200);
    const dists: number[] = [];
    for (let i = 0; i < 200; i++) {
      if (dump.status[i] !== 'ok' || d2.status[i] !== 'ok') continue;
      // Both datasets crop from their own engine's face track; compare the 68 points relative to the crop frame.
      for (let k = 0; k < 68; k++) dists.push(Math.hypot(dump.lm68[i]![2 * k]! - d2.lm68[i]![2 * k]!, dump.lm68[i]![2 * k + 1]! - d2.lm68[i]![2 * k + 1]!));
    }
    const med = median(dists);
    // Logged for the closing note; the bound is "a few pixels".
    console.log(`# engine agreement: median ${med.toFixed(2)} px over ${dists.length} point pairs`);
    assert.ok(med < 6, `median distance ${med.toFixed(2)} px`);
  });
});

describe('prep --hdtf through yt-dlp from a local server', () => {
  let server: MediaServer;
  let out: string;
  let result: PrepResult;

  before(async () => {
    server = await startMediaServer({ '/aoc.mp4': { file: AOC_CLIP } });
    const ann = await writeHdtfAnnotations(path.join(tmpDir(), 'ann'), [
      // The served file is the 512² HDTF clip itself: annotate it at its own height, full-frame box, 8 s.
      {
        subset: 'WDA',
        name: 'AlexandriaOcasioCortez',
        url: server.url('/aoc.mp4'),
        resolution: 512,
        clips: [{ start: '00:00', end: '00:08', crop: { x: 0, y: 0, w: 512, h: 512 } }],
      },
      // A removed video (404), a broken row (no crop box, bad times) and names that try to escape or inject options.
      {
        subset: 'WDA',
        name: 'GoneVideo',
        url: server.url('/missing.mp4'),
        resolution: 512,
        clips: [{ start: '00:00', end: '00:08', crop: { x: 0, y: 0, w: 512, h: 512 } }],
      },
      { subset: 'WRA', name: 'NoBox', url: server.url('/aoc.mp4'), resolution: 512, clips: [{ start: '00:00', end: '00:08' }] },
      {
        subset: 'WRA',
        name: '-rf',
        url: server.url('/aoc.mp4'),
        resolution: 512,
        clips: [{ start: '00:00', end: '00:08', crop: { x: 0, y: 0, w: 512, h: 512 } }],
      },
      {
        subset: 'RD',
        name: '..',
        url: server.url('/aoc.mp4'),
        resolution: 512,
        clips: [{ start: '00:00', end: '00:08', crop: { x: 0, y: 0, w: 512, h: 512 } }],
      },
    ]);
    // A line that is not an annotation at all.
    await writeFile(path.join(ann, 'RD_annotion_time.txt'), `${await readFile(path.join(ann, 'RD_annotion_time.txt'), 'utf8')}Radio9.mp4 garbage-row\n`);
    out = path.join(tmpDir(), 'hdtf');
    result = await runPrep({ kind: 'hdtf', dir: ann }, config(), { out, ...runOpts });
  });
  after(() => server.close());

  test('the annotated clip is downloaded with audio and prepared: 200 frames', async () => {
    assert.equal(result.clips.done, 1, JSON.stringify(result));
    assert.equal(result.frames, 200);
    const m = await readDatasetManifest(out);
    const clip = m.clips.find((c) => c.id === 'WDA_AlexandriaOcasioCortez_000')!;
    assert.equal(clip.status, 'done');
    assert.equal(clip.frames, 200);
    const dump = await readShardsFresh(out);
    assert.equal(dump.rows, 200);
    assert.ok(server.gets('/aoc.mp4') >= 1, 'yt-dlp fetched the file from the local server');
  });

  test('bad rows are recorded with reasons and nothing escaped the output folder', async () => {
    const m = await readDatasetManifest(out);
    const reason = (id: string) => m.clips.find((c) => c.id === id)?.drop_reason;
    // A 404 is permanent: recorded as unavailable (never retried) with yt-dlp's reason.
    assert.equal(reason('WDA_GoneVideo_000'), 'video-unavailable');
    assert.match(m.clips.find((c) => c.id === 'WDA_GoneVideo_000')!.drop_message ?? '', /404/);
    assert.equal(reason('WRA_NoBox_000'), 'annotation-invalid');
    const unsafe = m.clips.filter((c) => c.drop_reason === 'unsafe-name');
    assert.ok(unsafe.length >= 2, `unsafe names recorded (${JSON.stringify(m.clips.map((c) => [c.id, c.drop_reason]))})`);
    assert.ok((m.drop_reasons['video-unavailable'] ?? 0) >= 1);
    const { stdout } = await runProcess('find', [path.dirname(out), '-name', '-rf*']);
    assert.equal(stdout.toString().trim(), '', 'no file named after the injected name');
  });
});

describe('prep --input with bad files keeps the good ones', () => {
  test('corrupt video, video without audio, video without a face: each dropped with its reason', async () => {
    const dir = tmpDir();
    const inputs = path.join(dir, 'in');
    await mkdir(inputs);
    await copyFile(AOC_CLIP, path.join(inputs, 'good clip.mp4'));
    const bytes = await readFile(AOC_CLIP);
    await writeFile(path.join(inputs, 'corrupt.mp4'), bytes.subarray(0, 4096));
    await runTool('ffmpeg', ['-v', 'error', '-i', AOC_CLIP, '-t', '6', '-an', '-c:v', 'libx264', '-preset', 'ultrafast', path.join(inputs, 'silent.mp4')]);
    // A real scene without a face: the lower-left corner of the astronaut photo (flag and suit) plus real speech.
    await runTool('ffmpeg', [
      '-v',
      'error',
      '-loop',
      '1',
      '-i',
      path.join(MEDIA, 'astronaut.png'),
      '-i',
      path.join(MEDIA, 'jfk.wav'),
      '-filter:v',
      'crop=200:200:0:312,scale=256:256',
      '-t',
      '6',
      '-r',
      '25',
      '-c:v',
      'libx264',
      '-preset',
      'ultrafast',
      '-pix_fmt',
      'yuv420p',
      '-c:a',
      'aac',
      '-shortest',
      path.join(inputs, 'noface.mp4'),
    ]);
    const r = await runPrep({ kind: 'input', paths: [inputs] }, config(), { out: path.join(dir, 'out'), ...runOpts });
    const m = await readDatasetManifest(path.join(dir, 'out'));
    const byId = Object.fromEntries(m.clips.map((c) => [c.id, c]));
    assert.equal(byId.good_clip?.status, 'done');
    assert.equal(byId.good_clip?.frames, 200);
    assert.equal(byId.corrupt?.drop_reason, 'video-corrupt');
    assert.equal(byId.silent?.drop_reason, 'no-audio');
    assert.equal(byId.noface?.drop_reason, 'no-face');
    assert.equal(r.clips.done, 1);
    assert.equal(r.clips.dropped, 3);
  });

  test('the portrait HEVC clip with a small face and 44.1 kHz stereo audio prepares', async () => {
    const out = path.join(tmpDir(), 'latentsync');
    const r = await runPrep({ kind: 'input', paths: [path.join(MEDIA, 'latentsync_demo1_video.mp4')] }, config(), { out, ...runOpts });
    assert.equal(r.clips.done, 1, JSON.stringify(r));
    assert.equal(r.frames, 250);
    const dump = await readShardsFresh(out);
    assert.equal(dump.rows, 250);
    assert.ok(dump.status.filter((s) => s === 'ok').length >= 225);
  });
});
