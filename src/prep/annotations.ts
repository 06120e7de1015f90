/**
 * annotations: prep stage 1 (manifest). Parses the 15 HDTF annotation files (`{RD,WDA,WRA}_{video_url,resolution,
 * annotion_time,crop_wh,crop_ratio}.txt`) exactly as upstream ships them into one ClipSpec per clip row.
 * Rows that cannot be prepared are kept, marked `unusable` with a drop reason; every oddity of the files is listed in
 * `issues` (file + 1-based line) and, when it concerns a clip, in that clip's `notes`. Nothing here touches the network.
 * See ../shared/docs/hdtf-annotations.md for the formats and docs/commands/prep-hdtf.md for the behaviour.
 */
import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DifftalkError, errorMessage } from '../util/errors.js';
import { sha256 } from '../util/fs.js';
import { unsafeNameReason, unsafeUrlReason } from '../util/names.js';
import type { ClipSpec } from '../media/types.js';
import type { DropReason } from '../util/result.js';

export type HdtfSubset = 'RD' | 'WDA' | 'WRA';
export const HDTF_SUBSETS: readonly HdtfSubset[] = ['RD', 'WDA', 'WRA'];
export const HDTF_FILE_KINDS = ['video_url', 'resolution', 'annotion_time', 'crop_wh', 'crop_ratio'] as const;
export type HdtfFileKind = (typeof HDTF_FILE_KINDS)[number];

/** Frame heights tried, smallest first, when a video's listed resolution is unusable (e.g. KevinMcCarthy1 = 0). */
export const STANDARD_HEIGHTS = [360, 480, 720, 1080, 1440, 2160] as const;

export type AnnotationIssueCode =
  | 'bom' // file starts with a UTF-8 byte-order mark (removed)
  | 'crlf' // CR LF line endings (CR removed)
  | 'no-final-newline' // last line not terminated
  | 'blank-line' // an empty line inside the file (ignored)
  | 'trailing-space' // whitespace at the end (or start) of a line (ignored)
  | 'bad-encoding' // bytes that are not valid UTF-8
  | 'malformed-line' // wrong number of fields / unparseable numbers: the line is ignored
  | 'duplicate-key' // a key seen before in the same file: the first line wins
  | 'missing-mp4-suffix' // `name` where `name.mp4` was expected (accepted)
  | 'url-extra-params' // extra query parameters (e.g. &t=6s) beside v= (ignored)
  | 'not-youtube' // an http(s) URL that is not YouTube (downloaded with yt-dlp's extractors as is)
  | 'unsafe-name' // a name or URL that could escape the output folder or inject options
  | 'no-time-stamps' // a video with a URL but no time-stamp line: no clips
  | 'no-url' // a video with time stamps but no URL
  | 'no-resolution' // a video with time stamps but no resolution line
  | 'resolution-invalid' // resolution 0 / not a positive integer
  | 'time-invalid' // a clip interval that does not parse or ends before it starts
  | 'no-crop-box' // a clip without a crop_wh line
  | 'no-crop-ratio' // a clip without a crop_ratio line
  | 'box-invalid' // a crop box with zero/negative size
  | 'box-non-square' // w != h
  | 'box-outside-frame' // the box does not fit a 16:9 frame of the listed height (the cut stage clamps)
  | 'orphan-key'; // a crop_wh/crop_ratio/resolution key with no matching time-stamp clip

export interface AnnotationIssue {
  /** File name inside the annotation folder, e.g. `WDA_video_url.txt`. */
  file: string;
  /** 1-based line number; 0 = the file as a whole. */
  line: number;
  /** quirk: handled, nothing lost; error: a line or clip could not be used. */
  severity: 'quirk' | 'error';
  code: AnnotationIssueCode;
  message: string;
  /** Clip ids the issue affects (when it concerns clips). */
  clips?: string[];
}

export interface HdtfSummary {
  /** Clip rows (intervals in the time-stamp files of the selected subsets). */
  rows: number;
  usable: number;
  unusable: number;
  videos: number;
  bySubset: Partial<Record<HdtfSubset, { videos: number; rows: number; usable: number }>>;
  /** Unusable rows by drop reason. */
  byReason: Partial<Record<DropReason, number>>;
  /** Issues by code (quirks and errors). */
  byIssue: Partial<Record<AnnotationIssueCode, number>>;
}

export interface HdtfManifest {
  dir: string;
  subsets: HdtfSubset[];
  /** One per clip row, in subset order (RD, WDA, WRA) and time-file order; unusable rows included. */
  clips: ClipSpec[];
  issues: AnnotationIssue[];
  summary: HdtfSummary;
}

export interface ParseHdtfOptions {
  subsets?: HdtfSubset[];
}

/** `WDA_AdamSchiff_000`: the common HDTF clip naming (universome download.py; DiffTalk's train_name.txt). */
export function hdtfClipId(subset: HdtfSubset, video: string, clipIndex: number): string {
  return `${subset}_${video}_${String(clipIndex).padStart(3, '0')}`;
}

/**
 * Identity key for identity-disjoint splits: the video name without trailing digits (`JoeCrowley0` → `JoeCrowley`).
 * RD videos are named `Radio1`…`Radio56` with nothing but the number to tell them apart, so an RD video is its own
 * identity (stripping would merge all 56 into one "Radio").
 */
export function hdtfIdentity(subset: HdtfSubset, video: string): string {
  if (subset === 'RD') return video;
  const stripped = video.replace(/\d+$/, '');
  return stripped.length > 0 ? stripped : video;
}

const YOUTUBE_ID_RE = /^[A-Za-z0-9_-]{11}$/;
const YOUTUBE_HOSTS = new Set(['youtube.com', 'www.youtube.com', 'm.youtube.com', 'music.youtube.com', 'youtube-nocookie.com', 'www.youtube-nocookie.com']);

export interface ParsedVideoUrl {
  /** The URL to download: `https://www.youtube.com/watch?v=<id>` for YouTube, the given URL otherwise. */
  url: string;
  youtubeId?: string;
  /** Query parameters other than v= on a YouTube watch URL (ignored). */
  extraParams: string[];
}

/**
 * Parse an annotation URL. YouTube (`watch?v=`, `youtu.be/`, `/shorts/`, `/embed/`, `/live/`): the id comes from the
 * v= parameter, never from "the text after v=". Other http(s) URLs are accepted as they are (no youtubeId).
 * Throws DifftalkError('unsafe-name') for non-http(s) schemes or URLs that could be read as options,
 * DifftalkError('annotation-invalid') for a YouTube URL without a valid id.
 */
export function parseVideoUrl(raw: string): ParsedVideoUrl {
  const unsafe = unsafeUrlReason(raw);
  if (unsafe) throw new DifftalkError('unsafe-name', `URL ${JSON.stringify(raw)}: ${unsafe}`);
  const u = new URL(raw);
  const host = u.hostname.toLowerCase();
  let id: string | null = null;
  const extraParams: string[] = [];
  if (YOUTUBE_HOSTS.has(host)) {
    const seg = u.pathname.split('/').filter(Boolean);
    if (seg[0] === 'watch') {
      id = u.searchParams.get('v');
      for (const [k, v] of u.searchParams) if (k !== 'v') extraParams.push(`${k}=${v}`);
    } else if (['shorts', 'embed', 'live', 'v'].includes(seg[0] ?? '')) id = seg[1] ?? null;
  } else if (host === 'youtu.be') {
    id = u.pathname.split('/').filter(Boolean)[0] ?? null;
    for (const [k, v] of u.searchParams) extraParams.push(`${k}=${v}`);
  } else {
    return { url: raw, extraParams };
  }
  if (!id || !YOUTUBE_ID_RE.test(id)) {
    throw new DifftalkError('annotation-invalid', `YouTube URL ${JSON.stringify(raw)} has no valid video id`);
  }
  return { url: `https://www.youtube.com/watch?v=${id}`, youtubeId: id, extraParams };
}

/** `MM:SS` or `H:MM:SS` → seconds; undefined when malformed. */
export function parseTimestamp(s: string): number | undefined {
  const m = /^(?:(\d+):)?(\d+):(\d{2})$/.exec(s);
  if (!m) return undefined;
  const h = m[1] === undefined ? 0 : Number(m[1]);
  const min = Number(m[2]);
  const sec = Number(m[3]);
  if (sec >= 60 || (m[1] !== undefined && min >= 60)) return undefined;
  return h * 3600 + min * 60 + sec;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading one file into tokenised lines, recording file-level quirks.

interface Line {
  line: number;
  tokens: string[];
  text: string;
}

class IssueLog {
  readonly issues: AnnotationIssue[] = [];
  add(file: string, line: number, severity: 'quirk' | 'error', code: AnnotationIssueCode, message: string, clips?: string[]): AnnotationIssue {
    const issue: AnnotationIssue = { file, line, severity, code, message };
    if (clips && clips.length > 0) issue.clips = clips;
    this.issues.push(issue);
    return issue;
  }
}

async function readLines(file: string, log: IssueLog): Promise<{ lines: Line[]; bomLine?: number }> {
  const name = path.basename(file);
  let buf: Buffer;
  try {
    buf = await readFile(file);
  } catch (e) {
    throw new DifftalkError('annotation-missing', `cannot read ${file}: ${errorMessage(e)}`, {
      suggestion: 'point --hdtf at the folder holding all 15 HDTF files, or select the subsets you have with --subset',
    });
  }
  let text = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(buf);
  let bomLine: number | undefined;
  if (text.startsWith('\ufeff')) {
    text = text.slice(1);
    bomLine = 1;
    log.add(name, 1, 'quirk', 'bom', 'file starts with a UTF-8 byte-order mark (removed before parsing)');
  }
  if (text.includes('\ufffd')) log.add(name, 0, 'quirk', 'bad-encoding', 'file contains bytes that are not valid UTF-8');
  if (text.includes('\r')) {
    log.add(name, 0, 'quirk', 'crlf', 'file has CR (Windows) line endings (removed)');
    text = text.replace(/\r\n?/g, '\n');
  }
  const raw = text.split('\n');
  if (raw.length > 0 && raw[raw.length - 1] === '') raw.pop();
  else if (raw.length > 0) log.add(name, raw.length, 'quirk', 'no-final-newline', 'last line has no final newline');
  const lines: Line[] = [];
  raw.forEach((t, i) => {
    const n = i + 1;
    if (t.trim() === '') {
      log.add(name, n, 'quirk', 'blank-line', 'empty line (ignored)');
      return;
    }
    if (/^\s|\s$/.test(t)) log.add(name, n, 'quirk', 'trailing-space', 'line has leading/trailing whitespace (ignored)');
    lines.push({ line: n, tokens: t.trim().split(/\s+/), text: t });
  });
  return { lines, bomLine };
}

/** Strip `.mp4` from a key; records a quirk when it is missing. */
function stripMp4(key: string, file: string, line: number, log: IssueLog): string {
  if (key.endsWith('.mp4')) return key.slice(0, -4);
  log.add(file, line, 'quirk', 'missing-mp4-suffix', `key ${JSON.stringify(key)} has no .mp4 suffix (accepted)`);
  return key;
}

interface Entry<T> {
  value: T;
  line: number;
  notes: string[];
}

/** Insert unless the key was seen before (then a duplicate-key error; the first line wins). */
function put<T>(map: Map<string, Entry<T>>, key: string, entry: Entry<T>, file: string, log: IssueLog): void {
  const prev = map.get(key);
  if (prev) {
    log.add(file, entry.line, 'error', 'duplicate-key', `${JSON.stringify(key)} already given on line ${prev.line} (this line is ignored)`);
    return;
  }
  map.set(key, entry);
}

const INT_RE = /^-?\d+$/;
const NUM_RE = /^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

interface CropWh {
  x: number;
  y: number;
  w: number;
  h: number;
}

interface SubsetTables {
  urls: Map<string, Entry<string>>;
  resolutions: Map<string, Entry<string>>;
  times: Map<string, Entry<string[]>>;
  timeOrder: string[];
  cropWh: Map<string, Entry<CropWh>>;
  cropRatio: Map<string, Entry<number>>;
  /** Clip keys whose crop line exists but is malformed (for a precise message). */
  malformedCrop: Map<string, number>;
  malformedRatio: Map<string, number>;
  files: Record<HdtfFileKind, string>;
}

const trailingNote = (file: string, line: number, text: string): string[] => (/\s$/.test(text) ? [`${file} line ${line} ends with whitespace (ignored)`] : []);

async function readSubset(dir: string, subset: HdtfSubset, log: IssueLog): Promise<SubsetTables> {
  const files = Object.fromEntries(HDTF_FILE_KINDS.map((k) => [k, `${subset}_${k}.txt`])) as Record<HdtfFileKind, string>;
  const missing: string[] = [];
  for (const f of Object.values(files)) {
    try {
      await access(path.join(dir, f), constants.R_OK);
    } catch {
      missing.push(f);
    }
  }
  if (missing.length > 0) {
    throw new DifftalkError('annotation-missing', `${dir} lacks ${missing.join(', ')} (subset ${subset})`, {
      suggestion: `point --hdtf at the folder holding the HDTF annotation files, or leave ${subset} out with --subset`,
    });
  }
  const t: SubsetTables = {
    urls: new Map(),
    resolutions: new Map(),
    times: new Map(),
    timeOrder: [],
    cropWh: new Map(),
    cropRatio: new Map(),
    malformedCrop: new Map(),
    malformedRatio: new Map(),
    files,
  };

  // video_url: `name URL`
  {
    const f = files.video_url;
    const { lines, bomLine } = await readLines(path.join(dir, f), log);
    for (const l of lines) {
      if (l.tokens.length !== 2) {
        log.add(f, l.line, 'error', 'malformed-line', `expected "name URL", got ${l.tokens.length} field(s): ${JSON.stringify(l.text)}`);
        continue;
      }
      const notes = trailingNote(f, l.line, l.text);
      if (l.line === bomLine) notes.push(`${f} line 1 starts with a UTF-8 byte-order mark (removed)`);
      put(t.urls, l.tokens[0]!, { value: l.tokens[1]!, line: l.line, notes }, f, log);
    }
  }
  // resolution: `name.mp4 H`
  {
    const f = files.resolution;
    const { lines } = await readLines(path.join(dir, f), log);
    for (const l of lines) {
      if (l.tokens.length !== 2) {
        log.add(f, l.line, 'error', 'malformed-line', `expected "name.mp4 height", got ${l.tokens.length} field(s): ${JSON.stringify(l.text)}`);
        continue;
      }
      const name = stripMp4(l.tokens[0]!, f, l.line, log);
      put(t.resolutions, name, { value: l.tokens[1]!, line: l.line, notes: trailingNote(f, l.line, l.text) }, f, log);
    }
  }
  // annotion_time: `name.mp4 MM:SS-MM:SS ...`
  {
    const f = files.annotion_time;
    const { lines } = await readLines(path.join(dir, f), log);
    for (const l of lines) {
      if (l.tokens.length < 2) {
        log.add(f, l.line, 'error', 'malformed-line', `expected "name.mp4 MM:SS-MM:SS ...", got ${JSON.stringify(l.text)}`);
        continue;
      }
      const name = stripMp4(l.tokens[0]!, f, l.line, log);
      const before = t.times.size;
      put(t.times, name, { value: l.tokens.slice(1), line: l.line, notes: trailingNote(f, l.line, l.text) }, f, log);
      if (t.times.size > before) t.timeOrder.push(name);
    }
  }
  // crop_wh: `name_i.mp4 x w y h`
  {
    const f = files.crop_wh;
    const { lines } = await readLines(path.join(dir, f), log);
    for (const l of lines) {
      const key = l.tokens[0]!;
      const k = stripMp4(key, f, l.line, log);
      const nums = l.tokens.slice(1);
      if (nums.length !== 4 || !nums.every((s) => INT_RE.test(s))) {
        t.malformedCrop.set(k, l.line);
        log.add(f, l.line, 'error', 'malformed-line', `expected "name_i.mp4 x w y h" (integers), got ${JSON.stringify(l.text)}`);
        continue;
      }
      const [x, w, y, h] = nums.map(Number) as [number, number, number, number];
      put(t.cropWh, k, { value: { x, y, w, h }, line: l.line, notes: trailingNote(f, l.line, l.text) }, f, log);
    }
  }
  // crop_ratio: `name_i.mp4 r`
  {
    const f = files.crop_ratio;
    const { lines } = await readLines(path.join(dir, f), log);
    for (const l of lines) {
      const k = stripMp4(l.tokens[0]!, f, l.line, log);
      const v = l.tokens[1];
      if (l.tokens.length !== 2 || v === undefined || !NUM_RE.test(v) || !(Number(v) > 0)) {
        t.malformedRatio.set(k, l.line);
        log.add(f, l.line, 'error', 'malformed-line', `expected "name_i.mp4 ratio" (a positive number), got ${JSON.stringify(l.text)}`);
        continue;
      }
      put(t.cropRatio, k, { value: Number(v), line: l.line, notes: trailingNote(f, l.line, l.text) }, f, log);
    }
  }
  return t;
}

/** Does a box fit inside a 16:9 frame `height` pixels tall? */
function fitsFrame(b: CropWh, height: number): boolean {
  const width = Math.round((height * 16) / 9);
  return b.x >= 0 && b.y >= 0 && b.x + b.w <= width && b.y + b.h <= height;
}

function buildSubset(subset: HdtfSubset, t: SubsetTables, log: IssueLog): ClipSpec[] {
  const clips: ClipSpec[] = [];
  const F = t.files;
  const usedCropKeys = new Set<string>();

  // Videos with a URL (or resolution) but no time-stamp line: nothing to cut.
  for (const [name, e] of t.urls) {
    if (!t.times.has(name)) log.add(F.video_url, e.line, 'quirk', 'no-time-stamps', `${name} has a URL but no line in ${F.annotion_time}: no clips`);
  }
  for (const [name, e] of t.resolutions) {
    if (!t.times.has(name) && !t.urls.has(name))
      log.add(F.resolution, e.line, 'quirk', 'orphan-key', `${name} has a resolution but neither a URL nor time stamps`);
  }

  for (const video of t.timeOrder) {
    const time = t.times.get(video)!;
    const nameProblem = unsafeNameReason(video);
    // An unsafe name never reaches a path: the id is derived from a hash of it.
    const idBase = nameProblem ? `unsafe-${sha256(video).slice(0, 12)}` : video;
    const ids = time.value.map((_, i) => hdtfClipId(subset, idBase, i));

    // Video-level facts shared by its clips.
    const videoErrors: { reason: DropReason; message: string }[] = [];
    const videoNotes: string[] = [...time.notes];
    if (nameProblem) {
      videoErrors.push({ reason: 'unsafe-name', message: `video name ${JSON.stringify(video)}: ${nameProblem}` });
      log.add(F.annotion_time, time.line, 'error', 'unsafe-name', `video name ${JSON.stringify(video)}: ${nameProblem}`, ids);
    }

    let url: string | undefined;
    let youtubeId: string | undefined;
    const urlEntry = t.urls.get(video);
    if (!urlEntry) {
      videoErrors.push({ reason: 'annotation-invalid', message: `no URL for ${video} in ${F.video_url}` });
      log.add(F.annotion_time, time.line, 'error', 'no-url', `${video} has time stamps but no URL in ${F.video_url}`, ids);
    } else {
      videoNotes.push(...urlEntry.notes);
      try {
        const p = parseVideoUrl(urlEntry.value);
        url = p.url;
        youtubeId = p.youtubeId;
        if (p.extraParams.length > 0) {
          const msg = `URL has extra parameters ${p.extraParams.join('&')} (ignored; the video id comes from v=)`;
          videoNotes.push(`${F.video_url} line ${urlEntry.line}: ${msg}`);
          log.add(F.video_url, urlEntry.line, 'quirk', 'url-extra-params', `${video}: ${msg}`, ids);
        }
        if (!youtubeId) {
          videoNotes.push(`not a YouTube URL; downloaded as given`);
          log.add(F.video_url, urlEntry.line, 'quirk', 'not-youtube', `${video}: ${urlEntry.value} is not a YouTube URL (downloaded as given)`, ids);
        }
      } catch (e) {
        const code = e instanceof DifftalkError && e.code === 'unsafe-name' ? 'unsafe-name' : 'annotation-invalid';
        videoErrors.push({ reason: code, message: `${F.video_url} line ${urlEntry.line}: ${errorMessage(e)}` });
        log.add(F.video_url, urlEntry.line, 'error', code === 'unsafe-name' ? 'unsafe-name' : 'malformed-line', `${video}: ${errorMessage(e)}`, ids);
      }
    }

    const resEntry = t.resolutions.get(video);
    let height: number | undefined;
    let resolutionBad: string | undefined;
    if (!resEntry) {
      resolutionBad = `no resolution for ${video} in ${F.resolution}`;
      log.add(F.annotion_time, time.line, 'error', 'no-resolution', `${video} has no line in ${F.resolution}`, ids);
    } else {
      videoNotes.push(...resEntry.notes);
      const v = resEntry.value;
      if (INT_RE.test(v) && Number(v) > 0) height = Number(v);
      else {
        resolutionBad = `${F.resolution} line ${resEntry.line}: resolution ${JSON.stringify(v)} is not a positive height`;
        log.add(F.resolution, resEntry.line, 'quirk', 'resolution-invalid', `${video}: resolution ${JSON.stringify(v)} is not a positive height`, ids);
      }
    }

    time.value.forEach((interval, clipIndex) => {
      const id = ids[clipIndex]!;
      const key = `${video}_${clipIndex}`;
      usedCropKeys.add(key);
      const errors = [...videoErrors];
      const notes = [...videoNotes];
      const clip: ClipSpec = {
        id,
        identity: nameProblem ? idBase : hdtfIdentity(subset, video),
        subset,
        video,
        clipIndex,
      };
      if (youtubeId) clip.youtubeId = youtubeId;
      if (url) clip.url = url;

      // Time range.
      const parts = interval.split('-');
      const start = parts.length === 2 ? parseTimestamp(parts[0]!) : undefined;
      const end = parts.length === 2 ? parseTimestamp(parts[1]!) : undefined;
      if (start === undefined || end === undefined || end <= start) {
        const why = start === undefined || end === undefined ? 'is not MM:SS-MM:SS' : 'ends before it starts';
        errors.push({
          reason: 'annotation-invalid',
          message: `${F.annotion_time} line ${time.line}: clip ${clipIndex} interval ${JSON.stringify(interval)} ${why}`,
        });
        log.add(F.annotion_time, time.line, 'error', 'time-invalid', `${video} clip ${clipIndex}: interval ${JSON.stringify(interval)} ${why}`, [id]);
      } else {
        clip.startS = start;
        clip.endS = end;
      }

      // Crop box and its reference height.
      const box = t.cropWh.get(key);
      if (!box) {
        const bad = t.malformedCrop.get(key);
        const msg = bad ? `${F.crop_wh} line ${bad} for ${key} is malformed` : `no crop box for ${key} in ${F.crop_wh}`;
        errors.push({ reason: 'annotation-invalid', message: msg });
        if (!bad)
          log.add(F.annotion_time, time.line, 'error', 'no-crop-box', `${key}: no line in ${F.crop_wh}, so no crop box (clip not usable, as in download.py)`, [
            id,
          ]);
      } else {
        notes.push(...box.notes);
        const b = box.value;
        let refHeight = height;
        if (b.w <= 0 || b.h <= 0) {
          errors.push({ reason: 'annotation-invalid', message: `${F.crop_wh} line ${box.line}: box ${b.w}x${b.h} has no area` });
          log.add(F.crop_wh, box.line, 'error', 'box-invalid', `${key}: box ${b.w}x${b.h} has no area`, [id]);
        } else {
          if (refHeight === undefined && resolutionBad && resEntry) {
            // Resolution 0 (KevinMcCarthy1): the box is in pixels of some frame; take the smallest standard 16:9 height
            // that holds it. The cut stage scales the box from this height to the downloaded video's height.
            const inferred = STANDARD_HEIGHTS.find((hh) => fitsFrame(b, hh));
            if (inferred !== undefined) {
              refHeight = inferred;
              notes.push(`${resolutionBad}; reference height ${inferred} inferred as the smallest standard 16:9 frame holding the box`);
            }
          }
          if (refHeight === undefined) {
            errors.push({ reason: 'annotation-invalid', message: resolutionBad ?? `no usable resolution for ${video}` });
          } else {
            clip.crop = { x: b.x, y: b.y, w: b.w, h: b.h, refHeight };
            if (b.w !== b.h) {
              notes.push(`crop box is not square (${b.w}x${b.h})`);
              log.add(F.crop_wh, box.line, 'quirk', 'box-non-square', `${key}: box ${b.w}x${b.h} is not square`, [id]);
            }
            if (!fitsFrame(b, refHeight)) {
              const W = Math.round((refHeight * 16) / 9);
              const msg = `crop box x=${b.x} y=${b.y} w=${b.w} h=${b.h} exceeds a ${W}x${refHeight} frame (clamped when cut)`;
              notes.push(msg);
              log.add(F.crop_wh, box.line, 'quirk', 'box-outside-frame', `${key}: ${msg}`, [id]);
            }
          }
        }
      }
      const ratio = t.cropRatio.get(key);
      if (ratio) clip.cropRatio = ratio.value;
      else {
        const bad = t.malformedRatio.get(key);
        notes.push(bad ? `${F.crop_ratio} line ${bad} is malformed; no crop ratio` : `no crop ratio in ${F.crop_ratio}`);
        if (!bad) log.add(F.annotion_time, time.line, 'quirk', 'no-crop-ratio', `${key}: no line in ${F.crop_ratio}`, [id]);
      }

      if (errors.length > 0) {
        const first = errors.find((e) => e.reason === 'unsafe-name') ?? errors[0]!;
        clip.unusable = { reason: first.reason, message: [...new Set(errors.map((e) => e.message))].join('; ') };
      }
      if (notes.length > 0) clip.notes = notes;
      clips.push(clip);
    });
  }

  for (const [key, e] of t.cropWh) {
    if (!usedCropKeys.has(key)) log.add(F.crop_wh, e.line, 'error', 'orphan-key', `${key} matches no clip in ${F.annotion_time} (ignored)`);
  }
  for (const [key, e] of t.cropRatio) {
    if (!usedCropKeys.has(key)) log.add(F.crop_ratio, e.line, 'error', 'orphan-key', `${key} matches no clip in ${F.annotion_time} (ignored)`);
  }
  return clips;
}

/**
 * Parse the HDTF annotation folder into a manifest: one ClipSpec per clip row (unusable rows kept with a reason),
 * every file quirk as an issue. Throws DifftalkError('annotation-missing') when a file of a selected subset is absent,
 * DifftalkError('invalid-subset') for an unknown subset.
 */
export async function parseHdtfAnnotations(dir: string, opts: ParseHdtfOptions = {}): Promise<HdtfManifest> {
  if (dir === BUILTIN_HDTF_MANIFEST) return loadBuiltinHdtfManifest(opts);
  const subsets = opts.subsets ?? [...HDTF_SUBSETS];
  for (const s of subsets) {
    if (!HDTF_SUBSETS.includes(s)) {
      throw new DifftalkError('invalid-subset', `unknown HDTF subset ${JSON.stringify(s)}`, { suggestion: 'use RD, WDA and/or WRA' });
    }
  }
  const unique = HDTF_SUBSETS.filter((s) => subsets.includes(s));
  const log = new IssueLog();
  const clips: ClipSpec[] = [];
  const summary: HdtfSummary = { rows: 0, usable: 0, unusable: 0, videos: 0, bySubset: {}, byReason: {}, byIssue: {} };
  for (const subset of unique) {
    const tables = await readSubset(dir, subset, log);
    const sub = buildSubset(subset, tables, log);
    const usable = sub.filter((c) => !c.unusable).length;
    summary.bySubset[subset] = { videos: tables.timeOrder.length, rows: sub.length, usable };
    summary.videos += tables.timeOrder.length;
    clips.push(...sub);
  }
  for (const c of clips) {
    summary.rows++;
    if (c.unusable) {
      summary.unusable++;
      summary.byReason[c.unusable.reason] = (summary.byReason[c.unusable.reason] ?? 0) + 1;
    } else summary.usable++;
  }
  for (const i of log.issues) summary.byIssue[i.code] = (summary.byIssue[i.code] ?? 0) + 1;
  return { dir, subsets: unique, clips, issues: log.issues, summary };
}

/** The HDTF clip manifest shipped in manifests/ (built by scripts/build-hdtf-manifest.ts with parseHdtfAnnotations). */
export const BUILTIN_HDTF_MANIFEST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'manifests', 'hdtf-clips.json');
export const BUILTIN_HDTF_FORMAT = 'difftalk-hdtf-clips/1';

export interface BuiltinHdtfManifest {
  format: typeof BUILTIN_HDTF_FORMAT;
  generator: string;
  upstream: { repository: string; commit: string; path: string };
  licence: { name: string; url: string; statement: string; attribution: string };
  sources: { file: string; bytes: number; sha256: string }[];
  subsets: Partial<Record<HdtfSubset, { clips: ClipSpec[]; issues: AnnotationIssue[]; summary: HdtfSummary }>>;
}

const SAFE_CLIP_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** The shipped manifest (parseHdtfAnnotations(BUILTIN_HDTF_MANIFEST)): the selected subsets' clips, issues and summary. */
async function loadBuiltinHdtfManifest(opts: ParseHdtfOptions): Promise<HdtfManifest> {
  const file = BUILTIN_HDTF_MANIFEST;
  let m: BuiltinHdtfManifest;
  try {
    m = JSON.parse(await readFile(file, 'utf8')) as BuiltinHdtfManifest;
  } catch (e) {
    throw new DifftalkError('annotation-missing', `the shipped HDTF manifest ${file} cannot be read: ${errorMessage(e)}`, {
      suggestion: 'reinstall difftalk, or give the folder of the 15 HDTF annotation files: --hdtf <folder>',
    });
  }
  if (m?.format !== BUILTIN_HDTF_FORMAT || typeof m.subsets !== 'object' || m.subsets === null) {
    throw new DifftalkError('annotation-missing', `${file} is not a ${BUILTIN_HDTF_FORMAT} manifest`, {
      suggestion: 'run scripts/build-hdtf-manifest.ts again',
    });
  }
  const subsets = opts.subsets ?? [...HDTF_SUBSETS];
  for (const s of subsets) {
    if (!HDTF_SUBSETS.includes(s))
      throw new DifftalkError('invalid-subset', `unknown HDTF subset ${JSON.stringify(s)}`, { suggestion: 'use RD, WDA and/or WRA' });
  }
  const unique = HDTF_SUBSETS.filter((s) => subsets.includes(s));
  const clips: ClipSpec[] = [];
  const issues: AnnotationIssue[] = [];
  const summary: HdtfSummary = { rows: 0, usable: 0, unusable: 0, videos: 0, bySubset: {}, byReason: {}, byIssue: {} };
  const add = <K extends string>(into: Partial<Record<K, number>>, from: Partial<Record<K, number>>) => {
    for (const [k, v] of Object.entries(from) as [K, number][]) into[k] = (into[k] ?? 0) + v;
  };
  for (const subset of unique) {
    const part = m.subsets[subset];
    if (!part || !Array.isArray(part.clips) || !Array.isArray(part.issues)) {
      throw new DifftalkError('annotation-missing', `${file} lacks subset ${subset}`, { suggestion: 'run scripts/build-hdtf-manifest.ts again' });
    }
    for (const c of part.clips) {
      if (typeof c?.id !== 'string' || !SAFE_CLIP_ID.test(c.id) || c.subset !== subset) {
        throw new DifftalkError('annotation-missing', `${file}: clip ${JSON.stringify(c?.id)} of ${subset} is malformed`, {
          suggestion: 'run scripts/build-hdtf-manifest.ts again',
        });
      }
    }
    clips.push(...part.clips);
    issues.push(...part.issues);
    const s = part.summary;
    summary.rows += s.rows;
    summary.usable += s.usable;
    summary.unusable += s.unusable;
    summary.videos += s.videos;
    summary.bySubset[subset] = s.bySubset[subset];
    add(summary.byReason, s.byReason);
    add(summary.byIssue, s.byIssue);
  }
  return { dir: file, subsets: unique, clips, issues, summary };
}
