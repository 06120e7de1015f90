/**
 * SyncNet v2 network (joonson/syncnet_python SyncNetModel.S(1024)) on TensorFlow.js wasm.
 * Reference: fixtures/expected.json `syncnet` (PyTorch 2.11 float32 CPU with det() weights).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import { packAudioWindows, packLipWindows, SyncNet, SYNCNET_V2_CONFIG, syncnetParamShapes } from '../../src/models/syncnet.js';
import { syncMfcc } from '../../src/metrics/lse.js';
import { readWav } from '../../src/audio/wav.js';
import { initBackend, tf } from '../../src/util/tf.js';
import { det } from '../../src/weights/det.js';
import { FIXTURES } from '../helpers.js';

const exp = JSON.parse(readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8')).syncnet as {
  params: Array<[string, number[]]>;
  lip_emb_window0: { sum: number; abs_sum: number; first8: number[]; last8: number[] };
  aud_emb_window0: { sum: number; abs_sum: number; first8: number[]; last8: number[] };
};

const detMap = () => new Map(syncnetParamShapes().map(([n, s]) => [n, { shape: s, data: det(n, s) }]));

function close(a: number, b: number, rel: number, what: string): void {
  assert.ok(Math.abs(a - b) <= rel * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
}

describe('SyncNet v2 network', () => {
  before(async () => {
    await initBackend('wasm');
  });

  it('has exactly the state_dict keys and shapes of SyncNetModel.S(1024)', () => {
    assert.deepEqual(syncnetParamShapes(SYNCNET_V2_CONFIG), exp.params);
  });

  it('matches window-0 embeddings of both branches (1e-4 relative, README tolerance)', async () => {
    const net = SyncNet.fromTensors(detMap());
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 5; i++) {
      const { data } = await sharp(path.join(FIXTURES, 'syncnet_frames', `0${i}.png`))
        .removeAlpha()
        .raw()
        .toBuffer({ resolveWithObject: true });
      frames.push(new Uint8Array(data));
    }
    const wav = await readWav(path.join(FIXTURES, 'syncnet_audio.wav'));
    const m = syncMfcc(wav.samples, wav.sampleRate);
    const xv = packLipWindows(frames, [0]);
    const xa = packAudioWindows(m.data, m.frames, [0]);
    const lip = (await net.forwardLip(xv).data()) as Float32Array;
    const aud = (await net.forwardAud(xa).data()) as Float32Array;
    for (const [x, ref, what] of [
      [lip, exp.lip_emb_window0, 'lip'],
      [aud, exp.aud_emb_window0, 'aud'],
    ] as const) {
      assert.equal(x.length, 1024);
      let abs = 0;
      for (const v of x) abs += Math.abs(v);
      close(abs, ref.abs_sum, 1e-4, `${what} abs_sum`);
      ref.first8.forEach((v, i) => close(x[i]!, v, 1e-4, `${what}[${i}]`));
      ref.last8.forEach((v, i) => close(x[1016 + i]!, v, 1e-4, `${what}[${1016 + i}]`));
    }
    tf.dispose([xv, xa]);
    net.dispose();
  });

  it('round-trips PyTorch-layout weights exactly (conv3d, conv2d, linear transposes)', async () => {
    const src = detMap();
    const net = SyncNet.fromTensors(src);
    const back = await net.stateDict();
    for (const [name, t] of back) {
      const ref = src.get(name)!;
      assert.deepEqual(t.shape, ref.shape, name);
      assert.ok(
        t.data.every((v, i) => v === ref.data[i]),
        `${name} differs after round trip`,
      );
    }
    net.dispose();
  });

  it('rejects missing or mis-shaped weights with a clear error', () => {
    const m = detMap();
    m.delete('netcnnlip.0.weight');
    assert.throws(() => SyncNet.fromTensors(m), /lack 'netcnnlip\.0\.weight'/);
    const m2 = detMap();
    m2.set('netfcaud.3.weight', { shape: [512, 512], data: new Float32Array(512 * 512) });
    assert.throws(() => SyncNet.fromTensors(m2), /netfcaud\.3\.weight' has shape \[512, 512\], expected \[1024, 512\]/);
  });

  it('builds reduced-width networks with (B, embed) outputs', () => {
    const net = SyncNet.init({ width: 0.25, embedDim: 256 }, 1);
    const xv = tf.zeros([2, 224, 224, 15]) as tf.Tensor4D;
    const xa = tf.zeros([2, 13, 20, 1]) as tf.Tensor4D;
    assert.deepEqual(net.forwardLip(xv).shape, [2, 256]);
    assert.deepEqual(net.forwardAud(xa).shape, [2, 256]);
    assert.equal(
      syncnetParamShapes({ width: 0.25, embedDim: 256 })
        .find(([n]) => n === 'netcnnlip.0.weight')![1]
        .join(),
      '24,3,5,7,7',
    );
    tf.dispose([xv, xa]);
    net.dispose();
  });
});
