/**
 * A small pool of worker threads running one task script, for CPU-bound kernels on every core.
 * - Typed messages: the caller's `Req` goes in, the worker's `Res` comes back (structured clone), matched by id;
 *   buffers named in `transfer` move without a copy (the sender's views of them are detached).
 * - Workers start on demand (at most `size`, default all cores) and stay for the next task; `close()` ends them.
 *   An idle worker is unref'd, so a pool that was never closed does not keep the process alive.
 * - A task that throws rejects its promise with the same error (a DifftalkError keeps its code and suggestion);
 *   a worker that dies fails its task and is replaced by the next one started.
 * The task script calls {@link serveTasks} with its handler.
 */
import os from 'node:os';
import { isMainThread, parentPort, Worker, type TransferListItem } from 'node:worker_threads';
import { DifftalkError } from './errors.js';

interface TaskMessage<Req> {
  id: number;
  request: Req;
}

interface ErrorShape {
  name: string;
  message: string;
  code?: string;
  suggestion?: string;
}

type ReplyMessage<Res> = { id: number; ok: true; result: Res } | { id: number; ok: false; error: ErrorShape };

/** What a task handler returns: the result and the buffers in it to transfer back instead of copying. */
export interface TaskReply<Res> {
  result: Res;
  transfer?: TransferListItem[];
}

interface Task<Req, Res> {
  id: number;
  request: Req;
  transfer: TransferListItem[];
  resolve: (r: Res) => void;
  reject: (e: unknown) => void;
}

interface Slot<Req, Res> {
  worker: Worker;
  task?: Task<Req, Res>;
}

/** The worker script of a module next to `base` (`name` without extension): `.ts` when running from source (tsx), else `.js`. */
export function siblingScript(base: string, name: string): URL {
  return new URL(`./${name}${base.endsWith('.ts') ? '.ts' : '.js'}`, base);
}

/** The number of threads worth running CPU-bound work on here. */
export function coreCount(): number {
  return Math.max(1, os.availableParallelism());
}

export class WorkerPool<Req, Res> {
  readonly size: number;
  private readonly slots: Array<Slot<Req, Res>> = [];
  private readonly queue: Array<Task<Req, Res>> = [];
  private nextId = 0;
  private closed = false;

  constructor(
    private readonly script: URL,
    options: { size?: number } = {},
  ) {
    this.size = Math.max(1, Math.floor(options.size ?? coreCount()));
  }

  /** Workers started so far (for tests and reports). */
  get started(): number {
    return this.slots.length;
  }

  /** Run one task on the next free worker. `transfer`: buffers of `request` to move instead of copy. */
  run(request: Req, transfer: TransferListItem[] = []): Promise<Res> {
    if (this.closed) return Promise.reject(new DifftalkError('internal', 'worker pool is closed'));
    return new Promise<Res>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, request, transfer, resolve, reject });
      this.dispatch();
    });
  }

  /** End every worker; tasks not finished yet are rejected. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new DifftalkError('internal', 'worker pool closed before the task finished');
    for (const t of this.queue.splice(0)) t.reject(err);
    const slots = this.slots.splice(0);
    for (const s of slots) s.task?.reject(err);
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => !s.task);
      if (!slot && this.slots.length < this.size) slot = this.spawn();
      if (!slot) return;
      const task = this.queue.shift()!;
      slot.task = task;
      slot.worker.ref();
      const msg: TaskMessage<Req> = { id: task.id, request: task.request };
      try {
        slot.worker.postMessage(msg, task.transfer);
      } catch (e) {
        slot.task = undefined;
        task.reject(e);
      }
    }
  }

  private spawn(): Slot<Req, Res> {
    const worker = this.script.pathname.endsWith('.ts') ? fromSource(this.script) : new Worker(this.script);
    const slot: Slot<Req, Res> = { worker };
    this.slots.push(slot);
    const fail = (err: unknown) => {
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      slot.task?.reject(err);
      slot.task = undefined;
      if (!this.closed) this.dispatch();
    };
    worker.on('message', (m: ReplyMessage<Res>) => {
      const task = slot.task;
      if (!task || task.id !== m.id) return;
      slot.task = undefined;
      worker.unref();
      if (m.ok) task.resolve(m.result);
      else task.reject(m.error.code ? new DifftalkError(m.error.code, m.error.message, { suggestion: m.error.suggestion }) : new Error(m.error.message));
      this.dispatch();
    });
    worker.on('error', (e) => fail(e));
    worker.on('exit', (code) => {
      if (!this.closed) fail(new DifftalkError('internal', `worker thread ${this.script.pathname} exited (code ${code})`));
    });
    return slot;
  }
}

/**
 * A worker running a TypeScript script (from source, under tsx): Node 20 does not apply the main thread's
 * `--import tsx` hooks to a worker's entry module, so the worker registers tsx itself, then imports the script.
 */
function fromSource(script: URL): Worker {
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(script.href)}); })`;
  return new Worker(boot, { eval: true });
}

/** In a task script: answer the pool's tasks with `handle` (one at a time). Does nothing on the main thread. */
export function serveTasks<Req, Res>(handle: (request: Req) => TaskReply<Res> | Promise<TaskReply<Res>>): void {
  if (isMainThread || !parentPort) return;
  const port = parentPort;
  port.on('message', async (m: TaskMessage<Req>) => {
    try {
      const { result, transfer } = await handle(m.request);
      const reply: ReplyMessage<Res> = { id: m.id, ok: true, result };
      port.postMessage(reply, transfer ?? []);
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      const reply: ReplyMessage<Res> = {
        id: m.id,
        ok: false,
        error: {
          name: err.name,
          message: err.message,
          code: err instanceof DifftalkError ? err.code : undefined,
          suggestion: err instanceof DifftalkError ? err.suggestion : undefined,
        },
      };
      port.postMessage(reply);
    }
  });
}
