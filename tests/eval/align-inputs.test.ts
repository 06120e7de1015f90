/**
 * Inputs and alignment (issue 12 points 1–2) on the real AOC clip (../shared/data/media, 512², 25 fps, 200 frames):
 * - an ffmpeg-style pattern (`%05d.png`) scores identically to the folder of the same frames (exact: same files);
 * - a synthetic official DiffTalk inference folder (flat `{batch:04d}_{j:04d}.jpg`, batches of 20, written in the order
 *   of its data_test.txt; ../shared/docs/difftalk-reference.md §3) is paired right: against a DiffTalk data root whose
 *   `images/<vid>_<frame>.jpg` are the same bytes, every frame scores the 100 dB PSNR cap (any mispairing would not);
 *   against GT videos named through a mapping (JSON, or the clip_ids.csv of difftalk export), each clip lands on its own
 *   video at its listed frames, gaps included (PSNR > 30 dB for JPEG q≈95; the swapped mapping scores > 5 dB lower);
 * - `--align auto` finds a known offset: the clip with its first 7 frames cut off (lossless) is found at GT frame 7;
 * - each silent case is an error with the fix (length mismatch, DiffTalk folder without its list, a pattern with a gap,
 *   no audio for LSE); `--audio` supplies LSE's audio for a silent prediction.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { difftalkOutputName } from '../../src/eval/difftalk-input.js';
import { runEval } from '../../src/eval/pipeline.js';
import { syncnetParamShapes } from '../../src/models/syncnet.js';
import { runTool } from '../../src/util/exec.js';
import { initBackend } from '../../src/util/tf.js';
import { det } from '../../src/weights/det.js';
import { writeSafetensors } from '../../src/weights/safetensors.js';
import { AOC_CLIP, tmpDir } from '../helpers.js';

type Err = Error & { code?: string; suggestion?: string };
const PSNR = 'psnr(rgb-255-cap100)';

describe('eval inputs: patterns and the official DiffTalk output', () => {
  const dir = tmpDir('difftalk-eval-inputs-');
  const frames = path.join(dir, 'frames');
  before(async () => {
    await initBackend('wasm');
    mkdirSync(frames);
    await runTool('ffmpeg', ['-v', 'error', '-i', AOC_CLIP, '-frames:v', '12', '-start_number', '1', path.join(frames, '%05d.png')]);
  });

  it('a pattern scores identically to the frame folder; a gap in it is an error with the fix', async () => {
    const opts = { gt: AOC_CLIP, metrics: ['psnr', 'ssim'] as const, crop: 'none' as const, maxLengthDiff: 188 };
    const fromPattern = await runEval({ ...opts, pred: path.join(frames, '%05d.png'), out: path.join(dir, 'p1') });
    const fromFolder = await runEval({ ...opts, pred: frames, out: path.join(dir, 'p2') });
    assert.equal(fromPattern.frames.length, 12);
    assert.deepEqual(
      fromPattern.frames.map((f) => f.values),
      fromFolder.frames.map((f) => f.values),
    );
    assert.deepEqual(fromPattern.summary, fromFolder.summary);
    const gap = path.join(dir, 'gap');
    mkdirSync(gap);
    for (const k of [1, 2, 4]) copyFileSync(path.join(frames, `0000${k}.png`), path.join(gap, `0000${k}.png`));
    await assert.rejects(
      runEval({ ...opts, pred: path.join(gap, '%05d.png'), out: path.join(dir, 'p3') }),
      (e: Err) => e.code === 'frames-gap' && /frame 3 is missing/.test(e.message) && /folder itself/.test(String(e.suggestion)),
    );
  });

  describe('official DiffTalk inference folder', () => {
    const root = path.join(dir, 'HDTF');
    const out = path.join(dir, 'inference');
    const gtVideos = path.join(dir, 'gt');
    const list = path.join(dir, 'data_test.txt');
    const mapping = path.join(dir, 'ids.json');
    const mappingCsv = path.join(dir, 'clip_ids.csv');
    // Two videos: vid 7 = the AOC clip, frames 1..25; vid 9 = the clip mirrored, frames 5..21 without 10 and 11 (a list
    // may start later, and difftalk export leaves out frames without a face).
    const clips = [
      { vid: 7, name: 'WDA_AlexandriaOcasioCortez_000', first: 1, last: 25, skip: [] as number[], vf: 'scale=256:256' },
      { vid: 9, name: 'mirrored', first: 5, last: 21, skip: [10, 11], vf: 'hflip,scale=256:256' },
    ];
    before(async () => {
      mkdirSync(path.join(root, 'images'), { recursive: true });
      mkdirSync(out);
      mkdirSync(gtVideos);
      const lines: string[] = [];
      for (const c of clips) {
        // The data root's images: <vid>_<frame>.jpg, 1-based, 256² JPEG (as DiffTalk reads them).
        const tmp = path.join(dir, `v${c.vid}`);
        mkdirSync(tmp);
        await runTool('ffmpeg', [
          '-v',
          'error',
          '-i',
          AOC_CLIP,
          '-frames:v',
          String(c.last),
          '-vf',
          c.vf,
          '-q:v',
          '2',
          '-start_number',
          '1',
          path.join(tmp, '%d.jpg'),
        ]);
        for (let f = c.first; f <= c.last; f++) {
          if (c.skip.includes(f)) continue;
          copyFileSync(path.join(tmp, `${f}.jpg`), path.join(root, 'images', `${c.vid}_${f}.jpg`));
          lines.push(`${c.vid}_${f}`);
        }
        // GT videos at 256², lossless, named by clip id.
        await runTool('ffmpeg', ['-v', 'error', '-i', AOC_CLIP, '-vf', c.vf, '-c:v', 'libx264rgb', '-qp', '0', path.join(gtVideos, `${c.name}.mkv`)]);
      }
      writeFileSync(list, lines.join('\n') + '\n');
      writeFileSync(path.join(root, 'data.txt'), '');
      // The inference output: list line k → {k div 20:04d}_{k mod 20:04d}.jpg (here the GT image itself).
      lines.forEach((l, k) => {
        const [vid, f] = l.split('_');
        copyFileSync(path.join(root, 'images', `${vid}_${f}.jpg`), path.join(out, difftalkOutputName(k)));
      });
      writeFileSync(mapping, JSON.stringify(Object.fromEntries(clips.map((c) => [c.name, c.vid]))));
      // The CSV layout difftalk export difftalk writes (data/HDTF/clip_ids.csv).
      writeFileSync(
        mappingCsv,
        ['vid,clip_id,split,frames,listed_frames', ...clips.map((c) => `${c.vid},${c.name},test,200,${c.last - c.first + 1}`)].join('\n') + '\n',
      );
    });

    it('maps flat files to clips and frames through data_test.txt (against the data root: every frame identical)', async () => {
      assert.equal(difftalkOutputName(41), '0002_0001.jpg');
      const r = await runEval({ pred: out, gt: root, difftalkList: list, out: path.join(dir, 'd1'), metrics: ['psnr'], crop: 'none' });
      assert.deepEqual(
        r.clips.map((c) => [c.clip, c.frames]),
        [
          ['7', 25],
          ['9', 15],
        ],
      );
      assert.ok(r.frames.every((f) => f.values[PSNR] === 100));
      assert.deepEqual(
        r.clips.map((c) => c.alignment),
        [
          { offset: 0, method: 'first' },
          { offset: 0, method: 'first' },
        ],
      );
    });

    it('with a mapping, pairs each clip with its GT video at its listed frames (gaps included)', async () => {
      const r = await runEval({
        pred: out,
        gt: gtVideos,
        difftalkList: list,
        difftalkMap: mapping,
        out: path.join(dir, 'd2'),
        metrics: ['psnr'],
        crop: 'none',
        maxLengthDiff: 200,
      });
      assert.deepEqual(
        r.clips.map((c) => [c.clip, c.frames, c.alignment!.offset]),
        [
          ['WDA_AlexandriaOcasioCortez_000', 25, 0],
          ['mirrored', 15, 4],
        ],
      );
      for (const c of r.clips) assert.ok(c.scores[PSNR]! > 30, `${c.clip}: ${c.scores[PSNR]}`);
      // Reference for "paired right": the same frames paired with the other clip's video score far lower.
      const swapped = path.join(dir, 'swapped.json');
      writeFileSync(swapped, JSON.stringify({ WDA_AlexandriaOcasioCortez_000: 9, mirrored: 7 }));
      const wrong = await runEval({
        pred: out,
        gt: gtVideos,
        difftalkList: list,
        difftalkMap: swapped,
        out: path.join(dir, 'd3'),
        metrics: ['psnr'],
        crop: 'none',
        maxLengthDiff: 200,
      });
      for (const c of wrong.clips) assert.ok(c.scores[PSNR]! < r.clips.find((x) => x.clip === c.clip)!.scores[PSNR]! - 5, `${c.clip}: ${c.scores[PSNR]}`);
      // A list with gaps pairs each frame with its listed GT frame: shifting it as well is refused.
      await assert.rejects(
        runEval({
          pred: out,
          gt: gtVideos,
          difftalkList: list,
          difftalkMap: mapping,
          out: path.join(dir, 'd3b'),
          metrics: ['psnr'],
          crop: 'none',
          maxLengthDiff: 200,
          align: 'offset:1',
        }),
        (e: Err) => e.code === 'bad-option' && /--align at first/.test(String(e.suggestion)),
      );
      // The export's CSV mapping names the clips the same way.
      const csv = await runEval({
        pred: out,
        gt: gtVideos,
        difftalkList: list,
        difftalkMap: mappingCsv,
        out: path.join(dir, 'd3csv'),
        metrics: ['psnr'],
        crop: 'none',
        maxLengthDiff: 200,
      });
      assert.deepEqual(csv.frames, r.frames);
    });

    it('without its list, or with another list, is an error with the fix', async () => {
      await assert.rejects(
        runEval({ pred: out, gt: gtVideos, out: path.join(dir, 'd4'), metrics: ['psnr'], crop: 'none' }),
        (e: Err) => e.code === 'difftalk-list-missing' && /--difftalk-list \S*data_test\.txt/.test(String(e.suggestion)),
      );
      const short = path.join(dir, 'short.txt');
      writeFileSync(short, '7_1\n7_2\n');
      await assert.rejects(
        runEval({ pred: out, gt: root, difftalkList: short, out: path.join(dir, 'd5'), metrics: ['psnr'], crop: 'none' }),
        (e: Err) => e.code === 'frames-extra' && /data_test\.txt this inference run read/.test(String(e.suggestion)),
      );
      const order = path.join(dir, 'order.txt');
      writeFileSync(order, '7_3\n7_1\n');
      await assert.rejects(
        runEval({ pred: out, gt: root, difftalkList: order, out: path.join(dir, 'd6'), metrics: ['psnr'], crop: 'none' }),
        (e: Err) => e.code === 'bad-input' && /increasing order/.test(e.message),
      );
    });
  });
});

describe('eval alignment and silent cases (real AOC clip)', () => {
  const dir = tmpDir('difftalk-eval-align-');
  const cut = path.join(dir, 'cut.mkv');
  const silentGt = path.join(dir, 'gt-silent.mkv');
  const wav = path.join(dir, 'audio.wav');
  before(async () => {
    await initBackend('wasm');
    // The clip with its first 7 frames cut off: 40 frames, lossless RGB, no audio.
    await runTool('ffmpeg', [
      '-v',
      'error',
      '-i',
      AOC_CLIP,
      '-vf',
      'select=gte(n\\,7),setpts=N/25/TB',
      '-frames:v',
      '40',
      '-c:v',
      'libx264rgb',
      '-qp',
      '0',
      '-an',
      cut,
    ]);
    await runTool('ffmpeg', ['-v', 'error', '-i', AOC_CLIP, '-frames:v', '47', '-c:v', 'libx264rgb', '-qp', '0', '-an', silentGt]);
    await runTool('ffmpeg', ['-v', 'error', '-i', AOC_CLIP, '-vn', '-ac', '1', '-ar', '16000', '-c:a', 'pcm_s16le', wav]);
  });

  it('--align auto finds a known offset (7 frames cut) and reports it; offset:7 scores the same', async () => {
    const events: string[] = [];
    const auto = await runEval({
      pred: cut,
      gt: AOC_CLIP,
      out: path.join(dir, 'a1'),
      metrics: ['psnr'],
      crop: 'none',
      align: 'auto',
      maxLengthDiff: 160,
      onEvent: (e) => void (e.type === 'log' && events.push(e.message)),
    });
    const c = auto.clips[0]!;
    assert.deepEqual(c.alignment, { offset: 7, method: 'auto' });
    assert.ok(c.notes.some((n) => /--align auto: prediction frame 0 is GT frame 7/.test(n)));
    assert.ok(events.some((m) => /GT frame 7/.test(m)));
    assert.equal(c.scores[PSNR], 100); // lossless RGB: identical frames once aligned
    const fixed = await runEval({ pred: cut, gt: AOC_CLIP, out: path.join(dir, 'a2'), metrics: ['psnr'], crop: 'none', align: 'offset:7', maxLengthDiff: 160 });
    assert.deepEqual(fixed.frames, auto.frames);
    await assert.rejects(
      runEval({ pred: cut, gt: AOC_CLIP, out: path.join(dir, 'a3'), metrics: ['psnr'], crop: 'none', align: 'middle' }),
      (e: Err) => e.code === 'bad-option' && /offset:3/.test(String(e.suggestion)),
    );
  });

  it('a length mismatch beyond --max-length-diff is an error with the fix', async () => {
    await assert.rejects(
      runEval({ pred: cut, gt: AOC_CLIP, out: path.join(dir, 'l1'), metrics: ['psnr'], crop: 'none' }),
      (e: Err) =>
        e.code === 'length-mismatch' &&
        /prediction has 40 frames and GT 200/.test(e.message) &&
        /--max-length-diff 160/.test(String(e.suggestion)) &&
        /--align/.test(String(e.suggestion)),
    );
    // Within the tolerance: compared, and the note says so.
    const r = await runEval({ pred: cut, gt: silentGt, out: path.join(dir, 'l2'), metrics: ['psnr'], crop: 'none', align: 'offset:7' });
    assert.equal(r.clips[0]!.frames, 40);
  });

  it('LSE without any audio is an error naming --audio; with --audio it is scored', async () => {
    const weights = path.join(dir, 'det-syncnet.safetensors');
    const shapes = syncnetParamShapes().filter(([n]) => !n.endsWith('num_batches_tracked'));
    await writeSafetensors(weights, new Map(shapes.map(([n, s]) => [n, { dtype: 'float32' as const, shape: s, data: det(n, s) }])));
    const opts = { pred: cut, gt: silentGt, metrics: ['lse'] as const, syncnetWeights: weights, align: 'offset:7' };
    await assert.rejects(runEval({ ...opts, out: path.join(dir, 's1') }), (e: Err) => e.code === 'no-audio' && /--audio <wav>/.test(String(e.suggestion)));
    const r = await runEval({ ...opts, audio: wav, out: path.join(dir, 's2') });
    const c = r.clips[0]!;
    assert.equal(c.lse!.windows, 35); // min(40 frames, audio) − 5
    assert.ok(c.notes.some((n) => /LSE uses --audio/.test(n)));
  });
});
