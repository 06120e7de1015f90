/**
 * The pickle writer and the torch zip writer against Python itself (tests/reference/torch_writer_reference.py:
 * CPython's pickle module, zipfile, and Debian's torch 1.13 with weights_only=True), and against difftalk's reader.
 * Asserts exact values: every pickle type the writer emits (ints of 1, 2, 4 and 9+ bytes, negative, floats, str with
 * non-ASCII, bytes, list, tuple, dict, OrderedDict, None, bools, 1000+ items to cross the batch size), the CRC of
 * every entry (zipfile.testzip), 64-byte alignment of every entry's data, and the fixture checkpoint's tensors
 * (float32 incl. a transposed view and a slice made contiguous, float16, bfloat16, int64, a scalar) read back by
 * torch.load with the same dtype, shape and values; the same with zip64 records forced on (the >4 GiB layout).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FIXTURES, ROOT, tmpDir } from '../helpers.js';
import { runProcess } from '../../src/util/exec.js';
import { pickle, PyFloat, PyOrderedDict, PyTuple, type PickleValue } from '../../src/weights/pickle-writer.js';
import { unpickle } from '../../src/weights/pickle.js';
import { readTorchFile } from '../../src/weights/torch.js';
import { stateDictValue, writeTorchFile } from '../../src/weights/torch-writer.js';
import { crc32 } from '../../src/weights/zip-writer.js';

const work = tmpDir('difftalk-torch-writer-');

test('crc32 check value', () => {
  assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
  assert.equal(crc32(Buffer.from('6789'), crc32(Buffer.from('12345'))), 0xcbf43926);
});

test('pickle and torch writers read back by CPython pickle, zipfile and torch.load(weights_only=True)', { timeout: 120_000 }, async () => {
  const long = Array.from({ length: 1003 }, (_, i) => i - 500);
  const value: PickleValue = new Map<PickleValue, PickleValue>([
    ['ints', [0, 255, 256, 65535, 65536, -1, -(2 ** 31), 2 ** 31, 2 ** 53 - 1, -(2n ** 64n), 2n ** 100n]],
    ['floats', [0.5, -1e-300, new PyFloat(3), 1 / 3]],
    ['str', 'héllo ✓'],
    ['bytes', Uint8Array.from([0, 1, 255])],
    ['tuple', new PyTuple([1, new PyTuple([]), new PyTuple([1, 2, 3, 4])])],
    [
      'odict',
      new PyOrderedDict(
        new Map<PickleValue, PickleValue>([
          ['b', 1],
          ['a', null],
        ]),
      ),
    ],
    ['flags', [true, false, null]],
    ['long', long],
    [7, 'int key'],
  ]);
  const pklFile = path.join(work, 'value.pkl');
  await writeFile(pklFile, pickle(value));
  // difftalk's own reader gets the same value back
  const back = unpickle(pickle(value)).value as Map<unknown, unknown>;
  assert.deepEqual(back.get('ints'), [0, 255, 256, 65535, 65536, -1, -(2 ** 31), 2 ** 31, 2 ** 53 - 1, -(2n ** 64n), 2n ** 100n]);
  assert.deepEqual(back.get('long'), long);

  const fixture = await readTorchFile(path.join(FIXTURES, 'torch_zip.pt'));
  const sd = new Map([...fixture.tensors].map(([k, t]) => [k.replace(/^state_dict\./, ''), t]));
  const ckpt = path.join(work, 'out', 'model.ckpt');
  await writeTorchFile(
    ckpt,
    (tensor) =>
      new Map<PickleValue, PickleValue>([
        ['state_dict', stateDictValue(sd, tensor)],
        ['global_step', 1234],
        ['name', 'fixture'],
      ]),
  );

  const r = await runProcess('/usr/bin/python3', [path.join(ROOT, 'tests/reference/torch_writer_reference.py'), pklFile, ckpt]);
  const py = JSON.parse(r.stdout.toString()) as {
    pickle: { dict: [unknown, unknown][] };
    testzip: string | null;
    align: Record<string, number>;
    tensors: Record<string, { dtype: string; shape: number[]; values: number[] }>;
    meta: Record<string, unknown>;
  };
  const p = new Map(py.pickle.dict.map(([k, v]) => [JSON.stringify(k), v]));
  const int = (v: number | bigint) => ({ int: String(v) });
  assert.deepEqual(p.get('"ints"'), [0, 255, 256, 65535, 65536, -1, -(2 ** 31), 2 ** 31, 2 ** 53 - 1, -(2n ** 64n), 2n ** 100n].map(int));
  assert.deepEqual(p.get('"floats"'), [{ float: '0.5' }, { float: '-1e-300' }, { float: '3.0' }, { float: '0.3333333333333333' }]);
  assert.equal(p.get('"str"'), 'héllo ✓');
  assert.deepEqual(p.get('"bytes"'), { bytes: '0001ff' });
  assert.deepEqual(p.get('"tuple"'), { tuple: [int(1), { tuple: [] }, { tuple: [1, 2, 3, 4].map(int) }] });
  assert.deepEqual(p.get('"odict"'), {
    odict: [
      ['b', int(1)],
      ['a', null],
    ],
  });
  assert.deepEqual(p.get('"flags"'), [true, false, null]);
  assert.deepEqual(p.get('"long"'), long.map(int));
  assert.equal(p.get(JSON.stringify(int(7))), 'int key');

  assert.equal(py.testzip, null, 'every CRC checks');
  assert.deepEqual(Object.values(py.align), Array(Object.keys(py.align).length).fill(0), `data offsets mod 64: ${JSON.stringify(py.align)}`);
  assert.ok(Object.keys(py.align).includes('archive/data.pkl') && Object.keys(py.align).includes('archive/version'));
  assert.deepEqual(py.meta, { global_step: int(1234), name: 'fixture' });
  const torchDtype: Record<string, string> = { float32: 'torch.float32', float16: 'torch.float16', bfloat16: 'torch.bfloat16', int64: 'torch.int64' };
  assert.deepEqual(Object.keys(py.tensors), [...sd.keys()]);
  for (const [k, t] of sd) {
    const got = py.tensors[k]!;
    assert.equal(got.dtype, torchDtype[t.dtype], k);
    assert.deepEqual(got.shape, t.shape, k);
    assert.deepEqual(got.values, Array.from(t.data as ArrayLike<number | bigint>, Number), k);
  }
});

test('zip64 records (forced on a small file) read by zipfile, torch.load(weights_only=True) and difftalk', { timeout: 120_000 }, async () => {
  const fixture = await readTorchFile(path.join(FIXTURES, 'torch_zip.pt'));
  const sd = new Map([...fixture.tensors].map(([k, t]) => [k.replace(/^state_dict\./, ''), t]));
  const ckpt = path.join(work, 'zip64.ckpt');
  const progress: number[] = [];
  await writeTorchFile(ckpt, (tensor) => new Map<PickleValue, PickleValue>([['state_dict', stateDictValue(sd, tensor)]]), {
    forceZip64: true,
    onProgress: (done) => progress.push(done),
  });
  assert.equal(progress.length, sd.size);
  const pklFile = path.join(work, 'empty.pkl');
  await writeFile(pklFile, pickle(null));
  const r = await runProcess('/usr/bin/python3', [path.join(ROOT, 'tests/reference/torch_writer_reference.py'), pklFile, ckpt]);
  const py = JSON.parse(r.stdout.toString()) as { testzip: string | null; align: Record<string, number>; tensors: Record<string, { values: number[] }> };
  assert.equal(py.testzip, null);
  assert.deepEqual(Object.values(py.align), Array(Object.keys(py.align).length).fill(0));
  const back = await readTorchFile(ckpt);
  for (const [k, t] of sd) {
    assert.deepEqual(py.tensors[k]!.values, Array.from(t.data as ArrayLike<number | bigint>, Number), k);
    assert.deepEqual(
      Array.from(back.tensors.get(`state_dict.${k}`)!.data as ArrayLike<number | bigint>, Number),
      Array.from(t.data as ArrayLike<number | bigint>, Number),
    );
  }
});
