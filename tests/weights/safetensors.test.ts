import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { DifftalkError } from '../../src/util/errors.js';
import { encodeSafetensors, floatToHalfBits, parseSafetensors, readSafetensors, writeSafetensors } from '../../src/weights/safetensors.js';
import { readTorchFile, stateDict, type TensorData } from '../../src/weights/torch.js';
import { FIXTURES, tmpDir } from '../helpers.js';

test('torch_zip.pt state_dict round-trips through safetensors exactly (all dtypes)', async () => {
  // Reference: values read from ../shared/data/fixtures/torch_zip.pt (checked against expected.json in torch.test.ts).
  // Tolerance: exact (f16/bf16 values are representable, so narrowing back is lossless).
  const sd = stateDict(await readTorchFile(path.join(FIXTURES, 'torch_zip.pt')));
  const extra: Record<string, TensorData> = {
    i32: { dtype: 'int32', shape: [3], data: new Int32Array([1, -2, 2147483647]) },
    u8: { dtype: 'uint8', shape: [2, 2], data: new Uint8Array([0, 1, 128, 255]) },
    b: { dtype: 'bool', shape: [3], data: new Uint8Array([1, 0, 1]) },
    f64: { dtype: 'float64', shape: [1], data: new Float64Array([Math.PI]) },
  };
  const all = new Map<string, TensorData>([...sd, ...Object.entries(extra)]);
  const file = path.join(tmpDir(), 'rt.safetensors');
  await writeSafetensors(file, all, { format: 'pt', source: 'torch_zip.pt' });
  const back = await readSafetensors(file);
  assert.deepEqual(back.metadata, { format: 'pt', source: 'torch_zip.pt' });
  assert.deepEqual([...back.tensors.keys()].sort(), [...all.keys()].sort());
  for (const [name, t] of all) {
    const r = back.tensors.get(name)!;
    assert.equal(r.dtype, t.dtype, name);
    assert.deepEqual(r.shape, t.shape, name);
    assert.deepEqual([...(r.data as Float32Array)], [...(t.data as Float32Array)], name);
  }
});

test('written header follows the spec byte for byte', () => {
  // Reference: safetensors README format + the Rust writer (space padding to 8 bytes, largest dtype first, then name).
  const bytes = encodeSafetensors(
    {
      b: { dtype: 'float16', shape: [2], data: new Float32Array([1, -2]) },
      a: { dtype: 'float32', shape: [1, 2], data: new Float32Array([0.5, 3]) },
    },
    { k: 'v' },
  );
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0);
  const headerText = Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8');
  const json = '{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]}}';
  assert.equal(headerText, json + ' '.repeat(n - json.length));
  assert.equal(bytes.length, 8 + n + 12);
  const data = Buffer.from(bytes.subarray(8 + n));
  assert.equal(data.readFloatLE(0), 0.5);
  assert.equal(data.readFloatLE(4), 3);
  assert.equal(data.readUInt16LE(8), 0x3c00); // 1.0 in IEEE half
  assert.equal(data.readUInt16LE(10), 0xc000); // -2.0
});

test('float32 → float16 rounds to nearest even like torch', () => {
  // Reference: IEEE 754 binary16; 65504 = max, 1+2^-11 is a tie rounding to even (1.0), 2^-24 smallest subnormal.
  assert.equal(floatToHalfBits(65504), 0x7bff);
  assert.equal(floatToHalfBits(1 + 2 ** -11), 0x3c00);
  assert.equal(floatToHalfBits(1 + 3 * 2 ** -11), 0x3c02);
  assert.equal(floatToHalfBits(2 ** -24), 0x0001);
  assert.equal(floatToHalfBits(70000), 0x7c00);
  assert.equal(floatToHalfBits(-0.00100040435791015625), 0x9419);
});

test('corrupt safetensors files are rejected with a DifftalkError', async () => {
  const good = encodeSafetensors({ a: { dtype: 'float32', shape: [2], data: new Float32Array([1, 2]) } });
  const isBad = (e: unknown) => e instanceof DifftalkError && e.code === 'bad-safetensors';
  assert.throws(() => parseSafetensors(good.subarray(0, 5)), isBad);
  assert.throws(() => parseSafetensors(good.subarray(0, good.length - 1)), isBad);
  const badLen = good.slice();
  badLen[0] = 0xff;
  assert.throws(() => parseSafetensors(badLen), isBad);
  const badJson = good.slice();
  badJson[9] = 0x5b; // '"' → '['
  assert.throws(() => parseSafetensors(badJson), isBad);
  const dir = tmpDir();
  const f = path.join(dir, 'x.safetensors');
  writeFileSync(f, Buffer.concat([Buffer.from(good), Buffer.from([0, 0, 0, 0])]));
  await assert.rejects(readSafetensors(f), isBad);
  assert.ok(readFileSync(f).length > 0);
});
