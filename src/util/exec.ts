import { spawn } from 'node:child_process';
import { DifftalkError } from './errors.js';
import { resolveTool, type ToolName } from './tools.js';

export interface ExecOptions {
  /** Bytes written to the child's stdin, then closed. */
  input?: Buffer | Uint8Array;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Called with each stdout chunk; when given, stdout is not buffered. */
  onStdout?: (chunk: Buffer) => void;
  /** Called with each stderr line (progress parsing). */
  onStderrLine?: (line: string) => void;
  /** Abort the child (SIGKILL) when this signal fires. */
  signal?: AbortSignal;
  /** Kill the child after this many milliseconds. */
  timeoutMs?: number;
}

export interface ExecResult {
  stdout: Buffer;
  stderr: string;
  code: number;
}

/** A child process that failed: keeps the argument list, exit code and the tail of stderr. */
export class ExecError extends DifftalkError {
  readonly argv: string[];
  readonly exitCode: number | null;
  readonly stderr: string;

  constructor(argv: string[], exitCode: number | null, stderr: string, suggestion?: string) {
    const tail = stderr.trim().split('\n').slice(-6).join('\n');
    super('exec-failed', `${argv[0]} exited with ${exitCode ?? 'a signal'}: ${tail || '(no output)'}`, { suggestion });
    this.argv = argv;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/**
 * Run a program with an argument array (never a shell string). Resolves with stdout/stderr on exit 0,
 * rejects with ExecError otherwise. The one place difftalk starts child processes (through spawnStream).
 */
export async function runProcess(program: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const { input, ...rest } = opts;
  const child = spawnStream(program, args, rest);
  if (input) await child.write(input).catch(() => undefined); // a child that exits early: its exit code tells
  return child.end();
}

/** runProcess for one of the known external tools, resolved from PATH or its override variable. */
export function runTool(tool: ToolName, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return runProcess(resolveTool(tool), args, opts);
}

/** A running child whose stdin is fed piece by piece (e.g. raw frames into an ffmpeg encoder). */
export interface StreamingProcess {
  /** Write to stdin, waiting for the pipe to drain (back-pressure); rejects once the child has failed. */
  write(chunk: Buffer | Uint8Array): Promise<void>;
  /** Close stdin and wait for the exit: resolves on exit 0, rejects with ExecError otherwise. */
  end(): Promise<ExecResult>;
  /** Kill the child (SIGKILL) and wait for it to go; never rejects. */
  kill(): Promise<void>;
}

/**
 * spawnStream: runProcess for a child fed through stdin over time instead of one buffer. Same rules: an argument
 * array (never a shell string), ENOENT → 'tool-missing', non-zero exit → ExecError with the stderr tail.
 */
export function spawnStream(program: string, args: readonly string[], opts: Omit<ExecOptions, 'input'> = {}): StreamingProcess {
  const argv = [program, ...args];
  const child = spawn(program, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'], signal: opts.signal });
  const out: Buffer[] = [];
  let err = '';
  let pending = '';
  let failure: Error | undefined;
  let timer: NodeJS.Timeout | undefined;
  if (opts.timeoutMs) timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
  child.stdout.on('data', (c: Buffer) => (opts.onStdout ? opts.onStdout(c) : out.push(c)));
  child.stderr.on('data', (c: Buffer) => {
    const s = c.toString('utf8');
    err += s;
    if (err.length > 1_000_000) err = err.slice(-500_000);
    if (opts.onStderrLine) {
      pending += s;
      const lines = pending.split(/[\r\n]/);
      pending = lines.pop() ?? '';
      for (const l of lines) if (l) opts.onStderrLine(l);
    }
  });
  const exited = new Promise<ExecResult>((resolve, reject) => {
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (timer) clearTimeout(timer);
      failure =
        e.code === 'ENOENT' ? new DifftalkError('tool-missing', `cannot start ${program}: not found`) : new ExecError(argv, null, `${err}\n${e.message}`);
      reject(failure);
    });
    child.on('close', (code) => {
      if (timer) clearTimeout(timer);
      if (code === 0) resolve({ stdout: Buffer.concat(out), stderr: err, code });
      else reject((failure ??= new ExecError(argv, code, err)));
    });
  });
  exited.catch(() => undefined); // observed through write()/end()
  child.stdin.on('error', () => {
    /* EPIPE when the child exits early; its exit code tells */
  });
  return {
    write(chunk) {
      if (failure) return Promise.reject(failure);
      if (child.exitCode !== null || child.stdin.destroyed)
        return exited.then(() => Promise.reject(new ExecError(argv, child.exitCode, `${err}\nstdin closed early`)));
      return new Promise<void>((resolve, reject) => {
        const onExit = () => reject(failure ?? new ExecError(argv, child.exitCode, `${err}\nexited while being written to`));
        child.once('close', onExit);
        const ok = child.stdin.write(chunk, () => undefined);
        const done = () => {
          child.off('close', onExit);
          resolve();
        };
        if (ok) done();
        else child.stdin.once('drain', done);
      });
    },
    end() {
      child.stdin.end();
      return exited;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited.catch(() => undefined);
    },
  };
}

/** spawnStream for one of the known external tools. */
export function spawnToolStream(tool: ToolName, args: readonly string[], opts: Omit<ExecOptions, 'input'> = {}): StreamingProcess {
  return spawnStream(resolveTool(tool), args, opts);
}

/** A running child whose stdout is read piece by piece with back-pressure (the child blocks while nobody reads). */
export interface ReadingProcess {
  /** stdout chunks in order; ends when the child closes stdout. */
  readonly stdout: AsyncIterable<Buffer>;
  /** Resolves on exit 0, rejects with ExecError otherwise (call after reading stdout to the end). */
  done(): Promise<ExecResult>;
  /** Kill the child (SIGKILL) and wait for it to go; never rejects. */
  kill(): Promise<void>;
}

/**
 * spawnReader: the reading twin of spawnStream, for output too large to hold (e.g. raw frames out of ffmpeg). stdout is
 * not buffered: the child's pipe fills and the child waits until the consumer reads the next chunk.
 */
export function spawnReader(program: string, args: readonly string[], opts: Pick<ExecOptions, 'cwd' | 'env' | 'signal'> = {}): ReadingProcess {
  const argv = [program, ...args];
  const child = spawn(program, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], signal: opts.signal });
  let err = '';
  child.stderr.on('data', (c: Buffer) => {
    err += c.toString('utf8');
    if (err.length > 1_000_000) err = err.slice(-500_000);
  });
  const exited = new Promise<ExecResult>((resolve, reject) => {
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'ENOENT' ? new DifftalkError('tool-missing', `cannot start ${program}: not found`) : new ExecError(argv, null, `${err}\n${e.message}`)),
    );
    child.on('close', (code) => (code === 0 ? resolve({ stdout: Buffer.alloc(0), stderr: err, code }) : reject(new ExecError(argv, code, err))));
  });
  exited.catch(() => undefined); // observed through done()
  return {
    stdout: child.stdout,
    done: () => exited,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited.catch(() => undefined);
    },
  };
}

/** spawnReader for one of the known external tools. */
export function spawnToolReader(tool: ToolName, args: readonly string[], opts: Pick<ExecOptions, 'cwd' | 'env' | 'signal'> = {}): ReadingProcess {
  return spawnReader(resolveTool(tool), args, opts);
}
