/**
 * download: fetch one weight file over HTTP(S) into a folder, resumable and verified.
 * - the bytes go to `<dest>.part`; an interrupted download resumes from the part's length with an HTTP Range request
 *   (a server that ignores Range — status 200 — restarts from zero);
 * - a size cap (`maxBytes`) stops a response that is larger than the file can be (declared or streamed);
 * - when the download is complete its sha256 is checked against the pinned full hash or hash prefix; a mismatch
 *   deletes the part and is 'checksum-mismatch'; only a verified (or knowingly unverifiable) file is renamed into place.
 * Network failures are one DifftalkError('download-failed') naming the URL; the caller adds how to proceed offline.
 */
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { DifftalkError, errorMessage } from '../util/errors.js';
import type { OnEvent } from '../util/events.js';
import { sha256File } from '../util/fs.js';

export interface DownloadOptions {
  /** Largest file accepted, in bytes. */
  maxBytes: number;
  /** Full sha256 (hex) the file must have. */
  sha256?: string;
  /** Leading sha256 hex digits the file must have (torchvision's file names carry 8). */
  sha256Prefix?: string;
  onEvent?: OnEvent;
  /** Suggestion for network errors (e.g. the manual `difftalk weights import` command). */
  offlineHint?: string;
}

export interface DownloadResult {
  file: string;
  bytes: number;
  sha256: string;
  /** 'sha256' | 'sha256-prefix' when it matched the pinned value, 'unverified' when none is published. */
  verified: 'sha256' | 'sha256-prefix' | 'unverified';
  /** Bytes that were already there from an interrupted download. */
  resumedFrom: number;
}

const MS_PER_S = 1000;
const HTTP_OK = 200;
const HTTP_PARTIAL = 206;
const HTTP_RANGE_NOT_SATISFIABLE = 416;

async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return 0;
  }
}

/** Download `url` to `dest` (see the module comment). An existing complete `dest` is re-verified, not re-downloaded. */
export async function downloadFile(url: string, dest: string, opts: DownloadOptions): Promise<DownloadResult> {
  const part = `${dest}.part`;
  const failed = (why: string, cause?: unknown): DifftalkError =>
    new DifftalkError('download-failed', `cannot download ${url}: ${why}`, { suggestion: opts.offlineHint, cause });
  const verify = async (file: string, resumedFrom: number): Promise<DownloadResult> => {
    const sha256 = await sha256File(file);
    const bytes = await sizeOf(file);
    const want = opts.sha256 ?? (opts.sha256Prefix ? `${opts.sha256Prefix}…` : undefined);
    const ok = opts.sha256 ? sha256 === opts.sha256 : opts.sha256Prefix ? sha256.startsWith(opts.sha256Prefix) : true;
    if (!ok) {
      await rm(file, { force: true });
      throw new DifftalkError('checksum-mismatch', `${url} gave a file with sha256 ${sha256}, expected ${want}; it was deleted`, {
        suggestion:
          'the server sent something else than the published file (a proxy page, a changed upload); check the URL, or import a file you trust with `difftalk weights import`',
      });
    }
    return { file, bytes, sha256, verified: opts.sha256 ? 'sha256' : opts.sha256Prefix ? 'sha256-prefix' : 'unverified', resumedFrom };
  };

  if ((await sizeOf(dest)) > 0) return verify(dest, 0);
  await mkdir(path.dirname(dest), { recursive: true });
  let have = await sizeOf(part);
  if (have > opts.maxBytes) {
    await rm(part, { force: true });
    have = 0;
  }
  const resumedFrom = have;
  let res: Response;
  try {
    res = await fetch(url, { headers: have > 0 ? { Range: `bytes=${have}-` } : {}, redirect: 'follow' });
  } catch (e) {
    throw failed(errorMessage((e as { cause?: unknown }).cause ?? e), e);
  }
  if (res.status === HTTP_RANGE_NOT_SATISFIABLE && have > 0) {
    // the part is already complete (or the server changed): verify what we have
    await res.body?.cancel();
    await rename(part, dest);
    return verify(dest, resumedFrom);
  }
  if (res.status !== HTTP_OK && res.status !== HTTP_PARTIAL) {
    await res.body?.cancel();
    throw failed(`HTTP ${res.status}`);
  }
  const append = res.status === HTTP_PARTIAL && have > 0;
  if (!append) have = 0;
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && have + declared > opts.maxBytes) {
    await res.body?.cancel();
    throw failed(`the file is ${have + declared} bytes, over the ${opts.maxBytes}-byte limit for this kind`);
  }
  opts.onEvent?.({ type: 'stage-start', stage: 'download', total: Number.isFinite(declared) ? have + declared : undefined, unit: 'bytes' });
  const t0 = performance.now();
  const fh = await open(part, append ? 'a' : 'w');
  let got = have;
  try {
    if (!res.body) throw failed('empty response');
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      got += chunk.length;
      if (got > opts.maxBytes) throw failed(`more than ${opts.maxBytes} bytes (the limit for this kind)`);
      await fh.write(chunk);
      opts.onEvent?.({ type: 'progress', stage: 'download', done: got });
    }
  } catch (e) {
    if (e instanceof DifftalkError) {
      if (e.message.includes('limit')) await rm(part, { force: true });
      throw e;
    }
    // the part stays: the next run resumes it
    throw failed(`interrupted after ${got} bytes (${errorMessage(e)}); run the same command again to resume`, e);
  } finally {
    await fh.close();
  }
  opts.onEvent?.({ type: 'stage-done', stage: 'download', done: got, seconds: (performance.now() - t0) / MS_PER_S });
  await rename(part, dest);
  return verify(dest, resumedFrom);
}
