import { getBackend } from '../compute/backend';
import { cpuPoolSize } from '../compute/cpu/pool';
import { diffElementBytes, type DiffDType } from '../compute/diff/decodeChunk';
import { diffReduceKernel, type DeltaHistogramSpec, type DiffReduceResult } from '../compute/diff/diffReduce';
import type { Backend } from '../compute/kernel';
import type { JobContext } from '../core/job';
import { BufferPool, ByteProgress, streamJobs, type JobSteps } from '../core/stream';
import { DTYPE_INFO } from '../format/dtypes';
import { decodeToF32 } from '../format/decode';
import { typeNameOf, type Model, type TensorInfo } from '../format/model';
import { matchModels, type NamedMatching } from './diffNames';
import { compareValues, decodable, type ValuePair } from './diffValues';
import { estimateRanks } from './diffRank';
import { compareSmallPairs, isSmallPair } from './diffSmall';
import { Accum, aggregate, blockOf, bytesEqual, chunkElements, compareBytesOnly, countDifferingElements, DEFAULT_CHUNK_BYTES, finishTensor, identicalResult, IN_FLIGHT_PER_WORKER, kernelDType, moduleKindOf } from './diffTensor';
import type { DiffOptions, DiffReport, ShapeChange, TensorDiff } from './diffTypes';

export type { PrefixMapping } from './diffMatch';
export * from './diffTypes';
export { blockOf, moduleKindOf } from './diffTensor';
export { estimateRanks, rankCandidates } from './diffRank';

// Chunk pairs read ahead of the comparison, across tensor boundaries, so that reading
// (disk or page cache) overlaps the byte compare and the workers.
const READ_AHEAD = 2;

/** One tensor pair's state while its chunks stream past. */
interface PairState {
  readonly ti: number;
  readonly ta: TensorInfo;
  readonly tb: TensorInfo;
  readonly kd: DiffDType;
  /** The kernel takes the stored dtype; otherwise chunks are widened to F32 here first. */
  readonly native: boolean;
  readonly storedBits: number;
  readonly acc: Accum;
  /** Every chunk folded so far was equal byte for byte. */
  identicalSoFar: boolean;
  /** Some chunk is known to differ: later chunks are reduced even when equal. */
  differs: boolean;
  /** Equal chunks folded while identical, not reduced: their element offsets. */
  readonly unreduced: { e0: number; n: number }[];
  hostDiff: number;
  /** Elements folded so far: the tensor is done when it reaches numel. */
  folded: number;
}

interface ChunkJob {
  readonly s: PairState;
  readonly e0: number;
  readonly n: number;
}

/** A chunk's outcome: its reduction, or (equal and not reduced) A's bytes, kept until the fold. */
interface ChunkOut {
  readonly job: ChunkJob;
  readonly r?: DiffReduceResult;
  readonly equalA?: Uint8Array;
}

/**
 * Compares two models tensor by tensor, streaming both in lockstep chunks.
 * Models that do not match are not an error: the report lists what differs.
 */
export async function diff(a: Model, b: Model, opts: DiffOptions = {}): Promise<DiffReport> {
  const t0 = performance.now();
  const backend = await getBackend(opts.backend ?? 'auto');
  const match = matchModels(a, b, opts.mapping);
  const { comparable, changed } = classifyPairs(match);
  const chunkBytes = Math.max(64, opts.chunkBytes ?? DEFAULT_CHUNK_BYTES);
  const progress = new ByteProgress(comparable.reduce((s, p) => s + p.a.byteLength + p.b.byteLength, 0), opts.progress);
  const results: (TensorDiff | undefined)[] = new Array(comparable.length);
  const jobs: ChunkJob[] = [];
  const byValue: ValuePair[] = [];
  const small: number[] = [];
  for (let ti = 0; ti < comparable.length; ti++) {
    const { a: ta, b: tb } = comparable[ti];
    if (comparable[ti].byValue) {
      byValue.push({ ti, a: ta, b: tb, orderA: match.rowOrders.get(ta), orderB: match.rowOrders.get(tb) });
      continue;
    }
    if (isSmallPair(comparable[ti], chunkBytes)) {
      small.push(ti);
      continue;
    }
    if (ta.dtype === 'C64') {
      // Complex values have no single magnitude to reduce: compared byte for byte.
      results[ti] = await compareBytesOnly(a, b, ta, tb, chunkBytes, (n) => progress.add(n, ta.name), opts.signal);
      continue;
    }
    if (ta.numel === 0) results[ti] = identicalResult(ta, tb);
    const native = kernelDType(ta.dtype);
    // Other dtypes are widened to F32 on this thread (they are rare in checkpoints: int
    // buffers, FP8 scales); their differing elements are counted on the stored bytes,
    // since widening F64 or 64-bit integers to F32 can merge distinct values.
    const s: PairState = { ti, ta, tb, kd: native ?? 'F32', native: native !== undefined, storedBits: DTYPE_INFO[ta.dtype].bits, acc: new Accum(), identicalSoFar: true, differs: false, unreduced: [], hostDiff: 0, folded: 0 };
    const perChunk = chunkElements(ta.dtype, chunkBytes);
    for (let e0 = 0; e0 < ta.numel; e0 += perChunk) jobs.push({ s, e0, n: Math.min(perChunk, ta.numel - e0) });
  }
  const workers = backend.kind === 'cpu' ? cpuPoolSize() : 1;
  await compareSmallPairs(a, b, comparable, small, backend, workers * IN_FLIGHT_PER_WORKER, opts.signal, (ti, r, n) => {
    results[ti] = r;
    progress.add(n, r.name);
  });
  const reread = await compareChunks(a, b, jobs, chunkBytes, backend, opts.signal, progress, results);
  await compareValues(a, b, byValue, backend, chunkBytes, progress, results, opts.signal);
  progress.finish();

  const tensors = results as TensorDiff[];
  const reductionSeconds = (performance.now() - t0) / 1000;
  let rankSeconds: number | undefined;
  let rankBytesRead: number | undefined;
  if (opts.rank) {
    const est = await estimateRanks(a, b, tensors, { ...opts, rank: typeof opts.rank === 'object' ? opts.rank : {} }, backend);
    rankSeconds = est.seconds;
    rankBytesRead = est.bytesRead;
  }
  const different = tensors.filter((t) => !t.identical).length;
  return {
    a: a.path,
    b: b.path,
    mapping: match.mapping,
    ...(match.naming ? { naming: match.naming } : {}),
    added: match.added.map((t) => t.name),
    removed: match.removed.map((t) => t.name),
    changed,
    tensors,
    layers: aggregate(tensors, (t) => blockOf(t.name) ?? 'other'),
    modules: aggregate(tensors, (t) => moduleKindOf(t.name)),
    summary: {
      compared: tensors.length,
      identical: tensors.length - different,
      different,
      elements: tensors.reduce((s, t) => s + t.numel, 0),
      changedElements: tensors.reduce((s, t) => s + t.changedElements, 0),
      ...quantizationCost(comparable, tensors),
    },
    backend: `${backend.kind} (${backend.description})`,
    seconds: rankSeconds === undefined ? reductionSeconds : (performance.now() - t0) / 1000,
    bytesRead: progress.done + reread + (rankBytesRead ?? 0),
    rankSeconds,
    rankBytesRead,
  };
}

/**
 * Pairs of one shape are compared: byte for byte when both sides store the same dtype in the
 * same row order, by value when both decode to floats but are stored differently (an F32
 * original beside its Q8_0 quantization) or one side's rows were reordered. Others are changes.
 */
function classifyPairs(match: NamedMatching): { comparable: { a: TensorInfo; b: TensorInfo; byValue: boolean }[]; changed: ShapeChange[] } {
  const comparable: { a: TensorInfo; b: TensorInfo; byValue: boolean }[] = [];
  const changed: ShapeChange[] = [];
  for (const p of match.pairs) {
    const sameShape = p.a.shape.length === p.b.shape.length && p.a.shape.every((d, i) => d === p.b.shape[i]);
    const plain = !p.a.storage && !p.b.storage && p.a.dtype === p.b.dtype;
    const reordered = match.rowOrders.has(p.a) || match.rowOrders.has(p.b);
    if (sameShape && plain && !reordered) comparable.push({ ...p, byValue: false });
    else if (sameShape && decodable(p.a) && decodable(p.b)) comparable.push({ ...p, byValue: true });
    else changed.push({ name: p.a.name, nameB: p.b.name !== p.a.name ? p.b.name : undefined, shapeA: p.a.shape, shapeB: p.b.shape, dtypeA: typeNameOf(p.a), dtypeB: typeNameOf(p.b) });
  }
  return { comparable, changed };
}

/** What B's storage costs against A's over the compared tensors: bits per value on each side, and the error of all values together. */
function quantizationCost(pairs: readonly { a: TensorInfo; b: TensorInfo }[], rows: readonly TensorDiff[]): Pick<DiffReport['summary'], 'bitsPerWeightA' | 'bitsPerWeightB' | 'relL2' | 'snrDb'> {
  const n = pairs.reduce((s, p) => s + p.a.numel, 0);
  const bits = (side: 'a' | 'b') => (n > 0 ? (8 * pairs.reduce((s, p) => s + p[side].byteLength, 0)) / n : 0);
  const d2 = rows.reduce((s, t) => s + t.absL2 * t.absL2, 0);
  // Identical rows carry no norm: their ‖a‖² is unknown here, so the total relL2 counts the changed tensors' norms.
  const a2 = rows.reduce((s, t) => s + (t.normA ?? 0) ** 2, 0);
  const relL2 = a2 > 0 ? Math.sqrt(d2 / a2) : d2 === 0 ? 0 : null;
  return { bitsPerWeightA: bits('a'), bitsPerWeightB: bits('b'), relL2, snrDb: relL2 !== null && relL2 > 0 ? -20 * Math.log10(relL2) : null };
}

function storedBytes(s: PairState, elements: number): number {
  return (elements * s.storedBits) / 8;
}

/**
 * Streams every chunk pair: read both, compare the bytes, reduce on the backend
 * what differs (and, once a tensor is known to differ, what is equal too: it still
 * counts towards ‖a‖, ‖b‖ and ⟨a,b⟩), then fold in order into each pair's totals.
 * Returns the bytes read again for equal prefixes of tensors that turned out to differ.
 */
async function compareChunks(a: Model, b: Model, jobs: readonly ChunkJob[], chunkBytes: number, backend: Backend, signal: AbortSignal | undefined, progress: ByteProgress, results: (TensorDiff | undefined)[]): Promise<number> {
  const workers = backend.kind === 'cpu' ? cpuPoolSize() : 1;
  // Kernels in flight, chunks read ahead and the chunk in hand.
  const inFlight = workers * IN_FLIGHT_PER_WORKER + READ_AHEAD + 1;
  // Both sides of every chunk in flight, plus a re-read; every tail chunk reuses a whole chunk's memory.
  const pool = new BufferPool(2 * (inFlight + 2), undefined, chunkBytes);
  const widen = (s: PairState, x: Uint8Array, n: number): Uint8Array => {
    if (s.native) return x;
    const f = new Float32Array(n);
    decodeToF32(s.ta.dtype, x, f, n);
    return new Uint8Array(f.buffer);
  };
  const reduce = async (s: PairState, x: Uint8Array, y: Uint8Array | undefined, n: number, sig?: AbortSignal): Promise<DiffReduceResult> => {
    const r = await backend.run(diffReduceKernel, { dtype: s.kd, a: widen(s, x, n), b: y && widen(s, y, n) }, sig);
    pool.give(...r.chunks);
    return r;
  };
  const steps: JobSteps<ChunkJob, [Uint8Array, Uint8Array], ChunkOut> = {
    read: async (job) => {
      const len = storedBytes(job.s, job.n);
      const off = storedBytes(job.s, job.e0);
      const ba = pool.take(len);
      const bb = pool.take(len);
      await Promise.all([a.read(job.s.ta, off, ba), b.read(job.s.tb, off, bb)]);
      return [ba, bb];
    },
    run: async (job, [ba, bb], sig) => {
      const s = job.s;
      if (bytesEqual(ba, bb)) {
        if (!s.differs) {
          pool.give(bb);
          return { job, equalA: ba };
        }
        pool.give(bb);
        return { job, r: await reduce(s, ba, undefined, job.n, sig) };
      }
      s.differs = true;
      if (!s.native && s.storedBits % 8 === 0) s.hostDiff += countDifferingElements(ba, bb, s.storedBits / 8);
      return { job, r: await reduce(s, ba, bb, job.n, sig) };
    },
  };
  let reread = 0;
  for await (const out of streamJobs(jobs, steps, { inFlight, readAhead: READ_AHEAD, signal })) {
    const { s, e0, n } = out.job;
    progress.add(2 * storedBytes(s, n), s.ta.name);
    if (out.r) {
      if (s.identicalSoFar) {
        s.identicalSoFar = false;
        // The equal prefix counts too: read A's side of it again, once.
        for (const c of s.unreduced) {
          const pa = pool.take(storedBytes(s, c.n));
          await a.read(s.ta, storedBytes(s, c.e0), pa);
          reread += storedBytes(s, c.n);
          s.acc.add(await reduce(s, pa, undefined, c.n, signal), c.e0);
        }
      }
      s.acc.add(out.r, e0);
    } else if (s.identicalSoFar) {
      s.unreduced.push({ e0, n });
      pool.give(out.equalA);
    } else {
      // Equal, compared before the chunk that differs was known: reduced here, from A's bytes.
      s.acc.add(await reduce(s, out.equalA!, undefined, n, signal), e0);
    }
    s.folded += n;
    if (s.folded === s.ta.numel) {
      if (!s.native && s.storedBits % 8 === 0) s.acc.nDiff = s.hostDiff;
      results[s.ti] = s.identicalSoFar ? identicalResult(s.ta, s.tb) : finishTensor(s.ta, s.tb, s.acc);
    }
  }
  return reread;
}

/**
 * The histogram of Δ = b − a over one tensor pair's differing elements, in `bins`
 * bins over [lo, hi] (by default ±maxAbsDiff, which a diff report gives).
 */
export async function deltaHistogram(
  a: Model,
  b: Model,
  ta: TensorInfo,
  tb: TensorInfo,
  spec: DeltaHistogramSpec,
  ctx: JobContext & { chunkBytes?: number } = {},
): Promise<Uint32Array> {
  const kd = kernelDType(ta.dtype);
  if (!kd || ta.dtype !== tb.dtype || ta.numel !== tb.numel) return new Uint32Array(spec.bins);
  const backend = await getBackend(ctx.backend ?? 'auto');
  const eb = diffElementBytes(kd);
  const perChunk = chunkElements(ta.dtype, ctx.chunkBytes ?? DEFAULT_CHUNK_BYTES);
  const counts = new Uint32Array(spec.bins);
  const chunks: { e0: number; n: number }[] = [];
  for (let e0 = 0; e0 < ta.numel; e0 += perChunk) chunks.push({ e0, n: Math.min(perChunk, ta.numel - e0) });
  const steps: JobSteps<{ e0: number; n: number }, [Uint8Array, Uint8Array], { end: number; hist?: Uint32Array }> = {
    read: async ({ e0, n }) => {
      const ba = new Uint8Array(n * eb);
      const bb = new Uint8Array(n * eb);
      await Promise.all([a.read(ta, e0 * eb, ba), b.read(tb, e0 * eb, bb)]);
      return [ba, bb];
    },
    run: async ({ e0, n }, [ba, bb], signal) => {
      if (bytesEqual(ba, bb)) return { end: e0 + n };
      const r = await backend.run(diffReduceKernel, { dtype: kd, a: ba, b: bb, hist: spec }, signal);
      return { end: e0 + n, hist: r.hist };
    },
  };
  // One chunk computing while the next is read: the page waits on this one tensor.
  for await (const r of streamJobs(chunks, steps, { inFlight: 2, signal: ctx.signal })) {
    if (!r.hist) continue;
    for (let i = 0; i < spec.bins; i++) counts[i] += r.hist[i];
    ctx.progress?.({ done: r.end, total: ta.numel, unit: 'bytes' });
  }
  return counts;
}
