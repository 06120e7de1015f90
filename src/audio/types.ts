/** Features of an audio signal at their own rate (e.g. 100 Hz MFCC): frames × dim, row-major. */
export interface FeatureSequence {
  data: Float32Array;
  frames: number;
  dim: number;
  /** Feature frames per second. */
  rate: number;
  /**
   * Set when the rows are already one per video frame (rate = the video's fps), as DeepSpeech windows are: the window
   * of video frame k is then rows k + frameOffset … k + frameOffset + window − 1 (DiffTalk: −4 → i−4 … i+3) instead
   * of the centred rule of windows.ts.
   */
  frameOffset?: number;
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
