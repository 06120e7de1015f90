/**
 * SyncNet expert training (src/train/syncnet.ts on the one loop, src/train/core.ts) on the syncnet fixture (24 real AOC frames at 224², synthetic 16 kHz audio):
 * a tiny width so the test stays in seconds. Asserts seeding, checkpoint files and labelling, exact resume (also after
 * SIGTERM), the shift helpers, and
 * that the hand-written conv2d filter gradient matches finite differences (reference: central differences, 2e-2 rel).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import { loadSyncNet } from '../../src/models/syncnet-weights.js';
import { trainableConv2d } from '../../src/models/syncnet.js';
import { syncMfcc } from '../../src/metrics/lse.js';
import { audioWindowsFromMfcc, clipSyncScores, shiftAudio, sliceClip, trainSyncNet, type SyncClip } from '../../src/train/syncnet.js';
import { readWav } from '../../src/audio/wav.js';
import { initBackend, tf } from '../../src/util/tf.js';
import { FIXTURES, ROOT, tmpDir } from '../helpers.js';
import WeightsImport from '../../src/commands/weights/import.js';
import { packLipWindows, syncnetParamShapes } from '../../src/models/syncnet.js';
import { det } from '../../src/weights/det.js';
import { writeLegacyTorch } from '../weights/legacy-writer.js';

describe('SyncNet expert training', () => {
  let clip: SyncClip;
  let m: { data: Float64Array; frames: number };
  before(async () => {
    await initBackend('wasm');
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 24; i++) {
      const { data } = await sharp(path.join(FIXTURES, 'syncnet_frames', `${String(i).padStart(2, '0')}.png`))
        .removeAlpha()
        .raw()
        .toBuffer({ resolveWithObject: true });
      frames.push(new Uint8Array(data));
    }
    const wav = await readWav(path.join(FIXTURES, 'syncnet_audio.wav'));
    m = syncMfcc(wav.samples, wav.sampleRate);
    clip = { id: 'fixture', frames, audio: audioWindowsFromMfcc(m.data, m.frames, 20), windows: 20 };
  });

  it('audio windows are MFCC columns 4i..4i+19 (coefficient rows)', () => {
    // window 3, coefficient 2, time 5 = MFCC frame 17, coefficient 2
    assert.equal(clip.audio[3 * 260 + 2 * 20 + 5], Math.fround(m.data[17 * 13 + 2]!));
    const s = shiftAudio(clip, 2);
    assert.deepEqual(Array.from(s.audio.subarray(0, 260)), Array.from(clip.audio.subarray(520, 780)));
    assert.ok(s.audio.subarray(18 * 260).every((v) => v === 0));
    assert.equal(sliceClip(clip, 5, 10).frames.length, 9);
  });

  it('filter gradient of trainableConv2d matches central differences', () => {
    const x = tf.randomNormal([1, 9, 9, 2], 0, 1, 'float32', 3) as tf.Tensor4D;
    const w = tf.randomNormal([3, 3, 2, 2], 0, 1, 'float32', 4) as tf.Tensor4D;
    const f = (ww: tf.Tensor) =>
      trainableConv2d(x, ww as tf.Tensor4D, [2, 2], 1, true)
        .square()
        .sum() as tf.Scalar;
    const g = tf.grad(f)(w).dataSync();
    const wd = w.dataSync().slice();
    for (const idx of [0, 7, 20, 35]) {
      const h = 1e-2;
      const plus = wd.slice();
      plus[idx]! += h;
      const minus = wd.slice();
      minus[idx]! -= h;
      const num = (f(tf.tensor4d(plus, w.shape)).dataSync()[0]! - f(tf.tensor4d(minus, w.shape)).dataSync()[0]!) / (2 * h);
      assert.ok(Math.abs(num - g[idx]!) <= 2e-2 * Math.max(1, Math.abs(num)), `dW[${idx}] ${g[idx]} vs numeric ${num}`);
    }
  });

  it('trains deterministically, checkpoints atomically and labels the weights', async () => {
    const run = (out: string) =>
      trainSyncNet({ out, clips: [clip], dataSource: 'fixture', steps: 2, batch: 4, lr: 1e-3, width: 0.0625, embedDim: 32, seed: 7, checkpointEvery: 1 });
    const a = await run(tmpDir('difftalk-sync-a-'));
    const b = await run(tmpDir('difftalk-sync-b-'));
    assert.deepEqual(a.losses, b.losses);
    assert.equal(a.sha256, b.sha256);
    assert.ok(existsSync(a.checkpoint) && existsSync(a.json));
    const latest = JSON.parse(readFileSync(path.join(path.dirname(a.checkpoint), 'latest.json'), 'utf8'));
    assert.equal(latest.step, 2);
    const info = JSON.parse(readFileSync(a.json, 'utf8'));
    assert.equal(info.trained_by, 'difftalk');
    assert.match(info.architecture, /reduced, not the published size/);
    const { net, identity } = await loadSyncNet(a.checkpoint);
    assert.equal(identity.source, 'difftalk-trained');
    assert.match(identity.label, /^difftalk-sync-w0\.0625-e32:[0-9a-f]{12}$/);
    assert.match(identity.description, /trained by difftalk/);
    const s = await clipSyncScores(net, clip);
    assert.equal(s.mdist.length, 31);
    net.dispose();
    // the run folder names the same weights (latest.json → ckpt-00000002/model.safetensors); a plain folder is one clear error
    const viaRun = await loadSyncNet(path.dirname(a.checkpoint));
    assert.equal(viaRun.identity.sha256, identity.sha256);
    assert.equal(viaRun.identity.sha256, a.sha256);
    viaRun.net.dispose();
    await assert.rejects(loadSyncNet(tmpDir('difftalk-sync-plain-')), (e: Error & { code?: string }) => e.code === 'file-missing');
  });

  it('resumes exactly: same losses and weights as an uninterrupted run (the one checkpoint format and resume policy)', async () => {
    // Reference: the uninterrupted 4-step run itself; exact equality (same wasm backend, bit-exact restore).
    const opts = { clips: [clip], dataSource: 'fixture', batch: 4, lr: 1e-3, width: 0.0625, embedDim: 32, seed: 3, checkpointEvery: 2 };
    const full = await trainSyncNet({ ...opts, out: tmpDir('difftalk-sync-full-'), steps: 4 });
    const out = tmpDir('difftalk-sync-resume-');
    const first = await trainSyncNet({ ...opts, out, steps: 2 });
    assert.deepEqual(first.losses, full.losses.slice(0, 2));
    const info = JSON.parse(readFileSync(first.json, 'utf8'));
    assert.equal(info.step, 2);
    assert.equal(info.optimizer.step, 2); // AdamW updates (the moments are in optimizer.safetensors)
    assert.ok(existsSync(path.join(path.dirname(first.json), 'optimizer.safetensors')));
    const resumed = await trainSyncNet({ ...opts, out, steps: 4, resume: true });
    assert.equal(resumed.startStep, 2);
    assert.deepEqual(resumed.losses, full.losses); // steps 3–4 recomputed after the resume equal the uninterrupted run
    assert.equal(resumed.sha256, full.sha256); // final weights bit-identical
    // the resume policy of every trainer: a changed option is a warning (never silent), nothing left to do is no work,
    // other clips are refused, a folder without a run has nothing to resume
    const logs: string[] = [];
    const more = await trainSyncNet({
      ...opts,
      out,
      steps: 6,
      lr: 2e-3,
      resume: true,
      onEvent: (e) => {
        if (e.type === 'log' && e.level === 'warn') logs.push(e.message);
      },
    });
    assert.ok(
      logs.some((m) => /resuming with lr = 0\.002; the run was started with 0\.001/.test(m)),
      logs.join('\n'),
    );
    assert.equal(more.startStep, 4);
    assert.equal(more.step, 6);
    const again = await trainSyncNet({ ...opts, out, steps: 4, resume: true });
    assert.equal(again.startStep, 6);
    assert.equal(again.step, 6);
    await assert.rejects(
      trainSyncNet({ ...opts, clips: [sliceClip(clip, 0, 12)], out, steps: 8, resume: true }),
      (e: Error & { code?: string }) => e.code === 'resume-mismatch',
    );
    await assert.rejects(
      trainSyncNet({ ...opts, out: tmpDir('difftalk-sync-none-'), steps: 4, resume: true }),
      (e: Error & { code?: string }) => e.code === 'checkpoint-missing',
    );
  });

  it('SIGTERM mid-training saves the step reached; --resume then ends bit-identical to an uninterrupted run', { timeout: 300_000 }, async () => {
    // The child (syncnet-child.ts) trains with the CLI's stop signals (src/cli/stop-signals.ts) and prints its progress;
    // it is sent SIGTERM after step 3 (no scheduled checkpoint before step 1000: the one found is the signal's).
    // Reference: an uninterrupted run to the same step, exact equality of losses and of the weights' sha256.
    const opts = { dataSource: 'fixture', batch: 4, lr: 1e-3, width: 0.0625, embedDim: 32, seed: 5, checkpointEvery: 1000 };
    const out = tmpDir('difftalk-sync-sigterm-');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(ROOT, 'tests', 'train', 'syncnet-child.ts'), JSON.stringify({ ...opts, out, steps: 1000 })],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let lastStep = 0;
    let killed = false;
    let buf = '';
    child.stdout.on('data', (c) => {
      buf += c;
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) {
        lastStep = Number(l);
        if (lastStep >= 3 && !killed) killed = child.kill('SIGTERM');
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    assert.equal(code, 143);
    const saved = JSON.parse(readFileSync(path.join(out, 'latest.json'), 'utf8')).step as number;
    assert.ok(saved >= 3 && saved === lastStep, `saved ${saved}, last step ${lastStep}`);
    const resumed = await trainSyncNet({ ...opts, clips: [clip], out, steps: saved + 2, resume: true });
    assert.equal(resumed.startStep, saved);
    const ref = await trainSyncNet({ ...opts, clips: [clip], out: tmpDir('difftalk-sync-sigterm-ref-'), steps: saved + 2 });
    assert.deepEqual(resumed.losses, ref.losses);
    assert.equal(resumed.sha256, ref.sha256);
  });

  it('imports syncnet_v2.model through `difftalk weights import --kind syncnet-v2` and loads it (expected.json syncnet lip_emb_window0)', async () => {
    // syncnet_v2.model itself cannot be downloaded here: a legacy-format torch file (the format of the real file) with
    // det() weights under the syncnet_v2 state_dict names stands in for it. It goes through the CLI command class (flag
    // parsing, checksum step, converter registration, cache index), then loadSyncNet() reads the cache.
    // Reference: ../shared/data/fixtures/expected.json syncnet.lip_emb_window0 (PyTorch, det weights); 1e-4 relative.
    const dir = tmpDir('difftalk-sync-import-');
    const model = path.join(dir, 'syncnet_v2.model');
    const sd = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [n, s] of syncnetParamShapes()) if (!n.endsWith('num_batches_tracked')) sd.set(n, { shape: s, data: det(n, s) });
    writeLegacyTorch(model, sd);
    const cache = path.join(dir, 'cache');
    const r = await WeightsImport.run(['--kind', 'syncnet-v2', '--model', model, '--cache-dir', cache, '--json'], ROOT);
    assert.equal(r.kind, 'syncnet-v2');
    assert.equal(r.tensors, sd.size);
    assert.equal(r.sources[0]!.verified, 'unverified'); // no published sha256 is known for syncnet_v2.model
    const { net, identity } = await loadSyncNet(undefined, { cacheDir: cache });
    try {
      assert.equal(identity.source, 'syncnet-v2');
      assert.match(identity.label, /^syncnet-v2:[0-9a-f]{12}$/);
      const ref = JSON.parse(readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8')).syncnet.lip_emb_window0 as {
        abs_sum: number;
        first8: number[];
        last8: number[];
      };
      const xv = packLipWindows(clip.frames, [0]);
      const lip = (await net.forwardLip(xv).data()) as Float32Array;
      xv.dispose();
      const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-4 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
      close(
        lip.reduce((a, v) => a + Math.abs(v), 0),
        ref.abs_sum,
        'abs_sum',
      );
      ref.first8.forEach((v, i) => close(lip[i]!, v, `lip[${i}]`));
      ref.last8.forEach((v, i) => close(lip[1016 + i]!, v, `lip[${1016 + i}]`));
    } finally {
      net.dispose();
    }
  });
});
