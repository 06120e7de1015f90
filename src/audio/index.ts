/** Audio features for prep stage 6 (and for SyncNet's MFCC in eval): the public entry points. */
export { parseWav, readWav, loadAudio16k, SYNCNET_SAMPLE_RATE, type AudioData } from './wav.js';
export { mfcc, resolveMfccOptions, psfFilterbank, hz2mel, mel2hz, type MfccOptions, type MfccResult } from './mfcc.js';
export { logMel, resolveMelOptions, slaneyMelFilterbank, hzToMelSlaney, melToHzSlaney, type MelOptions, type MelResult } from './mel.js';
export { RealFft, realFft } from './fft.js';
export { frameWindows, windowStart, defaultWindowFor, DEFAULT_WINDOWS } from './windows.js';
export {
  deepspeechInput,
  deepspeechWindows,
  deepspeechRowCount,
  DEEPSPEECH_FRAME_OFFSET,
  DEEPSPEECH_FRAMES,
  type DeepSpeechInput,
  type DeepSpeechWindows,
} from './deepspeech.js';
export {
  registerAudioFeature,
  createAudioFeature,
  listAudioFeatures,
  parseAudioFeatureSpec,
  createMfccExtractor,
  createMelExtractor,
  type AudioFeatureFactory,
  type AudioFeatureSpec,
  type AudioFeatureParams,
} from './registry.js';
export { createOnnxAudioFeature, loadOnnxRuntime, type OnnxAudioOptions, type OnnxAudioFeature } from './onnx.js';
