import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fetchWeights, getWeightKind, loadWeights, registerWeightKind, requireWeights, weightsEntry, weightsLabel } from '../../src/models/weights-store.js';
import { DifftalkError } from '../../src/util/errors.js';
import { readTorchFile, stateDict } from '../../src/weights/torch.js';
import { tmpDir } from '../helpers.js';
import { writeLegacyTorch } from './legacy-writer.js';
import { writeZip } from './zip-writer.js';

// `difftalk weights fetch` against our own HTTP server on 127.0.0.1 (issue 12 point 3): deterministic torch files;
// a good file (verified, converted, labelled "published weights"), a file without a published hash ("unverified
// file <sha256[:12]>", the hash of the downloaded file, not of the cache), a wrong-hash file (refused, deleted,
// nothing imported), an interrupted download (resumed with an HTTP Range request; same bytes as the original),
// a size cap, and a server that is down (error naming the URL and the manual import command).
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const CUT_AFTER = 1000;
const DROP_DELAY_MS = 200;
const files = new Map<string, Buffer>();
const requests: { path: string; range?: string }[] = [];
let cutOnce = new Set<string>();
let server: http.Server;
let base: string;

function torchFile(seed: number): Buffer {
  const dir = tmpDir();
  const f = path.join(dir, 'w.pth');
  const n = 3000; // > CUT_AFTER bytes of data
  writeLegacyTorch(f, new Map([['w', { shape: [n], data: Float32Array.from({ length: n }, (_, i) => Math.sin(seed + i)) }]]));
  return readFileSync(f);
}

before(async () => {
  files.set('good.pth', torchFile(1));
  files.set('unpinned.pth', torchFile(2));
  files.set('wrong.pth', torchFile(3));
  files.set('cut.pth', torchFile(4));
  // upstream ships some checkpoints inside a zip (LDM's vq-f4.zip holds model.ckpt): a deflated one, and one without it
  files.set(
    'pack.zip',
    writeZip(
      [
        { name: 'pack/model.ckpt', data: torchFile(5) },
        { name: 'pack/config.yaml', data: Buffer.from('model: {}\n') },
      ],
      { deflate: true },
    ),
  );
  files.set('nockpt.zip', writeZip([{ name: 'pack/config.yaml', data: Buffer.from('model: {}\n') }], { deflate: true }));
  server = http.createServer((req, res) => {
    const name = decodeURIComponent((req.url ?? '').replace(/^\/+/, ''));
    requests.push({ path: name, range: req.headers.range });
    const body = files.get(name);
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const part = body.subarray(start);
    res.writeHead(m ? 206 : 200, { 'content-length': part.length, ...(m ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}) });
    if (cutOnce.has(name)) {
      cutOnce.delete(name);
      // the client must read the first bytes before the connection drops (a real interruption mid-stream)
      res.write(part.subarray(0, CUT_AFTER), () => setTimeout(() => res.destroy(), DROP_DELAY_MS));
      return;
    }
    res.end(part);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const convert = async ({ inputs }: { inputs: Record<string, string> }) => ({ tensors: stateDict(await readTorchFile(inputs.model!)) });
  const kind = (k: string, fileName: string, pin?: string, maxBytes = 1 << 20) =>
    registerWeightKind({
      kind: k,
      description: `test kind ${k}`,
      sources: [
        { flag: 'model', fileName, url: `${base}/${fileName}`, description: 'test file', sha256: pin, download: { url: `${base}/${fileName}`, maxBytes } },
      ],
      convert,
    });
  kind('t-good', 'good.pth', sha(files.get('good.pth')!));
  kind('t-unpinned', 'unpinned.pth');
  kind('t-wrong', 'wrong.pth', sha(files.get('good.pth')!));
  kind('t-cut', 'cut.pth', sha(files.get('cut.pth')!));
  kind('t-big', 'good.pth', undefined, 100);
  kind('t-down', 'absent.pth');
  const zipped = (k: string, zip: string) =>
    registerWeightKind({
      kind: k,
      description: `test kind ${k}`,
      sources: [
        {
          flag: 'model',
          fileName: 'model.ckpt',
          url: `${base}/${zip}`,
          description: 'test file in a zip',
          download: { url: `${base}/${zip}`, maxBytes: 1 << 20, archive: { fileName: zip, member: /^(?:[^/]+\/)?model\.ckpt$/ } },
        },
      ],
      convert,
    });
  zipped('t-zip', 'pack.zip');
  zipped('t-nockpt', 'nockpt.zip');
});

after(() => server.close());

test('fetch: a good file is verified, converted and labelled "published weights"; a rerun reuses the download', async () => {
  const cache = tmpDir();
  const r = await fetchWeights('t-good', { cacheDir: cache });
  assert.equal(r.downloads[0]!.sha256, sha(files.get('good.pth')!));
  assert.equal(r.downloads[0]!.verified, 'sha256');
  assert.equal(r.label, 'published weights');
  assert.ok(r.imported);
  const w = (await loadWeights('t-good', { cacheDir: cache })).get('w')!;
  assert.equal(w.data[5], Math.fround(Math.sin(1 + 5))); // reference: the values written (exact in float32)
  const n = requests.length;
  await fetchWeights('t-good', { cacheDir: cache });
  assert.equal(requests.length, n, 'no second download');
});

test('fetch: a file without a published hash is "unverified file <sha256[:12]>" of the downloaded file', async () => {
  const cache = tmpDir();
  const r = await fetchWeights('t-unpinned', { cacheDir: cache });
  const want = sha(files.get('unpinned.pth')!);
  assert.equal(r.label, `unverified file ${want.slice(0, 12)}`);
  const entry = (await weightsEntry('t-unpinned', { cacheDir: cache }))!;
  assert.equal(entry.sources[0]!.sha256, want); // the original file's hash…
  assert.notEqual(entry.sha256, want); // …not the converted cache file's
  assert.equal(weightsLabel(entry), r.label);
});

test('fetch: a wrong hash is refused, the file deleted and nothing imported', async () => {
  const cache = tmpDir();
  await assert.rejects(fetchWeights('t-wrong', { cacheDir: cache }), (e: unknown) => e instanceof DifftalkError && e.code === 'checksum-mismatch');
  assert.equal(existsSync(path.join(cache, 'downloads', 't-wrong', 'wrong.pth')), false);
  assert.equal(await weightsEntry('t-wrong', { cacheDir: cache }), undefined);
});

test('fetch: an interrupted download resumes with a Range request and ends with the same bytes', async () => {
  const cache = tmpDir();
  cutOnce = new Set(['cut.pth']);
  await assert.rejects(
    fetchWeights('t-cut', { cacheDir: cache }),
    (e: unknown) => e instanceof DifftalkError && e.code === 'download-failed' && /resume/.test(e.message),
  );
  const part = path.join(cache, 'downloads', 't-cut', 'cut.pth.part');
  assert.equal(readFileSync(part).length, CUT_AFTER);
  const r = await fetchWeights('t-cut', { cacheDir: cache });
  assert.equal(r.downloads[0]!.resumedFrom, CUT_AFTER);
  assert.equal(requests.at(-1)!.range, `bytes=${CUT_AFTER}-`);
  assert.equal(r.downloads[0]!.sha256, sha(files.get('cut.pth')!));
  assert.equal(r.label, 'published weights');
});

test('fetch: size cap, server down (URL + manual import named), and first use through requireWeights({fetch})', async () => {
  const cache = tmpDir();
  await assert.rejects(
    fetchWeights('t-big', { cacheDir: cache }),
    (e: unknown) => e instanceof DifftalkError && e.code === 'download-failed' && /limit/.test(e.message),
  );
  await assert.rejects(fetchWeights('t-down', { cacheDir: cache }), (e: unknown) => {
    assert.ok(e instanceof DifftalkError && e.code === 'download-failed' && e.message.includes(`${base}/absent.pth`), String(e));
    assert.match(e.suggestion ?? '', /difftalk weights import --kind t-down --model/);
    return true;
  });
  // A kind with two sources (LPIPS: backbone + linear layers): the offline hint names both files' URLs.
  await assert.rejects(fetchWeights('lpips-alex', { cacheDir: cache, mirror: `${base}/nothere` }), (e: unknown) => {
    assert.ok(e instanceof DifftalkError && e.code === 'download-failed', String(e));
    const hint = `${e.message}\n${e.suggestion ?? ''}`;
    assert.ok(hint.includes(`${base}/nothere/alexnet-owt-7be5be79.pth`) && hint.includes(`${base}/nothere/alex.pth`), hint);
    return true;
  });
  const logs: string[] = [];
  const file = await requireWeights('t-good', { cacheDir: cache, fetch: true, onEvent: (ev) => ev.type === 'log' && logs.push(ev.message) });
  assert.ok(existsSync(file));
  assert.ok(
    logs.some((l) => l.includes(`${base}/good.pth`)),
    logs.join('\n'),
  );
});

test('fetch: a checkpoint inside a zip (as vq-f4.zip ships model.ckpt) is downloaded, extracted and imported; a zip without it is refused', async () => {
  const cache = tmpDir();
  const r = await fetchWeights('t-zip', { cacheDir: cache });
  assert.equal(r.downloads[0]!.sha256, sha(files.get('pack.zip')!)); // the file downloaded…
  const ckpt = path.join(cache, 'downloads', 't-zip', 'model.ckpt');
  assert.deepEqual(readFileSync(ckpt), torchFile(5)); // …and the member extracted byte for byte (reference: the bytes zipped)
  assert.equal(r.label, `unverified file ${sha(torchFile(5)).slice(0, 12)}`); // the checkpoint's hash, as `weights import` of it records
  assert.equal((await loadWeights('t-zip', { cacheDir: cache })).get('w')!.data[7], Math.fround(Math.sin(5 + 7)));
  await assert.rejects(
    fetchWeights('t-nockpt', { cacheDir: cache }),
    (e: unknown) => e instanceof DifftalkError && e.code === 'bad-torch-file' && /0 entries matching/.test(e.message),
  );
  assert.equal(await weightsEntry('t-nockpt', { cacheDir: cache }), undefined);
  // the real vq-f4 kind downloads the official zip and extracts model.ckpt (top level or under one folder)
  const vq = getWeightKind('vq-f4').sources[0]!;
  assert.equal(vq.download?.url, 'https://ommer-lab.com/files/latent-diffusion/vq-f4.zip');
  assert.ok(vq.download?.archive?.member.test('model.ckpt') && vq.download.archive.member.test('vq-f4/model.ckpt'));
  assert.ok(!vq.download?.archive?.member.test('__MACOSX/model.ckpt') && !vq.download?.archive?.member.test('a/b/model.ckpt'));
});
