/** src/weights/npy.ts against numpy itself (Debian python3-numpy): numpy loads the file, shape, dtype and values exact. */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { encodeNpyFloat32 } from '../../src/weights/npy.js';
import { runProcess } from '../../src/util/exec.js';
import { tmpDir } from '../helpers.js';

const CHECK = `
import sys, json, numpy as np
a = np.load(sys.argv[1], allow_pickle=False)
with open(sys.argv[1], 'rb') as f:
    v = np.lib.format.read_magic(f)
print(json.dumps({'version': list(v), 'dtype': str(a.dtype), 'shape': list(a.shape), 'c': bool(a.flags.c_contiguous), 'values': a.ravel().tolist()}))
`;

test('numpy reads the .npy exactly (format 1.0, float32, C order); (8,16,29) and 1-D shapes', async () => {
  const dir = tmpDir();
  for (const shape of [[8, 16, 29], [5], [2, 3]]) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Float32Array.from({ length: n }, (_, k) => Math.sin(0.37 * k) * 1e3);
    const file = path.join(dir, `${shape.join('x')}.npy`);
    writeFileSync(file, encodeNpyFloat32(shape, data));
    const r = JSON.parse((await runProcess('/usr/bin/python3', ['-c', CHECK, file])).stdout.toString());
    assert.deepEqual(r.version, [1, 0]);
    assert.equal(r.dtype, 'float32');
    assert.deepEqual(r.shape, shape);
    assert.equal(r.c, true);
    assert.deepEqual(r.values, Array.from(data)); // exact: float32 → float64 in both
  }
  assert.throws(() => encodeNpyFloat32([2, 2], new Float32Array(3)), /does not hold 3 values/);
});
