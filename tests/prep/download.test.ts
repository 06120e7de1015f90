/**
 * Download stage on the real yt-dlp binary against a local HTTP server (127.0.0.1) serving the real HDTF clip
 * ../shared/data/media/WDA_AlexandriaOcasioCortez_000.mp4 (2,257,667 bytes, AAC audio; see media/PROVENANCE.md).
 * yt-dlp's generic extractor downloads a direct mp4 URL byte for byte, so the recorded sha256 must equal the source's.
 */
import assert from 'node:assert/strict';
import { mkdir, open, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseHdtfAnnotations } from '../../src/prep/annotations.js';
import { type DownloadLedger, LEDGER_FILE, PARTIAL_DIR, classifyYtDlpError, downloadVideos, formatSelector, ytDlpArgs } from '../../src/prep/download.js';
import type { ClipSpec } from '../../src/media/types.js';
import type { ProgressEvent } from '../../src/util/events.js';
import { DifftalkError } from '../../src/util/errors.js';
import { runTool } from '../../src/util/exec.js';
import { sha256File } from '../../src/util/fs.js';
import { clearToolCache } from '../../src/util/tools.js';
import { AOC_CLIP, tmpDir } from '../helpers.js';
import { type MediaServer, startMediaServer, writeHdtfAnnotations } from './hdtf-fixture.js';

const AOC_BYTES = 2_257_667; // media/PROVENANCE.md

async function streams(file: string): Promise<string[]> {
  const r = await runTool('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_type,codec_name', '-of', 'json', file]);
  const j = JSON.parse(r.stdout.toString('utf8')) as { streams: { codec_type: string; codec_name: string }[] };
  return j.streams.map((s) => `${s.codec_type}:${s.codec_name}`).sort();
}

describe('downloadVideos (real yt-dlp, local server)', () => {
  let server: MediaServer;
  let clips: ClipSpec[];
  let dir: string;
  let aocHash: string;
  const events: ProgressEvent[] = [];

  before(async () => {
    aocHash = await sha256File(AOC_CLIP);
    server = await startMediaServer({
      '/aoc.mp4': { file: AOC_CLIP },
      '/resume.mp4': { file: AOC_CLIP },
      '/flaky.mp4': { status: 503, times: 1, then: { file: AOC_CLIP } },
      // '/gone.mp4' is not routed: 404
    });
    const root = tmpDir();
    const annotations = await writeHdtfAnnotations(path.join(root, 'hdtf'), [
      {
        subset: 'WDA',
        name: 'AlexandriaOcasioCortez',
        url: server.url('/aoc.mp4'),
        resolution: 512,
        clips: [{ start: '00:00', end: '00:08', crop: { x: 0, y: 0, w: 512, h: 512 } }],
      },
      {
        subset: 'WDA',
        name: 'Gone',
        url: server.url('/gone.mp4'),
        resolution: 720,
        clips: [{ start: '00:00', end: '00:05', crop: { x: 0, y: 0, w: 400, h: 400 } }],
      },
      {
        subset: 'WRA',
        name: 'Flaky0',
        url: server.url('/flaky.mp4'),
        resolution: 720,
        clips: [{ start: '00:00', end: '00:05', crop: { x: 0, y: 0, w: 400, h: 400 } }],
      },
      {
        subset: 'RD',
        name: 'Resume1',
        url: server.url('/resume.mp4'),
        resolution: 720,
        clips: [{ start: '00:00', end: '00:05', crop: { x: 0, y: 0, w: 400, h: 400 } }],
      },
    ]);
    clips = (await parseHdtfAnnotations(annotations)).clips;
    assert.equal(clips.filter((c) => !c.unusable).length, 4);
    dir = path.join(root, 'downloads');
    // A partial download left by an interrupted run: the first 1,000,000 bytes as yt-dlp's .part file.
    const partDir = path.join(dir, PARTIAL_DIR, 'RD_Resume1');
    await mkdir(partDir, { recursive: true });
    const fh = await open(AOC_CLIP, 'r');
    const head = Buffer.alloc(1_000_000);
    await fh.read(head, 0, head.length, 0);
    await fh.close();
    await writeFile(path.join(partDir, 'RD_Resume1.mp4.part'), head);
  });
  after(async () => server?.close());

  test('downloads with audio, hashes, records; a 404 is recorded as unavailable; transient 503 is retried', async () => {
    const results = await downloadVideos(clips, { dir, concurrency: 2, retries: 2, backoffMs: 50, onEvent: (e) => events.push(e) });
    assert.deepEqual([...results.keys()].sort(), ['RD_Resume1', 'WDA_AlexandriaOcasioCortez', 'WDA_Gone', 'WRA_Flaky0']);

    const aoc = results.get('WDA_AlexandriaOcasioCortez')!;
    assert.ok(aoc.ok, JSON.stringify(aoc));
    assert.equal(aoc.value.file, path.join(dir, 'WDA_AlexandriaOcasioCortez.mp4'));
    assert.equal(aoc.value.cached, false);
    assert.equal(aoc.value.attempts, 1);
    // Byte-identical to the served file (exact: sha256 and size).
    assert.equal(aoc.value.size, AOC_BYTES);
    assert.equal(aoc.value.sha256, aocHash);
    assert.equal(await sha256File(aoc.value.file), aocHash);
    assert.equal(aoc.value.format.extractor, 'generic');
    assert.deepEqual(await streams(aoc.value.file), ['audio:aac', 'video:mpeg4']);

    const gone = results.get('WDA_Gone')!;
    assert.ok(!gone.ok);
    assert.equal(gone.reason, 'video-unavailable');
    assert.match(gone.message, /HTTP Error 404/);
    assert.equal(server.gets('/gone.mp4'), 1, 'a 404 is not retried');

    const flaky = results.get('WRA_Flaky0')!;
    assert.ok(flaky.ok, JSON.stringify(flaky));
    assert.equal(flaky.value.attempts, 2, '503 once, then success');
    assert.equal(flaky.value.sha256, aocHash);
    assert.ok(events.some((e) => e.type === 'log' && e.level === 'warn' && /WRA_Flaky0: .*503.*retry 1\/2/.test(e.message)));

    // Resume: yt-dlp continued the .part file with a Range request from byte 1,000,000, and the result is exact.
    const resumed = results.get('RD_Resume1')!;
    assert.ok(resumed.ok, JSON.stringify(resumed));
    assert.equal(resumed.value.sha256, aocHash);
    assert.ok(
      server.requests.some((r) => r.path === '/resume.mp4' && r.range === 'bytes=1000000-'),
      JSON.stringify(server.requests),
    );
    await assert.rejects(stat(path.join(dir, PARTIAL_DIR, 'RD_Resume1')), 'work folder removed after success');
    await assert.rejects(stat(path.join(dir, PARTIAL_DIR, 'WDA_Gone')), 'work folder of an unavailable video removed');
    assert.ok(events.some((ev) => ev.type === 'progress' && ev.stage === 'download' && /^WDA_AlexandriaOcasioCortez 100% of 2\.3 MB$/.test(ev.detail ?? '')));

    const ledger = JSON.parse(await readFile(path.join(dir, LEDGER_FILE), 'utf8')) as DownloadLedger;
    assert.equal(ledger.version, 1);
    const e = ledger.videos['WDA_AlexandriaOcasioCortez']!;
    assert.equal(e.status, 'ok');
    assert.equal(e.file, 'WDA_AlexandriaOcasioCortez.mp4');
    assert.equal(e.sha256, aocHash);
    assert.equal(e.size, AOC_BYTES);
    assert.equal(e.requestedHeight, 512);
    assert.equal(e.format?.formatId, 'mp4');
    assert.match(e.ytDlpVersion ?? '', /^\d{4}\.\d{2}\.\d{2}/);
    assert.equal(ledger.videos['WDA_Gone']!.status, 'failed');
    assert.equal(ledger.videos['WDA_Gone']!.reason, 'video-unavailable');
    assert.match(ledger.videos['WDA_Gone']!.message!, /404/);

    const stages = events.filter((ev) => ev.type === 'stage-start' || ev.type === 'stage-done');
    assert.deepEqual(stages[0], { type: 'stage-start', stage: 'download', total: 4, unit: 'videos' });
    assert.equal(stages[1]?.type === 'stage-done' && stages[1].done, 4);
    assert.ok(events.some((ev) => ev.type === 'dropped' && ev.id === 'WDA_Gone' && ev.reason === 'video-unavailable'));
  });

  test('a second run reuses verified files and does not retry an unavailable video', async () => {
    const before = server.requests.length;
    const results = await downloadVideos(clips, { dir, concurrency: 2, retries: 2, backoffMs: 50, onEvent: () => {} });
    assert.equal(server.requests.length, before, 'no request at all');
    const aoc = results.get('WDA_AlexandriaOcasioCortez')!;
    assert.ok(aoc.ok && aoc.value.cached && aoc.value.attempts === 0);
    assert.equal(aoc.value.sha256, aocHash);
    const gone = results.get('WDA_Gone')!;
    assert.ok(!gone.ok && gone.reason === 'video-unavailable');
    assert.match(gone.message, /not retried without retryFailed/);
  });

  test('retryFailed tries an unavailable video again; a changed file is downloaded again', async () => {
    // Corrupt the recorded file (same size, one byte changed): the hash check must catch it.
    const file = path.join(dir, 'WRA_Flaky0.mp4');
    const fh = await open(file, 'r+');
    await fh.write(Buffer.from([0x00]), 0, 1, 100_000);
    await fh.close();
    const gets = server.gets('/gone.mp4');
    const results = await downloadVideos(clips, { dir, concurrency: 1, retries: 0, retryFailed: true, onEvent: () => {} });
    assert.equal(server.gets('/gone.mp4'), gets + 1);
    assert.ok(!results.get('WDA_Gone')!.ok);
    const flaky = results.get('WRA_Flaky0')!;
    assert.ok(flaky.ok && !flaky.value.cached);
    assert.equal(await sha256File(file), aocHash);
  });

  test('unsafe URLs are refused before yt-dlp runs; unusable clips are skipped', async () => {
    const d = tmpDir();
    const bad: ClipSpec[] = [
      { id: 'WDA_X_000', identity: 'X', subset: 'WDA', video: 'X', clipIndex: 0, url: 'file:///etc/passwd' },
      { id: 'WDA_Y_000', identity: 'Y', subset: 'WDA', video: 'Y', clipIndex: 0, url: '--exec=touch /tmp/pwned' },
      { id: 'WDA_Z_000', identity: 'Z', subset: 'WDA', video: '../z', clipIndex: 0, url: server.url('/aoc.mp4') },
      {
        id: 'WDA_U_000',
        identity: 'U',
        subset: 'WDA',
        video: 'U',
        clipIndex: 0,
        url: server.url('/aoc.mp4'),
        unusable: { reason: 'annotation-invalid', message: 'x' },
      },
    ];
    const before = server.requests.length;
    const results = await downloadVideos(bad, { dir: d, concurrency: 2, retries: 0, onEvent: () => {} });
    assert.equal(server.requests.length, before);
    assert.deepEqual([...results.keys()].sort(), ['WDA_../z', 'WDA_X', 'WDA_Y']);
    for (const r of results.values()) assert.ok(!r.ok && r.reason === 'unsafe-name');
  });

  test('an aborted run rejects without starting yt-dlp', async () => {
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    const before = server.requests.length;
    await assert.rejects(downloadVideos(clips, { dir: tmpDir(), concurrency: 1, retries: 0, onEvent: () => {}, signal: ac.signal }), /stop/);
    assert.equal(server.requests.length, before);
  });

  test('abort mid-download keeps the partial file; the next run resumes it to the exact bytes', async () => {
    const d = tmpDir();
    const slow: ClipSpec[] = [{ id: 'WDA_Slow_000', identity: 'Slow', subset: 'WDA', video: 'Slow', clipIndex: 0, url: server.url('/resume.mp4') }];
    server.stall('/resume.mp4', 800_000);
    const ac = new AbortController();
    const onEvent = (e: ProgressEvent) => {
      // The server stops after 800,000 of 2,257,667 bytes (35%); yt-dlp reads in doubling blocks, so 20% is the
      // last step it reports before the stall. Abort there, while yt-dlp waits on the connection.
      if (e.type === 'progress' && /^WDA_Slow 20%/.test(e.detail ?? '')) ac.abort(new Error('interrupted'));
    };
    await assert.rejects(downloadVideos(slow, { dir: d, concurrency: 1, retries: 0, onEvent, signal: ac.signal }), /interrupted/);
    const part = path.join(d, PARTIAL_DIR, 'WDA_Slow', 'WDA_Slow.mp4.part');
    const partSize = (await stat(part)).size;
    assert.ok(partSize > 0 && partSize <= 800_000, String(partSize));
    server.stall('/resume.mp4', undefined);
    const results = await downloadVideos(slow, { dir: d, concurrency: 1, retries: 0, onEvent: () => {} });
    const r = results.get('WDA_Slow')!;
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.value.sha256, aocHash);
    assert.ok(
      server.requests.some((q) => q.path === '/resume.mp4' && q.range === `bytes=${partSize}-`),
      `no Range request from ${partSize}`,
    );
  });

  // Before: downloads had no size cap (no --max-filesize, no check of the result).
  test('a video larger than the download cap is refused with a clear reason and nothing is kept', async () => {
    const d = tmpDir();
    const big: ClipSpec[] = [{ id: 'WDA_Big_000', identity: 'Big', subset: 'WDA', video: 'Big', clipIndex: 0, url: server.url('/aoc.mp4') }];
    const results = await downloadVideos(big, { dir: d, concurrency: 1, retries: 0, onEvent: () => {}, maxBytes: AOC_BYTES - 1 });
    const r = results.get('WDA_Big')!;
    assert.ok(!r.ok && r.reason === 'download-failed' && /download cap of 2257666 bytes/.test(r.message), JSON.stringify(r));
    await assert.rejects(stat(path.join(d, 'WDA_Big.mp4')));
    // At the file's exact size it is accepted, byte for byte.
    const ok = (await downloadVideos(big, { dir: tmpDir(), concurrency: 1, retries: 0, onEvent: () => {}, maxBytes: AOC_BYTES })).get('WDA_Big')!;
    assert.ok(ok.ok && ok.value.sha256 === aocHash, JSON.stringify(ok));
  });

  test('a missing yt-dlp is one clear error for the run', async () => {
    const saved = process.env.YTDLP_PATH;
    process.env.YTDLP_PATH = path.join(tmpDir(), 'no-such-yt-dlp');
    clearToolCache();
    try {
      await assert.rejects(
        downloadVideos(clips.slice(0, 1), { dir: tmpDir(), concurrency: 1, retries: 0, onEvent: () => {} }),
        (e) => e instanceof DifftalkError && e.code === 'tool-missing' && /YTDLP_PATH/.test(e.message),
      );
    } finally {
      if (saved === undefined) delete process.env.YTDLP_PATH;
      else process.env.YTDLP_PATH = saved;
      clearToolCache();
    }
  });

  test('argument list: URL after --, output inside the work folder, height-first format selection', () => {
    const args = ytDlpArgs({ key: 'WDA_A', url: 'https://www.youtube.com/watch?v=abcdefghijk', requestedHeight: 720, clipIds: [] }, '/d/100%/.partial/WDA_A');
    assert.deepEqual(args.slice(-2), ['--', 'https://www.youtube.com/watch?v=abcdefghijk']);
    assert.equal(args[args.indexOf('-o') + 1], '/d/100%%/.partial/WDA_A/WDA_A.%(ext)s');
    assert.equal(args[args.indexOf('-f') + 1], 'bv*[height=720]+ba/b[height=720]/bv*+ba/b');
    assert.ok(args.includes('--no-playlist') && args.includes('--continue') && args.includes('--ignore-config'));
    assert.equal(formatSelector(undefined), 'bv*+ba/b');
    assert.ok(Number(args[args.indexOf('--max-filesize') + 1]) > 0, 'a download size cap is always passed');
  });

  test('error classification', () => {
    const c = (s: string) => classifyYtDlpError(s);
    assert.deepEqual(c('ERROR: [youtube] abc: Private video. Sign in if you have been granted access'), {
      reason: 'video-unavailable',
      transient: false,
      message: '[youtube] abc: Private video. Sign in if you have been granted access',
    });
    assert.equal(c('ERROR: [youtube] abc: Video unavailable. This video has been removed by the uploader').reason, 'video-unavailable');
    assert.equal(
      c('ERROR: [generic] None: Unable to download webpage: HTTP Error 404: Not Found (caused by <HTTPError 404>); please report this issue on ...').message,
      '[generic] None: Unable to download webpage: HTTP Error 404: Not Found',
    );
    assert.deepEqual(c('ERROR: Unable to download webpage: HTTP Error 503: Service Unavailable').transient, true);
    assert.equal(c('ERROR: unable to download video data: <urlopen error [Errno -3] Temporary failure in name resolution>').transient, true);
    assert.deepEqual(c('ERROR: Postprocessing: Conversion failed!'), {
      reason: 'download-failed',
      transient: false,
      message: 'Postprocessing: Conversion failed!',
    });
  });
});
