/** A prepared dataset's geometry and audio feature, for a trainer (cross-checked first) or render (metadata only). */
import path from 'node:path';
import { DifftalkError } from '../util/errors.js';
import { openDataset } from './dataset.js';
import { listShards, openShard, type OpenShard } from './shard-reader.js';
import type { AudioFeatureMetadata } from './shard-writer.js';

export interface DatasetInfo {
  dir: string;
  size: number;
  fps: number;
  audio: AudioFeatureMetadata;
}

/**
 * The dataset's size, fps and audio feature column: the named one, or the first whose window fits AudioNet best (16,
 * else any). By default the manifest and every shard are cross-checked first (openDataset: each shard's rows belong
 * to its clip, frame counts equal dataset.json's), so training never starts on a dataset whose rows are missing or
 * mislabelled; `crossCheck: false` reads the first shard's metadata only (render: the audio feature of a checkpoint).
 */
export async function datasetInfo(dir: string, audioFeature?: string, opts: { crossCheck?: boolean } = {}): Promise<DatasetInfo> {
  let metadata: OpenShard['metadata'];
  if (opts.crossCheck ?? true) {
    metadata = (await openDataset(dir)).metadata;
  } else {
    const shards = await listShards(dir);
    if (!shards.length) throw new DifftalkError('dataset-empty', `${dir} has no shards`, { suggestion: 'run `difftalk prep` first' });
    const s = await openShard(path.join(dir, shards[0]!.shard));
    await s.close();
    metadata = s.metadata;
  }
  const feats = metadata.audioFeatures;
  if (!feats.length)
    throw new DifftalkError('dataset-no-audio', `${dir} has no audio feature columns`, { suggestion: 'rerun `difftalk prep` with --audio-features mel' });
  const audio = audioFeature ? feats.find((f) => f.name === audioFeature) : (feats.find((f) => f.window === 16) ?? feats[0]);
  if (!audio) {
    throw new DifftalkError('bad-flag', `dataset has no audio feature '${audioFeature}'`, { suggestion: `available: ${feats.map((f) => f.name).join(', ')}` });
  }
  return { dir, size: metadata.size, fps: metadata.fps, audio };
}
