/**
 * Test fixtures for the HDTF path: write an annotation folder (all 15 files, upstream format) for a few videos, and
 * serve real media files from a local HTTP server on 127.0.0.1 (Range requests supported) so the real yt-dlp
 * download path runs offline. Shared by the annotation/download tests and the end-to-end prep test.
 */
import { createReadStream } from 'node:fs';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export type FixtureSubset = 'RD' | 'WDA' | 'WRA';

export interface FixtureClip {
  /** `MM:SS` */
  start: string;
  end: string;
  /** Crop box in pixels of a frame `resolution` tall; omitted = no crop_wh line for this clip. */
  crop?: { x: number; y: number; w: number; h: number };
  /** crop_ratio value; omitted = no crop_ratio line (defaults to 1.2 when a crop box is given). */
  ratio?: number;
}

export interface FixtureVideo {
  subset: FixtureSubset;
  /** Video name as in the annotation files (`AlexandriaOcasioCortez`). */
  name: string;
  url: string;
  /** The resolution.txt value (frame height the crop boxes refer to). */
  resolution: number | string;
  clips: FixtureClip[];
}

/**
 * Write `{RD,WDA,WRA}_{video_url,resolution,annotion_time,crop_wh,crop_ratio}.txt` into `dir` (created) in the
 * upstream format: `name URL`, `name.mp4 H`, `name.mp4 MM:SS-MM:SS ...`, `name_i.mp4 x w y h`, `name_i.mp4 r`.
 * Subsets without videos get empty files. Returns `dir`.
 */
export async function writeHdtfAnnotations(dir: string, videos: readonly FixtureVideo[]): Promise<string> {
  await mkdir(dir, { recursive: true });
  for (const subset of ['RD', 'WDA', 'WRA'] as const) {
    const vs = videos.filter((v) => v.subset === subset);
    const lines = { video_url: [] as string[], resolution: [] as string[], annotion_time: [] as string[], crop_wh: [] as string[], crop_ratio: [] as string[] };
    for (const v of vs) {
      lines.video_url.push(`${v.name} ${v.url}`);
      lines.resolution.push(`${v.name}.mp4 ${v.resolution}`);
      lines.annotion_time.push(`${v.name}.mp4 ${v.clips.map((c) => `${c.start}-${c.end}`).join(' ')}`);
      v.clips.forEach((c, i) => {
        if (c.crop) lines.crop_wh.push(`${v.name}_${i}.mp4 ${c.crop.x} ${c.crop.w} ${c.crop.y} ${c.crop.h}`);
        const ratio = c.ratio ?? (c.crop ? 1.2 : undefined);
        if (ratio !== undefined) lines.crop_ratio.push(`${v.name}_${i}.mp4 ${ratio}`);
      });
    }
    for (const [kind, ls] of Object.entries(lines)) {
      await writeFile(path.join(dir, `${subset}_${kind}.txt`), ls.map((l) => `${l}\n`).join(''));
    }
  }
  return dir;
}

/** A route of the media server: a file to serve (Range supported), or a fixed status (optionally only `times` times). */
export type Route = { file: string } | { status: number; times?: number; then?: Route };

export interface RequestLog {
  method: string;
  path: string;
  range?: string;
}

export interface MediaServer {
  /** `http://127.0.0.1:<port>` */
  base: string;
  url(p: string): string;
  requests: RequestLog[];
  /** GET requests for a path so far. */
  gets(p: string): number;
  /** Make a file route send only its first `afterBytes` bytes and then hang (undefined: serve normally again). */
  stall(p: string, afterBytes: number | undefined): void;
  close(): Promise<void>;
}

/** Start an HTTP server on 127.0.0.1 (random port) serving `routes` (path → route); unknown paths are 404. */
export async function startMediaServer(routes: Record<string, Route>): Promise<MediaServer> {
  const requests: RequestLog[] = [];
  const hits = new Map<string, number>();
  const stalls = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const p = new URL(req.url ?? '/', 'http://x').pathname;
    requests.push({ method: req.method ?? '', path: p, range: req.headers.range });
    let route: Route | undefined = routes[p];
    const n = (hits.get(p) ?? 0) + 1;
    hits.set(p, n);
    // Walk status routes limited to `times` hits: after that, the `then` route answers.
    let seen = n;
    while (route && 'status' in route && route.times !== undefined && seen > route.times && route.then) {
      seen -= route.times;
      route = route.then;
    }
    res.on('error', () => undefined);
    if (!route) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    if ('status' in route) {
      res.writeHead(route.status, { 'content-type': 'text/plain' }).end(`status ${route.status}`);
      return;
    }
    const file = route.file;
    void stat(file).then(
      (st) => {
        const size = st.size;
        const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
        let start = 0;
        let end = size - 1;
        let status = 200;
        if (m && (m[1] || m[2])) {
          if (m[1]) {
            start = Number(m[1]);
            if (m[2]) end = Math.min(Number(m[2]), size - 1);
          } else start = Math.max(0, size - Number(m[2]));
          if (start >= size || start > end) {
            res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
            return;
          }
          status = 206;
        }
        const headers: http.OutgoingHttpHeaders = {
          'content-type': 'video/mp4',
          'accept-ranges': 'bytes',
          'content-length': end - start + 1,
        };
        if (status === 206) headers['content-range'] = `bytes ${start}-${end}/${size}`;
        res.writeHead(status, headers);
        if (req.method === 'HEAD') {
          res.end();
          return;
        }
        const stallAt = stalls.get(p);
        if (stallAt !== undefined && end >= stallAt) {
          // Send the bytes before the stall point, then keep the connection open without sending more.
          if (start >= stallAt) return;
          const s = createReadStream(file, { start, end: stallAt - 1 });
          s.on('error', () => res.destroy());
          req.on('close', () => s.destroy());
          s.pipe(res, { end: false });
          return;
        }
        const s = createReadStream(file, { start, end });
        s.on('error', () => res.destroy());
        req.on('close', () => s.destroy());
        s.pipe(res);
      },
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const base = `http://127.0.0.1:${port}`;
  return {
    base,
    url: (p) => `${base}${p}`,
    requests,
    gets: (p) => requests.filter((r) => r.method === 'GET' && r.path === p).length,
    stall: (p, afterBytes) => {
      if (afterBytes === undefined) stalls.delete(p);
      else stalls.set(p, afterBytes);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
