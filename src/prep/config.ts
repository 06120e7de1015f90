/**
 * config: what a prep run is asked to do (PrepSource, PrepConfig) and the data-determining record stored in
 * prep-config.json and dataset.json (`storedConfig`: the settings plus what the engines resolved).
 */
import type { HdtfSubset } from './annotations.js';
import type { LandmarkEngineName } from '../face/landmarks/index.js';
import type { NoCandidatePolicy } from '../dataset/reference.js';
import type { ImageFormat } from '../dataset/shard-writer.js';

/** Where the clips come from. */
export type PrepSource =
  { kind: 'hdtf'; dir: string; subsets?: HdtfSubset[]; limit?: number } | { kind: 'input'; paths: string[]; cropRatio?: number; limit?: number };

/** Everything that determines the data (recorded in prep-config.json and dataset.json). */
export interface PrepConfig {
  size: 256 | 512;
  imageFormat: ImageFormat;
  jpegQuality: number;
  shardRows: number;
  landmarker: LandmarkEngineName;
  faceModel?: string;
  smoothing: string;
  maxBadFrameFraction: number;
  /** Audio feature specs as given on the command line (`mfcc`, `mel:nMels=64`, `onnx:model=enc.onnx`). */
  audioFeatures: string[];
  /** Window (feature frames per video frame) per feature name; default per feature (audio/windows.ts). */
  audioWindows: Record<string, number>;
  seed: number;
  referencePolicy: NoCandidatePolicy;
  testFraction: number;
  splitFile?: string;
  allowIdentityLeak: boolean;
}

export const DEFAULT_PREP_CONFIG: PrepConfig = {
  size: 256,
  imageFormat: 'jpeg',
  jpegQuality: 95,
  shardRows: 1000,
  landmarker: 'mediapipe',
  smoothing: 'savgol:5',
  maxBadFrameFraction: 0.2,
  audioFeatures: ['mfcc', 'mel'],
  audioWindows: {},
  seed: 23,
  referencePolicy: 'drop-clip',
  testFraction: 0.2,
  allowIdentityLeak: false,
};

/** What the run resolved before any work, recorded beside the settings. */
export interface ResolvedConfig {
  landmarkerResolved: Record<string, unknown>;
  audioFeaturesResolved: { name: string; params: unknown }[];
  reference: unknown;
  split: { method: string; testFraction: number; seed: number; splitFileSha256?: string };
  source: Record<string, unknown>;
  /** The whole clip list (before --shard): its size and the sha256 of its ids, so another set of inputs is refused. */
  inputs: { clips: number; sha256: string };
}

/** The data-determining config as stored: the prep config (without local paths) plus what the engines resolved. */
export function storedConfig(config: PrepConfig, resolved: ResolvedConfig): Record<string, unknown> {
  const { faceModel: _faceModel, splitFile: _splitFile, ...rest } = config;
  return { ...rest, fps: 25, audioSampleRate: 16000, ...resolved };
}
