/**
 * Training pictures (src/train/report.ts), rendered to PNG and checked pixel by pixel:
 * - sampleGridPng: cells of a real face (astronaut.png from ../shared, 32×32 as the tiny preset's crops) are upscaled
 *   by nearest neighbour to ≥ 256 px; every pixel of a cell's interior equals the source pixel floor(y·32/256) (the
 *   reference is computed here from the source array; exact after the [-1,1] → uint8 round trip, tolerance ±1 level),
 *   titles and labels are drawn (dark pixels in the title band and label column, which hold no image).
 * - lossCurveSvg: one panel per series, both y axes labelled "(log scale)", x axes "step"; librsvg (sharp) renders it.
 * The PNGs are kept under $DIFFTALK_KEEP_TMP runs for looking at them (the test prints the folder).
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { GRID_MIN_CELL, lossCurveSvg, sampleGridPng, type GridRow } from '../../src/train/report.js';
import { MEDIA, tmpDir } from '../helpers.js';

const SIZE = 32;
const RGB = 3;

async function faceCell(left: number, top: number, side: number): Promise<Float32Array> {
  const { data } = await sharp(path.join(MEDIA, 'astronaut.png'))
    .extract({ left, top, width: side, height: side })
    .resize(SIZE, SIZE)
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return Float32Array.from(data, (v) => v / 127.5 - 1);
}

describe('training pictures', () => {
  const dir = tmpDir('difftalk-report-');

  test('sample grid: upscaled ≥ 256 px cells with exact nearest-neighbour pixels, titles and row labels', async (t) => {
    const ref = await faceCell(150, 30, 200);
    const masked = Float32Array.from(ref, (v, i) => (Math.floor(i / RGB / SIZE) >= SIZE / 2 ? -1 : v));
    const sample = await faceCell(160, 40, 190);
    const target = await faceCell(140, 20, 210);
    const cells = (s: Float32Array) => [
      { title: 'reference', rgb: ref, size: SIZE },
      { title: 'masked', rgb: masked, size: SIZE },
      { title: 'sample', rgb: s, size: SIZE },
      { title: 'target', rgb: target, size: SIZE },
    ];
    const rows: GridRow[] = [
      { label: 'own audio + landmarks (frame 12)', cells: cells(sample) },
      { label: 'audio of frame 87\n(does the mouth follow?)', cells: cells(target) },
    ];
    const png = await sampleGridPng(rows, { title: 'LDM samples — step 40 (tiny, DDIM 50)' });
    writeFileSync(path.join(dir, 'grid.png'), png);
    t.diagnostic(`pictures in ${dir}`);
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    const cell = GRID_MIN_CELL;
    assert.equal(info.channels, RGB);
    assert.ok(info.width >= 4 * cell && info.height >= 2 * cell);
    // Layout constants of the grid (see report.ts): title 40 px, cell title 24 px, label column 200 px, padding 8 px.
    const at = (x: number, y: number, k: number) => data[(y * info.width + x) * RGB + k]!;
    const cellOrigin = (r: number, c: number) => ({ x: 200 + c * (cell + 8), y: 40 + r * (24 + cell + 8) + 24 });
    let worst = 0;
    for (const [r, c, img] of [
      [0, 0, ref],
      [0, 2, sample],
      [1, 3, target],
    ] as const) {
      const o = cellOrigin(r, c);
      for (let y = 0; y < cell; y += 3) {
        for (let x = 0; x < cell; x += 3) {
          const sy = Math.floor((y * SIZE) / cell);
          const sx = Math.floor((x * SIZE) / cell);
          for (let k = 0; k < RGB; k++) {
            const want = Math.max(0, Math.min(255, Math.round((img[(sy * SIZE + sx) * RGB + k]! + 1) * 127.5)));
            worst = Math.max(worst, Math.abs(at(o.x + x, o.y + y, k) - want));
          }
        }
      }
    }
    assert.ok(worst <= 1, `cell pixels differ from nearest-neighbour by ${worst} levels`);
    const darkIn = (x0: number, y0: number, w: number, h: number) => {
      let n = 0;
      for (let y = y0; y < y0 + h; y++) for (let x = x0; x < x0 + w; x++) if (at(x, y, 0) < 128) n++;
      return n;
    };
    assert.ok(darkIn(0, 0, info.width, 40) > 100, 'title drawn');
    assert.ok(darkIn(200, 40, cell, 24) > 20, 'cell title drawn');
    assert.ok(darkIn(0, 64, 200, cell) > 100, 'row label drawn');
  });

  test('loss.svg: train and validation on their own panels with labelled log axes', async () => {
    const train = Array.from({ length: 200 }, (_, i) => ({ step: i + 1, value: 0.8 * Math.exp(-i / 60) + 0.05 + 0.02 * Math.sin(i) ** 2 }));
    const validation = [50, 100, 150, 200].map((step) => ({ step, value: 0.3 * Math.exp(-step / 120) + 0.08 }));
    const svg = lossCurveSvg({ train, validation }, 'ldm loss (tiny)');
    assert.equal((svg.match(/\(log scale\)/g) ?? []).length, 2);
    assert.equal((svg.match(/>step</g) ?? []).length, 2);
    assert.equal((svg.match(/<path /g) ?? []).length, 2);
    const png = await sharp(Buffer.from(svg)).png().toBuffer();
    writeFileSync(path.join(dir, 'loss.png'), png);
    const meta = await sharp(png).metadata();
    assert.equal(meta.width, 760);
    assert.ok(meta.height! > 2 * 250);
  });
});
