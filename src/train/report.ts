/**
 * Training artefacts for people: a loss-curve SVG (one panel per series — train loss and validation loss are different
 * quantities — each with labelled axes, log-scaled y) and labelled, upscaled PNG sample grids.
 */
import sharp from 'sharp';
import { writeFileAtomic } from '../util/fs.js';

export interface CurvePoint {
  step: number;
  value: number;
}

const escapeXml = (s: string) => s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);

const SVG_WIDTH = 760;
const PANEL_HEIGHT = 260;
const TITLE_HEIGHT = 34;
const MARGIN = { l: 78, r: 24, t: 28, b: 46 };
const TICKS = 4;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];

/** Tick labels of a log axis: 3 significant digits. */
const tick = (v: number) => (v >= 1e4 || v < 1e-3 ? v.toExponential(1) : Number(v.toPrecision(3)).toString());

/**
 * A self-contained SVG: a title, then one panel per series (in the order given) with its own log-scaled y axis
 * labelled "<name> loss (log scale)", an x axis labelled "step" shared in range by all panels, and the last value written
 * beside the curve. Non-positive and non-finite values are left out (a log axis cannot show them).
 */
export function lossCurveSvg(series: Record<string, readonly CurvePoint[]>, title = 'loss'): string {
  const entries = Object.entries(series);
  const H = TITLE_HEIGHT + Math.max(1, entries.length) * PANEL_HEIGHT;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${SVG_WIDTH}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${SVG_WIDTH / 2}" y="22" font-size="16" text-anchor="middle">${escapeXml(title)}</text>`,
  ];
  const allSteps = entries.flatMap(([, pts]) => pts.map((p) => p.step));
  const x0 = allSteps.length ? Math.min(...allSteps) : 0;
  const x1 = allSteps.length ? Math.max(...allSteps, x0 + 1) : 1;
  entries.forEach(([name, pts], i) => {
    const top = TITLE_HEIGHT + i * PANEL_HEIGHT;
    const color = COLORS[i % COLORS.length]!;
    const ok = pts.filter((p) => Number.isFinite(p.value) && p.value > 0);
    const px0 = MARGIN.l;
    const px1 = SVG_WIDTH - MARGIN.r;
    const py0 = top + MARGIN.t;
    const py1 = top + PANEL_HEIGHT - MARGIN.b;
    parts.push(`<text x="${px0}" y="${top + 18}" font-size="14" fill="${color}">${escapeXml(name)}</text>`);
    parts.push(`<rect x="${px0}" y="${py0}" width="${px1 - px0}" height="${py1 - py0}" fill="none" stroke="#888"/>`);
    parts.push(`<text x="${(px0 + px1) / 2}" y="${py1 + 36}" text-anchor="middle">step</text>`);
    const yLabel = `${escapeXml(/loss/i.test(name) ? name : `${name} loss`)} (log scale)`;
    parts.push(`<text transform="translate(16 ${(py0 + py1) / 2}) rotate(-90)" text-anchor="middle">${yLabel}</text>`);
    if (!ok.length) {
      parts.push(`<text x="${(px0 + px1) / 2}" y="${(py0 + py1) / 2}" text-anchor="middle" fill="#888">no data yet</text>`);
      return;
    }
    let y0 = Math.log10(Math.min(...ok.map((p) => p.value)));
    let y1 = Math.log10(Math.max(...ok.map((p) => p.value)));
    const MIN_DECADES = 0.05;
    if (y1 - y0 < MIN_DECADES) [y0, y1] = [(y0 + y1) / 2 - MIN_DECADES / 2, (y0 + y1) / 2 + MIN_DECADES / 2];
    const sx = (s: number) => px0 + ((s - x0) / (x1 - x0)) * (px1 - px0);
    const sy = (v: number) => py1 - ((Math.log10(v) - y0) / (y1 - y0)) * (py1 - py0);
    for (let k = 0; k <= TICKS; k++) {
      const v = 10 ** (y0 + ((y1 - y0) * k) / TICKS);
      parts.push(`<line x1="${px0 - 4}" y1="${sy(v).toFixed(1)}" x2="${px1}" y2="${sy(v).toFixed(1)}" stroke="#eee"/>`);
      parts.push(`<text x="${px0 - 6}" y="${(sy(v) + 4).toFixed(1)}" text-anchor="end">${tick(v)}</text>`);
      const s = Math.round(x0 + ((x1 - x0) * k) / TICKS);
      parts.push(`<text x="${sx(s).toFixed(1)}" y="${py1 + 16}" text-anchor="middle">${s}</text>`);
    }
    const d = ok.map((p, j) => `${j ? 'L' : 'M'}${sx(p.step).toFixed(1)},${sy(p.value).toFixed(1)}`).join('');
    parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
    const SPARSE_POINTS = 50;
    if (ok.length <= SPARSE_POINTS)
      for (const p of ok) parts.push(`<circle cx="${sx(p.step).toFixed(1)}" cy="${sy(p.value).toFixed(1)}" r="3" fill="${color}"/>`);
    const last = ok[ok.length - 1]!;
    parts.push(`<text x="${px1 - 4}" y="${py0 + 16}" text-anchor="end" fill="${color}">last ${tick(last.value)} @ step ${last.step}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** Fill an RGB canvas with an HWC image in [-1, 1] (size×size), nearest-neighbour upscaled to px×px at (x0, y0). */
function blit(canvas: Buffer, canvasWidth: number, img: Float32Array, size: number, px: number, x0: number, y0: number): void {
  const RGB = 3;
  if (img.length !== size * size * RGB) throw new Error(`sample grid: a ${size}×${size} cell needs ${size * size * RGB} values, got ${img.length}`);
  for (let y = 0; y < px; y++) {
    const sy = Math.floor((y * size) / px);
    for (let x = 0; x < px; x++) {
      const sx = Math.floor((x * size) / px);
      for (let k = 0; k < RGB; k++) {
        const v = Math.round((img[(sy * size + sx) * RGB + k]! + 1) * 127.5);
        canvas[((y0 + y) * canvasWidth + x0 + x) * RGB + k] = Math.max(0, Math.min(255, v));
      }
    }
  }
}

/** A sample-grid row: a label (e.g. the condition used) and its cells (reference | masked | sample | target …). */
export interface GridRow {
  label: string;
  cells: { title: string; rgb: Float32Array /* HWC in [-1,1] */; size: number }[];
}

/** Smallest side of a cell in a sample grid (pixels), so 32–128 px model outputs are readable. */
export const GRID_MIN_CELL = 256;
const GRID_TITLE_H = 40;
const GRID_CELL_TITLE_H = 24;
const GRID_LABEL_W = 200;
const GRID_PAD = 8;
const GRID_LINE_H = 16;

/**
 * A labelled PNG sample grid: `opts.title` on top (the step, the run), one row per entry with its label on the left
 * (wrapped at '\n' and at ~24 characters), each cell titled and upscaled (nearest neighbour, so pixels stay visible)
 * to at least {@link GRID_MIN_CELL} px.
 */
export async function sampleGridPng(rows: GridRow[], opts: { title: string }): Promise<Buffer> {
  const cols = Math.max(1, ...rows.map((r) => r.cells.length));
  const cellPx = Math.max(GRID_MIN_CELL, ...rows.flatMap((r) => r.cells.map((c) => c.size)));
  const rowH = GRID_CELL_TITLE_H + cellPx + GRID_PAD;
  const W = GRID_LABEL_W + cols * (cellPx + GRID_PAD) + GRID_PAD;
  const H = GRID_TITLE_H + Math.max(1, rows.length) * rowH;
  const RGB = 3;
  const WHITE = 255;
  const canvas = Buffer.alloc(W * H * RGB, WHITE);
  const text: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">`,
    `<text x="${GRID_PAD}" y="28" font-size="20" font-weight="bold">${escapeXml(opts.title)}</text>`,
  ];
  const LABEL_CHARS = 24;
  rows.forEach((row, r) => {
    const top = GRID_TITLE_H + r * rowH;
    const lines = row.label.split('\n').flatMap((l) => l.match(new RegExp(`.{1,${LABEL_CHARS}}(\\s|$)|.{1,${LABEL_CHARS}}`, 'g')) ?? ['']);
    lines.forEach((l, j) =>
      text.push(`<text x="${GRID_PAD}" y="${top + GRID_CELL_TITLE_H + 20 + j * GRID_LINE_H}" font-size="14">${escapeXml(l.trim())}</text>`),
    );
    row.cells.forEach((cell, c) => {
      const x = GRID_LABEL_W + c * (cellPx + GRID_PAD);
      text.push(`<text x="${x + cellPx / 2}" y="${top + 18}" font-size="15" text-anchor="middle">${escapeXml(cell.title)}</text>`);
      blit(canvas, W, cell.rgb, cell.size, cellPx, x, top + GRID_CELL_TITLE_H);
    });
  });
  text.push('</svg>');
  // sharp composites after every other operation, so the RGBA result is made RGB in a second pass.
  const composed = await sharp(canvas, { raw: { width: W, height: H, channels: RGB } })
    .composite([{ input: Buffer.from(text.join('\n')), top: 0, left: 0 }])
    .raw()
    .toBuffer({ resolveWithObject: true });
  return sharp(composed.data, { raw: { width: W, height: H, channels: composed.info.channels } })
    .removeAlpha()
    .png()
    .toBuffer();
}

/** Write a grid PNG: rows × cols tiles, each an HWC image in [-1, 1] of size×size (unlabelled, unscaled). */
export async function writeImageGrid(file: string, tiles: readonly Float32Array[][], size: number): Promise<void> {
  const rows = tiles.length;
  const cols = Math.max(...tiles.map((r) => r.length));
  const W = cols * size;
  const buf = Buffer.alloc(rows * size * W * 3, 255);
  tiles.forEach((row, r) => row.forEach((img, c) => blit(buf, W, img, size, size, c * size, r * size)));
  const png = await sharp(buf, { raw: { width: W, height: rows * size, channels: 3 } })
    .png()
    .toBuffer();
  await writeFileAtomic(file, png);
}
