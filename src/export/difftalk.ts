/**
 * export/difftalk: a prepared dataset → the files the official DiffTalk loader reads (`ldm/data/talk_data_ref_smooth.py`,
 * ../shared/docs/difftalk-reference.md §1), under `<out>/data/`:
 *
 *   HDTF/images/<vid>_<frame>.jpg        256² RGB JPEG (1-based frame)
 *   HDTF/landmarks/<vid>_<frame>.lms     68 lines "x y", pixels of that 256² image (np.loadtxt)
 *   HDTF/audio_smooth/<vid>_<frame>.npy  float32 (8, 16, 29): the dataset's `audio_deepspeech` row
 *   HDTF/data.txt                        line vid−1 = "<clip_id> <num_frames>"
 *   HDTF/clip_ids.csv                    vid ↔ difftalk clip id (the mapping)
 *   data_train.txt, data_test.txt        "<vid>_<frame>" per listed frame
 *
 * File names are numbers only: a clip id (an untrusted string from the shards) never becomes a path. The loader draws a
 * frame's reference itself (uniform over {1…N−1} \ {f−60…f+59}), so every frame's image is written and a frame is listed
 * only when it has one face (finite landmarks; the mask row comes from point 30) and a reference candidate.
 * Resumable: `<out>/difftalk-export.json` records what the folder holds (a fingerprint of the dataset's clips, shards and
 * settings); a rerun over the same dataset keeps every file already there (all writes are atomic, so a file there is
 * complete) and a different dataset is refused unless --force.
 */
import { readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { decodeGtFrame, GT_RESIZE_KERNEL, openDataset, type Dataset, type DatasetClipEntry } from '../dataset/dataset.js';
import { encodeFrames, type AudioFeatureMetadata } from '../dataset/shard-writer.js';
import { encodeNpyFloat32 } from '../weights/npy.js';
import { DifftalkError, errorMessage } from '../util/errors.js';
import { silent, timedStage, type OnEvent } from '../util/events.js';
import { checkOutputFolder, exists, readJson, sha256, sweepTempFiles, writeFileAtomic } from '../util/fs.js';
import { unsafeNameReason } from '../util/names.js';
import { VERSION } from '../util/version.js';

/** DiffTalk's image side: the loader resizes to 256² and scales landmarks by width/256, so both are written at 256. */
export const DIFFTALK_SIZE = 256;
/** The audio feature DiffTalk's `audio_smooth` holds: 8 frames (i−4 … i+3) × 16 DeepSpeech windows × 29 logits. */
export const DIFFTALK_AUDIO = { name: 'deepspeech', column: 'audio_deepspeech', shape: [8, 16, 29] as const };
/** JPEG quality when a frame must be re-encoded (stored at another size or as PNG): prep's default. */
export const EXPORT_JPEG_QUALITY = 95;
/** The file that marks a folder written by this export (and what it holds). */
export const EXPORT_MARKER = 'difftalk-export.json';
export const EXPORT_FORMAT = 1;
/** The mapping vid ↔ clip id, relative to --out. */
export const MAPPING_FILE = 'data/HDTF/clip_ids.csv';

const HDTF_DIR = path.join('data', 'HDTF');
const OWN_DATA_DIRS = ['images', 'landmarks', 'audio_smooth'].map((d) => path.join(HDTF_DIR, d));
const LM68 = 68;
/** Files written at once (atomic writes fsync; several in flight hide the latency). */
const WRITE_CONCURRENCY = 16;

/**
 * Whether 1-based frame `f` of an `n`-frame video has a reference candidate under DiffTalk's rule
 * (`random.choice(set(range(1, n)) − set(range(f − 60, f + 60)))`): some r ∈ [1, n−1] with r ≤ f−61 or r ≥ f+60.
 * Every frame has one iff n ≥ 122.
 */
export function hasReferenceCandidate(f: number, n: number): boolean {
  return f - 61 >= 1 || f + 60 <= n - 1;
}

export interface ExportDifftalkOptions {
  /** Prepared dataset folder (difftalk prep --out). */
  dataset: string;
  out: string;
  /** Write into a non-empty folder not made by this export, or over an export of another dataset; rewrites every file. */
  force?: boolean;
  onEvent?: OnEvent;
}

/** One exported video, as in the mapping file. */
export interface ExportedVideo {
  vid: number;
  clipId: string;
  split: 'train' | 'test';
  frames: number;
  /** Frames listed in data_train/data_test.txt. */
  listed: number;
}

export interface ExportDifftalkResult {
  out: string;
  dataset: string;
  videos: ExportedVideo[];
  frames: { total: number; train: number; test: number; notListed: { noFace: number; noReference: number } };
  /** Per-frame files (images, landmarks, audio) written by this run, and kept because an earlier run of the same export wrote them. */
  files: { written: number; kept: number };
  images: { sourceSize: number; size: number; sourceFormat: string; mode: 'copied' | 'resized' | 're-encoded'; kernel?: string; jpegQuality?: number };
  /** Whether the folder already held (part of) this export. */
  resumed: boolean;
  layout: { dataTxt: string; train: string; test: string; mapping: string; marker: string };
  seconds: number;
}

/** The marker file's content. */
interface ExportMarker {
  created_by: 'difftalk export difftalk';
  format: number;
  tool_version: string;
  dataset: string;
  fingerprint: string;
  complete: boolean;
  videos?: number;
  frames?: { total: number; train: number; test: number };
}

/** The deepspeech feature of the dataset, checked against DiffTalk's (8, 16, 29), or one clear error (exit 2). */
function deepspeechFeature(ds: Dataset): AudioFeatureMetadata {
  const f = ds.metadata.audioFeatures.find((a) => a.name === DIFFTALK_AUDIO.name);
  const [frames, rows, cols] = DIFFTALK_AUDIO.shape;
  if (!f) {
    const have = ds.metadata.audioFeatures.map((a) => a.column).join(', ') || 'none';
    throw new DifftalkError(
      'audio-feature-missing',
      `${ds.dir} has no ${DIFFTALK_AUDIO.column} column (its audio columns: ${have}); DiffTalk's audio_smooth/*.npy are DeepSpeech features and are not made up from other features`,
      {
        suggestion: `prepare the dataset with the DeepSpeech audio feature: difftalk prep … --audio-feature ${DIFFTALK_AUDIO.name} (see docs/commands/prep-audio.md), then export it`,
      },
    );
  }
  if (f.column !== DIFFTALK_AUDIO.column || f.window !== frames || f.dim !== rows * cols) {
    throw new DifftalkError(
      'audio-feature-mismatch',
      `${ds.dir}: audio feature ${f.name} is ${f.window} × ${f.dim} in column ${f.column}; DiffTalk's audio_smooth needs ${frames} × ${rows * cols} (${frames}, ${rows}, ${cols}) in ${DIFFTALK_AUDIO.column}`,
      { suggestion: `prepare the dataset again with --audio-feature ${DIFFTALK_AUDIO.name} and its default window` },
    );
  }
  return f;
}

/** Train clips first, then test, each in dataset order: vid 1, 2, … (DiffTalk's release numbers train 1–99, test 100–176). */
function assignVids(clips: DatasetClipEntry[]): { clip: DatasetClipEntry; vid: number }[] {
  const ordered = [...clips.filter((c) => c.split === 'train'), ...clips.filter((c) => c.split === 'test')];
  return ordered.map((clip, i) => ({ clip, vid: i + 1 }));
}

/** What determines the exported bytes: the settings, the clips' ids, vids, splits and frame counts, and their shards' sizes. */
async function fingerprint(ds: Dataset, plan: { clip: DatasetClipEntry; vid: number }[]): Promise<string> {
  const clips = [];
  for (const { clip, vid } of plan) {
    const shards = [];
    for (const s of clip.shards) shards.push([s, (await stat(path.join(ds.dir, s))).size]);
    clips.push({ id: clip.id, vid, split: clip.split, frames: clip.frames, shards });
  }
  const m = ds.metadata;
  const settings = { format: EXPORT_FORMAT, size: DIFFTALK_SIZE, jpegQuality: EXPORT_JPEG_QUALITY, kernel: GT_RESIZE_KERNEL };
  const source = { size: m.size, imageFormat: m.imageFormat, jpegQuality: m.jpegQuality, landmarker: m.landmarker, audio: m.audioFeatures };
  return sha256(JSON.stringify({ settings, source, clips }));
}

/** 68 lines "x y" (shortest round-trip decimals), pixels scaled by `scale`. */
export function lmsText(lm68: Float32Array, scale: number): string {
  let s = '';
  for (let p = 0; p < LM68; p++) s += `${lm68[2 * p]! * scale} ${lm68[2 * p + 1]! * scale}\n`;
  return s;
}

/** Write `text` to `file` (atomically) unless the file already holds exactly that; whether it wrote. */
async function writeIfChanged(file: string, text: string): Promise<boolean> {
  const now = await readFile(file, 'utf8').catch(() => undefined);
  if (now === text) return false;
  await writeFileAtomic(file, text);
  return true;
}

/** Export a prepared dataset to DiffTalk's layout (see the module comment). */
export async function exportDifftalk(opts: ExportDifftalkOptions): Promise<ExportDifftalkResult> {
  const t0 = performance.now();
  const onEvent = opts.onEvent ?? silent;
  const force = opts.force ?? false;
  const out = opts.out;

  // Everything is checked before anything is written.
  const ds = await openDataset(opts.dataset);
  const audio = deepspeechFeature(ds);
  for (const c of ds.clips) {
    const why = unsafeNameReason(c.id);
    if (why) throw new DifftalkError('dataset-corrupt', `${ds.dir}: clip id ${JSON.stringify(c.id)}: ${why}`);
  }
  const plan = assignVids(ds.clips);
  const print = await fingerprint(ds, plan);
  const found = await checkOutputFolder(out, {
    marker: EXPORT_MARKER,
    creator: 'difftalk export',
    force,
    forceNote: 'files named like the export outputs are replaced',
  });
  let resumed = false;
  if (found === 'own') {
    const read = await readJson<unknown>(path.join(out, EXPORT_MARKER));
    const old: Partial<ExportMarker> = typeof read === 'object' && read !== null ? read : {};
    const same = old.fingerprint === print && old.format === EXPORT_FORMAT;
    if (!same && !force) {
      throw new DifftalkError(
        'config-mismatch',
        `${out} holds a DiffTalk export of another dataset (or of an earlier state of this one: ${String(old.dataset)})`,
        {
          suggestion: 'choose a new --out folder, or pass --force to rewrite it (its images/landmarks/audio_smooth folders are emptied first)',
        },
      );
    }
    if (!same) for (const d of OWN_DATA_DIRS) await rm(path.join(out, d), { recursive: true, force: true });
    resumed = same && !force;
    await sweepTempFiles(out, 3);
  } else if (found === 'forced') await sweepTempFiles(out, 3);
  const marker: ExportMarker = {
    created_by: 'difftalk export difftalk',
    format: EXPORT_FORMAT,
    tool_version: VERSION,
    dataset: path.resolve(ds.dir),
    fingerprint: print,
    complete: false,
  };
  // The marker goes first (so a killed run's folder is this export's), marked incomplete until the end; a rerun that
  // finds everything there writes nothing, not even the marker.
  let started: Promise<void> | undefined;
  const start = (): Promise<void> => (started ??= writeIfChanged(path.join(out, EXPORT_MARKER), `${JSON.stringify(marker, null, 2)}\n`).then(() => undefined));
  if (!resumed) await start();

  const m = ds.metadata;
  const copy = m.imageFormat === 'jpeg' && m.size === DIFFTALK_SIZE;
  const images: ExportDifftalkResult['images'] = copy
    ? { sourceSize: m.size, size: DIFFTALK_SIZE, sourceFormat: m.imageFormat, mode: 'copied' }
    : {
        sourceSize: m.size,
        size: DIFFTALK_SIZE,
        sourceFormat: m.imageFormat,
        mode: m.size === DIFFTALK_SIZE ? 're-encoded' : 'resized',
        kernel: m.size === DIFFTALK_SIZE ? undefined : `libvips ${GT_RESIZE_KERNEL}`,
        jpegQuality: EXPORT_JPEG_QUALITY,
      };
  const scale = DIFFTALK_SIZE / m.size;
  onEvent({
    type: 'log',
    level: 'info',
    message: copy
      ? `images: the stored ${m.size}² JPEGs are copied as they are`
      : `images: ${m.size}² ${m.imageFormat} → ${DIFFTALK_SIZE}² JPEG q${EXPORT_JPEG_QUALITY}${m.size === DIFFTALK_SIZE ? '' : ` (libvips ${GT_RESIZE_KERNEL}; landmarks × ${scale})`}`,
  });

  const dir = (d: string): string => path.join(out, HDTF_DIR, d);
  const files = { written: 0, kept: 0 };
  /** Write `file` unless a resumed run finds it there (complete: every write is atomic). */
  const put = async (file: string, make: () => Promise<Uint8Array | string> | Uint8Array | string): Promise<void> => {
    if (resumed && (await exists(file))) {
      files.kept++;
      return;
    }
    await start();
    await writeFileAtomic(file, await make());
    files.written++;
  };

  const image = async (bytes: Uint8Array, where: { clipId: string; index: number }): Promise<Uint8Array> => {
    const info = await sharp(bytes)
      .metadata()
      .catch((e: unknown) => {
        throw new DifftalkError('dataset-corrupt', `clip ${where.clipId}, frame ${where.index}: the stored image cannot be read (${errorMessage(e)})`);
      });
    if (info.width !== m.size || info.height !== m.size) {
      throw new DifftalkError(
        'dataset-corrupt',
        `clip ${where.clipId}, frame ${where.index}: the stored image is ${info.width}×${info.height}, the dataset says ${m.size}²`,
      );
    }
    if (copy && info.format === 'jpeg' && info.channels === 3) return bytes;
    const f = await decodeGtFrame(bytes, where, DIFFTALK_SIZE);
    const [jpeg] = await encodeFrames({ width: f.width, height: f.height, count: 1, data: f.rgb }, { format: 'jpeg', quality: EXPORT_JPEG_QUALITY });
    return jpeg!;
  };

  const videos: ExportedVideo[] = [];
  const lists: Record<'train' | 'test', string[]> = { train: [], test: [] };
  const notListed = { noFace: 0, noReference: 0 };
  const total = plan.reduce((a, p) => a + p.clip.frames, 0);
  const audioValues = audio.window * audio.dim;
  let done = 0;
  await timedStage(onEvent, 'export', total, 'frames', async (tick) => {
    for (const { clip, vid } of plan) {
      const n = clip.frames;
      const listed = new Set<number>();
      const columns = ['frame_index', 'image', 'face_status', 'landmarks_68', audio.column];
      for await (const rb of ds.rows({ clips: [clip.id], columns })) {
        const b = rb.batch;
        const col = (name: string) => b.getChild(name)!;
        const jobs: (() => Promise<void>)[] = [];
        for (let r = 0; r < b.numRows; r++) {
          const index = col('frame_index').get(r) as number;
          const frame = index + 1;
          const name = `${vid}_${frame}`;
          const bytes = col('image').get(r) as Uint8Array;
          const lm = (col('landmarks_68').get(r) as { toArray(): Float32Array }).toArray();
          const feat = (col(audio.column).get(r) as { toArray(): Float32Array }).toArray();
          const where = { clipId: clip.id, index };
          if (lm.length !== LM68 * 2 || feat.length !== audioValues) {
            throw new DifftalkError('dataset-corrupt', `clip ${clip.id}, frame ${index}: landmarks or ${audio.column} have the wrong length`);
          }
          if (!feat.every(Number.isFinite))
            throw new DifftalkError('dataset-corrupt', `clip ${clip.id}, frame ${index}: ${audio.column} holds non-finite values`);
          const face = col('face_status').get(r) === 'ok' && lm.every(Number.isFinite);
          jobs.push(() => put(path.join(dir('images'), `${name}.jpg`), () => image(bytes, where)));
          jobs.push(() => put(path.join(dir('audio_smooth'), `${name}.npy`), () => encodeNpyFloat32(DIFFTALK_AUDIO.shape, feat)));
          if (face) jobs.push(() => put(path.join(dir('landmarks'), `${name}.lms`), () => lmsText(lm, scale)));
          if (!face) notListed.noFace++;
          else if (!hasReferenceCandidate(frame, n)) notListed.noReference++;
          else listed.add(frame);
        }
        for (let s = 0; s < jobs.length; s += WRITE_CONCURRENCY) await Promise.all(jobs.slice(s, s + WRITE_CONCURRENCY).map((j) => j()));
        done += b.numRows;
        tick(done, clip.id);
      }
      const frames = [...listed].sort((a, b) => a - b);
      for (const f of frames) lists[clip.split].push(`${vid}_${f}`);
      videos.push({ vid, clipId: clip.id, split: clip.split, frames: n, listed: frames.length });
    }
  });

  const layout = {
    dataTxt: path.join(HDTF_DIR, 'data.txt'),
    train: path.join('data', 'data_train.txt'),
    test: path.join('data', 'data_test.txt'),
    mapping: MAPPING_FILE,
    marker: EXPORT_MARKER,
  };
  const lines = (xs: string[]): string => xs.map((x) => `${x}\n`).join('');
  const mapping = ['vid,clip_id,split,frames,listed_frames', ...videos.map((v) => `${v.vid},${v.clipId},${v.split},${v.frames},${v.listed}`)];
  const frames = { total, train: lists.train.length, test: lists.test.length, notListed };
  const finished: ExportMarker = { ...marker, complete: true, videos: videos.length, frames: { total, train: frames.train, test: frames.test } };
  for (const [file, text] of [
    [layout.dataTxt, lines(videos.map((v) => `${v.clipId} ${v.frames}`))],
    [layout.train, lines(lists.train)],
    [layout.test, lines(lists.test)],
    [layout.mapping, lines(mapping)],
    [layout.marker, `${JSON.stringify(finished, null, 2)}\n`],
  ] as const) {
    await writeIfChanged(path.join(out, file), text);
  }
  if (lists.test.length === 0)
    onEvent({ type: 'log', level: 'warn', message: 'no test frames: data_test.txt is empty (DiffTalk validates on it every epoch)' });
  return { out, dataset: ds.dir, videos, frames, files, images, resumed, layout, seconds: (performance.now() - t0) / 1000 };
}
