import type { DropReason } from '../util/result.js';

/** Media types shared by the layers above: boxes, raw frames, clips of a source video. */

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
