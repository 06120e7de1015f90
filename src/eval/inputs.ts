/**
 * What `--pred` and `--gt` name, as clips (issue 12 point 1): a video, a folder of videos, a folder of frames, a
 * folder of frame folders, an ffmpeg-style pattern (`frames/%05d.png`), a prepared dataset (GT only), and with
 * `--difftalk-list` the official DiffTalk inference folder (pred) or DiffTalk data root (`images/<vid>_<frame>.jpg`, GT).
 * Pairing is by clip name.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { iterateRows, listShards } from '../dataset/shard-reader.js';
import { DifftalkError } from '../util/errors.js';
import { exists } from '../util/fs.js';
import { difftalkImageClips, difftalkOutputClips, difftalkOutputName, isDifftalkOutput, type DifftalkList } from './difftalk-input.js';
import { FRAME_EXT, listFrameFiles, naturalCompare, parsePattern, patternFrameFiles } from './frames-input.js';

const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg', '.webp', '.bmp', '.tif', '.tiff']);
const VIDEO_EXT = new Set(['.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg']);

/** DiffTalk sources: the 1-based number, in the full clip, of each frame (lists may start later and have gaps). */
interface Start {
  listed?: number[];
}

export type Source = Start &
  (
    | { kind: 'video'; id: string; file: string }
    | { kind: 'dataset'; id: string; dir: string }
    /** Frames (`file` = the folder or pattern; `frames` in order). */
    | { kind: 'frames'; id: string; file: string; frames: string[] }
  );

export interface InputOptions {
  /** The DiffTalk test list the prediction was made from (maps a flat inference folder to clips and frames). */
  difftalk?: DifftalkList;
}

export async function listSources(p: string, role: 'pred' | 'gt', opts: InputOptions = {}): Promise<Source[]> {
  if (opts.difftalk && role === 'pred' && (parsePattern(p) !== undefined || (await exists(p))) && !(await isDifftalkOutput(p))) {
    // The list maps only a DiffTalk inference folder; ignoring it for any other --pred would hide a mistaken command.
    throw new DifftalkError('bad-option', `--difftalk-list is given but --pred ${p} is not a DiffTalk inference folder (it has no ${difftalkOutputName(0)})`, {
      suggestion: 'drop --difftalk-list, or pass the folder scripts/inference.py wrote ({batch:04d}_{j:04d}.jpg) as --pred',
    });
  }
  if (parsePattern(p)) {
    const frames = await patternFrameFiles(p);
    return [{ kind: 'frames', id: path.basename(path.resolve(path.dirname(p))), file: p, frames }];
  }
  let st;
  try {
    st = await stat(p);
  } catch {
    throw new DifftalkError('file-missing', `--${role} ${p} does not exist`);
  }
  if (st.isFile() && IMAGE_EXT.has(path.extname(p).toLowerCase())) {
    // A single image is not a video: scoring it as a 1-frame clip against GT frame 0 is a silent misalignment.
    throw new DifftalkError('single-image', `--${role} ${p} is a single image, not a video or a sequence of frames`, {
      suggestion: `pass the video, the folder of frames or a pattern (--${role} ${path.join(path.dirname(p), '%05d.png')}), or encode the frames losslessly first (ffmpeg -framerate 25 -i ${path.join(path.dirname(p), '%05d.png')} -c:v libx264rgb -crf 0 clip.mp4)`,
    });
  }
  if (st.isFile()) return [{ kind: 'video', id: path.basename(p).replace(/\.[^.]+$/, ''), file: p }];
  const dt = opts.difftalk;
  if (dt && role === 'pred' && (await isDifftalkOutput(p))) {
    return (await difftalkOutputClips(p, dt)).map((c) => ({ kind: 'frames', id: c.id, file: p, frames: c.frames, listed: c.listed }));
  }
  if (dt && role === 'gt' && (await exists(path.join(p, 'images')))) {
    return (await difftalkImageClips(p, dt)).map((c) => ({
      kind: 'frames',
      id: c.id,
      file: path.join(p, 'images'),
      frames: c.frames,
      listed: c.listed,
    }));
  }
  if (!dt && role === 'pred' && (await isDifftalkOutput(p))) {
    throw new DifftalkError(
      'difftalk-list-missing',
      `--pred ${p} is a DiffTalk inference folder ({batch:04d}_{j:04d}.jpg): its frames belong to the clips of a test list`,
      {
        suggestion: 'pass --difftalk-list data/data_test.txt (the list the inference read), and --difftalk-map data/HDTF/clip_ids.csv to name the clips',
      },
    );
  }
  if (role === 'gt' && ((await exists(path.join(p, 'dataset.json'))) || (await exists(path.join(p, 'shards'))))) {
    const entries = await listShards(p);
    const ids = [...new Set(entries.map((e) => e.clipId ?? ''))].filter(Boolean);
    if (ids.length === 0) {
      // no manifest: read the clip ids from the shards
      for await (const rb of iterateRows(p, { columns: ['clip_id'] })) if (!ids.includes(rb.clipId)) ids.push(rb.clipId);
    }
    return ids.map((id) => ({ kind: 'dataset', id, dir: p }));
  }
  const frameFiles = await listFrameFiles(p);
  const names = (await readdir(p)).filter((n) => !n.startsWith('.') && VIDEO_EXT.has(path.extname(n).toLowerCase())).sort();
  if (frameFiles.length > 0 && names.length > 0) {
    // A stray image beside videos (a thumbnail) would otherwise turn a folder of videos into a clip of frames.
    throw new DifftalkError('mixed-inputs', `--${role} folder ${p} holds both videos (${names[0]}) and frames (${path.basename(frameFiles[0]!)})`, {
      suggestion: 'keep one kind per folder: move the images (or the videos) elsewhere',
    });
  }
  if (frameFiles.length > 0) return [{ kind: 'frames', id: path.basename(path.resolve(p)), file: p, frames: frameFiles }];
  if (names.length === 0) {
    // A folder of frame folders: one clip each (links to folders count).
    const subdirs: string[] = [];
    for (const e of await readdir(p, { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue;
      if (e.isDirectory() || (e.isSymbolicLink() && (await stat(path.join(p, e.name)).catch(() => undefined))?.isDirectory())) subdirs.push(e.name);
    }
    subdirs.sort(naturalCompare);
    const clips: Source[] = [];
    for (const d of subdirs) {
      const files = await listFrameFiles(path.join(p, d));
      if (files.length > 0) clips.push({ kind: 'frames', id: d, file: path.join(p, d), frames: files });
    }
    if (clips.length > 0) return clips;
    throw new DifftalkError(
      'no-videos',
      `--${role} folder ${p} holds no video files (${[...VIDEO_EXT].join(', ')}), no frames (${[...FRAME_EXT].join(', ')}) and no folders of frames`,
    );
  }
  return names.map((n) => ({ kind: 'video', id: n.replace(/\.[^.]+$/, ''), file: path.join(p, n) }));
}

/** Pair prediction and GT clips by name (a single clip on both sides pairs regardless of name). */
export async function pairClips(
  pred: string,
  gt: string,
  opts: InputOptions = {},
): Promise<{ pairs: Array<{ id: string; pred: Source; gt: Source }>; unmatched: { pred: string[]; gt: string[] } }> {
  const ps = await listSources(pred, 'pred', opts);
  const gs = await listSources(gt, 'gt', opts);
  if (ps.length === 1 && gs.length === 1 && gs[0]!.kind !== 'dataset') {
    return { pairs: [{ id: ps[0]!.id, pred: ps[0]!, gt: gs[0]! }], unmatched: { pred: [], gt: [] } };
  }
  const gmap = new Map(gs.map((g) => [g.id, g]));
  const pairs = ps.flatMap((p) => (gmap.has(p.id) ? [{ id: p.id, pred: p, gt: gmap.get(p.id)! }] : []));
  const used = new Set(pairs.map((x) => x.id));
  const unmatched = { pred: ps.filter((p) => !gmap.has(p.id)).map((p) => p.id), gt: gs.filter((g) => !used.has(g.id)).map((g) => g.id) };
  if (pairs.length === 0) {
    throw new DifftalkError(
      'no-pairs',
      `no prediction matches a ground-truth clip by name (pred: ${ps
        .map((p) => p.id)
        .slice(0, 5)
        .join(', ')}; gt: ${gs
        .map((g) => g.id)
        .slice(0, 5)
        .join(', ')})`,
      {
        suggestion: opts.difftalk
          ? 'name the GT clips by the DiffTalk ids, or pass --difftalk-map data/HDTF/clip_ids.csv (written by difftalk export difftalk) so the ids become clip names'
          : 'name each generated video like its ground-truth clip (e.g. WDA_X_000.mp4 ↔ WDA_X_000.mp4 or clip_id)',
      },
    );
  }
  return { pairs, unmatched };
}
