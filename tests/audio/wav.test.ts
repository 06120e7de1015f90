import assert from 'node:assert/strict';
import { symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { loadAudio16k, parseWav, readWav } from '../../src/audio/wav.js';
import { DifftalkError } from '../../src/util/errors.js';
import { runTool } from '../../src/util/exec.js';
import { AOC_CLIP, MEDIA, tmpDir } from '../helpers.js';

const JFK = path.join(MEDIA, 'jfk.wav');

/** A RIFF/WAVE writer for test inputs: `chunks` are written in order after the RIFF header. */
function riff(chunks: [string, Uint8Array][], riffSize?: number): Uint8Array {
  const parts: Uint8Array[] = [];
  let total = 4;
  for (const [id, body] of chunks) {
    const h = new Uint8Array(8);
    h.set(Buffer.from(id, 'latin1'));
    new DataView(h.buffer).setUint32(4, body.length, true);
    parts.push(h, body);
    total += 8 + body.length;
    if (body.length & 1) {
      parts.push(new Uint8Array(1));
      total += 1;
    }
  }
  const head = new Uint8Array(12);
  head.set(Buffer.from('RIFF'));
  new DataView(head.buffer).setUint32(4, riffSize ?? total, true);
  head.set(Buffer.from('WAVE'), 8);
  return Buffer.concat([head, ...parts]);
}

function fmt(format: number, channels: number, rate: number, bits: number, extensibleSub?: number): Uint8Array {
  const b = new Uint8Array(extensibleSub === undefined ? 16 : 40);
  const v = new DataView(b.buffer);
  v.setUint16(0, extensibleSub === undefined ? format : 0xfffe, true);
  v.setUint16(2, channels, true);
  v.setUint32(4, rate, true);
  v.setUint32(8, (rate * channels * bits) / 8, true);
  v.setUint16(12, (channels * bits) / 8, true);
  v.setUint16(14, bits, true);
  if (extensibleSub !== undefined) {
    v.setUint16(16, 22, true);
    v.setUint16(18, bits, true);
    v.setUint16(24, extensibleSub, true);
  }
  return b;
}

const SRC = Int16Array.from({ length: 1000 }, (_, i) => Math.round(Math.sin(i * 0.05) * 30000) - (i % 3));

test('readWav on the real 16 kHz files (reference: media/PROVENANCE.md and scipy.io.wavfile sample counts; exact)', async () => {
  const jfk = await readWav(JFK);
  assert.deepEqual([jfk.sampleRate, jfk.channels, jfk.samples.length], [16000, 1, 176000]);
  const ls = await readWav(path.join(MEDIA, 'latentsync_demo1_audio.wav'));
  assert.deepEqual([ls.sampleRate, ls.channels, ls.samples.length], [16000, 1, 153600]);
  // both files carry a LIST chunk before data (ffmpeg-written); int16 values come back unscaled
  assert.ok(jfk.samples.every((v) => Number.isInteger(v) && v >= -32768 && v <= 32767));
  assert.ok(Math.max(...jfk.samples.subarray(0, 50000)) > 1000);
});

test('loadAudio16k(jfk.wav) through ffmpeg gives exactly the samples readWav parses (reference: readWav; exact)', async () => {
  const a = await readWav(JFK);
  const b = await loadAudio16k(JFK);
  assert.equal(b.sampleRate, 16000);
  assert.deepEqual(b.samples, a.samples);
  // a file name starting with '-' is not taken for an option
  const dir = tmpDir();
  const odd = path.join(dir, '-jfk copy.wav');
  await symlink(JFK, odd);
  assert.equal((await loadAudio16k(odd)).samples.length, 176000);
});

test('loadAudio16k decodes the real videos to 16 kHz mono (reference: media/PROVENANCE.md durations; ±1 AAC frame)', async () => {
  const aoc = await loadAudio16k(AOC_CLIP); // AAC 16 kHz stereo, 8.000 s stream
  assert.equal(aoc.channels, 1);
  assert.ok(Math.abs(aoc.samples.length / 16000 - 8.0) < 0.07, `AOC ${aoc.samples.length / 16000} s`);
  const ls = await loadAudio16k(path.join(MEDIA, 'latentsync_demo1_video.mp4')); // AAC 44.1 kHz stereo, 10.008 s
  assert.ok(Math.abs(ls.samples.length / 16000 - 10.008) < 0.07, `latentsync ${ls.samples.length / 16000} s`);
  let energy = 0;
  for (const v of aoc.samples) energy += v * v;
  assert.ok(Math.sqrt(energy / aoc.samples.length) > 100, 'speech, not silence');
});

test('loadAudio16k: a video without audio is DifftalkError no-audio; a corrupt file is audio-decode-failed', async () => {
  const dir = tmpDir();
  const silent = path.join(dir, 'no-audio.mp4');
  await runTool('ffmpeg', ['-nostdin', '-v', 'error', '-i', AOC_CLIP, '-t', '1', '-an', '-c:v', 'copy', silent]);
  await assert.rejects(loadAudio16k(silent), (e: unknown) => e instanceof DifftalkError && e.code === 'no-audio');
  const corrupt = path.join(dir, 'corrupt.mp4');
  await writeFile(corrupt, Buffer.from('this is not a video file at all'.repeat(20)));
  await assert.rejects(loadAudio16k(corrupt), (e: unknown) => e instanceof DifftalkError && e.code === 'audio-decode-failed');
  await assert.rejects(loadAudio16k(path.join(dir, 'missing.mp4')), DifftalkError);
});

test('parseWav decodes 8/16/24/32-bit PCM, float32/64 and WAVE_FORMAT_EXTENSIBLE to the same int16 values (exact)', () => {
  const n = SRC.length;
  const enc = (bits: number, float: boolean, channels = 1): Uint8Array => {
    const b = new Uint8Array((n * channels * bits) / 8);
    const v = new DataView(b.buffer);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < channels; c++) {
        const s = c === 0 ? SRC[i]! : 0;
        const o = ((i * channels + c) * bits) / 8;
        if (float) bits === 32 ? v.setFloat32(o, s / 32768, true) : v.setFloat64(o, s / 32768, true);
        else if (bits === 16) v.setInt16(o, s, true);
        else if (bits === 24) {
          const x = s * 256;
          b[o] = x & 0xff;
          b[o + 1] = (x >> 8) & 0xff;
          b[o + 2] = (x >> 16) & 0xff;
        } else if (bits === 32) v.setInt32(o, s * 65536, true);
      }
    }
    return b;
  };
  const expectMono = Float32Array.from(SRC);
  for (const [bits, float] of [
    [16, false],
    [24, false],
    [32, false],
    [32, true],
    [64, true],
  ] as const) {
    const w = parseWav(
      riff([
        ['fmt ', fmt(float ? 3 : 1, 1, 22050, bits)],
        ['data', enc(bits, float)],
      ]),
    );
    assert.equal(w.sampleRate, 22050);
    assert.deepEqual(w.samples, expectMono, `${bits}-bit ${float ? 'float' : 'pcm'}`);
    const x = parseWav(
      riff([
        ['fmt ', fmt(1, 1, 22050, bits, float ? 3 : 1)],
        ['data', enc(bits, float)],
      ]),
    );
    assert.deepEqual(x.samples, expectMono, `extensible ${bits}`);
  }
  // 8-bit unsigned: (v − 128)·256
  const u8 = parseWav(
    riff([
      ['fmt ', fmt(1, 1, 8000, 8)],
      ['data', Uint8Array.from([0, 128, 255])],
    ]),
  );
  assert.deepEqual(Array.from(u8.samples), [-32768, 0, 32512]);
  // stereo (left = SRC, right = 0) is averaged to mono
  const st = parseWav(
    riff([
      ['fmt ', fmt(1, 2, 16000, 16)],
      ['data', enc(16, false, 2)],
    ]),
  );
  assert.equal(st.channels, 2);
  assert.deepEqual(
    st.samples,
    Float32Array.from(SRC, (s) => s / 2),
  );
});

test('parseWav walks chunks: odd-sized chunk padding, unknown chunks, oversized streamed data size', () => {
  const data = new Uint8Array(SRC.buffer.slice(0));
  const w = parseWav(
    riff([
      ['JUNK', Uint8Array.from([1, 2, 3])],
      ['fmt ', fmt(1, 1, 16000, 16)],
      ['LIST', new Uint8Array(7)],
      ['data', data],
    ]),
  );
  assert.deepEqual(w.samples, Float32Array.from(SRC));
  // ffmpeg writing to a pipe leaves 0xFFFFFFFF sizes: use the whole frames present
  const streamed = riff(
    [
      ['fmt ', fmt(1, 1, 16000, 16)],
      ['data', data],
    ],
    0xffffffff,
  );
  new DataView(streamed.buffer, streamed.byteOffset).setUint32(12 + 8 + 16 + 4, 0xffffffff, true);
  assert.equal(parseWav(Buffer.concat([streamed, Uint8Array.from([7])])).samples.length, SRC.length);
});

test('parseWav: one clear DifftalkError bad-wav for anything else', () => {
  const isBad = (re: RegExp) => (e: unknown) => e instanceof DifftalkError && e.code === 'bad-wav' && re.test(e.message) && !!e.suggestion;
  assert.throws(() => parseWav(Buffer.from('RIFF')), isBad(/too short/));
  assert.throws(() => parseWav(Buffer.from('OggS0000WAVEfmt xxxxxxxxxxxx')), isBad(/not a RIFF/));
  assert.throws(() => parseWav(riff([['data', new Uint8Array(4)]])), isBad(/data chunk before fmt/));
  assert.throws(() => parseWav(riff([['fmt ', fmt(1, 1, 16000, 16)]])), isBad(/no data chunk/));
  assert.throws(
    () =>
      parseWav(
        riff([
          ['fmt ', fmt(2, 1, 16000, 4)],
          ['data', new Uint8Array(4)],
        ]),
      ),
    isBad(/unsupported encoding/),
  );
  assert.throws(
    () =>
      parseWav(
        riff([
          ['fmt ', fmt(1, 1, 16000, 12)],
          ['data', new Uint8Array(4)],
        ]),
      ),
    isBad(/unsupported/),
  );
  assert.throws(
    () =>
      parseWav(
        riff([
          ['fmt ', new Uint8Array(8)],
          ['data', new Uint8Array(4)],
        ]),
      ),
    isBad(/truncated fmt/),
  );
  const rf64 = riff([
    ['fmt ', fmt(1, 1, 16000, 16)],
    ['data', new Uint8Array(4)],
  ]);
  rf64.set(Buffer.from('RF64'));
  assert.throws(() => parseWav(rf64), isBad(/RF64/));
});
