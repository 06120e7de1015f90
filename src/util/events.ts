/**
 * Progress is data. Library code (every layer below src/cli) reports what it does through
 * these events; only commands render them (bars on a TTY, JSON lines under --json).
 */
export type ProgressEvent =
  /** A long step begins; `total` in `unit`s when known (frames, clips, steps, bytes). */
  | { type: 'stage-start'; stage: string; total?: number; unit?: string }
  /** Progress inside a step: `done` units so far (absolute, not a delta). */
  | { type: 'progress'; stage: string; done: number; total?: number; detail?: string }
  /** A step ended: how many units and how long it took. */
  | { type: 'stage-done'; stage: string; done: number; seconds: number }
  /** An item (clip, video, frame batch) was dropped with a recorded reason. */
  | { type: 'dropped'; stage: string; id: string; reason: string; message: string }
  /** A free-form note for the user (warnings go here too). */
  | { type: 'log'; level: 'info' | 'warn' | 'debug'; message: string }
  /** A scalar for curves (loss, lr, samples/s, metric values). */
  | { type: 'metric'; name: string; value: number; step?: number }
  /** A picture for the run's record (sample grids): PNG bytes, shown by TensorBoard and written to the run folder. */
  | { type: 'image'; name: string; step: number; png: Uint8Array; caption?: string };

export type OnEvent = (event: ProgressEvent) => void;

export const silent: OnEvent = () => {};

/** Measure a step: emits stage-start / stage-done and returns what `fn` returns. */
export async function timedStage<T>(
  onEvent: OnEvent,
  stage: string,
  total: number | undefined,
  unit: string,
  fn: (tick: (done: number, detail?: string) => void) => Promise<T>,
): Promise<T> {
  const t0 = performance.now();
  let last = 0;
  onEvent({ type: 'stage-start', stage, total, unit });
  const result = await fn((done, detail) => {
    last = done;
    onEvent({ type: 'progress', stage, done, total, detail });
  });
  onEvent({ type: 'stage-done', stage, done: last || total || 0, seconds: (performance.now() - t0) / 1000 });
  return result;
}
