/**
 * bench/torch/twin.py, the PyTorch twin of the project's UNet, VQ-f4 and condition encoders (written from
 * src/models/*.ts), against the reference PyTorch outputs in ../shared/data/fixtures (expected.json, `det` weights),
 * run by Debian's python3-torch on CPU in float32 (bench/torch/check.py).
 * Asserted: parameter names and shapes equal the fixtures' lists exactly (tiny UNet, the paper UNet's 688 names and
 * 530,152,963 parameters, VQ, encoders), so the same checkpoints load into both; outputs within
 * 1e-4 × max|expected| (UNet, VQ: many-term sums) and 1e-5 × max|expected| (encoders), as the fixtures README states.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { runProcess } from '../../src/util/exec.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const FIXTURES = path.resolve(ROOT, '..', 'shared', 'data', 'fixtures');

interface Cmp {
  shape_ok: boolean;
  max_abs_err: number;
  max_ref: number;
}
interface Names {
  missing: string[];
  extra: string[];
  shape_mismatch: string[];
}

test('PyTorch twin: names equal the fixtures (paper UNet included) and outputs match the reference', { timeout: 120_000 }, async () => {
  const r = await runProcess('/usr/bin/python3', [path.join(ROOT, 'bench', 'torch', 'check.py'), FIXTURES]);
  const res = JSON.parse(r.stdout.toString()) as Record<string, unknown> & { names: Record<string, Names>; paper_params: number };
  for (const [k, n] of Object.entries(res.names)) assert.deepEqual(n, { missing: [], extra: [], shape_mismatch: [] }, `${k} parameter names`);
  assert.deepEqual(Object.keys(res.names).sort(), ['encoders', 'unet_paper', 'unet_tiny', 'vq']);
  assert.equal(res.paper_params, 530_152_963);
  const tol: Record<string, number> = { unet: 1e-4, vq_z: 1e-4, vq_recon: 1e-4, audionet: 1e-5, audioatt: 1e-5, ldmnet: 1e-5 };
  for (const [k, rel] of Object.entries(tol)) {
    const c = res[k] as Cmp;
    assert.ok(c.shape_ok, `${k} shape`);
    assert.ok(c.max_abs_err <= rel * c.max_ref, `${k}: max |twin − expected| ${c.max_abs_err} > ${rel} × ${c.max_ref}`);
  }
});
