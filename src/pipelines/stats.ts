import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { getBackend } from '../compute/backend';
import { cpuPoolSize } from '../compute/cpu/pool';
import { isPatternDType } from '../compute/decode/patterns';
import type { Backend } from '../compute/kernel';
import { statsSmallKernel, unpackSmallStats } from '../compute/stats/statsSmall';
import { statsKernel, type BinsResult, type PatternScan, type StatsSource, type WideScan } from '../compute/stats/stats';
import { binsParams, mergeTop, mergeWide, summarizePatterns, summarizeWide, unsupportedStats, type TensorHead, type TensorStats } from '../compute/stats/summarize';
import { DTYPE_INFO } from '../format/dtypes';
import { FormatError } from '../format/errors';
import type { Model, TensorInfo } from '../format/model';
import { CancelledError, throttle, throwIfCancelled, type JobContext } from './job';

export type { TensorStats } from '../compute/stats/summarize';

export interface StatsOptions extends JobContext {
  /** Tensor names to scan; all of them when absent. */
  readonly tensors?: readonly string[];
  /** Bins of both histograms (256 by default). */
  readonly bins?: number;
  /** How many of the largest |x| to report per tensor (16 by default). */
  readonly topK?: number;
  /**
   * false leaves every tensor's histogram counts empty (their ranges stay): for a report
   * that shows none, such as the CLI's table, where 100,000 tensors × 2 × 256 counts would
   * dominate its memory. Only the batched small tensors skip the counting itself.
   */
  readonly histograms?: boolean;
  /** Tensors of at most this many bytes are scanned many to a task (`SMALL_TENSOR_BYTES`; 0 scans each alone). */
  readonly smallTensorBytes?: number;
}

export interface StatsReport {
  /** The backend the scan ran on, and its device ("cpu ×2", "SwiftShader…"). */
  readonly backend: string;
  readonly device: string;
  readonly seconds: number;
  /** Bytes of tensor data scanned, each counted once (the wide dtypes' second pass re-reads theirs). */
  readonly bytesRead: number;
  readonly tensors: TensorStats[];
  readonly health: { readonly nonFiniteTensors: string[]; readonly allZeroTensors: string[] };
}

export const DEFAULT_BINS = 256;
export const DEFAULT_TOP_K = 16;
// 16 MiB slices: large enough that per-task overhead (a 256 KiB pattern table back) is
// under 2%, small enough that 2 workers × (slice + scratch) stays far below the memory budget.
const CPU_SLICE_BYTES = 16 << 20;
// The GPU amortises each dispatch and readback over more data; two in flight, each held
// on the host and in a mapped upload buffer, stay within the same memory budget.
const GPU_SLICE_BYTES = 32 << 20;
// A tensor this small costs more in its task (a round trip, edge tables, a summary on this
// thread) than in its scan: such tensors go to the workers whole, thousands to a task.
export const SMALL_TENSOR_BYTES = 64 << 10;
// One batch: at most 4 MiB of data (a fraction of a slice) and 4,096 tensors, so that a
// batch's results (about 5 KB per tensor with 256-bin histograms) stay near 20 MB.
const BATCH_BYTES = 4 << 20;
const BATCH_TENSORS = 4096;
// Bytes between two selected tensors that a batch reads through rather than starting anew.
const BATCH_GAP_BYTES = 64 << 10;
// Every slice boundary falls on a 32-element boundary: whole bytes and whole u32 words for every width (4, 6, 8, 16, 32, 64 bits).
const SLICE_ALIGN = 32;

/** Runs at most `n` tasks at once, in the order they ask. */
function limiter(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  // A queue read from `head`: Array#shift moves every waiter, O(n²) over 100,000 tensors.
  let waiting: (() => void)[] = [];
  let head = 0;
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (active >= n) await new Promise<void>((r) => waiting.push(r));
    active++;
    try {
      return await fn();
    } finally {
      active--;
      const next = head < waiting.length ? waiting[head++] : undefined;
      if (head === waiting.length) {
        waiting = [];
        head = 0;
      }
      next?.();
    }
  };
}

/** Files the workers may read themselves: local paths whose size and mtime still match the header read. */
async function directPaths(model: Model): Promise<(string | undefined)[]> {
  return Promise.all(
    model.files.map(async (f) => {
      // A URI (vscode-remote://, untitled:…) names no local file; a relative path is the process's.
      if (/^[a-z][a-z0-9+.-]+:/i.test(f.path) && !/^[a-z]:[\\/]/i.test(f.path)) return undefined;
      const path = resolve(f.path);
      try {
        const st = await stat(path);
        return st.isFile() && st.size === f.bytes && (f.mtimeMs === undefined || st.mtimeMs === f.mtimeMs) ? path : undefined;
      } catch {
        return undefined;
      }
    }),
  );
}

interface Slice {
  readonly first: number;
  readonly count: number;
  readonly byteStart: number;
  readonly byteLength: number;
}

function slicesOf(t: TensorInfo, sliceBytes: number): Slice[] {
  const bits = DTYPE_INFO[t.dtype].bits;
  const per = Math.max(SLICE_ALIGN, Math.floor((sliceBytes * 8) / bits / SLICE_ALIGN) * SLICE_ALIGN);
  const out: Slice[] = [];
  for (let first = 0; first < t.numel; first += per) {
    const count = Math.min(per, t.numel - first);
    const byteStart = (first * bits) / 8;
    out.push({ first, count, byteStart, byteLength: Math.ceil(((first + count) * bits) / 8) - byteStart });
  }
  return out;
}

/** Small tensors grouped by file and position: each group's bytes are one contiguous read. */
function batchesOf(small: readonly { t: TensorInfo; at: number }[]): { t: TensorInfo; at: number }[][] {
  const sorted = [...small].sort((x, y) => x.t.file - y.t.file || x.t.byteOffset - y.t.byteOffset);
  const out: { t: TensorInfo; at: number }[][] = [];
  let cur: { t: TensorInfo; at: number }[] = [];
  for (const s of sorted) {
    const first = cur[0]?.t;
    const last = cur[cur.length - 1]?.t;
    const fits =
      first !== undefined &&
      s.t.file === first.file &&
      s.t.byteOffset >= last.byteOffset + last.byteLength &&
      s.t.byteOffset - (last.byteOffset + last.byteLength) <= BATCH_GAP_BYTES &&
      s.t.byteOffset + s.t.byteLength - first.byteOffset <= BATCH_BYTES &&
      cur.length < BATCH_TENSORS;
    if (!fits && cur.length > 0) {
      out.push(cur);
      cur = [];
    }
    cur.push(s);
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/**
 * Statistics and a health scan of `model`'s tensors (all, or `opts.tensors`),
 * streamed in bounded slices: memory stays flat in the model's size. Slices run
 * on the chosen backend (CPU workers read local files themselves), progress is
 * reported in bytes, and `opts.signal` cancels with `CancelledError`.
 */
export async function stats(model: Model, opts: StatsOptions = {}): Promise<StatsReport> {
  const started = performance.now();
  const bins = opts.bins ?? DEFAULT_BINS;
  if (!Number.isInteger(bins) || bins < 1 || bins > 65536) throw new RangeError(`bins must be an integer in [1, 65536], got ${bins}`);
  const topK = opts.topK ?? DEFAULT_TOP_K;
  const histograms = opts.histograms ?? true;
  const selected = (opts.tensors ?? model.tensors.map((t) => t.name)).map((name) => {
    const t = model.tensor(name);
    if (!t) throw new FormatError('not_found', 'no such tensor', model.path, name);
    return t;
  });
  throwIfCancelled(opts.signal);
  const backend = await getBackend(opts.backend ?? 'auto');
  const direct = await directPaths(model);
  const sliceBytes = backend.kind === 'webgpu' ? GPU_SLICE_BYTES : CPU_SLICE_BYTES;
  // Two slices per worker: the pool posts the second ahead, so a worker starts its next slice
  // the moment it ends one, whatever the host is doing (merging, summarizing) at the time.
  const limit = limiter(backend.kind === 'webgpu' ? 2 : 2 * cpuPoolSize());

  // A private controller: the first failure stops the other slices too.
  const ac = new AbortController();
  const onAbort = (): void => ac.abort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const total = selected.reduce((s, t) => s + t.byteLength, 0);
  const report = throttle(opts.progress);
  let done = 0;
  let bytesRead = 0;

  const source = async (t: TensorInfo, s: Slice): Promise<StatsSource> => {
    const path = direct[t.file];
    if (path) return { file: { path, offset: t.byteOffset + s.byteStart, length: s.byteLength } };
    const bytes = new Uint8Array(s.byteLength);
    await model.read(t, s.byteStart, bytes);
    return { bytes };
  };
  const run = <R>(t: TensorInfo, s: Slice, make: (src: StatsSource) => Parameters<Backend['run']>[1]): Promise<R> =>
    limit(async () => {
      if (ac.signal.aborted) throw new CancelledError();
      const args = make(await source(t, s));
      return (await backend.run(statsKernel, args as never, ac.signal)) as R;
    });

  const one = async (t: TensorInfo): Promise<TensorStats> => {
    const head: TensorHead = { name: t.name, dtype: t.dtype, shape: t.shape, count: t.numel };
    const slices = slicesOf(t, sliceBytes);
    const progressed = (s: Slice): void => {
      done += s.byteLength;
      bytesRead += s.byteLength;
      report({ done, total, unit: 'bytes', message: t.name });
    };
    try {
      if (isPatternDType(t.dtype)) {
        const hist = new Float64Array(2 ** DTYPE_INFO[t.dtype].bits);
        const occurring: number[] = [];
        const tops = await Promise.all(
          slices.map(async (s) => {
            const r = await run<PatternScan>(t, s, (src) => ({ phase: 'scan', dtype: t.dtype, first: s.first, count: s.count, src, topK }));
            for (let j = 0; j < r.patterns.length; j++) {
              const p = r.patterns[j];
              if (hist[p] === 0) occurring.push(p);
              hist[p] += r.counts[j];
            }
            progressed(s);
            return r.top;
          }),
        );
        return summarizePatterns(head, hist, mergeTop(tops, topK), bins, occurring);
      }
      if (t.dtype === 'C64') {
        slices.forEach(progressed);
        return unsupportedStats(head, bins);
      }
      const scans = await Promise.all(
        slices.map(async (s) => {
          const r = await run<WideScan>(t, s, (src) => ({ phase: 'scan', dtype: t.dtype, first: s.first, count: s.count, src, topK }));
          progressed(s);
          return r;
        }),
      );
      const totals = mergeWide(scans, topK);
      const params = binsParams(totals, bins);
      const binned = params
        ? await Promise.all(slices.map((s) => run<BinsResult>(t, s, (src) => ({ phase: 'bins', dtype: t.dtype, first: s.first, count: s.count, src, ...params }))))
        : [];
      return summarizeWide(head, totals, binned, bins);
    } catch (e) {
      // Name the tensor in errors that do not already say where they happened.
      if (e instanceof Error && !(e instanceof FormatError) && !(e instanceof CancelledError)) e.message = `${t.name}: ${e.message}`;
      throw e;
    }
  };

  const smallBytes = opts.smallTensorBytes ?? SMALL_TENSOR_BYTES;
  const tensors: TensorStats[] = new Array(selected.length);
  const small: { t: TensorInfo; at: number }[] = [];
  const pending: Promise<unknown>[] = [];
  selected.forEach((t, at) => {
    if (t.byteLength <= smallBytes && t.dtype !== 'C64') small.push({ t, at });
    else pending.push(one(t).then((r) => (tensors[at] = histograms ? r : { ...r, histogram: { ...r.histogram, counts: [] }, logHistogram: { ...r.logHistogram, counts: [] } })));
  });
  const batch = (items: readonly { t: TensorInfo; at: number }[]): Promise<void> =>
    limit(async () => {
      if (ac.signal.aborted) throw new CancelledError();
      const first = items[0].t;
      const last = items[items.length - 1].t;
      const start = first.byteOffset;
      const length = last.byteOffset + last.byteLength - start;
      const path = direct[first.file];
      let src: StatsSource;
      if (path) src = { file: { path, offset: start, length } };
      else {
        const bytes = new Uint8Array(length);
        await Promise.all(items.map(({ t }) => model.read(t, 0, bytes.subarray(t.byteOffset - start, t.byteOffset - start + t.byteLength))));
        src = { bytes };
      }
      const args = { src, items: items.map(({ t }) => ({ name: t.name, dtype: t.dtype, shape: t.shape, count: t.numel, at: t.byteOffset - start, byteLength: t.byteLength })), bins, topK, histograms };
      const r = unpackSmallStats(args.items, await backend.run(statsSmallKernel, args, ac.signal), bins, topK);
      items.forEach(({ t, at }, j) => {
        tensors[at] = r[j];
        done += t.byteLength;
        bytesRead += t.byteLength;
      });
      report({ done, total, unit: 'bytes', message: last.name });
    });
  for (const b of batchesOf(small)) pending.push(batch(b));

  try {
    // Stop the other slices at the first failure; the rest then reject quietly.
    pending.forEach((p) => p.catch(() => ac.abort()));
    await Promise.all(pending);
    throwIfCancelled(opts.signal);
    report({ done: total, total, unit: 'bytes' }, true);
    return {
      backend: backend.kind,
      device: backend.description,
      seconds: (performance.now() - started) / 1000,
      bytesRead,
      tensors,
      health: {
        nonFiniteTensors: tensors.filter((s) => s.nan + s.posInf + s.negInf > 0).map((s) => s.name),
        allZeroTensors: tensors.filter((s) => s.count > 0 && s.zeros === s.count).map((s) => s.name),
      },
    };
  } catch (e) {
    if (opts.signal?.aborted) throw new CancelledError();
    throw e;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
}
