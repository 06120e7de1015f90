/**
 * probe: what a media file contains (ffprobe JSON), in the terms the prep stages need.
 * A file ffprobe cannot read, or one without a decodable video stream, is a DifftalkError 'video-corrupt';
 * the pipeline records it as that drop reason.
 */
import path from 'node:path';
import { DifftalkError, errorMessage } from '../util/errors.js';
import { ExecError, runTool } from '../util/exec.js';

export interface AudioStreamInfo {
  codec: string;
  sampleRate: number;
  channels: number;
  /** Seconds; undefined when the container does not say. */
  duration?: number;
}

export interface MediaInfo {
  file: string;
  /** Container format name(s) as ffprobe reports them (`mov,mp4,m4a,3gp,3g2,mj2`). */
  format: string;
  /** Display size: the coded size with a 90/270° rotation applied (ffmpeg auto-rotates when decoding). */
  width: number;
  height: number;
  codedWidth: number;
  codedHeight: number;
  /** Rotation in degrees from the display matrix side data (or the legacy `rotate` tag), normalised to 0/90/180/270. */
  rotation: number;
  /** Frames per second: avg_frame_rate, else r_frame_rate. */
  fps: number;
  /** Seconds: the video stream's duration, else the container's; 0 when neither says (a still image). */
  duration: number;
  /** Frames in the video stream when known (nb_frames, or counted with `count`). */
  frameCount?: number;
  videoCodec: string;
  pixFmt?: string;
  /** True when ffprobe reports an interlaced field order (tt, bb, tb, bt). */
  interlaced: boolean;
  /** Video stream start time in seconds (0 when absent). */
  startTime: number;
  hasAudio: boolean;
  audio?: AudioStreamInfo;
}

interface FfprobeStream {
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  pix_fmt?: string;
  field_order?: string;
  avg_frame_rate?: string;
  r_frame_rate?: string;
  duration?: string;
  start_time?: string;
  nb_frames?: string;
  nb_read_frames?: string;
  nb_read_packets?: string;
  sample_rate?: string;
  channels?: number;
  tags?: Record<string, string>;
  side_data_list?: { side_data_type?: string; rotation?: number }[];
  disposition?: { attached_pic?: number };
}

interface FfprobeOutput {
  streams?: FfprobeStream[];
  format?: { format_name?: string; duration?: string };
}

/** "30000/1001" → 29.97; "0/0" or junk → 0. */
export function parseRate(rate: string | undefined): number {
  if (!rate) return 0;
  const [n = NaN, d] = rate.split('/').map(Number);
  if (d === undefined) return Number.isFinite(n) ? n : 0;
  if (!Number.isFinite(n) || !Number.isFinite(d) || d === 0) return 0;
  return n / d;
}

function num(v: string | number | undefined): number | undefined {
  if (v === undefined || v === 'N/A') return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

function rotationOf(s: FfprobeStream): number {
  let deg = 0;
  const side = s.side_data_list?.find((d) => typeof d.rotation === 'number');
  if (side?.rotation !== undefined) deg = side.rotation;
  else if (s.tags?.rotate !== undefined) deg = Number(s.tags.rotate) || 0;
  return (((Math.round(deg / 90) * 90) % 360) + 360) % 360;
}

/**
 * Probe a media file with ffprobe. `count: 'frames'` decodes the video stream to count frames exactly (slower);
 * `count: 'packets'` counts packets without decoding, which is the frame count of intra-only files such as
 * prepared clips (one packet per frame). Throws DifftalkError 'video-corrupt' for unreadable files
 * or files without a video stream, and 'tool-missing' when ffprobe is absent.
 */
export async function probeMedia(file: string, opts: { count?: 'frames' | 'packets' } = {}): Promise<MediaInfo> {
  // An absolute path never starts with '-' and never looks like a protocol ("http:"), whatever the file is called.
  const abs = path.resolve(file);
  const args = ['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams'];
  if (opts.count) args.push(opts.count === 'frames' ? '-count_frames' : '-count_packets', '-select_streams', 'v:0');
  args.push(abs);
  let parsed: FfprobeOutput;
  try {
    const res = await runTool('ffprobe', args);
    parsed = JSON.parse(res.stdout.toString('utf8')) as FfprobeOutput;
  } catch (e) {
    if (e instanceof ExecError) {
      const why = e.stderr.trim().split('\n').slice(-2).join(' ').replace(abs, path.basename(abs)) || `exit ${e.exitCode}`;
      throw new DifftalkError('video-corrupt', `cannot read ${path.basename(abs)}: ${why}`, {
        suggestion: 'the file is damaged or not a video; download it again',
        cause: e,
      });
    }
    if (e instanceof DifftalkError) throw e;
    throw new DifftalkError('video-corrupt', `cannot read ${path.basename(abs)}: ${errorMessage(e)}`, { cause: e });
  }
  const streams = parsed.streams ?? [];
  const v = streams.find((s) => s.codec_type === 'video' && !s.disposition?.attached_pic);
  if (!v || !v.width || !v.height) {
    throw new DifftalkError('video-corrupt', `${path.basename(abs)} has no decodable video stream`, {
      suggestion: 'give a video file (mp4, mkv, webm, mov ...)',
    });
  }
  const rotation = rotationOf(v);
  const swap = rotation === 90 || rotation === 270;
  const fps = parseRate(v.avg_frame_rate) || parseRate(v.r_frame_rate);
  const duration = num(v.duration) ?? num(parsed.format?.duration) ?? 0;
  const frameCount = opts.count === 'frames' ? num(v.nb_read_frames) : opts.count === 'packets' ? num(v.nb_read_packets) : num(v.nb_frames);
  const a = streams.find((s) => s.codec_type === 'audio');
  const info: MediaInfo = {
    file: abs,
    format: parsed.format?.format_name ?? 'unknown',
    width: swap ? v.height : v.width,
    height: swap ? v.width : v.height,
    codedWidth: v.width,
    codedHeight: v.height,
    rotation,
    fps,
    duration,
    frameCount,
    videoCodec: v.codec_name ?? 'unknown',
    pixFmt: v.pix_fmt,
    interlaced: ['tt', 'bb', 'tb', 'bt'].includes(v.field_order ?? ''),
    startTime: num(v.start_time) ?? 0,
    hasAudio: a !== undefined,
  };
  if (a) {
    info.audio = {
      codec: a.codec_name ?? 'unknown',
      sampleRate: num(a.sample_rate) ?? 0,
      channels: a.channels ?? 0,
      duration: num(a.duration),
    };
  }
  if (!(fps > 0)) {
    throw new DifftalkError('video-corrupt', `${path.basename(abs)}: video stream has no usable frame rate`, {
      suggestion: 'the file is damaged or not a video; download it again',
    });
  }
  return info;
}
