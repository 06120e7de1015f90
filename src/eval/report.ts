/**
 * Eval report files (all written atomically):
 * - frames.csv: one row per (clip, system, frame) with every per-frame metric;
 * - clips.csv: one row per (clip, system) with the GT frame prediction frame 0 was aligned to, the clip means,
 *   LSE-D/LSE-C/offset and notes;
 * - summary.json: protocol (crop, landmark engine, SyncNet weights identity, deviations), dataset-level scores per
 *   system with their variant names, per-clip rows, unmatched clips;
 * - report.html: self-contained page: summary table, per-frame curves as inline SVG, LSE distance curves, and the
 *   worst frames (prediction | GT) as embedded JPEGs.
 */
import { mkdir, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { DifftalkError } from '../util/errors.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/fs.js';
import { DIRECTION_TEXT } from '../metrics/metric.js';
import type { EvalResult, FrameResult } from './pipeline.js';

function csvCell(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : Number.isNaN(v) ? 'nan' : v > 0 ? 'inf' : '-inf';
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(header: readonly string[], rows: ReadonlyArray<readonly unknown[]>): string {
  return [header.map(csvCell).join(','), ...rows.map((r) => r.map(csvCell).join(','))].join('\n') + '\n';
}

export function framesCsv(frames: readonly FrameResult[]): string {
  const names = [...new Set(frames.flatMap((f) => Object.keys(f.values)))];
  return toCsv(
    ['clip', 'system', 'frame', ...names],
    frames.map((f) => [f.clip, f.system, f.frame, ...names.map((n) => f.values[n])]),
  );
}

export function clipsCsv(r: EvalResult): string {
  const names = [...new Set(r.clips.flatMap((c) => Object.keys(c.scores)))];
  return toCsv(
    ['clip', 'system', 'frames', 'gt_offset', ...names, 'pred', 'gt', 'notes'],
    r.clips.map((c) => [c.clip, c.system, c.frames, c.alignment?.offset ?? '', ...names.map((n) => c.scores[n]), c.pred, c.gt, c.notes.join('; ')]),
  );
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(2) : v.toFixed(4);
}

/** A line chart as inline SVG: one polyline per series. */
export function svgLines(
  title: string,
  series: Array<{ label: string; values: readonly number[]; color: string }>,
  w = 640,
  h = 180,
  /** Index of the series that sets the vertical scale (the prediction); the others are clipped to the box. */
  scaleFrom?: number,
): string {
  const scaleSeries = scaleFrom !== undefined && series[scaleFrom] ? [series[scaleFrom]] : series;
  const all = scaleSeries.flatMap((s) => s.values.filter((v) => Number.isFinite(v)));
  if (all.length === 0) return '';
  let lo = Math.min(...all);
  let hi = Math.max(...all);
  if (hi === lo) {
    hi += 1;
    lo -= 1;
  }
  const n = Math.max(...series.map((s) => s.values.length));
  const padL = 50;
  const padB = 20;
  const x = (i: number) => padL + (i / Math.max(1, n - 1)) * (w - padL - 10);
  const y = (v: number) => 10 + (1 - (Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo)) * (h - 10 - padB);
  const offScale = (vs: readonly number[]) => vs.some((v) => Number.isFinite(v) && (v > hi || v < lo));
  const lines = series
    .map((s) => {
      const pts = s.values
        .map((v, i) => (Number.isFinite(v) ? `${x(i).toFixed(1)},${y(v).toFixed(1)}` : ''))
        .filter(Boolean)
        .join(' ');
      return `<polyline fill="none" stroke="${s.color}" stroke-width="1.2" points="${pts}"><title>${esc(s.label)}</title></polyline>`;
    })
    .join('');
  const legend = series
    .map(
      (s, i) => `<text x="${padL + 5 + i * 150}" y="${h - 4}" font-size="11" fill="${s.color}">${esc(s.label)}${offScale(s.values) ? ' (clipped)' : ''}</text>`,
    )
    .join('');
  return `<figure><figcaption>${esc(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}">
<rect x="${padL}" y="10" width="${w - padL - 10}" height="${h - 10 - padB}" fill="none" stroke="#ccc"/>
<text x="2" y="16" font-size="10">${fmt(hi)}</text><text x="2" y="${h - padB}" font-size="10">${fmt(lo)}</text>${lines}${legend}</svg></figure>`;
}

export function reportHtml(r: EvalResult): string {
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'];
  const systems = Object.keys(r.summary);
  const names = [...new Set(systems.flatMap((s) => r.summary[s]!.map((m) => m.name)))];
  const table = `<table><tr><th>metric</th>${systems.map((s) => `<th>${esc(s)}</th>`).join('')}<th>better</th><th>averaged over</th></tr>${names
    .map((n) => {
      const any = systems.map((s) => r.summary[s]!.find((m) => m.name === n)).find(Boolean)!;
      return `<tr><td>${esc(n)}</td>${systems
        .map((s) => {
          const m = r.summary[s]!.find((x) => x.name === n);
          return `<td>${m ? fmt(m.value) : ''}</td>`;
        })
        .join('')}<td>${DIRECTION_TEXT[any.direction]}</td><td>${any.averagedOver} (${any.count})</td></tr>`;
    })
    .join('')}</table>`;
  const clipIds = [...new Set(r.clips.map((c) => c.clip))];
  const perClip = clipIds
    .map((id) => {
      const fr = r.frames.filter((f) => f.clip === id);
      const metricNames = [...new Set(fr.flatMap((f) => Object.keys(f.values)))];
      const curves = metricNames
        .map((m) => {
          // The prediction sets the scale: the GT-vs-GT line (PSNR's 100 dB cap) would flatten its curve.
          const systemsHere = [...new Set(fr.map((f) => f.system))];
          const predIndex = systemsHere.indexOf('pred');
          return svgLines(
            `${id}: ${m} per frame`,
            systemsHere.map((sys, i) => ({
              label: sys,
              values: fr.filter((f) => f.system === sys).map((f) => f.values[m]!),
              color: colors[i % colors.length]!,
            })),
            undefined,
            undefined,
            predIndex >= 0 ? predIndex : undefined,
          );
        })
        .join('');
      const lse = r.clips.filter((c) => c.clip === id && c.lse);
      const lseCurve = lse.length
        ? svgLines(
            `${id}: SyncNet mean distance vs audio offset (frames −15…+15; LSE-D = minimum)`,
            lse.map((c, i) => ({ label: c.system, values: [...c.lse!.mdist].reverse(), color: colors[i % colors.length]! })),
          )
        : '';
      const notes = r.clips.filter((c) => c.clip === id).flatMap((c) => c.notes.map((n) => `${c.system}: ${n}`));
      const worst = r.worst
        .filter((w) => w.clip === id)
        .map(
          (w) =>
            `<figure><img alt="frame ${w.frame}" src="data:image/jpeg;base64,${Buffer.from(w.jpeg).toString('base64')}"/><figcaption>frame ${w.frame}: ${esc(w.metric)} = ${fmt(w.value)} (prediction | GT)</figcaption></figure>`,
        )
        .join('');
      return `<section><h2>${esc(id)}</h2>${notes.length ? `<ul>${notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>` : ''}${curves}${lseCurve}${worst ? `<h3>Worst frames</h3>${worst}` : ''}</section>`;
    })
    .join('');
  const p = r.protocol;
  const proto = [
    `tool: difftalk ${p.tool.version}`,
    p.commandLine ? `command: ${p.commandLine.join(' ')}` : '',
    `crop: ${p.crop}${p.crop === 'face' ? ` (SyncNet crop rule from GT landmark boxes, ${p.cropSize}²)` : ''}`,
    p.landmarkEngine ? `landmark engine: ${p.landmarkEngine.engine} (${p.landmarkEngine.model}, sha256 ${p.landmarkEngine.sha256})` : '',
    p.syncnet ? `SyncNet: ${p.syncnet.description}` : '',
    r.lseWindowsPerSecond ? `SyncNet throughput: ${r.lseWindowsPerSecond.toFixed(1)} windows/s` : '',
    ...p.weights.map((wt) => `weights ${wt.kind}: ${wt.file} (sha256 ${wt.sha256})`),
    ...Object.entries(p.networks ?? {}).map(([net, ex]) => `network ${net}: ${ex}`),
    ...p.deviations.map((d) => `deviation: ${d}`),
    r.unmatched.pred.length ? `predictions without GT: ${r.unmatched.pred.join(', ')}` : '',
    r.unmatched.gt.length ? `GT clips without prediction: ${r.unmatched.gt.join(', ')}` : '',
  ].filter(Boolean);
  return `<!doctype html><html><head><meta charset="utf-8"><title>difftalk eval</title>
<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}figure{display:inline-block;margin:6px}figcaption{font-size:12px}</style>
</head><body><h1>difftalk eval</h1><ul>${proto.map((x) => `<li>${esc(x)}</li>`).join('')}</ul>${table}${perClip}</body></html>\n`;
}

/**
 * Refuse a report folder that already holds something (an earlier report or the user's files) unless `force`:
 * DifftalkError 'out-not-empty' (exit 2) with the fix. A path that exists and is not a folder is always refused.
 */
export async function checkReportFolder(out: string, force = false): Promise<void> {
  let st;
  try {
    st = await stat(out);
  } catch {
    return; // does not exist yet: created when the report is written
  }
  if (!st.isDirectory()) throw new DifftalkError('out-not-folder', `--out ${out} exists and is not a folder`, { suggestion: 'choose a folder for --out' });
  const entries = await readdir(out);
  if (entries.length > 0 && !force) {
    throw new DifftalkError('out-not-empty', `--out ${out} is not empty (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', …' : ''})`, {
      suggestion: 'choose a new --out folder, or pass --force to write the report files (frames.csv, clips.csv, summary.json, report.html) over the ones there',
    });
  }
}

/** Write frames.csv, clips.csv, summary.json and report.html into `out`; returns the result with file paths. */
export async function writeEvalReport(r: EvalResult, out = r.out): Promise<EvalResult> {
  await mkdir(out, { recursive: true });
  const files = {
    framesCsv: path.join(out, 'frames.csv'),
    clipsCsv: path.join(out, 'clips.csv'),
    summary: path.join(out, 'summary.json'),
    report: path.join(out, 'report.html'),
  };
  const result = { ...r, out, files };
  await writeFileAtomic(files.framesCsv, framesCsv(r.frames));
  await writeFileAtomic(files.clipsCsv, clipsCsv(result));
  await writeJsonAtomic(files.summary, summaryJson(result));
  await writeFileAtomic(files.report, reportHtml(result));
  return result;
}

/** The JSON-safe summary (no per-frame rows, no images; non-finite numbers as strings). */
export function summaryJson(r: EvalResult): unknown {
  const clean = (v: unknown): unknown => {
    if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
    if (Array.isArray(v)) return v.map(clean);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, clean(x)]));
    return v;
  };
  return clean({
    files: r.files,
    protocol: r.protocol,
    summary: r.summary,
    clips: r.clips,
    unmatched: r.unmatched,
    lseWindowsPerSecond: r.lseWindowsPerSecond,
  });
}
