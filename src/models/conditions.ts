/**
 * The DiffTalk conditions of one frame, shared by training batches and inference (src/models/pipeline.ts): the audio
 * context window, the mouth mask of the masked target and the latent jaw mask.
 */
import { jawPolygon, rasterizeMask } from '../face/masks.js';

/** Frames of audio context per sample, and the offset of the first one (i−4 … i+3). */
export const AUDIO_CONTEXT = 8;
export const AUDIO_CONTEXT_START = -4;
/** Landmark conditions are in the reference's 256-px coordinate frame. */
export const LANDMARK_FRAME = 256;

/** (8, window, dim) audio context of frame i of a clip: frames i−4 … i+3, zero outside the clip. */
export function audioContext(
  clip: { frames: number; audio: Float32Array },
  i: number,
  window: number,
  dim: number,
  out?: Float32Array,
  offset = 0,
): Float32Array {
  const w = window * dim;
  const o = out ?? new Float32Array(AUDIO_CONTEXT * w);
  for (let k = 0; k < AUDIO_CONTEXT; k++) {
    const f = i + AUDIO_CONTEXT_START + k;
    const dst = offset + k * w;
    if (f < 0 || f >= clip.frames) o.fill(0, dst, dst + w);
    else o.set(clip.audio.subarray(f * w, (f + 1) * w), dst);
  }
  return o;
}

/** Set every row ≥ `row` (in imageSize coordinates) of an HWC image in [-1, 1] to −1 (the training mask). */
export function maskRowsBelow(img: Float32Array, imageSize: number, row: number): Float32Array {
  const out = Float32Array.from(img);
  const r = Math.max(0, Math.min(imageSize, row));
  out.fill(-1, r * imageSize * 3);
  return out;
}

/** A mask row of the stored frame in imageSize coordinates (floor, as int(lm.y / scaler) in the reference). */
export function scaleMaskRow(row: number, size: number, imageSize: number): number {
  return Math.floor((row * imageSize) / size);
}

/**
 * The latent inpainting mask of a frame (1 = keep ground truth, 0 = generate): the jaw polygon (iBUG 2…14 + 33) filled
 * at the stored frame's resolution as DiffTalk does, then reduced to the latent grid by box averaging and rounding
 * (the reference resizes the 0/1 image bicubically).
 */
export function latentJawMask(lm68: Float32Array, frameSize: number, latentSize: number): Float32Array {
  const full = rasterizeMask(jawPolygon(lm68), frameSize);
  const out = new Float32Array(latentSize * latentSize);
  const f = frameSize / latentSize;
  for (let y = 0; y < latentSize; y++) {
    for (let x = 0; x < latentSize; x++) {
      let s = 0;
      let n = 0;
      for (let yy = Math.floor(y * f); yy < Math.floor((y + 1) * f); yy++) {
        for (let xx = Math.floor(x * f); xx < Math.floor((x + 1) * f); xx++) {
          s += full[yy * frameSize + xx]!;
          n++;
        }
      }
      out[y * latentSize + x] = s / n >= 0.5 ? 1 : 0;
    }
  }
  return out;
}
