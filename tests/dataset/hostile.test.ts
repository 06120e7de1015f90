/**
 * Hostile and malformed shards (the pyarrow fuzz-corpus idea): each is one DifftalkError naming the file, raised
 * before the reader allocates more than about the file's size, never a raw RangeError/TypeError. The shards start
 * from a real one (6 frames of the HDTF sample clip written by shard-writer) and are then truncated, given another
 * schema, given huge declared lengths (footer, row count, column length: patched in the flatbuffers and checked by
 * decoding them back), or given a clip_id that is a path.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { Message, Schema, Table, Utf8, tableFromIPC, tableToIPC, vectorFromArray, RecordBatch, makeData, Struct, type Data } from 'apache-arrow';
import { openDataset } from '../../src/dataset/dataset.js';
import { openShard } from '../../src/dataset/shard-reader.js';
import { DifftalkError } from '../../src/util/errors.js';
import { tmpDir } from '../helpers.js';
import { batchMessage, patchBatch, writeTestDataset } from './fixture.js';

const N = 6;
const SIZE = 64;
/** writeTestDataset's metadata: one audio column of 4 × 13 values. */
const MFCC = { name: 'mfcc', column: 'audio_mfcc', window: 4, dim: 13, rate: 100, params: {} };

let good: Buffer;
let dir: string;

/** Reads every batch of a shard (the reader's whole surface). */
async function readAll(file: string): Promise<number> {
  const shard = await openShard(file);
  let rows = 0;
  try {
    for await (const b of shard.batches()) rows += b.numRows;
  } finally {
    await shard.close();
  }
  return rows;
}

/** The shard in `bytes` fails with one DifftalkError of `code` whose one-line message matches `text`. */
async function refused(name: string, bytes: Uint8Array, code: string, text: RegExp): Promise<void> {
  const file = path.join(dir, name);
  writeFileSync(file, bytes);
  await assert.rejects(readAll(file), (e: unknown) => {
    assert.ok(e instanceof DifftalkError, `${name}: ${String(e)}`);
    assert.equal(e.code, code, `${name}: ${e.message}`);
    assert.match(e.message, text, name);
    assert.ok(!e.message.includes('\n'), `${name}: one line`);
    assert.ok(e.message.includes(name), `${name}: the message names the file`);
    return true;
  });
}

/** The shard's table rewritten with `fields` changed (metadata kept), or its metadata changed. */
function rewrite(edit: { metadata?: (m: Map<string, string>) => void; columns?: (cols: Map<string, Data>) => void }): Uint8Array {
  const t = tableFromIPC(good);
  const md = new Map(t.schema.metadata);
  edit.metadata?.(md);
  const batch = t.batches[0]!;
  const cols = new Map(t.schema.fields.map((f, i) => [f.name, batch.data.children[i]!]));
  edit.columns?.(cols);
  const fields = [...cols.entries()].map(
    ([name, d]) => t.schema.fields.find((f) => f.name === name && f.type === d.type) ?? t.schema.fields[0]!.clone({ name, type: d.type }),
  );
  const schema = new Schema(fields, md);
  const data = makeData({ type: new Struct(fields), length: N, nullCount: 0, children: [...cols.values()] });
  return tableToIPC(new Table(schema, [new RecordBatch(schema, data)]), 'file');
}

before(async () => {
  dir = tmpDir();
  const { shard } = await writeTestDataset(dir, 'clipA', N, SIZE);
  good = readFileSync(shard);
  assert.equal(await readAll(shard), N, 'the untouched shard reads');
});

describe('hostile shards: one clear error each', () => {
  test('truncated anywhere: at half, before the end magic, a few bytes, empty', async () => {
    await refused('half.arrow', good.subarray(0, good.length >> 1), 'shard-unreadable', /truncated/);
    await refused('tail.arrow', good.subarray(0, good.length - 3), 'shard-unreadable', /truncated/);
    await refused('tiny.arrow', good.subarray(0, 5), 'shard-unreadable', /too short/);
    await refused('empty.arrow', new Uint8Array(0), 'shard-unreadable', /too short/);
  });

  test('huge declared lengths are refused before anything that size is allocated', async () => {
    // Footer length 2³¹−1: apache-arrow alone allocates a 2 GiB buffer for it.
    const footer = Buffer.from(good);
    footer.writeInt32LE(0x7fffffff, footer.length - 10);
    await refused('footer.arrow', footer, 'shard-unreadable', /footer declares 2147483647 bytes/);
    // Row count 2⁴⁰: apache-arrow alone backfills a validity bitmap of 2³⁷ bytes per column.
    const rows = patchBatch(good, N, 2 ** 40, (m) => m.isRecordBatch() && m.header().length === 2 ** 40 && m.header().nodes[0]!.length === N);
    await refused('rows.arrow', rows, 'shard-unreadable', /declares 1099511627776 rows/);
    // One column's length 2⁴⁰ (the first field node).
    const node = patchBatch(good, N, 2 ** 40, (m) => m.isRecordBatch() && m.header().length === N && m.header().nodes[0]!.length === 2 ** 40);
    await refused('node.arrow', node, 'shard-unreadable', /column of 1099511627776 values/);
    // A message body larger than the file.
    const { start } = batchMessage(good);
    const m = Message.decode(good.subarray(start, start + batchMessage(good).length));
    const body = patchBatch(good, m.bodyLength, 2 ** 40, (x) => x.bodyLength === 2 ** 40);
    await refused('body.arrow', body, 'shard-unreadable', /body \(1099511627776 bytes\) lies outside the file/);
  });

  test('another schema: a missing column, another type, a list size that disagrees with the metadata', async () => {
    await refused('missing.arrow', rewrite({ columns: (c) => c.delete('face_score') }), 'shard-schema-mismatch', /column 5 is landmarks_478.*face_score/);
    await refused(
      'type.arrow',
      rewrite({ columns: (c) => c.set('clip_id', c.get('frame_index')!) }),
      'shard-schema-mismatch',
      /column 0 is clip_id: Int32, the shard format .* clip_id: Utf8/,
    );
    // The metadata says 5 feature frames per window; the column holds 4 × 13.
    await refused(
      'window.arrow',
      rewrite({ metadata: (m) => m.set('difftalk.audio_features', JSON.stringify([{ ...MFCC, window: 5 }])) }),
      'shard-schema-mismatch',
      /audio_mfcc: FixedSizeList\[52\]<Float32>.*audio_mfcc: FixedSizeList\[65\]<Float32>/,
    );
    await refused('size.arrow', rewrite({ metadata: (m) => m.set('difftalk.size', '1e9') }), 'shard-schema-mismatch', /difftalk\.size must be an integer/);
    await refused('json.arrow', rewrite({ metadata: (m) => m.set('difftalk.audio_features', '[{"name":"x"') }), 'shard-schema-mismatch', /not valid JSON/);
  });

  test('a clip_id that is a path, two clips in one shard, an unknown split', async () => {
    const ids = (values: string[]) => (c: Map<string, Data>) => c.set('clip_id', vectorFromArray(values, new Utf8()).data[0]!);
    await refused(
      'escape.arrow',
      rewrite({ columns: ids(Array(N).fill('../../evil')) }),
      'shard-unreadable',
      /clip id "\.\.\/\.\.\/evil": the name would escape/,
    );
    await refused('two.arrow', rewrite({ columns: ids(['clipA', 'clipA', 'clipA', 'clipB', 'clipB', 'clipB']) }), 'shard-unreadable', /rows of two clips/);
    const split = (c: Map<string, Data>) => c.set('split', vectorFromArray(Array(N).fill('../x'), new Utf8()).data[0]!);
    await refused('split.arrow', rewrite({ columns: split }), 'shard-unreadable', /split "\.\.\/x"/);
  });

  test('openDataset over a hostile shard is the same one error (before any work)', async () => {
    const shard = path.join(dir, 'shards', 'clipA-0000.arrow');
    writeFileSync(
      shard,
      patchBatch(good, N, 2 ** 40, (m) => m.isRecordBatch() && m.header().length === 2 ** 40),
    );
    await assert.rejects(openDataset(dir), (e: unknown) => e instanceof DifftalkError && e.code === 'shard-unreadable' && /clipA-0000\.arrow/.test(e.message));
    writeFileSync(shard, good);
    assert.equal((await openDataset(dir)).clips[0]!.frames, N);
  });
});
