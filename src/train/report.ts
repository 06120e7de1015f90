/**
 * Training artefacts for people: a loss-curve SVG (train loss and validation loss against step) and PNG image grids.
 */
import sharp from 'sharp';
import { writeFileAtomic } from '../util/fs.js';

export interface CurvePoint {
  step: number;
  value: number;
}

/** A self-contained SVG line chart (log-scaled y) of one or more series. */
export function lossCurveSvg(series: Record<string, readonly CurvePoint[]>, title = 'loss'): string {
  const W = 720;
  const H = 360;
  const m = { l: 60, r: 20, t: 30, b: 40 };
  const all = Object.values(series)
    .flat()
    .filter((p) => Number.isFinite(p.value) && p.value > 0);
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
  if (!all.length) return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><text x="20" y="30">${title}: no data yet</text></svg>`;
  const x0 = Math.min(...all.map((p) => p.step));
  const x1 = Math.max(...all.map((p) => p.step), x0 + 1);
  const y0 = Math.log10(Math.min(...all.map((p) => p.value)));
  const y1 = Math.max(Math.log10(Math.max(...all.map((p) => p.value))), y0 + 1e-3);
  const sx = (s: number) => m.l + ((s - x0) / (x1 - x0)) * (W - m.l - m.r);
  const sy = (v: number) => H - m.b - ((Math.log10(v) - y0) / (y1 - y0)) * (H - m.t - m.b);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${m.l}" y="18">${title}</text>`,
  ];
  parts.push(
    `<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="#888"/><line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="#888"/>`,
  );
  for (let k = 0; k <= 4; k++) {
    const v = 10 ** (y0 + ((y1 - y0) * k) / 4);
    parts.push(`<text x="4" y="${sy(v) + 4}">${v.toPrecision(3)}</text>`);
    const s = Math.round(x0 + ((x1 - x0) * k) / 4);
    parts.push(`<text x="${sx(s) - 10}" y="${H - m.b + 16}">${s}</text>`);
  }
  Object.entries(series).forEach(([name, pts], i) => {
    const ok = pts.filter((p) => Number.isFinite(p.value) && p.value > 0);
    if (!ok.length) return;
    const d = ok.map((p, j) => `${j ? 'L' : 'M'}${sx(p.step).toFixed(1)},${sy(p.value).toFixed(1)}`).join('');
    parts.push(`<path d="${d}" fill="none" stroke="${colors[i % colors.length]}" stroke-width="1.5"/>`);
    parts.push(`<text x="${W - m.r - 150}" y="${m.t + 14 * (i + 1)}" fill="${colors[i % colors.length]}">${name}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** Write a grid PNG: rows × cols tiles, each an HWC image in [-1, 1] of size×size. */
export async function writeImageGrid(file: string, tiles: readonly Float32Array[][], size: number): Promise<void> {
  const rows = tiles.length;
  const cols = Math.max(...tiles.map((r) => r.length));
  const W = cols * size;
  const buf = Buffer.alloc(rows * size * W * 3, 255);
  tiles.forEach((row, r) =>
    row.forEach((img, c) => {
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          for (let k = 0; k < 3; k++) {
            const v = Math.round((img[(y * size + x) * 3 + k]! + 1) * 127.5);
            buf[((r * size + y) * W + c * size + x) * 3 + k] = Math.max(0, Math.min(255, v));
          }
        }
      }
    }),
  );
  const png = await sharp(buf, { raw: { width: W, height: rows * size, channels: 3 } })
    .png()
    .toBuffer();
  await writeFileAtomic(file, png);
}
