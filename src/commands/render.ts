import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { backendFlag, numberFlag, precisionFlag } from '../cli/flags.js';
import { startBackend, type GpuDevice } from '../cli/train-run.js';
import { DEFAULT_RENDER, renderVideo, type RenderResult } from '../render/render.js';

export default class Render extends BaseCommand {
  static override summary = 'Make a talking-head video: a person video driven by a speech track through a trained DiffTalk checkpoint.';
  static override description =
    'Crops and tracks the face like `difftalk prep`, loops (ping-pong) or trims the video to the audio, inpaints the jaw region of ' +
    'every frame by DDIM masked latent diffusion (reference = first frame, or the previous output with --progressive), pastes it ' +
    'back into the original frames with a feathered edge and muxes the audio (H.264 + AAC mp4). See docs/commands/render.md.';

  static override examples = [
    '<%= config.bin %> render --checkpoint runs/ldm --video person.mp4 --audio speech.wav -o out.mp4',
    '<%= config.bin %> render --checkpoint runs/ldm/ckpt-00100000 --video person.mp4 --audio speech.m4a -o out.mp4 --steps 200 --progressive --backend webgpu',
  ];

  static override flags = {
    checkpoint: Flags.string({ summary: 'LDM run folder (latest.json) or ckpt-* folder from `difftalk train ldm`.', required: true }),
    video: Flags.string({ summary: 'Person video (one visible face).', required: true }),
    audio: Flags.string({ summary: 'Driving speech (any file ffmpeg decodes).', required: true }),
    output: Flags.string({ char: 'o', summary: 'Output .mp4.', required: true }),
    steps: Flags.integer({ min: 1, default: DEFAULT_RENDER.steps, summary: 'DDIM steps (DiffTalk inference: 200).' }),
    progressive: Flags.boolean({ default: false, summary: "Reference = previous generated frame (the paper's progressive variant)." }),
    seed: Flags.integer({ default: DEFAULT_RENDER.seed }),
    chunk: Flags.integer({ min: 1, default: DEFAULT_RENDER.chunk, summary: 'Frames per batch / decode / paste chunk (memory bound).' }),
    loop: Flags.option({ options: ['pingpong', 'wrap'] as const, default: 'pingpong', summary: 'How a video shorter than the audio is looped.' })(),
    force: Flags.boolean({ default: false, summary: 'Replace an existing output file.' }),
    landmarker: Flags.option({ options: ['mediapipe', 'tfjs'] as const, default: 'mediapipe', summary: 'Landmark engine (as prep).' })(),
    'face-model': Flags.file({ exists: true, summary: 'FaceLandmarker .task bundle for mediapipe.' }),
    'audio-feature': Flags.string({ summary: "Audio feature spec when the checkpoint's training dataset is gone (e.g. mel, mfcc)." }),
    'prep-size': Flags.option({ options: ['256', '512'] as const, summary: "Prepared face size when the checkpoint's dataset is gone (default 256)." })(),
    'crop-ratio': Flags.string({ default: '1.2', summary: 'Face box enlargement for the crop (HDTF crop_ratio).' }),
    feather: Flags.integer({ min: 0, summary: 'Paste-back feather width in source pixels (default 4% of the crop side).' }),
    'keep-work': Flags.boolean({ default: false, summary: 'Keep the work folder (prepared clip) beside the output.' }),
    backend: backendFlag(),
    precision: precisionFlag(),
  };

  async run(): Promise<RenderResult & { backend: string; precision: string; device?: GpuDevice }> {
    const { flags } = await this.parse(Render);
    const onEvent = this.events(flags['log-level']);
    const { backend, precision, device } = await startBackend(flags.backend, flags.precision, onEvent);
    const result = await renderVideo({
      checkpoint: flags.checkpoint,
      video: flags.video,
      audio: flags.audio,
      out: flags.output,
      steps: flags.steps,
      progressive: flags.progressive,
      seed: flags.seed,
      chunk: flags.chunk,
      loop: flags.loop,
      force: flags.force,
      landmarker: flags.landmarker,
      faceModel: flags['face-model'],
      audioFeature: flags['audio-feature'],
      prepSize: flags['prep-size'] === undefined ? undefined : (Number(flags['prep-size']) as 256 | 512),
      cropRatio: numberFlag('crop-ratio', flags['crop-ratio'], { ge: 0.1, le: 10 }),
      feather: flags.feather,
      keepWork: flags['keep-work'],
      precision,
      onEvent,
    });
    this.log(
      `${result.out}: ${result.frames} frames (${result.seconds.toFixed(2)} s) at ${result.framesPerSecond.toFixed(2)} frames/s, checkpoint ${result.checkpoint}`,
    );
    return { ...result, backend, precision, ...(device ? { device } : {}) };
  }
}
