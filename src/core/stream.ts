import { CancelledError, throttle, type Progress } from './job';

/**
 * The one chunk streamer. Every pipeline is a plan (a list of jobs: chunks of
 * tensors, slices, shards to open), one `run` per job (read its bytes, then one
 * `backend.run`), and a fold over the results in job order. This module owns what
 * they share: how many jobs are read ahead and in flight, the buffers they
 * recycle, cancellation, the first failure stopping the rest, and progress.
 */
export interface StreamOptions<J> {
  /** Jobs started and not yet handed to the consumer (reading, computing or done early). */
  readonly inFlight: number;
  /** Of those, how many may be reading at once (their `read` step); `inFlight` when absent. */
  readonly readAhead?: number;
  /**
   * A budget on the jobs in flight by cost (bytes of results held, say): a job starts
   * only while the costs in flight plus its own stay within it, or when nothing is in
   * flight, so that a job larger than the budget still runs, alone.
   */
  readonly budget?: { readonly cost: (job: J) => number; readonly limit: number };
  readonly signal?: AbortSignal;
}

/** The two steps of a job: `read` (I/O, bounded by `readAhead`), then `run` (compute). */
export interface JobSteps<J, I, R> {
  read?(job: J, signal: AbortSignal): Promise<I>;
  run(job: J, input: I, signal: AbortSignal): Promise<R>;
}

/** Counts permits; `acquire` waits in the order it was called. */
class Semaphore {
  private readonly waiting: (() => void)[] = [];
  constructor(private free: number) {}
  async acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((r) => this.waiting.push(r));
  }
  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}

/**
 * Runs every job and yields the results in job order. At most `inFlight` jobs are
 * unfinished or unconsumed at once, so memory stays bounded whatever the plan's
 * size. The first failure aborts the signal given to the other jobs and is thrown
 * (a cancelled `opts.signal` throws `CancelledError`); leaving the loop early
 * aborts the jobs still running, and the generator settles them before it returns.
 */
export async function* streamJobs<J, I, R>(jobs: Iterable<J>, steps: JobSteps<J, I, R>, opts: StreamOptions<J>): AsyncGenerator<R> {
  const inFlight = Math.max(1, opts.inFlight);
  const reads = new Semaphore(Math.max(1, opts.readAhead ?? inFlight));
  const ac = new AbortController();
  if (opts.signal?.aborted) throw new CancelledError();
  // The jobs see both the caller's cancel and the first failure. Combined, not listened to: many
  // streams at once (merge computes several tensors ahead) must not pile listeners on the caller's signal.
  const signal = opts.signal ? AbortSignal.any([opts.signal, ac.signal]) : ac.signal;
  const it = jobs[Symbol.iterator]();
  const pending: { p: Promise<R>; cost: number }[] = [];
  let held = 0;
  let waiting: J | undefined;
  let exhausted = false;
  // The first failure: the jobs it aborts then fail too, with a cancellation that must not hide it.
  let failure: { error: unknown } | undefined;
  const start = (job: J, cost: number): void => {
    const p = (async () => {
      if (signal.aborted) throw new CancelledError();
      let input: I;
      if (steps.read) {
        await reads.acquire();
        try {
          input = await steps.read(job, signal);
        } finally {
          reads.release();
        }
      } else input = undefined as I;
      if (signal.aborted) throw new CancelledError();
      return steps.run(job, input, signal);
    })();
    // Seen when its turn comes; a failure stops the other jobs now, not then.
    p.catch((e) => {
      failure ??= { error: e };
      ac.abort();
    });
    pending.push({ p, cost });
    held += cost;
  };
  const fill = (): void => {
    while (!exhausted && pending.length < inFlight) {
      let job: J;
      if (waiting !== undefined) job = waiting;
      else {
        const n = it.next();
        if (n.done) {
          exhausted = true;
          return;
        }
        job = n.value;
      }
      const cost = opts.budget ? opts.budget.cost(job) : 0;
      if (opts.budget && pending.length > 0 && held + cost > opts.budget.limit) {
        waiting = job;
        return;
      }
      waiting = undefined;
      start(job, cost);
    }
  };
  try {
    fill();
    while (pending.length > 0) {
      const head = pending.shift()!;
      let r: R;
      try {
        r = await head.p;
      } catch (e) {
        throw opts.signal?.aborted ? new CancelledError() : failure ? failure.error : e;
      }
      held -= head.cost;
      fill();
      yield r;
      if (opts.signal?.aborted) throw new CancelledError();
    }
  } finally {
    ac.abort();
    // Jobs still reading or computing must settle before the caller closes what they read.
    await Promise.allSettled(pending.map((x) => x.p));
  }
}

/** `streamJobs` with one step and the results collected: `f` over `items`, at most `limit` at once. */
export async function mapLimited<T, R>(items: readonly T[], limit: number, f: (item: T, index: number, signal: AbortSignal) => Promise<R>, signal?: AbortSignal): Promise<R[]> {
  const out: R[] = [];
  const indexed = items.map((item, index) => ({ item, index }));
  for await (const r of streamJobs(indexed, { run: (j, _i: undefined, s) => f(j.item, j.index, s) }, { inFlight: limit, signal })) out.push(r);
  return out;
}

type Buffer = Uint8Array | Float32Array;

/** A `BufferPool` maker of bytes that CPU workers share instead of receiving moved (`new BufferPool(n, sharedBytes)`). */
export const sharedBytes = (length: number): Uint8Array => new Uint8Array(new SharedArrayBuffer(length));

/**
 * Buffers handed back after use, for the next job of the same length: a fresh buffer
 * costs a page fault per 4 KiB, which over a gigabyte is a large share of a run.
 */
export class BufferPool<B extends Buffer = Uint8Array> {
  private readonly free = new Map<number, B[]>();
  /**
   * `perSize`: kept per length (enough for every job in flight plus the one being read);
   * `make`: a fresh buffer of a length, when none is free; `capacity`: when given, every
   * buffer of at most that length is a view of one of `capacity`, so that the short
   * last chunk of each tensor reuses the same memory instead of adding a size of its own.
   */
  constructor(
    private readonly perSize: number,
    private readonly make: (length: number) => B = (n) => new Uint8Array(n) as B,
    private readonly capacity?: number,
  ) {}

  /** A buffer of exactly `length` elements (recycled or fresh; its contents are stale). */
  take(length: number): B {
    const size = this.capacity !== undefined && length <= this.capacity ? this.capacity : length;
    const b = this.free.get(size)?.pop() ?? this.make(size);
    return size === length ? b : (b.subarray(0, length) as B);
  }

  /** Keeps buffers that `take` could have made; a moved (detached) one or one past the cap is dropped. */
  give(...bufs: (B | undefined)[]): void {
    for (const b of bufs) {
      if (!b || b.byteLength === 0 || b.byteOffset !== 0) continue;
      const size = b.buffer.byteLength / b.BYTES_PER_ELEMENT;
      if (size !== b.length && size !== this.capacity) continue;
      let list = this.free.get(size);
      if (!list) this.free.set(size, (list = []));
      if (list.length < this.perSize) list.push(size === b.length ? b : (new (b.constructor as new (buf: ArrayBufferLike, off: number, len: number) => B)(b.buffer, 0, size)));
    }
  }
}

/** Progress counted in bytes against a known total, throttled for a UI. */
export class ByteProgress {
  done = 0;
  private readonly report: (p: Progress, force?: boolean) => void;
  constructor(
    readonly total: number,
    progress: ((p: Progress) => void) | undefined,
  ) {
    this.report = throttle(progress);
  }

  add(bytes: number, message?: string): void {
    this.done += bytes;
    this.report({ done: this.done, total: this.total, unit: 'bytes', message });
  }

  finish(): void {
    this.report({ done: this.total, total: this.total, unit: 'bytes' }, true);
  }
}
