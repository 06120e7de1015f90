/**
 * download: prep stage 2. Fetches each video named by the usable clips (one download per video, shared by its clips)
 * with yt-dlp: video WITH audio, at the annotated height when offered, merged/remuxed to mp4, resumable (.part files
 * kept in `<dir>/.partial/<key>/`), retried with exponential backoff on transient errors only, several at a time
 * (p-queue). Every finished file is sha256-hashed and recorded in `<dir>/downloads.json` (written atomically);
 * a later run reuses a recorded file whose size and hash still match, and does not retry a video yt-dlp called
 * unavailable (private, removed, 404 ...) unless `retryFailed` is set. Failures are values, never crashes.
 */
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import PQueue from 'p-queue';
import { DifftalkError, errorMessage } from '../util/errors.js';
import { type OnEvent, timedStage } from '../util/events.js';
import { ExecError, runTool } from '../util/exec.js';
import { exists, readJson, sha256File, writeJsonAtomic } from '../util/fs.js';
import { unsafeNameReason, unsafeUrlReason } from '../util/names.js';
import { resolveTool } from '../util/tools.js';
import type { ClipSpec } from '../media/types.js';
import { type DropReason, type StageResult, drop, ok } from '../util/result.js';

export const LEDGER_FILE = 'downloads.json';
export const PARTIAL_DIR = '.partial';

/** What yt-dlp chose (fields it did not know are absent). */
export interface DownloadFormat {
  formatId?: string;
  format?: string;
  width?: number;
  height?: number;
  fps?: number;
  vcodec?: string;
  acodec?: string;
  ext?: string;
  extractor?: string;
  /** The id yt-dlp's extractor gave the video (the YouTube id for YouTube). */
  videoId?: string;
}

export interface DownloadedVideo {
  key: string;
  /** Absolute path of the finished file: `<dir>/<key>.<ext>` (mp4 unless the source could not be remuxed). */
  file: string;
  size: number;
  sha256: string;
  url: string;
  /** The annotated height asked for (undefined: best available). */
  requestedHeight?: number;
  format: DownloadFormat;
  /** True when the file was already recorded and verified (not downloaded in this run). */
  cached: boolean;
  /** yt-dlp runs in this run (0 when cached). */
  attempts: number;
}

/** Per video key: the downloaded file, or why not (reason 'video-unavailable' | 'download-failed' | 'unsafe-name'). */
export type DownloadResult = StageResult<DownloadedVideo>;

export interface LedgerEntry {
  key: string;
  url: string;
  status: 'ok' | 'failed';
  /** File name inside the download dir (status ok). */
  file?: string;
  size?: number;
  sha256?: string;
  requestedHeight?: number;
  format?: DownloadFormat;
  /** status failed: the drop reason and yt-dlp's own error line. */
  reason?: DropReason;
  message?: string;
  /** yt-dlp runs of the run that wrote this entry. */
  attempts: number;
  /** yt-dlp --version of that run. */
  ytDlpVersion?: string;
  /** ISO time the entry was written. */
  at: string;
}

export interface DownloadLedger {
  version: 1;
  videos: Record<string, LedgerEntry>;
}

export interface DownloadOptions {
  /** Download folder (created); finished files, the ledger and the .partial folder live here. */
  dir: string;
  /** Videos downloaded at the same time (>= 1). */
  concurrency: number;
  /** Extra yt-dlp runs after a transient failure (>= 0). */
  retries: number;
  onEvent: OnEvent;
  signal?: AbortSignal;
  /** Try again videos the ledger records as unavailable (default false: they stay dropped). */
  retryFailed?: boolean;
  /** First backoff delay in ms; doubles per retry, capped at 60 s (default 2000). */
  backoffMs?: number;
  /** Seconds yt-dlp waits on a silent connection (default 30). */
  socketTimeoutS?: number;
  /** Largest download accepted, in bytes (yt-dlp --max-filesize, and checked on the finished file); default DEFAULT_MAX_DOWNLOAD_BYTES. */
  maxBytes?: number;
}

/** Default download size cap: 4 GiB (an HDTF source at 1080p is a few hundred MB). */
export const DEFAULT_MAX_DOWNLOAD_BYTES = 4 * 1024 ** 3;

/** One download: a video and the clips that need it. */
export interface VideoJob {
  key: string;
  url: string;
  requestedHeight?: number;
  clipIds: string[];
}

/** The download key of a clip: `<subset>_<video>` for HDTF (`WDA_AdamSchiff`), the video name otherwise. */
export function videoKey(clip: ClipSpec): string {
  return clip.subset ? `${clip.subset}_${clip.video}` : clip.video;
}

/** Group the usable clips that have a URL into one job per video (first-seen order). Unusable clips are skipped. */
export function videoJobs(clips: readonly ClipSpec[]): VideoJob[] {
  const jobs = new Map<string, VideoJob>();
  for (const c of clips) {
    if (c.unusable || !c.url) continue;
    const key = videoKey(c);
    const job = jobs.get(key);
    if (job) {
      job.clipIds.push(c.id);
      if (job.requestedHeight === undefined && c.crop) job.requestedHeight = c.crop.refHeight;
    } else jobs.set(key, { key, url: c.url, requestedHeight: c.crop?.refHeight, clipIds: [c.id] });
  }
  return [...jobs.values()];
}

/** yt-dlp format selection: video+audio at `height` when offered, else the best video+audio, else the best single file. */
export function formatSelector(height?: number): string {
  if (height === undefined || !Number.isInteger(height) || height <= 0) return 'bv*+ba/b';
  return `bv*[height=${height}]+ba/b[height=${height}]/bv*+ba/b`;
}

const RESULT_TAG = 'DIFFTALK-RESULT ';
const PROGRESS_TAG = 'DIFFTALK-PROGRESS ';
const RESULT_FIELDS: Record<string, string> = {
  filepath: 'filepath',
  formatId: 'format_id',
  format: 'format',
  width: 'width',
  height: 'height',
  fps: 'fps',
  vcodec: 'vcodec',
  acodec: 'acodec',
  ext: 'ext',
  extractor: 'extractor',
  videoId: 'id',
};

/** The yt-dlp argument list for one attempt (the URL always after `--`). */
export function ytDlpArgs(job: VideoJob, workDir: string, opts: { ffmpeg?: string; socketTimeoutS?: number; maxBytes?: number } = {}): string[] {
  const template = `${Object.entries(RESULT_FIELDS)
    .map(([k, f]) => `"${k}":%(${f})j`)
    .join(',')}`;
  // The output template is a yt-dlp template: a literal % in the folder name must be doubled.
  const outTemplate = path.join(path.resolve(workDir).replaceAll('%', '%%'), `${job.key}.%(ext)s`);
  const args = [
    '--ignore-config',
    '--no-playlist',
    '--continue',
    '--no-mtime',
    '--newline',
    '--progress',
    '--progress-template',
    `download:${PROGRESS_TAG}%(progress.downloaded_bytes)s %(progress.total_bytes)s %(progress.total_bytes_estimate)s`,
    '--output-na-placeholder',
    '',
    '--no-simulate',
    '--print',
    `after_move:${RESULT_TAG}{${template}}`,
    '--socket-timeout',
    String(opts.socketTimeoutS ?? 30),
    '-f',
    formatSelector(job.requestedHeight),
    '--merge-output-format',
    'mp4',
    '--remux-video',
    'mp4',
    '--max-filesize',
    String(opts.maxBytes ?? DEFAULT_MAX_DOWNLOAD_BYTES),
    '-o',
    outTemplate,
  ];
  if (opts.ffmpeg) args.push('--ffmpeg-location', opts.ffmpeg);
  args.push('--', job.url);
  return args;
}

export interface YtDlpFailure {
  reason: 'video-unavailable' | 'download-failed';
  /** Worth another attempt in this run (network trouble, HTTP 5xx/429). */
  transient: boolean;
  /** yt-dlp's own error line, without its "please report this issue" boilerplate. */
  message: string;
}

const UNAVAILABLE = [
  /video unavailable/i,
  /private video/i,
  /has been removed/i,
  /no longer available/i,
  /account .* (terminated|closed)/i,
  /not available in your country/i,
  /not made this video available/i,
  /this video is not available/i,
  /this video is unavailable/i,
  /copyright (claim|grounds)/i,
  /sign in to confirm your age/i,
  /age[- ]restricted/i,
  /members[- ]only|join this channel/i,
  /HTTP Error 404/i,
  /HTTP Error 410/i,
  /\b404\b.*not found/i,
];
const TRANSIENT = [
  /HTTP Error 5\d\d/i,
  /HTTP Error 429/i,
  /HTTP Error 408/i,
  /timed? ?out/i,
  /connection (reset|refused|aborted)/i,
  /remote end closed/i,
  /temporary failure/i,
  /name or service not known/i,
  /network is unreachable/i,
  /incompleteread|incomplete read/i,
  /did not get any data blocks/i,
  /urlopen error/i,
  /unable to download (webpage|video data|API page).*(timed|reset|refused|5\d\d|429)/i,
];

/** Classify yt-dlp's stderr: permanent unavailability, transient trouble, or another (non-retried) failure. */
export function classifyYtDlpError(stderr: string): YtDlpFailure {
  const lines = stderr
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean);
  const errors = lines.filter((l) => l.startsWith('ERROR:'));
  const raw = errors.at(-1) ?? lines.at(-1) ?? 'yt-dlp failed without a message';
  const message = raw
    .replace(/^ERROR:\s*/, '')
    .replace(/;\s*please report this issue.*$/i, '')
    .replace(/\s*\(caused by .*\)$/, '')
    .trim();
  const text = errors.length > 0 ? errors.join('\n') : raw;
  if (UNAVAILABLE.some((re) => re.test(text))) return { reason: 'video-unavailable', transient: false, message };
  if (TRANSIENT.some((re) => re.test(text))) return { reason: 'download-failed', transient: true, message };
  return { reason: 'download-failed', transient: false, message };
}

/** Read the ledger; a missing file is an empty ledger, an unreadable one too (with a warning event). */
export async function readLedger(dir: string, onEvent?: OnEvent): Promise<DownloadLedger> {
  const file = path.join(dir, LEDGER_FILE);
  if (!(await exists(file))) return { version: 1, videos: {} };
  try {
    const l = await readJson<DownloadLedger>(file);
    if (l && l.version === 1 && l.videos && typeof l.videos === 'object') return l;
    throw new Error('not a version-1 download ledger');
  } catch (e) {
    onEvent?.({ type: 'log', level: 'warn', message: `${file} is unreadable (${errorMessage(e)}); it will be rewritten` });
    return { version: 1, videos: {} };
  }
}

/** Serialises ledger updates of this process; each write re-reads the file so entries of other runs survive. */
class LedgerWriter {
  private chain: Promise<void> = Promise.resolve();
  constructor(private readonly dir: string) {}
  update(entry: LedgerEntry): Promise<void> {
    const next = this.chain.then(async () => {
      const ledger = await readLedger(this.dir);
      ledger.videos[entry.key] = entry;
      await writeJsonAtomic(path.join(this.dir, LEDGER_FILE), ledger);
    });
    this.chain = next.catch(() => undefined);
    return next;
  }
}

function parseResult(line: string): (DownloadFormat & { filepath?: string }) | undefined {
  try {
    const o = JSON.parse(line.slice(RESULT_TAG.length)) as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(o)) {
      if (v === '' || v === null || v === 'NA' || v === undefined) continue;
      if (['width', 'height', 'fps'].includes(k)) {
        const n = Number(v);
        if (Number.isFinite(n)) out[k] = n;
      } else out[k] = String(v);
    }
    return out as DownloadFormat & { filepath?: string };
  } catch {
    return undefined;
  }
}

async function fileMatches(file: string, size?: number, hash?: string): Promise<boolean> {
  try {
    const s = await stat(file);
    if (!s.isFile() || s.size !== size) return false;
    return (await sha256File(file)) === hash;
  } catch {
    return false;
  }
}

function isAbort(signal?: AbortSignal): boolean {
  return signal?.aborted === true;
}

function abortError(signal?: AbortSignal): Error {
  const r: unknown = signal?.reason;
  return r instanceof Error ? r : new DifftalkError('aborted', 'download aborted');
}

/**
 * Download the videos the usable clips need. Returns one result per video key (see videoKey); clips marked
 * unusable or without a URL are not looked at. Throws only for invalid options or an abort.
 */
export async function downloadVideos(clips: readonly ClipSpec[], opts: DownloadOptions): Promise<Map<string, DownloadResult>> {
  if (!Number.isInteger(opts.concurrency) || opts.concurrency < 1) {
    throw new DifftalkError('invalid-option', `concurrency must be a positive integer, got ${opts.concurrency}`);
  }
  if (!Number.isInteger(opts.retries) || opts.retries < 0) {
    throw new DifftalkError('invalid-option', `retries must be a non-negative integer, got ${opts.retries}`);
  }
  const dir = path.resolve(opts.dir);
  const { onEvent, signal } = opts;
  const backoffMs = opts.backoffMs ?? 2000;
  await mkdir(dir, { recursive: true });
  const jobs = videoJobs(clips);
  const ledger = await readLedger(dir, onEvent);
  const writer = new LedgerWriter(dir);
  const results = new Map<string, DownloadResult>();

  // yt-dlp is only needed when something must be downloaded; looked up once (a missing yt-dlp stops the run).
  let tools: { ffmpeg?: string; version: string } | undefined;
  let toolsPromise: Promise<{ ffmpeg?: string; version: string }> | undefined;
  const toolInfo = (): Promise<{ ffmpeg?: string; version: string }> => {
    toolsPromise ??= (async () => {
      const version = (await runTool('yt-dlp', ['--version'], { signal })).stdout.toString('utf8').trim();
      let ffmpeg: string | undefined;
      try {
        ffmpeg = resolveTool('ffmpeg');
      } catch {
        onEvent({ type: 'log', level: 'warn', message: 'ffmpeg not found: yt-dlp cannot merge separate video and audio streams' });
      }
      tools = { ffmpeg, version };
      return tools;
    })();
    return toolsPromise;
  };

  const fail = async (job: VideoJob, reason: DropReason, message: string, attempts: number, record: boolean): Promise<DownloadResult> => {
    if (record) {
      const entry: LedgerEntry = { key: job.key, url: job.url, status: 'failed', reason, message, attempts, at: new Date().toISOString() };
      if (job.requestedHeight !== undefined) entry.requestedHeight = job.requestedHeight;
      if (tools) entry.ytDlpVersion = tools.version;
      await writer.update(entry);
    }
    onEvent({ type: 'dropped', stage: 'download', id: job.key, reason, message });
    return drop(reason, message);
  };

  const one = async (job: VideoJob, tick: (detail: string) => void, report: (detail: string) => void): Promise<DownloadResult> => {
    const nameProblem = unsafeNameReason(job.key);
    if (nameProblem) return fail(job, 'unsafe-name', `video key ${JSON.stringify(job.key)}: ${nameProblem}`, 0, false);
    const urlProblem = unsafeUrlReason(job.url);
    if (urlProblem) return fail(job, 'unsafe-name', `${job.key}: URL ${JSON.stringify(job.url)}: ${urlProblem}`, 0, true);

    const prev = ledger.videos[job.key];
    if (prev && prev.url === job.url) {
      if (prev.status === 'ok' && prev.file) {
        const file = path.join(dir, prev.file);
        if (await fileMatches(file, prev.size, prev.sha256)) {
          tick(`${job.key} already downloaded`);
          return ok({
            key: job.key,
            file,
            size: prev.size!,
            sha256: prev.sha256!,
            url: job.url,
            requestedHeight: prev.requestedHeight,
            format: prev.format ?? {},
            cached: true,
            attempts: 0,
          });
        }
        onEvent({ type: 'log', level: 'warn', message: `${job.key}: ${prev.file} is missing or changed since it was recorded; downloading again` });
      } else if (prev.status === 'failed' && prev.reason === 'video-unavailable' && !opts.retryFailed) {
        const message = `${prev.message ?? 'unavailable'} (recorded ${prev.at}; not retried without retryFailed)`;
        onEvent({ type: 'dropped', stage: 'download', id: job.key, reason: 'video-unavailable', message });
        return drop('video-unavailable', message);
      }
    }

    const { ffmpeg, version } = await toolInfo();
    const workDir = path.join(dir, PARTIAL_DIR, job.key);
    await mkdir(workDir, { recursive: true });
    const maxBytes = opts.maxBytes ?? DEFAULT_MAX_DOWNLOAD_BYTES;
    const args = ytDlpArgs(job, workDir, { ffmpeg, socketTimeoutS: opts.socketTimeoutS, maxBytes });
    let ytOutput = '';
    let attempts = 0;
    for (;;) {
      if (isAbort(signal)) throw abortError(signal);
      attempts++;
      let result: (DownloadFormat & { filepath?: string }) | undefined;
      let pending = '';
      let lastPct = -1;
      const onLine = (line: string): void => {
        if (line.startsWith(RESULT_TAG)) result = parseResult(line) ?? result;
        else if (line.startsWith(PROGRESS_TAG)) {
          const [done, total, estimate] = line.slice(PROGRESS_TAG.length).split(' ').map(Number);
          const t = total || estimate;
          if (done !== undefined && t) {
            const pct = Math.floor((100 * done) / t / 10) * 10;
            if (pct !== lastPct) {
              lastPct = pct;
              report(`${job.key} ${pct}% of ${(t / 1e6).toFixed(1)} MB`);
            }
          }
        }
      };
      try {
        const { stderr } = await runTool('yt-dlp', args, {
          signal,
          onStdout: (c) => {
            ytOutput = (ytOutput + c.toString('utf8')).slice(-4096);
            pending += c.toString('utf8');
            const lines = pending.split(/\r?\n/);
            pending = lines.pop() ?? '';
            for (const l of lines) onLine(l);
          },
        });
        if (pending) onLine(pending);
        ytOutput += stderr.slice(-4096);
      } catch (e) {
        if (isAbort(signal)) throw abortError(signal);
        if (!(e instanceof ExecError)) throw e;
        const f = classifyYtDlpError(e.stderr);
        if (f.transient && attempts <= opts.retries) {
          const delay = Math.min(60_000, backoffMs * 2 ** (attempts - 1));
          onEvent({ type: 'log', level: 'warn', message: `${job.key}: ${f.message}; retry ${attempts}/${opts.retries} in ${(delay / 1000).toFixed(1)} s` });
          await sleep(delay, undefined, { signal }).catch(() => {
            throw abortError(signal);
          });
          continue;
        }
        // Nothing of an unavailable video is worth keeping; partial files of other failures stay for a resume.
        if (f.reason === 'video-unavailable') await rm(workDir, { recursive: true, force: true });
        return fail(job, f.reason, f.message, attempts, true);
      }

      const produced = result?.filepath;
      if (/larger than max-filesize/i.test(ytOutput)) {
        await rm(workDir, { recursive: true, force: true });
        return fail(job, 'download-failed', `the video is larger than the download cap of ${maxBytes} bytes (--max-download)`, attempts, true);
      }
      if (!produced || path.dirname(path.resolve(produced)) !== path.resolve(workDir) || !(await exists(produced))) {
        // yt-dlp skips a video over --max-filesize silently (exit 0, no file, no message under --print).
        const why = produced ? `reported ${JSON.stringify(produced)}, not a file inside ${workDir}` : 'wrote no file';
        return fail(
          job,
          'download-failed',
          `yt-dlp finished but ${why}: is the video larger than the download cap of ${maxBytes} bytes (--max-download)?`,
          attempts,
          true,
        );
      }
      const ext = path.extname(produced).slice(1) || 'mp4';
      const finalName = `${job.key}.${/^[A-Za-z0-9]{1,8}$/.test(ext) ? ext : 'mp4'}`;
      const finalFile = path.join(dir, finalName);
      await rename(produced, finalFile);
      await rm(workDir, { recursive: true, force: true });
      const [hash, st] = await Promise.all([sha256File(finalFile), stat(finalFile)]);
      if (st.size > maxBytes) {
        // yt-dlp cannot cap every path (a merged or remuxed file, a server without Content-Length): check the result.
        await rm(finalFile, { force: true });
        return fail(
          job,
          'download-failed',
          `the video is ${st.size} bytes, larger than the download cap of ${maxBytes} bytes (--max-download)`,
          attempts,
          true,
        );
      }
      const { filepath: _ignored, ...format } = result!;
      void _ignored;
      const entry: LedgerEntry = {
        key: job.key,
        url: job.url,
        status: 'ok',
        file: finalName,
        size: st.size,
        sha256: hash,
        format,
        attempts,
        ytDlpVersion: version,
        at: new Date().toISOString(),
      };
      if (job.requestedHeight !== undefined) entry.requestedHeight = job.requestedHeight;
      await writer.update(entry);
      tick(`${job.key} downloaded`);
      return ok({
        key: job.key,
        file: finalFile,
        size: st.size,
        sha256: hash,
        url: job.url,
        requestedHeight: job.requestedHeight,
        format,
        cached: false,
        attempts,
      });
    }
  };

  await timedStage(onEvent, 'download', jobs.length, 'videos', async (tickDone) => {
    let done = 0;
    const queue = new PQueue({ concurrency: opts.concurrency });
    const finish = (detail: string): void => tickDone(++done, detail);
    const tasks = jobs.map((job) =>
      queue.add(async () => {
        if (isAbort(signal)) throw abortError(signal);
        let r: DownloadResult;
        let ticked = false;
        try {
          r = await one(
            job,
            (detail) => {
              ticked = true;
              finish(detail);
            },
            (detail) => onEvent({ type: 'progress', stage: 'download', done, total: jobs.length, detail }),
          );
        } catch (e) {
          if (isAbort(signal)) throw e;
          if (e instanceof DifftalkError && e.code === 'tool-missing') throw e;
          // An unexpected error (disk full, permission ...) fails this video, not the run.
          r = await fail(job, 'download-failed', `${job.key}: ${errorMessage(e)}`, 0, false);
        }
        if (!ticked) finish(`${job.key} ${r.ok ? 'downloaded' : `failed (${r.reason})`}`);
        results.set(job.key, r);
      }),
    );
    try {
      await Promise.all(tasks);
    } catch (e) {
      // Aborted: drop the queued videos (their promises never settle) and wait for the running ones to stop.
      queue.clear();
      await queue.onIdle();
      throw e;
    }
  });
  return results;
}
