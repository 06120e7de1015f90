import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { OFFICIAL_FACE_MODEL, downloadVerified, modelCacheDir, resolveFaceModel } from '../../src/face/landmarks/index.js';
import { DifftalkError } from '../../src/util/errors.js';
import { sha256File } from '../../src/util/fs.js';
import { MODELS, tmpDir } from '../helpers.js';

const FM478 = path.join(MODELS, 'fm478md.task');
// reference: ../shared/data/models/PROVENANCE.md
const FM478_SHA = '4c0ac2cafd40d19e11a0c052753cfaa990efb8f88391c789acf069d603442ad4';

async function withServer<T>(body: Buffer, fn: (url: string) => Promise<T>): Promise<T> {
  const server = createServer((req, res) => {
    if (req.url === '/model.task') {
      res.writeHead(200, { 'content-length': body.length });
      res.end(body);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  try {
    return await fn(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
}

test('cache dir: $DIFFTALK_CACHE/models, else ~/.cache/difftalk/models', () => {
  assert.equal(modelCacheDir({ DIFFTALK_CACHE: '/x/cache' }), path.join('/x/cache', 'models'));
  assert.match(modelCacheDir({ HOME: '/home/u' }), /\.cache[/\\]difftalk[/\\]models$/);
});

test('downloadVerified: a correct file lands atomically; a wrong sha or a 404 leaves nothing behind', async () => {
  const dir = tmpDir();
  const bytes = await readFile(FM478);
  await withServer(bytes, async (base) => {
    const file = path.join(dir, 'ok', 'm.task');
    await downloadVerified(`${base}/model.task`, file, FM478_SHA);
    assert.equal(await sha256File(file), FM478_SHA);
    const bad = path.join(dir, 'bad', 'm.task');
    await assert.rejects(
      downloadVerified(`${base}/model.task`, bad, '0'.repeat(64)),
      (e: unknown) => e instanceof DifftalkError && e.code === 'model-checksum',
    );
    assert.deepEqual(await readdir(path.dirname(bad)), []);
    await assert.rejects(
      downloadVerified(`${base}/missing.task`, bad, FM478_SHA),
      (e: unknown) => e instanceof DifftalkError && e.code === 'model-download-failed',
    );
    assert.deepEqual(await readdir(path.dirname(bad)), []);
  });
});

test('resolveFaceModel: a user file is hashed; a corrupt cached official model is refused', async () => {
  const user = await resolveFaceModel(FM478);
  assert.equal(user.sha256, FM478_SHA);
  assert.equal(user.source, 'user');
  const cache = tmpDir();
  await mkdir(path.join(cache, 'models'), { recursive: true });
  await writeFile(path.join(cache, 'models', OFFICIAL_FACE_MODEL.name), 'not a model');
  await assert.rejects(
    resolveFaceModel(undefined, { ...process.env, DIFFTALK_CACHE: cache }),
    (e: unknown) => e instanceof DifftalkError && e.code === 'model-checksum',
  );
});
