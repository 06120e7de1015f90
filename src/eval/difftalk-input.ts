/**
 * The official DiffTalk inference output as an eval input (issue 12 point 1; ../shared/docs/difftalk-reference.md §1, §3).
 *
 * `scripts/inference.py` walks `data_test.txt` in order (one `<vid>_<frame>` per line, both 1-based integers; shuffle
 * off) in DataLoader batches of 20 and writes line k as `{k div 20:04d}_{k mod 20:04d}.jpg` into one flat folder. So the
 * list the output was made from is what maps each file back to its clip and frame. `data.txt` is read by the reference
 * loader only to draw training-style reference frames (inference always uses `<vid>_1.jpg`), so it is not needed here.
 * Clip ids: the numeric `vid`, or the name a mapping file gives it: the CSV `difftalk export difftalk` writes
 * (`data/HDTF/clip_ids.csv`, header `vid,clip_id,…`), or a JSON object `{"<clip id>": <vid>}` / `{"<vid>": "<clip id>"}`.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { DifftalkError } from '../util/errors.js';
import { readJson } from '../util/fs.js';

/** DiffTalk's inference batch size (talking-inference.yaml). */
export const DIFFTALK_BATCH = 20;

export interface DifftalkClip {
  /** Numeric DiffTalk video id. */
  vid: number;
  /** Clip id used for pairing (mapped name or the vid as text). */
  id: string;
  /** 1-based frame numbers of this clip in list order (increasing; frames the export left out, e.g. without a face, are gaps). */
  frames: number[];
  /** Positions in the list (= the inference output's flat index) of those frames. */
  positions: number[];
  /** The list's own text of each frame (`<vid>_<frame>`): DiffTalk reads `images/<text>.jpg`, leading zeros kept. */
  names: string[];
}

export interface DifftalkList {
  file: string;
  clips: DifftalkClip[];
  lines: number;
  batch: number;
}

const LINE_RE = /^(\d+)_(\d+)$/;

/** Read a DiffTalk list file (data_test.txt) and an optional id mapping; every silent case is an error. */
export async function readDifftalkList(file: string, opts: { mapping?: string; batch?: number } = {}): Promise<DifftalkList> {
  let text: string;
  try {
    if ((await stat(file)).size > 64 * 1024 * 1024) throw new DifftalkError('bad-input', `${file} is larger than 64 MiB: not a DiffTalk list`);
    text = await readFile(file, 'utf8');
  } catch (e) {
    if (e instanceof DifftalkError) throw e;
    throw new DifftalkError('file-missing', `--difftalk-list ${file} cannot be read (${(e as Error).message})`);
  }
  const names = opts.mapping ? await readMapping(opts.mapping) : undefined;
  const byVid = new Map<number, DifftalkClip>();
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  lines.forEach((raw, k) => {
    const m = LINE_RE.exec(raw.trim());
    if (!m) {
      throw new DifftalkError('bad-input', `${file} line ${k + 1} is '${raw.slice(0, 40)}', not '<vid>_<frame>'`, {
        suggestion: 'pass the data_test.txt the inference run read (one <vid>_<frame> per line, 1-based)',
      });
    }
    const vid = Number(m[1]);
    const frame = Number(m[2]);
    if (vid < 1 || frame < 1) throw new DifftalkError('bad-input', `${file} line ${k + 1}: vid and frame are 1-based, got ${raw.trim()}`);
    let c = byVid.get(vid);
    if (!c) {
      const id = names ? names.get(vid) : String(vid);
      if (id === undefined) {
        throw new DifftalkError('bad-input', `${file} lists video ${vid}, which the mapping ${opts.mapping} does not name`, {
          suggestion: 'pass the mapping written with this data_test.txt, or none (clips are then named by their numeric id)',
        });
      }
      byVid.set(vid, (c = { vid, id, frames: [], positions: [], names: [] }));
    }
    const last = c.frames.at(-1);
    if (last !== undefined && frame <= last) {
      throw new DifftalkError(
        'bad-input',
        `${file} line ${k + 1}: video ${vid} frame ${frame} follows frame ${last}; frames of a clip must be in increasing order`,
        {
          suggestion: 'pass the data_test.txt the inference run read (difftalk export lists each clip in frame order)',
        },
      );
    }
    c.frames.push(frame);
    c.positions.push(k);
    c.names.push(m[0]);
  });
  if (lines.length === 0) throw new DifftalkError('bad-input', `${file} lists no frames`);
  return { file, clips: [...byVid.values()], lines: lines.length, batch: opts.batch ?? DIFFTALK_BATCH };
}

async function readMapping(file: string): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  const put = (vid: number, id: string, where: string) => {
    if (!Number.isInteger(vid) || vid < 1 || !id) throw new DifftalkError('bad-input', `mapping ${file}: ${where} is not a numeric id and a clip id`);
    if (out.has(vid)) throw new DifftalkError('bad-input', `mapping ${file} names video ${vid} twice`);
    out.set(vid, id);
  };
  if (path.extname(file).toLowerCase() === '.csv') {
    if ((await stat(file)).size > 16 * 1024 * 1024) throw new DifftalkError('bad-input', `mapping ${file} is larger than 16 MiB`);
    const rows = (await readFile(file, 'utf8')).split(/\r?\n/).filter((l) => l.trim() !== '');
    const head = (rows[0] ?? '').split(',').map((h) => h.trim());
    const vi = head.indexOf('vid');
    const ci = head.indexOf('clip_id');
    if (vi < 0 || ci < 0) {
      throw new DifftalkError('bad-input', `mapping ${file} has no vid and clip_id columns (header: ${rows[0]?.slice(0, 80) ?? 'none'})`, {
        suggestion: 'pass the clip_ids.csv that difftalk export difftalk wrote (data/HDTF/clip_ids.csv)',
      });
    }
    rows.slice(1).forEach((r, k) => {
      const cells = r.split(',');
      put(Number(cells[vi]), (cells[ci] ?? '').trim(), `line ${k + 2}`);
    });
    return out;
  }
  const raw = await readJson<unknown>(file);
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new DifftalkError('bad-input', `mapping ${file} is not a JSON object`, {
      suggestion: 'use {"<clip id>": <numeric id>, …} or the clip_ids.csv of difftalk export',
    });
  }
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof v === 'number') put(v, k, `entry ${JSON.stringify(k)}`);
    else if (/^\d+$/.test(k) && typeof v === 'string') put(Number(k), v, `entry ${JSON.stringify(k)}`);
    else put(Number.NaN, '', `entry ${JSON.stringify(k)}`);
  }
  return out;
}

/** The output file name of list position k (`{batch:04d}_{j:04d}.jpg`). */
export function difftalkOutputName(k: number, batch = DIFFTALK_BATCH): string {
  return `${String(Math.floor(k / batch)).padStart(4, '0')}_${String(k % batch).padStart(4, '0')}.jpg`;
}

/** True when `dir` looks like a DiffTalk inference folder (holds `0000_0000.jpg`). */
export async function isDifftalkOutput(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).includes(difftalkOutputName(0));
  } catch {
    return false;
  }
}

/** Each clip's frame files in an inference output folder; the folder must hold exactly the list's frames. */
export async function difftalkOutputClips(dir: string, list: DifftalkList): Promise<Array<{ id: string; frames: string[]; listed: number[] }>> {
  const have = new Set((await readdir(dir)).filter((n) => /^\d{4,}_\d{4}\.jpg$/.test(n)));
  const want = Array.from({ length: list.lines }, (_, k) => difftalkOutputName(k, list.batch));
  const missing = want.filter((n) => !have.has(n));
  if (missing.length) {
    throw new DifftalkError('frames-missing', `${dir} lacks ${missing.length} of the ${list.lines} frames ${list.file} lists (first: ${missing[0]})`, {
      suggestion: 'pass the data_test.txt this inference run read, or let the run finish',
    });
  }
  if (have.size > want.length) {
    throw new DifftalkError('frames-extra', `${dir} holds ${have.size} frames, ${list.file} lists ${list.lines}`, {
      suggestion: 'pass the data_test.txt this inference run read (the output holds more frames than the list)',
    });
  }
  return list.clips.map((c) => ({ id: c.id, frames: c.positions.map((k) => path.join(dir, difftalkOutputName(k, list.batch))), listed: c.frames }));
}

/** GT frames from a DiffTalk data root (`images/<vid>_<frame>.jpg`) for the list's frames. */
export async function difftalkImageClips(root: string, list: DifftalkList): Promise<Array<{ id: string; frames: string[]; listed: number[] }>> {
  const images = path.join(root, 'images');
  const have = new Set(await readdir(images));
  return list.clips.map((c) => {
    const frames = c.names.map((n) => `${n}.jpg`);
    const miss = frames.find((n) => !have.has(n));
    if (miss) throw new DifftalkError('frames-missing', `${images} has no ${miss} (listed in ${list.file})`);
    return { id: c.id, frames: frames.map((n) => path.join(images, n)), listed: c.frames };
  });
}
