import { randomBytes } from 'node:crypto';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { DifftalkError, errorMessage } from '../../util/errors.js';
import { resolveTool } from '../../util/tools.js';
import type { FaceLandmarks, LandmarkEngine } from '../types.js';
import type { RgbFrames } from '../../media/types.js';
import { PAGE_HTML, PAGE_MODULE, POINTS, RESULT_STRIDE, type PageConfig } from './mediapipe-page.js';

const require = createRequire(import.meta.url);

/** Chromium flags (docs: landmarks.md); the user-data dir is a fresh temp dir per engine. */
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
] as const;

export interface MediapipeEngineOptions {
  /** The FaceLandmarker .task bundle. */
  modelFile: string;
  /** Max faces the Tasks graph reports; 2 so that a second face marks the frame 'multi-face'. Default 2. */
  numFaces?: number;
  minFaceDetectionConfidence?: number;
  minFacePresenceConfidence?: number;
  minTrackingConfidence?: number;
  /** Zoom onto faces smaller than this fraction of the frame's shorter side (default 0.4). */
  zoomBelow?: number;
  /** Search overlapping tiles for small faces when the shorter side is ≥ this (default 384 px). */
  tileMinSide?: number;
  /** Frames per page round trip are capped by this many bytes (default 48 MiB). */
  batchBytes?: number;
  /** Chromium binary; default resolveTool('chromium'). */
  chromium?: string;
}

interface Pending {
  frames: Uint8Array;
  resolve: (buf: Buffer) => void;
  reject: (e: Error) => void;
}

type PlaywrightContext = import('playwright-core').BrowserContext;
type PlaywrightPage = import('playwright-core').Page;

/**
 * MediaPipe Tasks FaceLandmarker (CPU delegate, VIDEO running mode) inside headless Chromium, driven by
 * playwright-core. Frames travel as raw bytes over a local HTTP server; results come back as Float32Array.
 * For faces smaller than `zoomBelow` of the frame the page crops a square ROI around the tracked face; when the
 * whole frame shows no face it searches overlapping tiles (small faces in large, non-square source frames).
 */
export class MediapipeEngine implements LandmarkEngine {
  readonly name = 'mediapipe';
  private constructor(
    private readonly server: Server,
    private readonly context: PlaywrightContext,
    private readonly page: PlaywrightPage,
    private readonly userDataDir: string,
    private readonly pending: Map<string, Pending>,
    private readonly batchBytes: number,
  ) {}

  static async create(opts: MediapipeEngineOptions): Promise<MediapipeEngine> {
    const executablePath = opts.chromium ?? resolveTool('chromium');
    const model = await readFile(opts.modelFile).catch((e: unknown) => {
      throw new DifftalkError('model-missing', `cannot read face model ${opts.modelFile}: ${errorMessage(e)}`);
    });
    const config: PageConfig = {
      numFaces: opts.numFaces ?? 2,
      minFaceDetectionConfidence: opts.minFaceDetectionConfidence ?? 0.5,
      minFacePresenceConfidence: opts.minFacePresenceConfidence ?? 0.5,
      minTrackingConfidence: opts.minTrackingConfidence ?? 0.5,
      zoomBelow: opts.zoomBelow ?? 0.4,
      roiScale: 2.2,
      tileMinSide: Math.min(opts.tileMinSide ?? 384, 1e9), // JSON has no Infinity
    };
    const pending = new Map<string, Pending>();
    const server = await startServer(model, config, pending);
    const port = (server.address() as AddressInfo).port;
    const userDataDir = await mkdtemp(path.join(os.tmpdir(), 'difftalk-chromium-'));
    let context: PlaywrightContext | undefined;
    try {
      const { chromium } = await import('playwright-core');
      context = await chromium.launchPersistentContext(userDataDir, {
        executablePath,
        headless: true,
        args: [...CHROMIUM_FLAGS],
      });
      const page = context.pages()[0] ?? (await context.newPage());
      const pageErrors: string[] = [];
      page.on('pageerror', (e) => pageErrors.push(e.message));
      await page.goto(`http://127.0.0.1:${port}/`);
      await page.waitForFunction(() => (window as unknown as { __difftalk?: { init?: unknown } }).__difftalk?.init !== undefined, undefined, {
        timeout: 30_000,
      });
      await page.evaluate(() => (window as unknown as { __difftalk: { init(): Promise<void> } }).__difftalk.init());
      if (pageErrors.length) throw new Error(pageErrors.join('; '));
      return new MediapipeEngine(server, context, page, userDataDir, pending, opts.batchBytes ?? 48 * 1024 * 1024);
    } catch (e) {
      await context?.close().catch(() => undefined);
      server.close();
      await rm(userDataDir, { recursive: true, force: true });
      if (e instanceof DifftalkError) throw e;
      throw new DifftalkError('landmarker-start', `MediaPipe FaceLandmarker did not start in Chromium: ${errorMessage(e)}`, {
        suggestion: 'check that --face-model is a MediaPipe FaceLandmarker .task bundle and CHROMIUM_PATH a working Chromium',
      });
    }
  }

  async detect(frames: RgbFrames): Promise<FaceLandmarks[]> {
    const { width, height, count, data } = frames;
    const frameBytes = width * height * 3;
    if (data.length !== frameBytes * count) {
      throw new DifftalkError('bad-frames', `frames buffer has ${data.length} bytes, expected ${count}×${width}×${height}×3`);
    }
    const out: FaceLandmarks[] = [];
    const perBatch = Math.max(1, Math.floor(this.batchBytes / frameBytes));
    for (let start = 0; start < count; start += perBatch) {
      const n = Math.min(perBatch, count - start);
      const id = randomBytes(8).toString('hex');
      const result = new Promise<Buffer>((resolve, reject) => {
        this.pending.set(id, { frames: data.subarray(start * frameBytes, (start + n) * frameBytes), resolve, reject });
      });
      try {
        await this.page.evaluate(
          ({ i, w, h, c }) =>
            (window as unknown as { __difftalk: { run(id: string, w: number, h: number, ch: number, n: number): Promise<number> } }).__difftalk.run(
              i,
              w,
              h,
              3,
              c,
            ),
          { i: id, w: width, h: height, c: n },
        );
      } catch (e) {
        this.pending.delete(id);
        throw new DifftalkError('landmarker-failed', `MediaPipe FaceLandmarker failed on a batch: ${errorMessage(e)}`);
      }
      const buf = await result;
      const floats = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
      for (let f = 0; f < n; f++) out.push(decodeFrame(floats.subarray(f * RESULT_STRIDE, (f + 1) * RESULT_STRIDE)));
    }
    return out;
  }

  async reset(): Promise<void> {
    try {
      await this.page.evaluate(() => (window as unknown as { __difftalk: { reset(): Promise<void> } }).__difftalk.reset());
    } catch (e) {
      throw new DifftalkError('landmarker-failed', `MediaPipe FaceLandmarker reset failed: ${errorMessage(e)}`);
    }
  }

  async close(): Promise<void> {
    await this.context.close().catch(() => undefined);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.userDataDir, { recursive: true, force: true });
  }
}

function decodeFrame(r: Float32Array): FaceLandmarks {
  const faces = r[0]!;
  if (faces === 0) return { status: 'no-face', points: new Float32Array(0), score: 0 };
  const points = new Float32Array(r.subarray(3, 3 + POINTS * 3));
  const s = r[1]!;
  // The Tasks API drops faces below minFacePresenceConfidence and does not expose the presence score itself for
  // models without per-landmark presence; then the score is NaN ("accepted, confidence unknown").
  return { status: faces > 1 ? 'multi-face' : 'ok', points, score: Number.isFinite(s) ? s : Number.NaN };
}

function sendFile(res: ServerResponse, type: string, body: Uint8Array | string): void {
  res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

async function startServer(model: Buffer, config: PageConfig, pending: Map<string, Pending>): Promise<Server> {
  const visionDir = path.dirname(require.resolve('@mediapipe/tasks-vision/vision_bundle.js'));
  const staticFiles = new Map<string, { type: string; file: string }>([
    ['/vision/vision_bundle.mjs', { type: 'text/javascript', file: path.join(visionDir, 'vision_bundle.mjs') }],
  ]);
  for (const f of ['vision_wasm_internal.js', 'vision_wasm_internal.wasm', 'vision_wasm_nosimd_internal.js', 'vision_wasm_nosimd_internal.wasm']) {
    staticFiles.set(`/wasm/${f}`, { type: f.endsWith('.wasm') ? 'application/wasm' : 'text/javascript', file: path.join(visionDir, 'wasm', f) });
  }
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const p = url.pathname;
    if (p === '/') return sendFile(res, 'text/html', PAGE_HTML);
    if (p === '/page.mjs') return sendFile(res, 'text/javascript', PAGE_MODULE);
    if (p === '/config.json') return sendFile(res, 'application/json', JSON.stringify(config));
    if (p === '/model.task') return sendFile(res, 'application/octet-stream', model);
    const st = staticFiles.get(p);
    if (st) return sendFile(res, st.type, await readFile(st.file));
    const m = /^\/(batch|result)\/([0-9a-f]+)$/.exec(p);
    const job = m ? pending.get(m[2]!) : undefined;
    if (m && job && m[1] === 'batch' && req.method === 'GET') return sendFile(res, 'application/octet-stream', job.frames);
    if (m && job && m[1] === 'result' && req.method === 'POST') {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      pending.delete(m[2]!);
      res.writeHead(204);
      res.end();
      job.resolve(Buffer.concat(chunks));
      return;
    }
    res.writeHead(404);
    res.end();
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      res.writeHead(500);
      res.end(errorMessage(e));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return server;
}
