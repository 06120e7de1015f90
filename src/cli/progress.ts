import cliProgress from 'cli-progress';
import type { OnEvent, ProgressEvent } from '../util/events.js';

export interface Renderer {
  onEvent: OnEvent;
  stop(): void;
}

/** --json: one JSON object per event on stderr, so stdout stays the command's final result. */
export function jsonLinesRenderer(stream: NodeJS.WritableStream = process.stderr): Renderer {
  return {
    onEvent: (e) => stream.write(`${JSON.stringify({ ...e, t: Date.now() })}\n`),
    stop: () => {},
  };
}

/**
 * Human output: one bar per running stage with count, rate and ETA (cli-progress), plus log and drop lines.
 * Without a TTY (CI logs) bars are replaced by a line per stage start/finish.
 */
export function barRenderer(stream: NodeJS.WriteStream = process.stderr, logLevel: 'info' | 'debug' = 'info'): Renderer {
  const tty = Boolean(stream.isTTY);
  const multi = tty
    ? new cliProgress.MultiBar(
        {
          stream,
          clearOnComplete: false,
          hideCursor: true,
          format: ' {stage} |{bar}| {value}/{total} {unit} | {rate}/s | ETA {eta_formatted} {detail}',
          etaBuffer: 50,
          fps: 5,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  const bars = new Map<string, { bar?: cliProgress.SingleBar; t0: number; unit: string; total?: number }>();
  const line = (s: string) => (multi ? multi.log(`${s}\n`) : stream.write(`${s}\n`));
  const fields = (stage: string, done: number, unit: string, t0: number, detail = '') => ({
    stage: stage.padEnd(12),
    unit,
    rate: (done / Math.max(1e-3, (performance.now() - t0) / 1000)).toFixed(1),
    detail,
  });
  const onEvent = (e: ProgressEvent) => {
    switch (e.type) {
      case 'stage-start': {
        const t0 = performance.now();
        const unit = e.unit ?? 'items';
        const bar = multi?.create(e.total ?? 0, 0, fields(e.stage, 0, unit, t0));
        bars.set(e.stage, { bar, t0, unit, total: e.total });
        if (!multi) line(`> ${e.stage}${e.total !== undefined ? ` (${e.total} ${unit})` : ''}`);
        break;
      }
      case 'progress': {
        const b = bars.get(e.stage);
        if (!b) break;
        if (e.total !== undefined && b.bar && e.total !== b.total) b.bar.setTotal(e.total);
        b.total = e.total ?? b.total;
        b.bar?.update(e.done, fields(e.stage, e.done, b.unit, b.t0, e.detail));
        break;
      }
      case 'stage-done': {
        const b = bars.get(e.stage);
        const rate = e.seconds > 0 ? (e.done / e.seconds).toFixed(1) : '-';
        if (b?.bar) {
          b.bar.setTotal(Math.max(e.done, b.total ?? 0));
          b.bar.update(e.done, fields(e.stage, e.done, b.unit, b.t0));
          b.bar.stop();
        } else line(`< ${e.stage}: ${e.done} ${b?.unit ?? ''} in ${e.seconds.toFixed(1)} s (${rate}/s)`);
        bars.delete(e.stage);
        break;
      }
      case 'dropped':
        line(`! ${e.stage}: dropped ${e.id} (${e.reason}): ${e.message}`);
        break;
      case 'log':
        if (e.level !== 'debug' || logLevel === 'debug') line(`${e.level === 'warn' ? 'warning: ' : ''}${e.message}`);
        break;
      case 'metric':
        if (logLevel === 'debug') line(`${e.name}=${e.value}${e.step !== undefined ? ` @${e.step}` : ''}`);
        break;
    }
  };
  return { onEvent, stop: () => multi?.stop() };
}
