/**
 * One error type for everything a user can cause or fix: a message, a stable code and an optional hint.
 * Commands turn it into a clean CLI error (and `{error}` under --json); library code never prints.
 */
export class DifftalkError extends Error {
  readonly code: string;
  readonly suggestion?: string;

  constructor(code: string, message: string, options: { suggestion?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DifftalkError';
    this.code = code;
    this.suggestion = options.suggestion;
  }
}

/** Narrow an unknown thrown value to a one-line message. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
