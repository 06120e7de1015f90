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

/**
 * Error codes that stop a whole run (environment or configuration: fixing them changes every item), as opposed to
 * codes that only fail one item (a clip, a download). A long job (prep) drops an item on a non-fatal code and stops
 * on a fatal one. One line per code; codes not listed are not fatal.
 */
export const FATAL_ERROR_CODES: Readonly<Record<string, true>> = {
  'tool-missing': true,
  'bad-option': true,
  'bad-flag': true,
  'bad-argument': true,
  'model-missing': true,
  'backend-unavailable': true,
  'onnx-unavailable': true,
  'config-mismatch': true,
  'foreign-folder': true,
  interrupted: true,
};

/** Whether `err` stops the whole run (see FATAL_ERROR_CODES). Anything that is not a DifftalkError is not fatal. */
export function isFatal(err: unknown): boolean {
  return err instanceof DifftalkError && Object.hasOwn(FATAL_ERROR_CODES, err.code);
}
