/**
 * Child process for tests/weights/hostile.test.ts: read each hostile file listed in argv[2] (JSON) under the heap
 * limit the parent gave (--max-old-space-size), and print one JSON line per file: the error code, the time taken and
 * the peak RSS seen.
 */
import { readFileSync } from 'node:fs';
import { DifftalkError } from '../../src/util/errors.js';
import { readJson } from '../../src/util/fs.js';
import { unpickle } from '../../src/weights/pickle.js';
import { readSafetensors } from '../../src/weights/safetensors.js';
import { readTorchFile, toPlain } from '../../src/weights/torch.js';
import type { HostileFile } from './hostile-files.js';

const MIB = 1024 * 1024;
const files = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as HostileFile[];
for (const f of files) {
  const t0 = process.hrtime.bigint();
  let code: string;
  try {
    if (f.reader === 'torch') toPlain((await readTorchFile(f.file)).value);
    else if (f.reader === 'pickle') unpickle(readFileSync(f.file));
    else if (f.reader === 'safetensors') await readSafetensors(f.file);
    else await readJson(f.file);
    code = 'ok';
  } catch (e) {
    code = e instanceof DifftalkError ? e.code : `raw ${e instanceof Error ? e.name : typeof e}: ${String(e).slice(0, 200)}`;
  }
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  console.log(
    JSON.stringify({
      file: f.file,
      code,
      ms,
      rssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
      heapMiB: Math.round(process.memoryUsage().heapUsed / MIB),
    }),
  );
}
