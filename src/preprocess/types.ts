/**
 * Typed contracts between the prep stages. Each stage is a module exporting plain functions over these types;
 * src/preprocess/pipeline.ts wires them. A failed item is a value ({ok:false, reason}), never a crash.
 */

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

/** An axis-aligned box in pixels: x,y top-left. */
export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** One clip to prepare: from an HDTF annotation row or from a user's video file. */
export interface ClipSpec {
  /** Unique, filesystem-safe id: `WDA_AlexandriaOcasioCortez_000` for HDTF, sanitised file stem for --input. */
  id: string;
  /** Person/identity key used for identity-disjoint splits (HDTF: video name without trailing digits). */
  identity: string;
  subset?: 'RD' | 'WDA' | 'WRA';
  /** HDTF video name (`AlexandriaOcasioCortez`) or the input file stem. */
  video: string;
  clipIndex: number;
  /** HDTF: the YouTube id and the URL to download (yt-dlp). */
  youtubeId?: string;
  url?: string;
  /** --input: the local video file. */
  file?: string;
  /** Time range in seconds (HDTF annotation); undefined = whole file. */
  startS?: number;
  endS?: number;
  /** HDTF crop box in pixels of a frame `refHeight` tall; undefined = crop from face tracking (method 2). */
  crop?: Box & { refHeight: number };
  /** HDTF crop_ratio (used by method 2); default 1.2 for --input. */
  cropRatio?: number;
  /** Set when the row is unusable: the clip is kept in the manifest and dropped with this reason. */
  unusable?: { reason: DropReason; message: string };
  /** Non-fatal oddities of the annotation row worth reporting (trailing spaces, &t= parameter, box clamped ...). */
  notes?: string[];
}

/** Raw RGB frames (interleaved uint8, row-major), `count` frames of width×height. */
export interface RgbFrames {
  width: number;
  height: number;
  count: number;
  data: Uint8Array;
}

/** Output of the cut/crop/normalise stage. */
export interface PreparedClip {
  /** The normalised video: square `size`², constant 25 fps, no audio (FFVHuff lossless in .mkv, see clip.ts). */
  video: string;
  /** 16 kHz mono s16le WAV of the same time range. */
  audio: string;
  fps: number;
  size: number;
  frameCount: number;
  /** Crop box actually applied, in pixels of the source video. */
  crop: Box;
  sourceWidth: number;
  sourceHeight: number;
  /** True when the annotated box was clamped to the frame. */
  clamped: boolean;
  notes: string[];
}

/** Per-frame landmark result, in pixels of the stored (square) frame. */
export interface FaceLandmarks {
  status: 'ok' | 'no-face' | 'multi-face';
  /** 478×3 (x, y, z) — z in the same pixel scale as x (MediaPipe z × width). Empty when no face. */
  points: Float32Array;
  /** Detector/landmarker confidence in [0, 1]; 0 when no face. */
  score: number;
}

/** A landmark engine: stateful over one clip (VIDEO-mode tracking), reset between clips. */
export interface LandmarkEngine {
  readonly name: string;
  /** Landmarks for consecutive frames of one clip. */
  detect(frames: RgbFrames): Promise<FaceLandmarks[]>;
  /** Forget tracking state (call between clips). */
  reset(): Promise<void>;
  close(): Promise<void>;
}

/** Features of an audio signal at their own rate (e.g. 100 Hz MFCC): frames × dim, row-major. */
export interface FeatureSequence {
  data: Float32Array;
  frames: number;
  dim: number;
  /** Feature frames per second. */
  rate: number;
}

/** A pluggable audio feature extractor (mel, mfcc, or a user's ONNX encoder). */
export interface AudioFeatureExtractor {
  readonly name: string;
  /** Everything that determines the output, recorded in the Arrow schema metadata. */
  readonly params: Record<string, string | number | boolean>;
  /** samples: mono PCM at `sampleRate`, in int16 units (−32768..32767) as python_speech_features expects. */
  extract(samples: Float32Array, sampleRate: number): Promise<FeatureSequence>;
}

/** Per-video-frame feature windows: frames × window × dim, row-major. */
export interface FrameWindows {
  data: Float32Array;
  frames: number;
  window: number;
  dim: number;
}
