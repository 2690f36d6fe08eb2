import { getBackend } from '../compute/backend';
import { cpuPoolSize } from '../compute/cpu/pool';
import { isPatternDType } from '../compute/decode/patterns';
import type { Backend } from '../compute/kernel';
import { SMALL_TENSOR_BYTES } from './statsBatch';
import { binsOfValues } from '../compute/stats/valueCounts';
import { schemeFoldsUndecoded } from '../compute/stats/schemeFolds';
import { foldsUndecoded, statsKernel, type BinsResult, type StatsResult, type StatsScanArgs, type TopEntry, type WideScan } from '../compute/stats/stats';
import { binsParams, mergeTop, mergeWide, summarizePatterns, summarizeWide, unsupportedStats, type TensorHead, type TensorStats } from '../compute/stats/summarize';
import { decodeKernel } from '../compute/decode/decode';
import { addSchemeChecks, noSchemeChecks, schemeChecks, schemeFindings, type SchemeChecks, type SchemeFinding } from '../compute/stats/schemeChecks';
import { DTYPE_INFO } from '../format/dtypes';
import { readSchemeUnits, unitCount, type SchemeUnits } from '../format/quantized/units';
import { storageUnit } from '../format/storage';
import { FormatError } from '../format/errors';
import { storageOf, typeNameOf, type Model, type TensorInfo } from '../format/model';
import type { StorageType } from '../format/storage';
import { CancelledError, throwIfCancelled, type JobContext } from '../core/job';
import { BufferPool, ByteProgress, sharedBytes, streamJobs, type JobSteps } from '../core/stream';
import { scanSmall } from './statsBatch';

export type { TensorStats } from '../compute/stats/summarize';
export type { SchemeFinding } from '../compute/stats/schemeChecks';
export { SMALL_TENSOR_BYTES } from './statsBatch';

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
  readonly health: {
    readonly nonFiniteTensors: string[];
    readonly allZeroTensors: string[];
    /** Quantized weights' scales and indices that are wrong whatever the values say (schemeChecks.ts); absent when none. */
    readonly schemeFindings?: SchemeFinding[];
  };
}

export const DEFAULT_BINS = 256;
export const DEFAULT_TOP_K = 16;
// 8 MiB slices: large enough that per-task overhead (a 256 KiB pattern table back) stays a
// few percent; small enough that the slices in flight (read here, then moved to a worker)
// about fit the shared L3, which measured 5% fewer CPU-seconds per GB than 16 MiB.
const CPU_SLICE_BYTES = 8 << 20;
// The GPU amortises each dispatch and readback over more data; two in flight, each held
// on the host and in a mapped upload buffer, stay within the same memory budget.
const GPU_SLICE_BYTES = 32 << 20;
// Every slice boundary falls on a 32-element boundary: whole bytes and whole u32 words for every width (4, 6, 8, 16, 32, 64 bits).
const SLICE_ALIGN = 32;

interface Slice {
  /** For a scheme tensor (a quantized weight): the units [u0, u1) this slice decodes. */
  readonly units?: readonly [number, number];
  readonly first: number;
  readonly count: number;
  readonly byteStart: number;
  readonly byteLength: number;
}

function slicesOf(t: TensorInfo, sliceBytes: number, undecoded: (s: Exclude<StorageType, { kind: 'dtype' }>) => boolean): Slice[] {
  const s = storageOf(t);
  if (s.kind === 'scheme') return schemeSlices(t, undecoded(s) ? sliceBytes : sliceBytes / 4, undecoded(s));
  if (s.kind === 'blocks') return blockSlicesOf(t, s.blockElements, s.blockBytes, undecoded(s) ? sliceBytes : sliceBytes / 4 / s.blockElements * s.blockBytes);
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

/**
 * A quantized weight in slices of whole units: `bytes` bounds the slice's data part, where the
 * kernel counts its codes, else its decoded float32 values (a unit larger than that, GPTQ's
 * whole tensor, is one slice).
 */
function schemeSlices(t: TensorInfo, bound: number, bytes: boolean): Slice[] {
  const unit = storageUnit(storageOf(t));
  const perSlice = Math.max(1, Math.floor(bytes ? bound / Math.max(1, unit.bytes) : bound / 4 / unit.elements));
  const units = unitCount(t);
  const out: Slice[] = [];
  for (let u0 = 0; u0 < units; u0 += perSlice) {
    const u1 = Math.min(units, u0 + perSlice);
    const first = u0 * unit.elements;
    const byteStart = u0 * unit.bytes;
    out.push({ units: [u0, u1], first, count: Math.min(t.numel, u1 * unit.elements) - first, byteStart, byteLength: Math.min(t.byteLength, u1 * unit.bytes) - byteStart });
  }
  return out;
}

/**
 * Slices of whole blocks, `maxBytes` of them: where the kernel decodes them to float32, the
 * caller bounds them by their values (4 bytes each) instead.
 */
function blockSlicesOf(t: TensorInfo, elements: number, bytes: number, maxBytes: number): Slice[] {
  const blocks = Math.max(1, Math.floor(maxBytes / bytes));
  const out: Slice[] = [];
  for (let first = 0; first < t.numel; first += blocks * elements) {
    const count = Math.min(blocks * elements, t.numel - first);
    out.push({ first, count, byteStart: (first / elements) * bytes, byteLength: (count / elements) * bytes });
  }
  return out;
}

/** One slice of one tensor, a job of the stream; `phase` 'bins' is the wide dtypes' second pass. */
interface SliceJob {
  readonly t: TensorInfo;
  readonly s: Slice;
  readonly phase: 'scan' | 'bins';
}

/** Per tensor, what the slices' results fold into. */
interface TensorFold {
  readonly t: TensorInfo;
  readonly slices: Slice[];
  readonly hist?: Float64Array;
  readonly occurring: number[];
  readonly tops: TopEntry[][];
  readonly scans: WideScan[];
  readonly binned: BinsResult[];
  params?: ReturnType<typeof binsParams>;
  /** Set once the bins came with the scans (a whole-tensor slice, or tables of values): no second pass. */
  binnedEarly?: boolean;
  /** A scheme tensor's checks of its scales and indices, added slice by slice. */
  readonly checks?: SchemeChecks;
}

/**
 * Statistics and a health scan of `model`'s tensors (all, or `opts.tensors`),
 * streamed in bounded slices read through the model's ByteSource: memory stays
 * flat in the model's size. Slices run on the chosen backend, progress is
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
  const sliceBytes = backend.kind === 'webgpu' ? GPU_SLICE_BYTES : CPU_SLICE_BYTES;
  // Two slices per worker: the pool posts the second ahead, so a worker starts its next slice
  // the moment it ends one, whatever the host is doing (merging, summarizing) at the time.
  const inFlight = backend.kind === 'webgpu' ? 2 : 2 * cpuPoolSize();
  // Every slice in flight, plus the one being read. Shared with the CPU workers rather than moved
  // to them: nothing is detached on either side (see MOVE_AT_BYTES in compute/worker.ts), and a
  // worker can hold its next slice while it scans one (the pool posts ahead only what moves nothing).
  const pool = new BufferPool(inFlight + 1, backend.kind === 'cpu' ? sharedBytes : undefined, sliceBytes);
  const progress = new ByteProgress(selected.reduce((s, t) => s + t.byteLength, 0), opts.progress);
  const smallBytes = opts.smallTensorBytes ?? SMALL_TENSOR_BYTES;
  // A quantized weight is decoded slice by slice, never batched with the small plain tensors.
  const isSmall = (t: TensorInfo) => t.byteLength <= smallBytes && t.dtype !== 'C64' && storageOf(t).kind === 'dtype';
  const tensors: TensorStats[] = new Array(selected.length);
  const small = selected.flatMap((t, at) => (isSmall(t) ? [{ t, at }] : []));
  const undecoded = (s: Exclude<StorageType, { kind: 'dtype' }>): boolean =>
    backend.kind === 'cpu' && (s.kind === 'blocks' ? foldsUndecoded(s.type, histograms) : schemeFoldsUndecoded(s, topK));
  const folds = selected.filter((t) => !isSmall(t)).map((t): TensorFold => {
    const pattern = storageOf(t).kind === 'dtype' && isPatternDType(t.dtype);
    const checks = storageOf(t).kind === 'scheme' ? noSchemeChecks() : undefined;
    return { t, slices: slicesOf(t, sliceBytes, undecoded), hist: pattern ? new Float64Array(2 ** DTYPE_INFO[t.dtype].bits) : undefined, occurring: [], tops: [], scans: [], binned: [], checks };
  });
  const byTensor = new Map(folds.map((f) => [f.t, f]));

  const steps = sliceSteps(model, backend, pool, byTensor, { topK, histograms, bins });
  const fold = ({ job, r }: SliceOut): void => {
    const f = byTensor.get(job.t)!;
    foldSlice(f, r);
    if (job.phase === 'scan' && f.scans.length === f.slices.length) binEarly(f, bins, topK, histograms);
    if (job.phase === 'scan') progress.add(job.s.byteLength, job.t.name);
  };
  const pass = async (jobs: SliceJob[]): Promise<void> => {
    for await (const x of streamJobs(jobs, steps, { inFlight, signal: opts.signal })) fold(x);
  };

  try {
    // Small tensors go many to a task (one read per batch): alone, each would cost a round trip.
    await scanSmall(model, backend, small, { bins, topK, histograms, inFlight, signal: opts.signal }, (at, r, bytes) => {
      tensors[at] = r;
      progress.add(bytes, r.name);
    });
    // C64 has no statistics here; its bytes still count as done.
    for (const f of folds) if (f.t.dtype === 'C64') progress.add(f.t.byteLength, f.t.name);
    const scan = folds.filter((f) => f.t.dtype !== 'C64').flatMap((f) => f.slices.map((s): SliceJob => ({ t: f.t, s, phase: 'scan' })));
    await pass(scan);
    // The wide dtypes' histograms need the whole tensor's range, mean and std: a second pass over their slices.
    const wide = folds.filter((f) => !f.hist && f.t.dtype !== 'C64' && !f.binnedEarly);
    for (const f of wide) f.params = binsParams(mergeWide(f.scans, topK), bins);
    await pass(wide.filter((f) => f.params).flatMap((f) => f.slices.map((s): SliceJob => ({ t: f.t, s, phase: 'bins' }))));
    const at = new Map(selected.map((t, i) => [t, i]));
    for (const f of folds) {
      const r = summarize(f, bins, topK);
      tensors[at.get(f.t)!] = histograms ? r : { ...r, histogram: { ...r.histogram, counts: [] }, logHistogram: { ...r.logHistogram, counts: [] } };
    }
    throwIfCancelled(opts.signal);
    progress.finish();
    return {
      backend: backend.kind,
      device: backend.description,
      seconds: (performance.now() - started) / 1000,
      bytesRead: progress.done,
      tensors,
      health: {
        nonFiniteTensors: tensors.filter((s) => s.nan + s.posInf + s.negInf > 0).map((s) => s.name),
        allZeroTensors: tensors.filter((s) => s.count > 0 && s.zeros === s.count).map((s) => s.name),
        ...findingsOf(folds),
      },
    };
  } catch (e) {
    if (opts.signal?.aborted) throw new CancelledError();
    throw e;
  }
}

interface SliceOut {
  readonly job: SliceJob;
  readonly r: StatsResult;
}

/** A slice's two steps: read its bytes through the model's ByteSource, then one kernel run. */
function sliceSteps(model: Model, backend: Backend, pool: BufferPool, byTensor: ReadonlyMap<TensorInfo, TensorFold>, o: { topK: number; histograms: boolean; bins: number }): JobSteps<SliceJob, Uint8Array | SchemeUnits, SliceOut> {
  const { topK, histograms } = o;
  // On the CPU a scheme's data part goes to the worker and comes back with the result: it can be the pool's.
  const take = backend.kind === 'cpu' ? (n: number) => pool.take(n) : undefined;
  return {
    read: async ({ t, s }) => {
      if (s.units) return readSchemeUnits(model, t, s.units[0], s.units[1], take);
      const bytes = pool.take(s.byteLength);
      await model.read(t, s.byteStart, bytes);
      return bytes;
    },
    run: async (job, read, signal) => {
      const { t, s, phase } = job;
      let bytes: Uint8Array;
      let dtype = t.dtype;
      let scheme: Pick<StatsScanArgs, 'storage' | 'more'> | undefined;
      if (read instanceof Uint8Array) bytes = read;
      else {
        const st = storageOf(t);
        const fold = byTensor.get(t)!;
        // The scheme's own checks, once per slice of the first pass (each part that every slice receives whole, once per tensor).
        if (phase === 'scan' && st.kind === 'scheme' && fold.checks) {
          const counted = [read.data, ...read.more].map((_, k) => (st.partUnitBytes?.[k] ?? 0) !== 0 || s.units![0] === 0);
          addSchemeChecks(fold.checks, schemeChecks(st, [read.data, ...read.more], counted));
        }
        dtype = 'F32';
        if (backend.kind === 'cpu' && st.kind === 'scheme') {
          // The worker decodes the units and folds the values in one task: no float32 copy crosses threads.
          bytes = read.data;
          scheme = { storage: st, more: read.more };
        } else {
          const values = await backend.run(decodeKernel, { dtype: t.dtype, bytes: read.data, more: read.more, count: read.count, storage: t.storage }, signal).catch((e: unknown) => {
            throw named(e, t);
          });
          bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
        }
      }
      // Block storages (ggml types) are decoded inside the statistics kernel, schemes too on the CPU; on the GPU, above.
      const storage = read instanceof Uint8Array ? blockStorageOf(t) : scheme?.storage;
      const slice = { dtype: storage ? ('F32' as const) : dtype, storage, more: scheme?.more, first: s.first, count: s.count, bytes };
      // A tensor of one slice may have its bins done in the same task (the CPU twin does).
      const whole = backend.kind === 'cpu' && byTensor.get(t)!.slices.length === 1 ? { bins: o.bins, histograms } : undefined;
      const args = phase === 'scan' ? { ...slice, phase, topK, whole } : { ...slice, phase, ...byTensor.get(t)!.params!, histograms };
      let r: StatsResult;
      try {
        r = await backend.run(statsKernel, args, signal);
      } catch (e) {
        throw named(e, t);
      }
      // Pooled bytes were shared with the CPU twin or uploaded by the GPU twin: both are done with them.
      // On the CPU a scheme's data part is the pool's too (`take`); decoded values and the other parts are not.
      if (read instanceof Uint8Array) pool.give(bytes);
      else if (take) pool.give(read.data);
      return { job, r };
    },
  };
}

/** The scheme findings of the scanned tensors, as the report's health carries them (absent when none). */
function findingsOf(folds: readonly TensorFold[]): { schemeFindings?: SchemeFinding[] } {
  const all = folds.flatMap((f) => (f.checks && f.t.storage?.kind === 'scheme' ? schemeFindings(f.t.name, f.t.storage.scheme, f.checks) : []));
  return all.length > 0 ? { schemeFindings: all } : {};
}

/**
 * Once a tensor's scans are all in: the bins that came with them (a whole-tensor slice), or the
 * bins of its slices' tables of values (binsOfValues, exact), so that it needs no second pass.
 * The tables are let go here: a tensor's tables are a fraction of its bytes, kept only until then.
 */
function binEarly(f: TensorFold, bins: number, topK: number, histograms: boolean): void {
  const scans = f.scans as WideScan[];
  if (scans.length === 0) return;
  if (scans.length === 1 && scans[0].binned) {
    f.binned.push(scans[0].binned);
    f.binnedEarly = true;
  } else if (scans.every((x) => x.values)) {
    const p = binsParams(mergeWide(scans, topK), bins);
    if (p) for (const x of scans) f.binned.push(binsOfValues(x.values!, p, histograms));
    f.binnedEarly = true;
  }
  for (let i = 0; i < scans.length; i++) if (scans[i].values || scans[i].binned) scans[i] = { ...scans[i], values: undefined, binned: undefined };
}

/** Adds one slice's result to its tensor's totals (slices arrive in order). */
function foldSlice(f: TensorFold, r: StatsResult): void {
  if (r.kind === 'patterns') {
    for (let j = 0; j < r.patterns.length; j++) {
      const p = r.patterns[j];
      if (f.hist![p] === 0) f.occurring.push(p);
      f.hist![p] += r.counts[j];
    }
    f.tops.push(r.top);
  } else if (r.kind === 'wide') f.scans.push(r);
  else f.binned.push(r);
}

/** The statistics of one tensor from its folded slices. */
function summarize(f: TensorFold, bins: number, topK: number): TensorStats {
  const t = f.t;
  const head: TensorHead = { name: t.name, dtype: t.storage?.kind === 'scheme' ? t.dtype : typeNameOf(t), ...(t.storage?.kind === 'scheme' ? { scheme: t.storage.scheme } : {}), shape: t.shape, count: t.numel };
  if (t.dtype === 'C64') return unsupportedStats(head, bins);
  if (f.hist) return summarizePatterns(head, f.hist, mergeTop(f.tops, topK), bins, f.occurring);
  // Slices fold in order, so the bins arrive in slice order as the summary expects.
  return summarizeWide(head, mergeWide(f.scans, topK), f.binned, bins);
}

function blockStorageOf(t: TensorInfo): Extract<StorageType, { kind: 'blocks' }> | undefined {
  return t.storage?.kind === 'blocks' ? t.storage : undefined;
}

/** Names the tensor in errors that do not already say where they happened. */
function named(e: unknown, t: TensorInfo): unknown {
  if (e instanceof Error && !(e instanceof FormatError) && !(e instanceof CancelledError)) e.message = `${t.name}: ${e.message}`;
  return e;
}
