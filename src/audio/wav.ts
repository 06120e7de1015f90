/**
 * Audio input. `readWav` parses RIFF/WAVE files itself (PCM 8/16/24/32-bit integer, IEEE float 32/64, and
 * WAVE_FORMAT_EXTENSIBLE wrapping either); `loadAudio16k` decodes any media file with ffmpeg to 16 kHz mono s16le,
 * exactly the audio SyncNet's pipeline feeds python_speech_features. Samples come back as float32 in int16 units
 * (−32768..32767), mono (multi-channel input is averaged), as the feature extractors expect.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { DifftalkError } from '../util/errors.js';
import { ExecError, runTool } from '../util/exec.js';

export interface AudioData {
  sampleRate: number;
  /** Channels in the source (the samples are always mono). */
  channels: number;
  /** Mono samples in int16 units. */
  samples: Float32Array;
}

const FORMAT_PCM = 1;
const FORMAT_FLOAT = 3;
const FORMAT_EXTENSIBLE = 0xfffe;

function bad(name: string, msg: string): DifftalkError {
  return new DifftalkError('bad-wav', `${name}: ${msg}`, {
    suggestion: 'convert it with: ffmpeg -i <file> -ac 1 -ar 16000 -c:a pcm_s16le out.wav (or pass it to loadAudio16k)',
  });
}

/**
 * Parse a RIFF/WAVE byte buffer. Walks the chunks (odd-sized chunks are padded to even length), needs `fmt ` before
 * `data`, tolerates a data size that overruns the file (streamed WAVs from ffmpeg write 0xFFFFFFFF): it then
 * uses the whole frames present. Anything else is one DifftalkError('bad-wav').
 */
export function parseWav(bytes: Uint8Array, name = 'wav'): AudioData {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (o: number): string => String.fromCharCode(bytes[o]!, bytes[o + 1]!, bytes[o + 2]!, bytes[o + 3]!);
  if (bytes.length < 12) throw bad(name, `too short to be a WAV file (${bytes.length} bytes)`);
  const riff = tag(0);
  if (riff === 'RF64' || riff === 'RIFX') throw bad(name, `${riff} WAV files are not supported`);
  if (riff !== 'RIFF' || tag(8) !== 'WAVE') throw bad(name, 'not a RIFF/WAVE file');
  let fmt: { format: number; channels: number; sampleRate: number; blockAlign: number; bits: number } | undefined;
  let off = 12;
  while (off + 8 <= bytes.length) {
    const id = tag(off);
    const size = view.getUint32(off + 4, true);
    const body = off + 8;
    if (id === 'fmt ') {
      if (size < 16 || body + 16 > bytes.length) throw bad(name, 'truncated fmt chunk');
      let format = view.getUint16(body, true);
      const channels = view.getUint16(body + 2, true);
      const sampleRate = view.getUint32(body + 4, true);
      const blockAlign = view.getUint16(body + 12, true);
      const bits = view.getUint16(body + 14, true);
      if (format === FORMAT_EXTENSIBLE) {
        if (size < 40 || body + 40 > bytes.length) throw bad(name, 'truncated WAVE_FORMAT_EXTENSIBLE fmt chunk');
        format = view.getUint16(body + 24, true); // first two bytes of the SubFormat GUID
      }
      fmt = { format, channels, sampleRate, blockAlign, bits };
    } else if (id === 'data') {
      if (!fmt) throw bad(name, 'data chunk before fmt chunk');
      const available = bytes.length - body;
      const len = Math.min(size, available);
      return decode(bytes.subarray(body, body + len), fmt, name);
    }
    off = body + size + (size & 1);
  }
  throw bad(name, fmt ? 'no data chunk' : 'no fmt chunk');
}

function decode(data: Uint8Array, fmt: { format: number; channels: number; sampleRate: number; blockAlign: number; bits: number }, name: string): AudioData {
  const { format, channels, sampleRate, bits } = fmt;
  if (channels < 1) throw bad(name, 'zero channels');
  if (sampleRate < 1) throw bad(name, 'sample rate 0');
  const bytesPer = bits / 8;
  const supported =
    (format === FORMAT_PCM && (bits === 8 || bits === 16 || bits === 24 || bits === 32)) || (format === FORMAT_FLOAT && (bits === 32 || bits === 64));
  if (!supported) {
    const kind = format === FORMAT_PCM ? 'PCM' : format === FORMAT_FLOAT ? 'float' : `format tag 0x${format.toString(16)}`;
    throw bad(name, `unsupported encoding: ${kind} ${bits}-bit (supported: PCM 8/16/24/32-bit, float 32/64-bit)`);
  }
  const block = bytesPer * channels;
  if (fmt.blockAlign !== block) throw bad(name, `block align ${fmt.blockAlign} does not match ${channels}×${bits}-bit`);
  const frames = Math.floor(data.length / block);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const read = (o: number): number => {
    if (format === FORMAT_FLOAT) return (bits === 32 ? view.getFloat32(o, true) : view.getFloat64(o, true)) * 32768;
    switch (bits) {
      case 8:
        return (data[o]! - 128) * 256;
      case 16:
        return view.getInt16(o, true);
      case 24: {
        const v = data[o]! | (data[o + 1]! << 8) | (data[o + 2]! << 16);
        return ((v << 8) >> 8) / 256;
      }
      default:
        return view.getInt32(o, true) / 65536;
    }
  };
  const samples = new Float32Array(frames);
  for (let i = 0; i < frames; i++) {
    let s = 0;
    for (let c = 0; c < channels; c++) s += read(i * block + c * bytesPer);
    samples[i] = channels === 1 ? s : s / channels;
  }
  return { sampleRate, channels, samples };
}

/** Read and parse a WAV file (see parseWav). */
export async function readWav(file: string): Promise<AudioData> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (e) {
    throw new DifftalkError('file-missing', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  return parseWav(bytes, file);
}

export const SYNCNET_SAMPLE_RATE = 16000;

/**
 * Decode the audio of any media file ffmpeg can read to 16 kHz mono int16 (`-ac 1 -ar 16000 -f s16le`), the
 * SyncNet front end. Throws DifftalkError 'no-audio' when the file has no audio stream or no samples,
 * 'audio-decode-failed' when ffmpeg cannot decode it.
 */
export async function loadAudio16k(file: string, opts: { signal?: AbortSignal } = {}): Promise<AudioData> {
  const input = `file:${path.resolve(file)}`;
  let stdout: Buffer;
  try {
    ({ stdout } = await runTool(
      'ffmpeg',
      [
        '-nostdin',
        '-v',
        'error',
        '-i',
        input,
        '-vn',
        '-map',
        '0:a:0',
        '-ac',
        '1',
        '-ar',
        String(SYNCNET_SAMPLE_RATE),
        '-acodec',
        'pcm_s16le',
        '-f',
        's16le',
        '-',
      ],
      { signal: opts.signal },
    ));
  } catch (e) {
    if (e instanceof ExecError) {
      if (/matches no streams|does not contain any stream/i.test(e.stderr)) {
        throw new DifftalkError('no-audio', `${file} has no audio stream`, { cause: e });
      }
      throw new DifftalkError('audio-decode-failed', `ffmpeg cannot decode the audio of ${file}: ${e.message}`, { cause: e });
    }
    throw e;
  }
  const n = Math.floor(stdout.length / 2);
  if (n === 0) throw new DifftalkError('no-audio', `${file} decoded to zero audio samples`);
  const samples = new Float32Array(n);
  for (let i = 0; i < n; i++) samples[i] = stdout.readInt16LE(2 * i);
  return { sampleRate: SYNCNET_SAMPLE_RATE, channels: 1, samples };
}
