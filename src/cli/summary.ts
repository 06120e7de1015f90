import type { PrepResult } from '../prep/pipeline.js';

/** A plain-text table: columns padded to their widest cell. */
export function table(rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map(String));
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => r[i]?.length ?? 0)));
  return cells.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')).join('\n');
}

/** The end-of-run summary of `difftalk prep`: clips by outcome, drop reasons, per-stage speed. */
export function renderPrepSummary(r: PrepResult): string {
  const lines: string[] = [];
  lines.push(`dataset: ${r.out}`);
  lines.push(
    table([
      ['clips', 'count'],
      ['done', r.clips.done],
      ...Object.entries(r.dropReasons).map(([k, v]) => [`dropped: ${k}`, v ?? 0]),
      ['skipped (finished earlier)', r.clips.skippedAsFinished],
      ['frames', r.frames],
      ['train clips / frames', `${r.splits.train.clips} / ${r.splits.train.frames}`],
      ['test clips / frames', `${r.splits.test.clips} / ${r.splits.test.frames}`],
    ]),
  );
  if (r.stages.length) {
    lines.push('');
    lines.push(
      table([
        ['stage', 'seconds', 'frames', 'frames/s'],
        ...r.stages.map((s) => [s.stage, s.seconds.toFixed(2), s.frames, s.frames ? s.framesPerSecond.toFixed(1) : '-']),
        ['end to end', r.wallSeconds.toFixed(2), '', r.framesPerSecond.toFixed(1)],
      ]),
    );
  }
  lines.push(`manifest: ${r.manifest}`);
  return lines.join('\n');
}
