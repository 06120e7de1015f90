/**
 * Frame inputs as researchers really have them (issue 12 point 1), on real frames of the AOC clip
 * (../shared/data/media), cropped to an odd size (257×251). The reference is ffmpeg's own decode of the same pixels
 * (a lossless FFV1 video of the raw RGB frames), so every lossless input must score the 100 dB PSNR cap exactly:
 * - 8-bit and 16-bit (v·257) RGB PNGs carrying an embedded Display-P3 ICC profile, written byte by byte here (not by sharp):
 *   frames are the stored values, as ffmpeg, OpenCV and PIL read them, never colour-converted;
 * - grey+alpha and RGBA PNGs (alpha dropped, grey replicated), and a folder mixing PNG and lossless WebP;
 * - frames that are links to files outside the folder, beside a hidden macOS `._` file.
 * Each ambiguous folder is an error (exit 2 in the CLI) with the fix instead of a silently shifted frame order: two
 * files for one frame, videos beside images, a dangling link, a --difftalk-list for a folder that is no DiffTalk
 * output, --fps with no frames. `--align auto` finds a prediction that is shorter than its search window and starts
 * 5 frames before its GT (offset −5).
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { runEval } from '../../src/eval/pipeline.js';
import { runTool } from '../../src/util/exec.js';
import { initBackend } from '../../src/util/tf.js';
import { AOC_CLIP, ffmpegRgb, tmpDir } from '../helpers.js';

type Err = Error & { code?: string; suggestion?: string };
const PSNR = 'psnr(rgb-255-cap100)';
const W = 257;
const H = 251;
const N = 6;

/** A PNG written by hand: `channels` 1–4 (grey, grey+alpha, RGB, RGBA), 8 or 16 bits, optional iCCP chunk. */
function png(data: ArrayLike<number>, channels: number, bits: 8 | 16, icc?: Buffer): Buffer {
  const chunk = (type: string, body: Buffer) => {
    const tb = Buffer.concat([Buffer.from(type, 'latin1'), body]);
    const out = Buffer.alloc(tb.length + 8);
    out.writeUInt32BE(body.length, 0);
    tb.copy(out, 4);
    out.writeUInt32BE(crc32(tb), tb.length + 4);
    return out;
  };
  const bpp = (channels * bits) / 8;
  const raw = Buffer.alloc(H * (1 + W * bpp));
  for (let y = 0; y < H; y++)
    for (let i = 0; i < W * channels; i++) {
      const at = y * (1 + W * bpp) + 1 + (i * bits) / 8;
      const v = data[y * W * channels + i]!;
      if (bits === 16) raw.writeUInt16BE(v, at);
      else raw[at] = v;
    }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(W, 0);
  ihdr.writeUInt32BE(H, 4);
  ihdr.set([bits, [0, 0, 4, 2, 6][channels]!, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    ...(icc ? [chunk('iCCP', Buffer.concat([Buffer.from('p3\0\0', 'latin1'), deflateSync(icc)]))] : []),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Lossless FFV1 video of raw RGB frames (ffmpeg is the reference decoder). */
async function losslessVideo(rgb: Uint8Array, file: string, dir: string): Promise<void> {
  const raw = path.join(dir, `${path.basename(file)}.rgb`);
  writeFileSync(raw, rgb);
  const args = ['-v', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${W}x${H}`, '-r', '25', '-i', raw, '-c:v', 'ffv1', '-pix_fmt', 'gbrp', file];
  await runTool('ffmpeg', args);
}

describe('eval: hostile and unusual frame folders (real AOC frames, 257×251)', () => {
  const dir = tmpDir('difftalk-eval-hostile-');
  const gt = path.join(dir, 'gt.mkv');
  const gtGrey = path.join(dir, 'gt-grey.mkv');
  const opts = { metrics: ['psnr'] as const, crop: 'none' as const };
  let rgb: Uint8Array;
  const px = W * H;
  before(async () => {
    await initBackend('wasm');
    rgb = await ffmpegRgb(AOC_CLIP, { frames: N, vf: `format=rgb24,crop=${W}:${H}:120:60` });
    assert.equal(rgb.length, N * px * 3);
    await losslessVideo(rgb, gt, dir);
    const grey = new Uint8Array(rgb.length);
    for (let i = 0; i < N * px; i++) grey.fill(rgb[i * 3]!, i * 3, i * 3 + 3);
    await losslessVideo(grey, gtGrey, dir);
    const icc = (
      await sharp({ create: { width: 2, height: 2, channels: 3, background: '#808080' } })
        .withIccProfile('p3')
        .png()
        .toBuffer()
        .then((b) => sharp(b).metadata())
    ).icc!;
    assert.ok(icc.length > 100, 'a real P3 profile');
    for (const d of ['p16', 'icc', 'ga', 'rgba', 'mixed', 'real']) mkdirSync(path.join(dir, d));
    for (let f = 0; f < N; f++) {
      const frame = rgb.subarray(f * px * 3, (f + 1) * px * 3);
      const name = `${String(f + 1).padStart(5, '0')}.png`;
      writeFileSync(
        path.join(dir, 'p16', name),
        png(
          Uint16Array.from(frame, (v) => v * 257),
          3,
          16,
          icc,
        ),
      );
      writeFileSync(path.join(dir, 'icc', name), png(frame, 3, 8, icc));
      const ga = new Uint8Array(px * 2);
      const rgba = new Uint8Array(px * 4);
      for (let i = 0; i < px; i++) {
        ga[i * 2] = frame[i * 3]!;
        ga[i * 2 + 1] = (i * 7) & 255;
        rgba.set(frame.subarray(i * 3, i * 3 + 3), i * 4);
        rgba[i * 4 + 3] = (i * 13) & 255;
      }
      writeFileSync(path.join(dir, 'ga', name), png(ga, 2, 8));
      writeFileSync(path.join(dir, 'rgba', name), png(rgba, 4, 8));
      writeFileSync(path.join(dir, 'real', name), png(frame, 3, 8));
    }
    // Mixed: odd frames as lossless WebP (ffmpeg's libwebp), even frames as PNG, numbered without padding (1 … 6).
    for (let f = 1; f <= N; f++) {
      const src = path.join(dir, 'real', `${String(f).padStart(5, '0')}.png`);
      if (f % 2) await runTool('ffmpeg', ['-v', 'error', '-i', src, '-c:v', 'libwebp', '-lossless', '1', path.join(dir, 'mixed', `${f}.webp`)]);
      else copyFileSync(src, path.join(dir, 'mixed', `${f}.png`));
    }
  });

  it('PNGs with an ICC profile (8 and 16 bits), grey+alpha, RGBA and mixed PNG/WebP decode to the stored values (100 dB)', async () => {
    for (const [name, ref] of [
      ['p16', gt],
      ['icc', gt],
      ['rgba', gt],
      ['mixed', gt],
      ['ga', gtGrey],
    ] as const) {
      const r = await runEval({ ...opts, pred: path.join(dir, name), gt: ref, out: path.join(dir, `o-${name}`) });
      assert.equal(r.clips[0]!.frames, N, name);
      assert.equal(r.summary.pred!.find((m) => m.name === PSNR)!.value, 100, `${name}: lossless frames score the cap`);
    }
  });

  it('links to frames elsewhere are frames; hidden ._ files are not; a dangling link is an error', async () => {
    const linked = path.join(dir, 'linked');
    mkdirSync(linked);
    for (const n of readdirSync(path.join(dir, 'real'))) symlinkSync(path.join(dir, 'real', n), path.join(linked, n));
    writeFileSync(path.join(linked, '._00001.png'), 'AppleDouble resource fork, not an image');
    const r = await runEval({ ...opts, pred: linked, gt, out: path.join(dir, 'o-linked') });
    assert.equal(r.clips[0]!.frames, N);
    assert.equal(r.summary.pred![0]!.value, 100);
    symlinkSync(path.join(dir, 'nowhere.png'), path.join(linked, '00007.png'));
    await assert.rejects(
      runEval({ ...opts, pred: linked, gt, out: path.join(dir, 'o-dangling') }),
      (e: Err) => e.code === 'bad-image' && /link to nothing/.test(e.message),
    );
  });

  it('ambiguous folders and unused flags are errors with the fix', async () => {
    const dup = path.join(dir, 'dup');
    mkdirSync(dup);
    for (const n of readdirSync(path.join(dir, 'real'))) copyFileSync(path.join(dir, 'real', n), path.join(dup, n));
    copyFileSync(path.join(dir, 'mixed', '3.webp'), path.join(dup, '3.webp')); // frame 3 twice: 00003.png and 3.webp
    await assert.rejects(
      runEval({ ...opts, pred: dup, gt, out: path.join(dir, 'o-dup') }),
      (e: Err) => e.code === 'frames-duplicate' && /00003\.png and 3\.webp|3\.webp and 00003\.png/.test(e.message),
    );
    const both = path.join(dir, 'both');
    mkdirSync(both);
    copyFileSync(gt, path.join(both, 'clip.mkv'));
    copyFileSync(path.join(dir, 'real', '00001.png'), path.join(both, 'thumbnail.png'));
    await assert.rejects(
      runEval({ ...opts, pred: both, gt, out: path.join(dir, 'o-both') }),
      (e: Err) => e.code === 'mixed-inputs' && /move the images/.test(String(e.suggestion)),
    );
    const list = path.join(dir, 'data_test.txt');
    writeFileSync(list, '1_1\r\n1_2\r\n');
    await assert.rejects(
      runEval({ ...opts, pred: path.join(dir, 'real'), gt, difftalkList: list, out: path.join(dir, 'o-list') }),
      (e: Err) => e.code === 'bad-option' && /not a DiffTalk inference folder/.test(e.message),
    );
    await assert.rejects(
      runEval({ ...opts, pred: gt, gt, fps: 30, out: path.join(dir, 'o-fps') }),
      (e: Err) => e.code === 'bad-option' && /drop --fps/.test(String(e.suggestion)),
    );
  });
});

describe('eval: a DiffTalk list as Windows editors leave it (real AOC frames)', () => {
  it('reads a CRLF list with a BOM, and the GT images by the text the list gives (07_1.jpg, not 7_1.jpg)', async () => {
    const dir = tmpDir('difftalk-eval-dtlist-');
    const images = path.join(dir, 'HDTF', 'images');
    const out = path.join(dir, 'inference');
    mkdirSync(images, { recursive: true });
    mkdirSync(out);
    // images/07_<k>.jpg are the frames; images/7_<k>.jpg the same frames mirrored (what a reader dropping the zero would see).
    await runTool('ffmpeg', ['-v', 'error', '-i', AOC_CLIP, '-frames:v', '3', '-vf', 'scale=256:256', '-start_number', '1', path.join(images, '07_%d.jpg')]);
    await runTool('ffmpeg', [
      '-v',
      'error',
      '-i',
      AOC_CLIP,
      '-frames:v',
      '3',
      '-vf',
      'hflip,scale=256:256',
      '-start_number',
      '1',
      path.join(images, '7_%d.jpg'),
    ]);
    for (let k = 0; k < 3; k++) copyFileSync(path.join(images, `07_${k + 1}.jpg`), path.join(out, `0000_${String(k).padStart(4, '0')}.jpg`));
    const list = path.join(dir, 'data_test.txt');
    writeFileSync(list, '\uFEFF07_1\r\n07_2\r\n07_3\r\n');
    const r = await runEval({ pred: out, gt: path.join(dir, 'HDTF'), difftalkList: list, out: path.join(dir, 'o'), metrics: ['psnr'], crop: 'none' });
    assert.equal(r.clips[0]!.clip, '7');
    assert.equal(r.clips[0]!.frames, 3);
    assert.equal(r.clips[0]!.scores[PSNR], 100);
  });
});

describe('eval --align auto: a short prediction that starts before its GT (real AOC frames)', () => {
  const dir = tmpDir('difftalk-eval-auto-');
  it('finds offset −5 (5 foreign frames, then GT frames 0…19) and scores the aligned frames at the cap', async () => {
    await initBackend('wasm');
    const pred = path.join(dir, 'pred');
    mkdirSync(pred);
    const gt = path.join(dir, 'gt.mkv');
    const vf = 'scale=256:256';
    await runTool('ffmpeg', ['-v', 'error', '-i', AOC_CLIP, '-frames:v', '24', '-vf', vf, '-c:v', 'ffv1', '-pix_fmt', 'gbrp', '-an', gt]);
    // 5 frames from later in the clip (other head pose), then the GT's first 20 frames: 25 frames, fewer than the
    // 25 + 16 an offset search that always skips 25 prediction frames would need.
    await runTool('ffmpeg', [
      '-v',
      'error',
      '-i',
      AOC_CLIP,
      '-vf',
      `select=between(n\\,150\\,154),${vf}`,
      '-fps_mode',
      'passthrough',
      '-start_number',
      '1',
      path.join(pred, '%d.png'),
    ]);
    await runTool('ffmpeg', ['-v', 'error', '-i', gt, '-frames:v', '20', '-start_number', '6', path.join(pred, '%d.png')]);
    const r = await runEval({ pred, gt, out: path.join(dir, 'o'), metrics: ['psnr'], crop: 'none', align: 'auto' });
    const c = r.clips[0]!;
    assert.deepEqual(c.alignment, { offset: -5, method: 'auto' });
    assert.equal(c.frames, 20);
    assert.equal(c.scores[PSNR], 100);
  });
});
