/**
 * Child process for the SIGTERM/resume test: trains SyncNet on the syncnet fixture (as syncnet.test.ts builds it) with
 * options from argv[2] (JSON) on the wasm backend, stopped by the CLI's stop signals; prints each step reached on
 * stdout and exits with the signal's code (143 for SIGTERM), as `difftalk train syncnet` does.
 */
import path from 'node:path';
import sharp from 'sharp';
import { stopSignals } from '../../src/cli/stop-signals.js';
import { syncMfcc } from '../../src/metrics/lse.js';
import { readWav } from '../../src/audio/wav.js';
import { audioWindowsFromMfcc, trainSyncNet } from '../../src/train/syncnet.js';
import { initBackend } from '../../src/util/tf.js';
import { FIXTURES } from '../helpers.js';

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
const m = syncMfcc(wav.samples, wav.sampleRate);
const clip = { id: 'fixture', frames, audio: audioWindowsFromMfcc(m.data, m.frames, 20), windows: 20 };
const stop = stopSignals();
await trainSyncNet({
  ...JSON.parse(process.argv[2]!),
  clips: [clip],
  signal: stop.signal,
  onEvent: (e) => {
    if (e.type === 'progress') process.stdout.write(`${e.done}\n`);
  },
});
stop.dispose();
process.exitCode = stop.exitCode() ?? 0;
