import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { FormatError, isFormatErrorCode } from '../../format/errors';
import { CancelledError } from '../../core/job';

/** What travels to a worker: the kernel's registered name and its structured-cloneable arguments. */
export interface WorkerRequest {
  readonly id: number;
  readonly kernel: string;
  readonly args: unknown;
}

/** What comes back: the result, or the error the kernel threw (name, message, code). */
export type WorkerReply =
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: { name: string; message: string; stack?: string; code?: string; file?: string; tensor?: string } };

/** The worker's name for a batch: `args` is a `BatchArgs`, the result the kernel's results in order. */
export const BATCH_KERNEL = '(batch)';
export interface BatchArgs {
  readonly kernel: string;
  readonly items: readonly unknown[];
}

interface Task {
  readonly id: number;
  readonly kernel: string;
  readonly args: unknown;
  readonly transfer: ArrayBuffer[];
  readonly signal?: AbortSignal;
  resolve(v: unknown): void;
  reject(e: unknown): void;
  /** Cancelled after it was posted, before it started: its reply is ignored. */
  cancelled?: boolean;
}

interface Slot {
  worker: Worker;
  /** Posted and not yet answered, in the order the worker runs them: the first is running. */
  tasks: Task[];
}

// Tasks posted to a worker ahead of its reply: the next one is already in the worker's port when
// a task ends, instead of waiting for the reply to reach this thread and a new task to come back
// (a gap per task that grows whenever this thread is busy merging). One more would only queue.
const POSTED_PER_WORKER = 2;

/**
 * Rebuilds a kernel's error on this side: same name and message, so callers see what the kernel
 * said, and the same class for the errors callers tell apart (a FormatError keeps its code, file
 * and tensor: a file truncated under a worker is `file_changed`, not an internal error).
 */
export function reviveError(e: Extract<WorkerReply, { ok: false }>['error']): Error {
  if (e.name === 'CancelledError') return new CancelledError();
  if (e.name === 'FormatError' && e.code !== undefined && isFormatErrorCode(e.code)) {
    const fe = new FormatError(e.code, e.message, e.file, e.tensor);
    // The message crossed already composed (file: tensor: message).
    fe.message = e.message;
    if (e.stack) fe.stack = e.stack;
    return fe;
  }
  const err = new Error(e.message) as Error & Record<string, unknown>;
  err.name = e.name;
  if (e.stack) err.stack = e.stack;
  for (const k of ['code', 'file', 'tensor'] as const) if (e[k] !== undefined) err[k] = e[k];
  return err;
}

/**
 * A pool of worker threads, one per core, running CPU twins by name. Idle
 * workers are unref'd so that a pool never keeps the process alive on its own.
 */
export class CpuPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Task[] = [];
  private nextId = 1;
  private disposed = false;
  /**
   * One abort listener per signal, however many of its tasks are pending: a merge keeps
   * dozens of slices of several tensors in flight under one signal, and a listener per task
   * would pass Node's limit of 10 and print a MaxListenersExceededWarning.
   */
  private readonly watched = new Map<AbortSignal, { tasks: Set<Task>; onAbort: () => void }>();

  constructor(
    readonly size: number,
    private readonly script = join(__dirname, 'worker.js'),
  ) {}

  get description(): string {
    return `cpu ×${this.size}`;
  }

  /** Runs `kernel` on a worker; `transfer` moves those buffers instead of copying them. */
  run<R>(kernel: string, args: unknown, transfer: ArrayBuffer[] = [], signal?: AbortSignal): Promise<R> {
    if (this.disposed) return Promise.reject(new Error('the CPU pool was disposed'));
    if (signal?.aborted) return Promise.reject(new CancelledError());
    return new Promise<R>((resolve, reject) => {
      const task: Task = { id: this.nextId++, kernel, args, transfer, signal, resolve: resolve as (v: unknown) => void, reject };
      if (signal) this.watch(signal, task);
      this.queue.push(task);
      this.pump();
    });
  }

  /** Starts every worker now (a viewer opening a file), so that the first task does not wait for one. */
  warm(): void {
    while (!this.disposed && this.slots.length < this.size) this.slots.push(this.spawn());
  }

  private spawn(): Slot {
    const worker = new Worker(this.script);
    const slot: Slot = { worker, tasks: [] };
    worker.on('message', (msg: WorkerReply) => this.settle(slot, msg));
    worker.on('error', (err) => this.crash(slot, err));
    worker.on('exit', (code) => {
      if (slot.tasks.length > 0) this.crash(slot, new Error(`compute worker exited with code ${code}`));
    });
    worker.unref();
    return slot;
  }

  private pump(): void {
    while (this.queue.length > 0) {
      // An idle worker first, then a new one, then one that is busy but has nothing waiting.
      let slot = this.slots.find((s) => s.tasks.length === 0);
      if (!slot && this.slots.length < this.size) {
        slot = this.spawn();
        this.slots.push(slot);
      }
      // Only tasks that move no buffers wait in a port: one that did could not be posted again to
      // another worker if this one crashed or was cancelled before reaching it.
      if (this.queue[0].transfer.length === 0) slot ??= this.slots.find((s) => s.tasks.length < POSTED_PER_WORKER);
      if (!slot) return;
      const task = this.queue.shift()!;
      slot.tasks.push(task);
      // A busy worker keeps the process alive until its reply arrives.
      slot.worker.ref();
      const req: WorkerRequest = { id: task.id, kernel: task.kernel, args: task.args };
      try {
        slot.worker.postMessage(req, task.transfer);
      } catch (e) {
        slot.tasks.pop();
        if (slot.tasks.length === 0) slot.worker.unref();
        this.finish(task);
        task.reject(e);
      }
    }
  }

  private watch(signal: AbortSignal, task: Task): void {
    let w = this.watched.get(signal);
    if (!w) {
      const entry = { tasks: new Set<Task>(), onAbort: () => [...entry.tasks].forEach((t) => this.cancel(t)) };
      signal.addEventListener('abort', entry.onAbort, { once: true });
      this.watched.set(signal, (w = entry));
    }
    w.tasks.add(task);
  }

  private finish(task: Task): void {
    const w = task.signal && this.watched.get(task.signal);
    if (!w || !w.tasks.delete(task) || w.tasks.size > 0) return;
    task.signal!.removeEventListener('abort', w.onAbort);
    this.watched.delete(task.signal!);
  }

  private settle(slot: Slot, msg: WorkerReply): void {
    const at = slot.tasks.findIndex((t) => t.id === msg.id);
    if (at < 0) return;
    const [task] = slot.tasks.splice(at, 1);
    if (slot.tasks.length === 0) slot.worker.unref();
    this.finish(task);
    if (task.cancelled) return this.pump();
    if (msg.ok) task.resolve(msg.result);
    else task.reject(reviveError(msg.error));
    this.pump();
  }

  private crash(slot: Slot, err: Error): void {
    const [task, ...waiting] = slot.tasks;
    slot.tasks = [];
    this.remove(slot);
    // Tasks that never started go back to the front of the queue, for another worker.
    this.queue.unshift(...waiting.filter((t) => !t.cancelled));
    if (task) {
      this.finish(task);
      task.reject(err);
    }
    this.pump();
  }

  private remove(slot: Slot): void {
    const i = this.slots.indexOf(slot);
    if (i >= 0) this.slots.splice(i, 1);
    void slot.worker.terminate();
  }

  /** A queued task just leaves the queue; a running one takes its worker down with it (respawned on demand). */
  private cancel(task: Task): void {
    const qi = this.queue.indexOf(task);
    if (qi >= 0) {
      this.queue.splice(qi, 1);
    } else {
      const slot = this.slots.find((s) => s.tasks.includes(task));
      if (!slot) return;
      if (slot.tasks[0] === task) {
        const [, ...waiting] = slot.tasks;
        slot.tasks = [];
        this.remove(slot);
        this.queue.unshift(...waiting.filter((t) => !t.cancelled));
      } else {
        // Already in the worker's port: it runs, and its reply is dropped.
        task.cancelled = true;
      }
    }
    this.finish(task);
    task.reject(new CancelledError());
    this.pump();
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    for (const t of this.queue.splice(0)) {
      this.finish(t);
      t.reject(new CancelledError());
    }
    const slots = this.slots.splice(0);
    for (const s of slots) {
      for (const t of s.tasks.splice(0)) {
        this.finish(t);
        t.reject(new CancelledError());
      }
    }
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }
}

let pool: CpuPool | undefined;

/** Workers to start: one per core the process may use. TW_CPU_WORKERS overrides it (benchmarks, tests). */
export function cpuPoolSize(): number {
  const env = Number(process.env.TW_CPU_WORKERS);
  if (Number.isInteger(env) && env > 0) return env;
  return Math.max(1, availableParallelism());
}

export function getCpuPool(): CpuPool {
  pool ??= new CpuPool(cpuPoolSize());
  return pool;
}

export async function disposeCpuPool(): Promise<void> {
  const p = pool;
  pool = undefined;
  await p?.dispose();
}
