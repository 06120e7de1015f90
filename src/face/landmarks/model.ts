import { mkdir, open, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DifftalkError, errorMessage } from '../../util/errors.js';
import { exists, sha256File, tempPathFor } from '../../util/fs.js';

/**
 * Google's official MediaPipe FaceLandmarker bundle (float16, version 1): 478 points, with the blendshape head.
 * sha256 and size as published by several independent projects that pin this exact file (e.g. build recipes that
 * verify `SRC_URI[face_landmarker.task.sha256sum]`); checked on every download and every use.
 */
export const OFFICIAL_FACE_MODEL = {
  name: 'face_landmarker.task',
  url: 'https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task',
  sha256: '64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff',
  bytes: 3_758_596,
} as const;

export interface ResolvedModel {
  file: string;
  sha256: string;
  /** 'official' = the cached Google download; 'user' = --face-model. */
  source: 'official' | 'user';
}

/** Cache directory for downloaded models: $DIFFTALK_CACHE/models or ~/.cache/difftalk/models. */
export function modelCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.DIFFTALK_CACHE ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'difftalk');
  return path.join(base, 'models');
}

/** Download `url` to `file` through a temp file in the same folder; the rename happens only if the sha256 matches. */
export async function downloadVerified(url: string, file: string, expectSha: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new DifftalkError('model-download-failed', `cannot download ${url}: ${errorMessage(e)}`, {
      suggestion: `download it by hand and pass --face-model <file>, or put it at ${file}`,
    });
  }
  if (!res.ok || !res.body) {
    throw new DifftalkError('model-download-failed', `downloading ${url} failed: HTTP ${res.status}`, {
      suggestion: `download it by hand and pass --face-model <file>, or put it at ${file}`,
    });
  }
  const tmp = tempPathFor(file);
  const fh = await open(tmp, 'w');
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) await fh.write(chunk);
    await fh.sync();
  } catch (e) {
    await fh.close();
    await rm(tmp, { force: true });
    throw new DifftalkError('model-download-failed', `downloading ${url} failed: ${errorMessage(e)}`);
  }
  await fh.close();
  const got = await sha256File(tmp);
  if (got !== expectSha) {
    await rm(tmp, { force: true });
    throw new DifftalkError('model-checksum', `downloaded ${url} has sha256 ${got}, expected ${expectSha}`);
  }
  await rename(tmp, file);
}

/**
 * The FaceLandmarker model file to use: the user's file when given (hashed, not checked against anything),
 * else the official bundle from the cache, downloaded once (atomically) and verified by sha256 every time.
 */
export async function resolveFaceModel(userFile?: string, env: NodeJS.ProcessEnv = process.env): Promise<ResolvedModel> {
  if (userFile) {
    if (!(await exists(userFile))) {
      throw new DifftalkError('model-missing', `face model ${userFile} does not exist`, {
        suggestion: 'pass a MediaPipe FaceLandmarker .task bundle to --face-model',
      });
    }
    return { file: path.resolve(userFile), sha256: await sha256File(userFile), source: 'user' };
  }
  const file = path.join(modelCacheDir(env), OFFICIAL_FACE_MODEL.name);
  if (!(await exists(file))) await downloadVerified(OFFICIAL_FACE_MODEL.url, file, OFFICIAL_FACE_MODEL.sha256);
  const sha = await sha256File(file);
  if (sha !== OFFICIAL_FACE_MODEL.sha256) {
    throw new DifftalkError('model-checksum', `${file} has sha256 ${sha}, expected ${OFFICIAL_FACE_MODEL.sha256}`, {
      suggestion: `delete ${file} so it is downloaded again, or pass --face-model <file>`,
    });
  }
  return { file, sha256: sha, source: 'official' };
}
