/**
 * Prep stage 6: audio features of one clip, windowed per video frame, ready for the audio_<name> Arrow columns.
 */
import { DifftalkError, errorMessage } from '../util/errors.js';
import { silent, type OnEvent } from '../util/events.js';
import type { AudioFeatureMetadata } from '../dataset/shard-writer.js';
import { drop, ok, type StageResult } from '../util/result.js';
import type { AudioFeatureExtractor, FrameWindows } from '../audio/types.js';
import { loadAudio16k, readWav, type AudioData } from '../audio/wav.js';
import { defaultWindowFor, frameWindows } from '../audio/windows.js';

export interface AudioFeatureRequest {
  extractor: AudioFeatureExtractor;
  /** Feature frames per video frame window; default defaultWindowFor(extractor.name). */
  window?: number;
}

/** One entry of the `difftalk.audio_features` schema metadata plus the windows themselves. */
export interface AudioFeatureColumn extends AudioFeatureMetadata {
  /** videoFrames × window × dim: row k is the flattened FixedSizeList value of frame k. */
  windows: FrameWindows;
}

/** Errors that mean "this clip's audio is unusable" (a drop), not "the configuration is wrong" (thrown). */
const AUDIO_DATA_ERRORS = new Set(['no-audio', 'empty-audio', 'bad-wav', 'audio-decode-failed', 'file-missing']);

/** Read a clip's audio: WAV files are parsed directly, anything else is decoded by ffmpeg to 16 kHz mono. */
export async function readClipAudio(file: string): Promise<AudioData> {
  return /\.wav$/i.test(file) ? readWav(file) : loadAudio16k(file);
}

/**
 * Compute every requested feature for one clip and window it on the `videoFrames` frames at `fps`.
 * Unusable audio is a drop ('no-audio' or 'clip-failed'); configuration errors are thrown.
 */
export async function computeAudioFeatures(
  audioFile: string,
  videoFrames: number,
  fps: number,
  requests: readonly AudioFeatureRequest[],
  onEvent: OnEvent = silent,
): Promise<StageResult<AudioFeatureColumn[]>> {
  const names = new Set<string>();
  for (const r of requests) {
    if (names.has(r.extractor.name)) throw new DifftalkError('bad-audio-feature', `audio feature '${r.extractor.name}' requested twice (give one an id)`);
    names.add(r.extractor.name);
  }
  try {
    const audio = await readClipAudio(audioFile);
    if (audio.samples.length === 0) return drop('no-audio', `${audioFile} has no audio samples`);
    const duration = audio.samples.length / audio.sampleRate;
    const out: AudioFeatureColumn[] = [];
    for (const r of requests) {
      const window = r.window ?? defaultWindowFor(r.extractor.name);
      const t0 = performance.now();
      const seq = await r.extractor.extract(audio.samples, audio.sampleRate);
      const windows = frameWindows(seq, videoFrames, fps, window);
      const seconds = (performance.now() - t0) / 1000;
      onEvent({ type: 'metric', name: `audio.${r.extractor.name}.realtime_factor`, value: seconds > 0 ? duration / seconds : Infinity });
      const covered = seq.frames / seq.rate;
      if (covered + 0.1 < videoFrames / fps) {
        onEvent({
          type: 'log',
          level: 'warn',
          message: `${audioFile}: ${r.extractor.name} features cover ${covered.toFixed(2)} s but the video is ${(videoFrames / fps).toFixed(2)} s; later windows are zero-padded`,
        });
      }
      out.push({
        name: r.extractor.name,
        column: `audio_${r.extractor.name}`,
        window,
        dim: seq.dim,
        rate: seq.rate,
        params: r.extractor.params,
        windows,
      });
    }
    return ok(out);
  } catch (e) {
    if (e instanceof DifftalkError && AUDIO_DATA_ERRORS.has(e.code)) {
      return drop(e.code === 'no-audio' || e.code === 'empty-audio' ? 'no-audio' : 'clip-failed', errorMessage(e));
    }
    throw e;
  }
}
