/**
 * SIGINT/SIGTERM for long jobs: the first signal aborts the returned AbortSignal (the library finishes the current
 * step, saves a checkpoint and returns); `exitCode()` is then 130 (SIGINT) or 143 (SIGTERM), so the command exits
 * non-zero and a rerun with --resume continues from the saved step. A second signal exits at once.
 */
export function stopSignals(): { signal: AbortSignal; exitCode: () => number | undefined; dispose: () => void } {
  const ac = new AbortController();
  let code: number | undefined;
  const handler = (sig: NodeJS.Signals) => {
    if (code !== undefined) process.exit(code);
    code = sig === 'SIGINT' ? 130 : 143;
    ac.abort(sig);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: ac.signal,
    exitCode: () => code,
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}
