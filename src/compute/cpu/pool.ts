import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { CancelledError } from '../../pipelines/job';

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

interface Task {
  readonly id: number;
  readonly kernel: string;
  readonly args: unknown;
  readonly transfer: ArrayBuffer[];
  readonly signal?: AbortSignal;
  resolve(v: unknown): void;
  reject(e: unknown): void;
  onAbort?: () => void;
}

interface Slot {
  worker: Worker;
  task?: Task;
}

/** Rebuilds a kernel's error on this side: same name and message, so callers see what the kernel said. */
function reviveError(e: Extract<WorkerReply, { ok: false }>['error']): Error {
  if (e.name === 'CancelledError') return new CancelledError();
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
      if (signal) {
        task.onAbort = () => this.cancel(task);
        signal.addEventListener('abort', task.onAbort, { once: true });
      }
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
    const slot: Slot = { worker };
    worker.on('message', (msg: WorkerReply) => this.settle(slot, msg));
    worker.on('error', (err) => this.crash(slot, err));
    worker.on('exit', (code) => {
      if (slot.task) this.crash(slot, new Error(`compute worker exited with code ${code}`));
    });
    worker.unref();
    return slot;
  }

  private pump(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => !s.task);
      if (!slot) {
        if (this.slots.length >= this.size) return;
        slot = this.spawn();
        this.slots.push(slot);
      }
      const task = this.queue.shift()!;
      slot.task = task;
      // A busy worker keeps the process alive until its reply arrives.
      slot.worker.ref();
      const req: WorkerRequest = { id: task.id, kernel: task.kernel, args: task.args };
      try {
        slot.worker.postMessage(req, task.transfer);
      } catch (e) {
        slot.task = undefined;
        slot.worker.unref();
        this.finish(task);
        task.reject(e);
      }
    }
  }

  private finish(task: Task): void {
    if (task.onAbort) task.signal?.removeEventListener('abort', task.onAbort);
  }

  private settle(slot: Slot, msg: WorkerReply): void {
    const task = slot.task;
    if (!task || task.id !== msg.id) return;
    slot.task = undefined;
    slot.worker.unref();
    this.finish(task);
    if (msg.ok) task.resolve(msg.result);
    else task.reject(reviveError(msg.error));
    this.pump();
  }

  private crash(slot: Slot, err: Error): void {
    const task = slot.task;
    slot.task = undefined;
    this.remove(slot);
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
      const slot = this.slots.find((s) => s.task === task);
      if (!slot) return;
      slot.task = undefined;
      this.remove(slot);
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
      if (s.task) {
        this.finish(s.task);
        s.task.reject(new CancelledError());
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
