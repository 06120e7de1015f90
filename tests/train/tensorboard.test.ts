/**
 * TensorBoard event files (src/train/tensorboard.ts) read back by an independent reader:
 * tests/reference/tfevents_reader.py (Debian's python3-protobuf parsing the Event/Summary schema subset built as a
 * descriptor there, and a bit-by-bit CRC32C written from the definition there). Asserted: every record's two masked
 * CRCs match, the first event is the file version, and the scalars arrive at every logged step with their values
 * (float32: relative tolerance 1e-6) and the image event carries the PNG with its size. The sink is fed the same event
 * stream a trainer emits (metric + image events).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { crc32c, tensorBoardSink } from '../../src/train/tensorboard.js';
import type { ProgressEvent } from '../../src/util/events.js';
import { ROOT, tmpDir } from '../helpers.js';

const PY = '/usr/bin/python3';
const REL_TOL = 1e-6;

describe('TensorBoard event writer', () => {
  test('CRC32C check value', () => {
    assert.equal(crc32c(Buffer.from('123456789')).toString(16), 'e3069283');
  });

  test('scalars at every logged step and an image parse with python3-protobuf; CRCs match', async () => {
    const dir = path.join(tmpDir('difftalk-tb-'), 'tb');
    const passed: ProgressEvent[] = [];
    const sink = tensorBoardSink(dir, (e) => passed.push(e));
    const steps = 25;
    const expected = new Map<string, Map<number, number>>();
    const put = (name: string, step: number, value: number) => {
      if (!expected.has(name)) expected.set(name, new Map());
      expected.get(name)!.set(step, value);
      sink.onEvent({ type: 'metric', name, value, step });
    };
    for (let step = 1; step <= steps; step++) {
      put('train/loss', step, 1 / step + 0.01);
      put('train/lr', step, 1e-3);
      put('train/grad_norm', step, 3.5 - step * 0.1);
      put('train/samples_per_s', step, 12.25);
      if (step % 10 === 0) put('val/loss', step, 0.5 / step);
      sink.onEvent({ type: 'progress', stage: 'train', done: step, total: steps });
    }
    const png = await sharp({ create: { width: 40, height: 24, channels: 3, background: { r: 200, g: 10, b: 10 } } })
      .png()
      .toBuffer();
    sink.onEvent({ type: 'image', name: 'samples', step: steps, png });
    sink.close();
    assert.equal(passed.length, steps * 5 + 2 + 1, 'every event is passed on');

    const files = readdirSync(dir);
    assert.equal(files.length, 1);
    assert.match(files[0]!, /^events\.out\.tfevents\.\d+\./);
    const out = JSON.parse(execFileSync(PY, [path.join(ROOT, 'tests/reference/tfevents_reader.py'), path.join(dir, files[0]!)], { encoding: 'utf8' }));
    assert.equal(out.crc_check_123456789, 'e3069283');
    assert.equal(out.bad_crc, 0);
    assert.equal(out.events[0].file_version, 'brain.Event:2');
    const got = new Map<string, Map<number, number>>();
    for (const ev of out.events.slice(1)) {
      for (const v of ev.values) {
        if (v.simple_value === undefined) continue;
        if (!got.has(v.tag)) got.set(v.tag, new Map());
        got.get(v.tag)!.set(ev.step, v.simple_value);
      }
    }
    assert.deepEqual([...got.keys()].sort(), [...expected.keys()].sort());
    for (const [tag, byStep] of expected) {
      const g = got.get(tag)!;
      assert.deepEqual([...g.keys()], [...byStep.keys()], `${tag}: the same steps`);
      for (const [step, v] of byStep) assert.ok(Math.abs(g.get(step)! - v) <= REL_TOL * Math.abs(v), `${tag}@${step}: ${g.get(step)} vs ${v}`);
    }
    const images = out.events.flatMap((ev: { step: number; values: { tag: string; image?: Record<string, unknown> }[] }) =>
      ev.values.filter((v) => v.image).map((v) => ({ step: ev.step, tag: v.tag, ...v.image })),
    );
    assert.deepEqual(images, [
      { step: steps, tag: 'samples', height: 24, width: 40, colorspace: 3, bytes: png.length, png_magic: true, ihdr_width: 40, ihdr_height: 24 },
    ]);
  });
});
