import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import { DifftalkError } from './errors.js';

/** External programs difftalk starts, the environment variable that overrides each, and where to get it. */
export const TOOLS = {
  ffmpeg: { env: 'FFMPEG_PATH', names: ['ffmpeg'], install: 'apt-get install ffmpeg (or set FFMPEG_PATH)' },
  ffprobe: { env: 'FFPROBE_PATH', names: ['ffprobe'], install: 'apt-get install ffmpeg (or set FFPROBE_PATH)' },
  'yt-dlp': { env: 'YTDLP_PATH', names: ['yt-dlp'], install: 'apt-get install yt-dlp, pip install yt-dlp (or set YTDLP_PATH)' },
  chromium: {
    env: 'CHROMIUM_PATH',
    names: ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'],
    install: 'apt-get install chromium (or set CHROMIUM_PATH to a Chrome/Chromium binary)',
  },
} as const;

export type ToolName = keyof typeof TOOLS;

const cache = new Map<ToolName, string>();

function isExecutable(file: string): boolean {
  try {
    if (!statSync(file).isFile()) return false;
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Absolute path of an external tool: the override variable if set (it must point at an executable),
 * else the first match on PATH. Throws a DifftalkError naming the variable and how to install it.
 */
export function resolveTool(name: ToolName, env: NodeJS.ProcessEnv = process.env): string {
  const cached = cache.get(name);
  if (cached && env === process.env) return cached;
  const spec = TOOLS[name];
  const override = env[spec.env];
  if (override) {
    if (!isExecutable(override)) {
      throw new DifftalkError('tool-missing', `${spec.env}=${override} is not an executable file`, {
        suggestion: spec.install,
      });
    }
    if (env === process.env) cache.set(name, override);
    return override;
  }
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    for (const n of spec.names) {
      const candidate = path.join(dir, n);
      if (isExecutable(candidate)) {
        if (env === process.env) cache.set(name, candidate);
        return candidate;
      }
    }
  }
  throw new DifftalkError('tool-missing', `${name} was not found on PATH and ${spec.env} is not set`, {
    suggestion: spec.install,
  });
}

/** Forget resolved paths (tests that change PATH or the override variables call this). */
export function clearToolCache(): void {
  cache.clear();
}
