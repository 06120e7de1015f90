/** Stage results: a failed item is a value ({ok:false, reason}), never a crash. */

/** Stable, machine-readable drop reasons (counted in dataset.json). */
export type DropReason =
  | 'annotation-invalid' // a row of the annotation files cannot be used (no time stamps, no crop box, bad resolution ...)
  | 'unsafe-name' // a name/URL that would escape the output folder or inject options
  | 'download-failed' // yt-dlp failed (network, 404, ...) after retries
  | 'video-unavailable' // private / removed / geo-blocked: yt-dlp said so; never retried
  | 'video-corrupt' // ffprobe/ffmpeg cannot decode the file
  | 'no-audio' // the video has no audio stream
  | 'no-face' // face tracking found no face to crop around
  | 'too-many-bad-frames' // landmark stage: too many frames without exactly one face
  | 'too-short' // fewer frames than the reference-frame rule needs (and no fallback chosen)
  | 'clip-failed'; // any other per-clip failure (message says what)

export type StageResult<O> = { ok: true; value: O } | { ok: false; reason: DropReason; message: string };

export const ok = <O>(value: O): StageResult<O> => ({ ok: true, value });
export const drop = <O = never>(reason: DropReason, message: string): StageResult<O> => ({ ok: false, reason, message });
