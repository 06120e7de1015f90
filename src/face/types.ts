import type { RgbFrames } from '../media/types.js';

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
