/** Child process for the kill/resume test: runs trainLdm with options from argv[2] (JSON) on the wasm backend. */
import { initBackend } from '../../src/util/tf.js';
import { trainLdm } from '../../src/train/ldm.js';

await initBackend('wasm');
await trainLdm(JSON.parse(process.argv[2]!));
