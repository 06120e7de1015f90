/** A prepared dataset's geometry and audio feature, read from its first shard. */
import path from 'node:path';
import { DifftalkError } from '../util/errors.js';
import { listShards, openShard } from './shard-reader.js';
import type { AudioFeatureMetadata } from './shard-writer.js';

export interface DatasetInfo {
  dir: string;
  size: number;
  fps: number;
  audio: AudioFeatureMetadata;
}

/** Pick the audio feature column: the named one, or the first whose window fits AudioNet best (16, else any). */
export async function datasetInfo(dir: string, audioFeature?: string): Promise<DatasetInfo> {
  const shards = await listShards(dir);
  if (!shards.length) throw new DifftalkError('dataset-empty', `${dir} has no shards`, { suggestion: 'run `difftalk prep` first' });
  const s = await openShard(path.join(dir, shards[0]!.shard));
  await s.close();
  const feats = s.metadata.audioFeatures;
  if (!feats.length)
    throw new DifftalkError('dataset-no-audio', `${dir} has no audio feature columns`, { suggestion: 'rerun `difftalk prep` with --audio-features mel' });
  const audio = audioFeature ? feats.find((f) => f.name === audioFeature) : (feats.find((f) => f.window === 16) ?? feats[0]);
  if (!audio) {
    throw new DifftalkError('bad-flag', `dataset has no audio feature '${audioFeature}'`, { suggestion: `available: ${feats.map((f) => f.name).join(', ')}` });
  }
  return { dir, size: s.metadata.size, fps: s.metadata.fps, audio };
}
