/**
 * names: the one place that decides whether a name coming from user data (an annotation row, an --input file stem)
 * may become part of a file name, a clip id or a command-line argument.
 * A safe name is 1..128 characters of [A-Za-z0-9._-], starting with a letter or digit: no path separators,
 * no `..`-style escapes, no leading `-` (option injection), no NUL/control/space characters.
 */
import { DifftalkError } from './errors.js';

export const SAFE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Why `s` is not a safe name, or undefined when it is. */
export function unsafeNameReason(s: string): string | undefined {
  if (typeof s !== 'string' || s.length === 0) return 'the name is empty';
  if (s.includes('\0')) return 'the name contains a NUL character';
  if (s === '.' || s.startsWith('..')) return 'the name would escape the output folder';
  if (s.includes('/') || s.includes('\\')) return 'the name contains a path separator';
  if (s.startsWith('-')) return 'the name starts with "-" and could be read as a command-line option';
  if (s.startsWith('.')) return 'the name starts with "." (hidden file or parent-directory reference)';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(s)) return 'the name contains control characters';
  if (s.length > 128) return 'the name is longer than 128 characters';
  if (!SAFE_NAME_RE.test(s)) return 'the name has characters outside [A-Za-z0-9._-]';
  return undefined;
}

export function isSafeName(s: string): boolean {
  return unsafeNameReason(s) === undefined;
}

/** Throw DifftalkError('unsafe-name') unless `s` is a safe name; `what` says where it came from (for the message). */
export function assertSafeName(s: string, what = 'name'): string {
  const why = unsafeNameReason(s);
  if (why) {
    throw new DifftalkError('unsafe-name', `${what} ${JSON.stringify(s)} is not usable: ${why}`, {
      suggestion: 'use names made of letters, digits, ".", "_" and "-" that start with a letter or digit',
    });
  }
  return s;
}

/**
 * Turn an arbitrary string (e.g. an input file's stem) into a safe name: every run of characters outside
 * [A-Za-z0-9._-] becomes `_`, leading `-`/`.`/`_` are removed, and the result is cut to 128 characters.
 * Deterministic; throws DifftalkError('unsafe-name') when nothing usable is left (e.g. `...` or `---`).
 */
export function safeId(s: string): string {
  const cleaned = s
    .normalize('NFKD')
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/^[-._]+/, '')
    .slice(0, 128);
  if (!isSafeName(cleaned)) {
    throw new DifftalkError('unsafe-name', `cannot make a safe name from ${JSON.stringify(s)}`, {
      suggestion: 'rename the file so its name contains letters or digits',
    });
  }
  return cleaned;
}

/** Why `url` is not an acceptable download URL (http/https only, no whitespace/control characters), or undefined. */
export function unsafeUrlReason(url: string): string | undefined {
  if (typeof url !== 'string' || url.length === 0) return 'the URL is empty';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0020\u007f]/.test(url)) return 'the URL contains spaces or control characters';
  if (url.startsWith('-')) return 'the URL starts with "-" and could be read as a command-line option';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'the URL cannot be parsed';
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    return `the URL scheme ${parsed.protocol} is not allowed (only http and https)`;
  }
  if (!parsed.hostname) return 'the URL has no host';
  return undefined;
}
