/**
 * Contact sheets for checking landmarks by eye: a PNG grid of evenly spaced frames with the 478 mesh points (small,
 * white), the 68 iBUG points coloured by region, the training mask row (pt30, red line), the test row (pt33, orange
 * dashed) and the test jaw polygon (2..14 + 33, cyan).
 */
import sharp, { type OverlayOptions } from 'sharp';
import { DifftalkError } from '../util/errors.js';
import { produceAtomic } from '../util/fs.js';
import { IBUG68_REGIONS } from '../face/ibug68.js';
import { jawPolygon, maskRows } from '../face/masks.js';
import type { FaceLandmarks } from '../face/types.js';
import type { RgbFrames } from '../media/types.js';
import { LM68_VALUES } from '../face/ibug68.js';

export interface PreviewLandmarks {
  /** count × 1434 mesh points (x, y, z), pixels of the frames; NaN where no face. */
  mesh?: Float32Array;
  /** count × 136 iBUG-68 points. */
  lm68: Float32Array;
  status?: FaceLandmarks['status'][];
}

/** Cells of a contact sheet by default. */
export const PREVIEW_CELLS = 12;

export interface PreviewOptions {
  /** Frames shown (evenly spaced, first and last included). Default 12. */
  cells?: number;
  /** Grid columns. Default 4. */
  columns?: number;
  /**
   * When `frames` holds only the frames to show: frames[i] is clip frame frameNumbers[i], and the landmarks cover the
   * whole clip. Without it, `frames` is the whole clip and `cells` evenly spaced frames are shown.
   */
  frameNumbers?: number[];
}

const REGION_COLOURS: Record<keyof typeof IBUG68_REGIONS, string> = {
  jaw: '#ffd400',
  rightBrow: '#ff00ff',
  leftBrow: '#ff00ff',
  noseBridge: '#00ff00',
  noseBase: '#00c000',
  rightEye: '#00bfff',
  leftEye: '#00bfff',
  outerLip: '#ff3030',
  innerLip: '#ff9090',
};

/** Indices of `cells` evenly spaced frames out of `count`. */
export function previewFrameIndices(count: number, cells: number): number[] {
  if (count <= 0) return [];
  const n = Math.min(count, Math.max(1, cells));
  if (n === 1) return [0];
  return Array.from({ length: n }, (_, i) => Math.round((i * (count - 1)) / (n - 1)));
}

function overlay(lm: PreviewLandmarks, f: number, W: number, dx: number, dy: number): string {
  const parts: string[] = [];
  const r = Math.max(1, W / 256);
  if (lm.mesh) {
    const o = f * 1434;
    for (let i = 0; i < 478; i++) {
      const x = lm.mesh[o + i * 3]!;
      const y = lm.mesh[o + i * 3 + 1]!;
      if (Number.isFinite(x) && Number.isFinite(y))
        parts.push(`<circle cx="${(dx + x).toFixed(1)}" cy="${(dy + y).toFixed(1)}" r="${(0.6 * r).toFixed(2)}" fill="#ffffff" fill-opacity="0.7"/>`);
    }
  }
  const pts = lm.lm68.subarray(f * LM68_VALUES, (f + 1) * LM68_VALUES);
  const rows = maskRows(pts);
  if (rows) {
    parts.push(`<line x1="${dx}" x2="${dx + W}" y1="${dy + rows.train + 0.5}" y2="${dy + rows.train + 0.5}" stroke="#ff0000" stroke-width="${r}"/>`);
    parts.push(
      `<line x1="${dx}" x2="${dx + W}" y1="${dy + rows.test + 0.5}" y2="${dy + rows.test + 0.5}" stroke="#ff8c00" stroke-width="${r}" stroke-dasharray="${4 * r},${3 * r}"/>`,
    );
    const poly = jawPolygon(pts);
    const coords: string[] = [];
    for (let i = 0; i < poly.length; i += 2) coords.push(`${(dx + poly[i]!).toFixed(1)},${(dy + poly[i + 1]!).toFixed(1)}`);
    parts.push(`<polygon points="${coords.join(' ')}" fill="none" stroke="#00ffff" stroke-width="${r}"/>`);
    for (const [region, [a, b]] of Object.entries(IBUG68_REGIONS) as [keyof typeof IBUG68_REGIONS, readonly [number, number]][]) {
      for (let k = a; k < b; k++) {
        parts.push(
          `<circle cx="${(dx + pts[k * 2]!).toFixed(1)}" cy="${(dy + pts[k * 2 + 1]!).toFixed(1)}" r="${(1.8 * r).toFixed(2)}" fill="${REGION_COLOURS[region]}"/>`,
        );
      }
    }
  }
  const status = lm.status?.[f] ?? (rows ? 'ok' : 'no-face');
  const fs = Math.max(10, Math.round(W / 18));
  parts.push(
    `<text x="${dx + 4}" y="${dy + fs + 2}" font-family="sans-serif" font-size="${fs}" fill="#ffffff" stroke="#000000" stroke-width="0.6">#${f} ${status}</text>`,
  );
  return parts.join('');
}

/** Write the contact sheet PNG atomically; returns the (clip) frame indices shown. */
export async function writePreview(frames: RgbFrames, lm: PreviewLandmarks, file: string, opts: PreviewOptions = {}): Promise<number[]> {
  const { width: W, height: H, count, data } = frames;
  const clipFrames = opts.frameNumbers ? lm.lm68.length / LM68_VALUES : count;
  if (lm.lm68.length !== clipFrames * LM68_VALUES)
    throw new DifftalkError('bad-landmarks', `preview: lm68 has ${lm.lm68.length} floats for ${clipFrames} frames`);
  if (lm.mesh && lm.mesh.length !== clipFrames * 1434)
    throw new DifftalkError('bad-landmarks', `preview: mesh has ${lm.mesh.length} floats for ${clipFrames} frames`);
  const numbers = opts.frameNumbers;
  if (numbers && (numbers.length !== count || numbers.some((f) => !(Number.isInteger(f) && f >= 0 && f < clipFrames)))) {
    throw new DifftalkError('bad-frames', `preview: ${count} frames but frame numbers ${JSON.stringify(numbers)} for a ${clipFrames}-frame clip`);
  }
  // [index into frames, clip frame index]
  const shown = numbers ? numbers.map((f, i) => [i, f] as const) : previewFrameIndices(count, opts.cells ?? PREVIEW_CELLS).map((f) => [f, f] as const);
  if (!shown.length) throw new DifftalkError('bad-frames', 'preview: no frames');
  const cols = Math.min(opts.columns ?? 4, shown.length);
  const rowsN = Math.ceil(shown.length / cols);
  const sheetW = cols * W;
  const sheetH = rowsN * H;
  const frameBytes = W * H * 3;
  const svg: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${sheetW}" height="${sheetH}">`];
  const composites: OverlayOptions[] = [];
  shown.forEach(([k, f], i) => {
    const dx = (i % cols) * W;
    const dy = Math.floor(i / cols) * H;
    composites.push({
      input: Buffer.from(data.buffer, data.byteOffset + k * frameBytes, frameBytes),
      raw: { width: W, height: H, channels: 3 },
      left: dx,
      top: dy,
    });
    svg.push(overlay(lm, f, W, dx, dy));
  });
  svg.push('</svg>');
  composites.push({ input: Buffer.from(svg.join('')), left: 0, top: 0 });
  await produceAtomic(file, async (tmp) => {
    await sharp({ create: { width: sheetW, height: sheetH, channels: 3, background: '#000000' } })
      .composite(composites)
      .png()
      .toFile(tmp);
  });
  return shown.map(([, f]) => f);
}
