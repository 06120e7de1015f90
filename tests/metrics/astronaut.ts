/** Test helper: ../shared/data/media/astronaut.png (lossless 512×512 RGB) and the crops/pairs of eval-metrics.md §2/§3. */
import path from 'node:path';
import sharp from 'sharp';
import type { RgbFrames } from '../../src/media/types.js';
import { MEDIA } from '../helpers.js';

export interface Image {
  width: number;
  height: number;
  data: Uint8Array;
}

export async function loadAstronaut(): Promise<Image> {
  const { data, info } = await sharp(path.join(MEDIA, 'astronaut.png')).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data) };
}

/** A[y0:y0+h, x0:x0+w] (numpy slicing). */
export function crop(a: Image, y0: number, x0: number, h: number, w: number): Image {
  const out = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++) out.set(a.data.subarray(((y0 + y) * a.width + x0) * 3, ((y0 + y) * a.width + x0 + w) * 3), y * w * 3);
  return { width: w, height: h, data: out };
}

/** (A // 16) * 16 + 8 */
export function quantise(a: Image): Image {
  return { ...a, data: a.data.map((v) => (v >> 4) * 16 + 8) };
}

export function frames(...imgs: Image[]): RgbFrames {
  const data = new Uint8Array(imgs.reduce((s, i) => s + i.data.length, 0));
  let p = 0;
  for (const i of imgs) {
    data.set(i.data, p);
    p += i.data.length;
  }
  return { width: imgs[0]!.width, height: imgs[0]!.height, count: imgs.length, data };
}
