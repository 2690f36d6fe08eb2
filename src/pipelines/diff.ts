import { getBackend, runBatch } from '../compute/backend';
import { cpuPoolSize } from '../compute/cpu/pool';
import { DIFF_DTYPES, diffElementBytes, type DiffDType } from '../compute/diff/decodeChunk';
import { deltaSketchKernel } from '../compute/diff/deltaSketch';
import { diffReduceKernel, type DeltaHistogramSpec, type DiffReduceResult } from '../compute/diff/diffReduce';
import type { Backend } from '../compute/kernel';
import { DTYPE_INFO, type DType } from '../format/dtypes';
import { decodeToF32 } from '../format/decode';
import type { Model, TensorInfo } from '../format/model';
import { matchTensors, type PrefixMapping } from './diffMatch';
import { eigenSymmetric, gaussianMatrix, orthonormalizeColumns } from './diffLinalg';
import { throttle, throwIfCancelled, type JobContext } from './job';

export type { PrefixMapping } from './diffMatch';

/** How the effective rank of each changed 2-D tensor is estimated. */
export interface RankOptions {
  /** Columns of the random sketch: 64 to read energy at rank 64, plus oversampling. */
  readonly sketch?: number;
  /** Passes of ΔᵀΔ over the sketch before the final one; each reads both tensors once more. */
  readonly powerIterations?: number;
  readonly seed?: number;
}

export interface DiffOptions extends JobContext {
  /** Prefix correspondence between A's and B's names; detected when absent. */
  readonly mapping?: PrefixMapping;
  /** Estimate the singular-value energy of each changed 2-D Δ (extra passes over those tensors). */
  readonly rank?: boolean | RankOptions;
  /** Upper bound on one chunk read from each file. */
  readonly chunkBytes?: number;
}

/** The ranks at which the captured fraction of ‖Δ‖²_F is reported. */
export const RANK_POINTS = [1, 4, 16, 64] as const;

export interface TensorDiff {
  /** A's name. */
  readonly name: string;
  /** B's name, when a prefix mapping made it differ. */
  readonly nameB?: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly numel: number;
  /** Byte-for-byte equal: no arithmetic was done. */
  readonly identical: boolean;
  /** ‖b − a‖ / ‖a‖; null when ‖a‖ = 0 (then see `absL2` and `note`). */
  readonly relL2: number | null;
  /** ‖b − a‖. */
  readonly absL2: number;
  readonly normA?: number;
  readonly normB?: number;
  /** ⟨a, b⟩ / (‖a‖·‖b‖); null when either norm is 0. */
  readonly cosine: number | null;
  readonly maxAbsDiff: number;
  /** Where |b − a| is largest (first such element), as an index per dimension. */
  readonly maxAbsIndex: number[] | null;
  readonly meanAbsDiff: number;
  /** Elements whose stored bits differ, over all elements. */
  readonly changedFraction: number;
  readonly changedElements: number;
  /** Fraction of ‖Δ‖²_F captured by the top-r singular values, at r = 1, 4, 16, 64. */
  readonly rankEnergy?: Record<`${(typeof RANK_POINTS)[number]}`, number>;
  /** Estimated leading singular values of Δ, largest first. */
  readonly singularValues?: number[];
  readonly note?: string;
}

export interface ShapeChange {
  readonly name: string;
  readonly nameB?: string;
  readonly shapeA: readonly number[];
  readonly shapeB: readonly number[];
  readonly dtypeA: DType;
  readonly dtypeB: DType;
}

/** Tensors aggregated by block (`layers.N`) or by module kind (`q_proj`, `norm`, …). */
export interface GroupDiff {
  readonly group: string;
  readonly tensors: number;
  readonly changedTensors: number;
  readonly elements: number;
  readonly changedElements: number;
  readonly changedFraction: number;
  /** Σ‖Δ‖² over the group's tensors. */
  readonly sumSqDiff: number;
  /** relL2 averaged with each tensor weighted by its element count. */
  readonly meanRelL2: number;
  readonly maxRelL2: number;
}

export interface DiffReport {
  readonly a: string;
  readonly b: string;
  readonly mapping?: PrefixMapping & { readonly auto: boolean };
  readonly added: string[];
  readonly removed: string[];
  readonly changed: ShapeChange[];
  readonly tensors: TensorDiff[];
  readonly layers: GroupDiff[];
  readonly modules: GroupDiff[];
  readonly summary: {
    readonly compared: number;
    readonly identical: number;
    readonly different: number;
    readonly elements: number;
    readonly changedElements: number;
  };
  readonly backend: string;
  /** Wall time of the whole diff, rank estimate included. */
  readonly seconds: number;
  /** Bytes read from both models, rank passes included. */
  readonly bytesRead: number;
  /** Share of `seconds` and `bytesRead` spent on the rank estimate. */
  readonly rankSeconds?: number;
  readonly rankBytesRead?: number;
}

// 8 MiB per side: large enough that a read and a worker round trip cost little
// per byte, small enough that the chunks in flight stay far below the 300 MB budget.
const DEFAULT_CHUNK_BYTES = 8 << 20;
// Chunk pairs alive at once, per worker: one computing, one queued, so a worker
// never waits for the reader. With 8 MiB chunks and two workers: 4 × 16 MiB.
const IN_FLIGHT_PER_WORKER = 2;
// Chunk pairs read ahead of the comparison, across tensor boundaries, so that reading
// (disk or page cache) overlaps the byte compare and the workers.
const READ_AHEAD = 2;
// Row blocks of the rank passes: each worker widens a block of both tensors to f32
// (2 × 4 bytes per element), so 1 MiB of BF16 costs it 8 MiB of scratch; a block is
// still hundreds of rows, so per-call overhead stays small next to its k·rows·cols work.
const RANK_BLOCK_BYTES = 1 << 20;
// Tensor pairs this small are read many to a request and reduced many to a worker task:
// alone, each would cost two reads and a round trip for a few hundred bytes of arithmetic.
const SMALL_PAIR_BYTES = 64 << 10;
// One batch: at most 2,048 pairs and 4 MiB per side, so a few batches in flight stay small.
const SMALL_BATCH_PAIRS = 2048;
const SMALL_BATCH_BYTES = 4 << 20;
const DEFAULT_SKETCH = 72;
const DEFAULT_POWER_ITERATIONS = 1;
const DEFAULT_SEED = 0x5eed;

/** Counts slots for chunk buffers so that memory stays bounded whatever the model size. */
class Slots {
  private waiting: (() => void)[] = [];
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

/** Running totals of one tensor pair; chunk results arrive in any order. */
class Accum {
  sumA2 = 0;
  sumB2 = 0;
  dot = 0;
  sumD2 = 0;
  sumAbsD = 0;
  maxAbs = 0;
  maxIndex = -1;
  nDiff = 0;
  add(r: DiffReduceResult, elementOffset: number): void {
    this.sumA2 += r.sumA2;
    this.sumB2 += r.sumB2;
    this.dot += r.dot;
    this.sumD2 += r.sumD2;
    this.sumAbsD += r.sumAbsD;
    this.nDiff += r.nDiff;
    if (r.maxIndex >= 0) {
      const idx = elementOffset + r.maxIndex;
      if (r.maxAbs > this.maxAbs || (r.maxAbs === this.maxAbs && (this.maxIndex < 0 || idx < this.maxIndex))) {
        this.maxAbs = r.maxAbs;
        this.maxIndex = idx;
      }
    }
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function unravel(index: number, shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length).fill(0);
  for (let d = shape.length - 1; d >= 0; d--) {
    out[d] = index % shape[d];
    index = Math.floor(index / shape[d]);
  }
  return out;
}

function kernelDType(d: DType): DiffDType | undefined {
  return (DIFF_DTYPES as readonly string[]).includes(d) ? (d as DiffDType) : undefined;
}

/** Reads `length` bytes of a tensor into a fresh buffer (fresh: it may be moved to a worker). */
async function readRange(m: Model, t: TensorInfo, offset: number, length: number, pool: Uint8Array[]): Promise<Uint8Array> {
  const i = pool.findIndex((x) => x.length === length);
  const buf = i >= 0 ? pool.splice(i, 1)[0] : new Uint8Array(length);
  await m.read(t, offset, buf);
  return buf;
}

/** The block index (`layers.N`, `h.N`, `blocks.N`) a tensor belongs to, if any. */
export function blockOf(name: string): string | undefined {
  const m = /(?:^|\.)(layers|layer|h|blocks|block)\.(\d+)(?:\.|$)/.exec(name);
  return m ? `${m[1]}.${m[2]}` : undefined;
}

/** The module kind: the leaf module's name (`q_proj`, `down_proj`), every norm folded into `norm`. */
export function moduleKindOf(name: string): string {
  const parts = name.split('.');
  if (parts.length > 1 && /^(weight|bias|scale|g|b)$/.test(parts[parts.length - 1])) parts.pop();
  const leaf = parts[parts.length - 1] ?? name;
  if (/norm|^ln_?\w*$/i.test(leaf)) return 'norm';
  return leaf;
}

function aggregate(tensors: readonly TensorDiff[], keyOf: (t: TensorDiff) => string | undefined): GroupDiff[] {
  const groups = new Map<string, TensorDiff[]>();
  for (const t of tensors) {
    const k = keyOf(t);
    if (k === undefined) continue;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(t);
  }
  const out: GroupDiff[] = [];
  for (const [group, ts] of groups) {
    const elements = ts.reduce((s, t) => s + t.numel, 0);
    const changedElements = ts.reduce((s, t) => s + t.changedElements, 0);
    const rel = ts.map((t) => t.relL2 ?? 0);
    out.push({
      group,
      tensors: ts.length,
      changedTensors: ts.filter((t) => !t.identical).length,
      elements,
      changedElements,
      changedFraction: elements > 0 ? changedElements / elements : 0,
      sumSqDiff: ts.reduce((s, t) => s + t.absL2 * t.absL2, 0),
      meanRelL2: elements > 0 ? ts.reduce((s, t, i) => s + rel[i] * t.numel, 0) / elements : 0,
      maxRelL2: Math.max(0, ...rel),
    });
  }
  // Blocks in numeric order (layers.2 before layers.10), module kinds alphabetically.
  return out.sort((x, y) => x.group.localeCompare(y.group, 'en', { numeric: true }));
}

function identicalResult(a: TensorInfo, b: TensorInfo): TensorDiff {
  return {
    name: a.name,
    nameB: b.name !== a.name ? b.name : undefined,
    dtype: a.dtype,
    shape: a.shape,
    numel: a.numel,
    identical: true,
    relL2: 0,
    absL2: 0,
    cosine: 1,
    maxAbsDiff: 0,
    maxAbsIndex: null,
    meanAbsDiff: 0,
    changedFraction: 0,
    changedElements: 0,
  };
}

function finish(a: TensorInfo, b: TensorInfo, s: Accum): TensorDiff {
  const normA = Math.sqrt(s.sumA2);
  const normB = Math.sqrt(s.sumB2);
  const absL2 = Math.sqrt(s.sumD2);
  const cosine = normA > 0 && normB > 0 ? Math.max(-1, Math.min(1, s.dot / (normA * normB))) : null;
  return {
    name: a.name,
    nameB: b.name !== a.name ? b.name : undefined,
    dtype: a.dtype,
    shape: a.shape,
    numel: a.numel,
    identical: false,
    relL2: normA > 0 ? absL2 / normA : null,
    absL2,
    normA,
    normB,
    cosine,
    maxAbsDiff: s.maxAbs,
    maxAbsIndex: s.maxIndex >= 0 ? unravel(s.maxIndex, a.shape) : null,
    meanAbsDiff: a.numel > 0 ? s.sumAbsD / a.numel : 0,
    changedFraction: a.numel > 0 ? s.nDiff / a.numel : 0,
    changedElements: s.nDiff,
    note: normA > 0 ? undefined : 'A is all zeros: relL2 is undefined, absL2 = ‖b − a‖ is reported instead',
  };
}

/** Sizes a chunk to whole elements (whole bytes for sub-byte dtypes: 8 elements always end on one). */
function chunkElements(dtype: DType, chunkBytes: number): number {
  const bits = DTYPE_INFO[dtype].bits;
  return Math.max(8, Math.floor((chunkBytes * 8) / bits / 8) * 8);
}

/**
 * Compares two models tensor by tensor, streaming both in lockstep chunks.
 * Models that do not match are not an error: the report lists what differs.
 */
export async function diff(a: Model, b: Model, opts: DiffOptions = {}): Promise<DiffReport> {
  const t0 = performance.now();
  const backend = await getBackend(opts.backend ?? 'auto');
  const match = matchTensors(a.tensors, b.tensors, opts.mapping);
  const changed: ShapeChange[] = [];
  const comparable: { a: TensorInfo; b: TensorInfo }[] = [];
  for (const p of match.pairs) {
    const sameShape = p.a.shape.length === p.b.shape.length && p.a.shape.every((d, i) => d === p.b.shape[i]);
    if (sameShape && p.a.dtype === p.b.dtype) comparable.push(p);
    else changed.push({ name: p.a.name, nameB: p.b.name !== p.a.name ? p.b.name : undefined, shapeA: p.a.shape, shapeB: p.b.shape, dtypeA: p.a.dtype, dtypeB: p.b.dtype });
  }
  const chunkBytes = Math.max(64, opts.chunkBytes ?? DEFAULT_CHUNK_BYTES);
  const workers = backend.kind === 'cpu' ? cpuPoolSize() : 1;
  // Kernels in flight, chunks read ahead, the chunk in hand and one re-read of an equal
  // prefix: with fewer slots the re-read could wait on reads that wait on it.
  const slots = new Slots(workers * IN_FLIGHT_PER_WORKER + READ_AHEAD + 2);
  const pool: Uint8Array[] = [];
  const poolLimit = 2 * (workers * IN_FLIGHT_PER_WORKER + READ_AHEAD + 2);
  const recycle = (bufs: readonly Uint8Array[]) => {
    for (const x of bufs) {
      if (x.byteOffset !== 0 || x.byteLength !== x.buffer.byteLength) continue;
      // The oldest buffer goes first: it is the likeliest to have an odd (tail-chunk) size.
      if (pool.length >= poolLimit) pool.shift();
      pool.push(x);
    }
  };
  const totalBytes = comparable.reduce((s, p) => s + p.a.byteLength + p.b.byteLength, 0);
  let bytesRead = 0;
  const report = throttle(opts.progress);
  const signal = opts.signal;

  const results: (TensorDiff | undefined)[] = new Array(comparable.length);
  const pending: Promise<void>[] = [];
  let failure: unknown;

  /** One tensor pair's state while its chunks stream past. */
  interface Stream {
    readonly ti: number;
    readonly ta: TensorInfo;
    readonly tb: TensorInfo;
    readonly kd: DiffDType;
    readonly native: boolean;
    readonly storedBits: number;
    readonly perChunk: number;
    readonly acc: Accum;
    readonly tasks: Promise<void>[];
    identicalSoFar: boolean;
    hostDiff: number;
  }
  const jobs: { s: Stream; e0: number; n: number }[] = [];
  const small: number[] = [];
  for (let ti = 0; ti < comparable.length; ti++) {
    const { a: ta, b: tb } = comparable[ti];
    if (ta.dtype !== 'C64' && ta.numel > 0 && ta.byteLength <= SMALL_PAIR_BYTES && ta.numel <= chunkElements(ta.dtype, chunkBytes)) {
      small.push(ti);
      continue;
    }
    if (ta.dtype === 'C64') {
      // Complex values have no single magnitude to reduce: compared byte for byte.
      results[ti] = await compareBytesOnly(a, b, ta, tb, chunkBytes, (n) => {
        bytesRead += n;
        report({ done: bytesRead, total: totalBytes, unit: 'bytes', message: ta.name });
      }, signal);
      continue;
    }
    const native = kernelDType(ta.dtype);
    // Other dtypes are widened to F32 on this thread (they are rare in checkpoints: int
    // buffers, FP8 scales); their differing elements are counted on the stored bytes,
    // since widening F64 or 64-bit integers to F32 can merge distinct values.
    const s: Stream = {
      ti,
      ta,
      tb,
      kd: native ?? 'F32',
      native: native !== undefined,
      storedBits: DTYPE_INFO[ta.dtype].bits,
      perChunk: chunkElements(ta.dtype, chunkBytes),
      acc: new Accum(),
      tasks: [],
      identicalSoFar: true,
      hostDiff: 0,
    };
    if (ta.numel === 0) results[ti] = identicalResult(ta, tb);
    for (let e0 = 0; e0 < ta.numel; e0 += s.perChunk) jobs.push({ s, e0, n: Math.min(s.perChunk, ta.numel - e0) });
  }
  const storedBytes = (s: Stream, elements: number) => (elements * s.storedBits) / 8;
  const widen = (s: Stream, x: Uint8Array, n: number): Uint8Array => {
    if (s.native) return x;
    const f = new Float32Array(n);
    decodeToF32(s.ta.dtype, x, f, n);
    return new Uint8Array(f.buffer);
  };
  const submit = (s: Stream, buf: Uint8Array, other: Uint8Array | undefined, elementOffset: number) => {
    s.tasks.push(
      backend
        .run(diffReduceKernel, { dtype: s.kd, a: buf, b: other }, signal)
        .then((r) => {
          s.acc.add(r, elementOffset);
          recycle(r.chunks);
        })
        .catch((e) => {
          failure ??= e;
        })
        .finally(() => slots.release()),
    );
  };
  const close = (s: Stream) => {
    if (s.identicalSoFar) {
      results[s.ti] = identicalResult(s.ta, s.tb);
      return;
    }
    pending.push(
      Promise.all(s.tasks).then(() => {
        if (!s.native && s.storedBits % 8 === 0) s.acc.nDiff = s.hostDiff;
        results[s.ti] = finish(s.ta, s.tb, s.acc);
      }),
    );
  };
  const read = async (j: (typeof jobs)[number]) => {
    await slots.acquire();
    const off = storedBytes(j.s, j.e0);
    const len = storedBytes(j.s, j.n);
    return Promise.all([readRange(a, j.s.ta, off, len, pool), readRange(b, j.s.tb, off, len, pool)]);
  };
  const smallDone = compareSmallPairs(a, b, comparable, small, backend, workers * IN_FLIGHT_PER_WORKER, signal, (ti, r, n) => {
    results[ti] = r;
    bytesRead += n;
    report({ done: bytesRead, total: totalBytes, unit: 'bytes', message: r.name });
  });
  smallDone.catch((e) => (failure ??= e));
  const ahead: Promise<[Uint8Array, Uint8Array]>[] = [];
  let next = 0;
  const topUp = () => {
    while (ahead.length < READ_AHEAD && next < jobs.length) {
      const p = read(jobs[next++]);
      // Observed here so that a failure while an earlier chunk is processed is not unhandled.
      p.catch(() => undefined);
      ahead.push(p);
    }
  };
  try {
    for (let ji = 0; ji < jobs.length; ji++) {
      if (failure) throw failure;
      throwIfCancelled(signal);
      topUp();
      const { s, e0, n } = jobs[ji];
      const [ba, bb] = await ahead.shift()!;
      topUp();
      bytesRead += 2 * storedBytes(s, n);
      report({ done: bytesRead, total: totalBytes, unit: 'bytes', message: s.ta.name });
      if (s.identicalSoFar && bytesEqual(ba, bb)) {
        recycle([ba, bb]);
        slots.release();
      } else {
        if (s.identicalSoFar && e0 > 0) {
          // The equal prefix still counts towards ‖a‖, ‖b‖ and ⟨a,b⟩: read A's side again, once.
          for (let p0 = 0; p0 < e0; p0 += s.perChunk) {
            await slots.acquire();
            const m = Math.min(s.perChunk, e0 - p0);
            const pa = await readRange(a, s.ta, storedBytes(s, p0), storedBytes(s, m), []);
            bytesRead += storedBytes(s, m);
            submit(s, widen(s, pa, m), undefined, p0);
          }
        }
        s.identicalSoFar = false;
        if (!s.native && s.storedBits % 8 === 0) s.hostDiff += countDifferingElements(ba, bb, s.storedBits / 8);
        submit(s, widen(s, ba, n), widen(s, bb, n), e0);
      }
      if (ji + 1 === jobs.length || jobs[ji + 1].s !== s) close(s);
    }
  } finally {
    // Reads already started must settle before the caller may close the models.
    await Promise.allSettled(ahead);
  }
  await Promise.all(pending);
  await smallDone.catch(() => undefined);
  if (failure) throw failure;
  report({ done: totalBytes, total: totalBytes, unit: 'bytes' }, true);

  const tensors = results as TensorDiff[];
  const reductionSeconds = (performance.now() - t0) / 1000;
  let rankSeconds: number | undefined;
  let rankBytesRead: number | undefined;
  if (opts.rank) {
    const est = await estimateRanks(a, b, tensors, { ...opts, rank: typeof opts.rank === 'object' ? opts.rank : {} }, backend);
    rankSeconds = est.seconds;
    rankBytesRead = est.bytesRead;
    bytesRead += est.bytesRead;
  }

  const different = tensors.filter((t) => !t.identical).length;
  return {
    a: a.path,
    b: b.path,
    mapping: match.mapping,
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
    },
    backend: `${backend.kind} (${backend.description})`,
    seconds: rankSeconds === undefined ? reductionSeconds : (performance.now() - t0) / 1000,
    bytesRead,
    rankSeconds,
    rankBytesRead,
  };
}

/** The bytes of `ts` (increasing offsets), one view each: a single span read when they lie close together in one file. */
async function readGroup(m: Model, ts: readonly TensorInfo[]): Promise<Uint8Array[]> {
  const first = ts[0];
  const last = ts[ts.length - 1];
  const sum = ts.reduce((s, t) => s + t.byteLength, 0);
  const ordered = ts.every((t, i) => t.file === first.file && (i === 0 || t.byteOffset >= ts[i - 1].byteOffset + ts[i - 1].byteLength));
  const span = last.byteOffset + last.byteLength - first.byteOffset;
  // Reading through gaps up to the data's own size still beats a request per tensor.
  if (m.readSpan && ordered && span <= 2 * sum) {
    const buf = new Uint8Array(span);
    await m.readSpan(first, last, buf);
    return ts.map((t) => buf.subarray(t.byteOffset - first.byteOffset, t.byteOffset - first.byteOffset + t.byteLength));
  }
  return Promise.all(
    ts.map(async (t) => {
      const x = new Uint8Array(t.byteLength);
      await m.read(t, 0, x);
      return x;
    }),
  );
}

/**
 * The small pairs (indices into `pairs`), batched: each batch is one read per side and one
 * worker task for the pairs that differ. Each pair is one chunk, so its result is the
 * streaming path's exactly.
 */
async function compareSmallPairs(
  a: Model,
  b: Model,
  pairs: readonly { a: TensorInfo; b: TensorInfo }[],
  small: readonly number[],
  backend: Backend,
  inFlight: number,
  signal: AbortSignal | undefined,
  done: (ti: number, r: TensorDiff, bytes: number) => void,
): Promise<void> {
  const batches: number[][] = [];
  let cur: number[] = [];
  let bytes = 0;
  for (const ti of small) {
    const t = pairs[ti].a;
    if (cur.length > 0 && (cur.length >= SMALL_BATCH_PAIRS || bytes + t.byteLength > SMALL_BATCH_BYTES || pairs[cur[0]].a.file !== t.file)) {
      batches.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(ti);
    bytes += t.byteLength;
  }
  if (cur.length > 0) batches.push(cur);
  const one = async (batch: number[]): Promise<void> => {
    throwIfCancelled(signal);
    const [ba, bb] = await Promise.all([readGroup(a, batch.map((ti) => pairs[ti].a)), readGroup(b, batch.map((ti) => pairs[ti].b))]);
    const items: { dtype: DiffDType; a: Uint8Array; b: Uint8Array }[] = [];
    const owners: { ti: number; hostDiff?: number }[] = [];
    batch.forEach((ti, j) => {
      const { a: ta, b: tb } = pairs[ti];
      if (bytesEqual(ba[j], bb[j])) return done(ti, identicalResult(ta, tb), 2 * ta.byteLength);
      const kd = kernelDType(ta.dtype);
      const bits = DTYPE_INFO[ta.dtype].bits;
      const widen = (x: Uint8Array): Uint8Array => {
        if (kd) return x;
        const f = new Float32Array(ta.numel);
        decodeToF32(ta.dtype, x, f, ta.numel);
        return new Uint8Array(f.buffer);
      };
      items.push({ dtype: kd ?? 'F32', a: widen(ba[j]), b: widen(bb[j]) });
      // As in the streaming path: widened dtypes count differing elements on their stored bytes.
      owners.push({ ti, hostDiff: !kd && bits % 8 === 0 ? countDifferingElements(ba[j], bb[j], bits / 8) : undefined });
    });
    if (items.length === 0) return;
    const rs = await runBatch(backend, diffReduceKernel, items, signal);
    rs.forEach((r, j) => {
      const { ti, hostDiff } = owners[j];
      const acc = new Accum();
      acc.add(r, 0);
      if (hostDiff !== undefined) acc.nDiff = hostDiff;
      done(ti, finish(pairs[ti].a, pairs[ti].b, acc), 2 * pairs[ti].a.byteLength);
    });
  };
  let next = 0;
  const lanes = Array.from({ length: Math.min(inFlight, batches.length) }, async () => {
    while (next < batches.length) await one(batches[next++]);
  });
  await Promise.all(lanes);
}

/** Elements of `width` bytes whose bytes differ. */
function countDifferingElements(a: Uint8Array, b: Uint8Array, width: number): number {
  let n = 0;
  for (let i = 0; i < a.length; i += width) {
    for (let j = 0; j < width; j++) {
      if (a[i + j] !== b[i + j]) {
        n++;
        break;
      }
    }
  }
  return n;
}

/** The changed 2-D tensors whose Δ rank can be estimated. */
export function rankCandidates(tensors: readonly TensorDiff[]): TensorDiff[] {
  return tensors.filter((t) => !t.identical && t.shape.length === 2 && t.absL2 > 0 && kernelDType(t.dtype) !== undefined);
}

/**
 * Adds `rankEnergy` and `singularValues` to every changed 2-D tensor of a diff's
 * results (in place). Separate from `diff` so that a UI can show the report first
 * and refine it; `diff(…, {rank})` calls it itself.
 */
export async function estimateRanks(
  a: Model,
  b: Model,
  tensors: readonly TensorDiff[],
  opts: JobContext & { rank?: RankOptions; chunkBytes?: number },
  backend?: Backend,
): Promise<{ seconds: number; bytesRead: number }> {
  const r0 = performance.now();
  const be = backend ?? (await getBackend(opts.backend ?? 'auto'));
  // Blocks in flight: one computing and one queued per worker, as in the diff itself.
  const sl = new Slots((be.kind === 'cpu' ? cpuPoolSize() : 1) * IN_FLIGHT_PER_WORKER);
  const chunkBytes = Math.max(64, opts.chunkBytes ?? DEFAULT_CHUNK_BYTES);
  let rb = 0;
  const todo = rankCandidates(tensors);
  for (const [i, t] of todo.entries()) {
    throwIfCancelled(opts.signal);
    const ta = a.tensor(t.name);
    const tb = b.tensor(t.nameB ?? t.name);
    if (!ta || !tb) continue;
    opts.progress?.({ done: i, total: todo.length, unit: 'tensors', message: `rank of ${t.name}` });
    const est = await estimateRank(be, a, b, ta, tb, t.absL2 * t.absL2, opts.rank ?? {}, chunkBytes, sl, opts.signal, (n) => (rb += n));
    Object.assign(t, est);
  }
  opts.progress?.({ done: todo.length, total: todo.length, unit: 'tensors' });
  return { seconds: (performance.now() - r0) / 1000, bytesRead: rb };
}

/** For C64: identical or not, and how many elements differ. */
async function compareBytesOnly(
  a: Model,
  b: Model,
  ta: TensorInfo,
  tb: TensorInfo,
  chunkBytes: number,
  onRead: (n: number) => void,
  signal?: AbortSignal,
): Promise<TensorDiff> {
  const width = DTYPE_INFO[ta.dtype].bits / 8;
  let nDiff = 0;
  const len = ta.byteLength;
  const ba = new Uint8Array(Math.min(chunkBytes, len));
  const bb = new Uint8Array(Math.min(chunkBytes, len));
  for (let off = 0; off < len; off += chunkBytes) {
    throwIfCancelled(signal);
    const n = Math.min(chunkBytes, len - off);
    const xa = ba.subarray(0, n);
    const xb = bb.subarray(0, n);
    await Promise.all([a.read(ta, off, xa), b.read(tb, off, xb)]);
    onRead(2 * n);
    nDiff += countDifferingElements(xa, xb, width);
  }
  if (nDiff === 0) return identicalResult(ta, tb);
  return {
    ...identicalResult(ta, tb),
    identical: false,
    relL2: null,
    cosine: null,
    changedElements: nDiff,
    changedFraction: nDiff / Math.max(1, ta.numel),
    note: `${ta.dtype} is compared byte for byte only`,
  };
}

/**
 * Top singular values of Δ = B − A for one 2-D tensor pair by subspace iteration
 * on ΔᵀΔ: V ← orth(ΔᵀΔ·V) from a Gaussian start, then the Ritz values of
 * (ΔV)ᵀ(ΔV). Each pass streams both tensors once, in row blocks; blocks whose
 * bytes are equal hold Δ = 0 and are skipped.
 */
async function estimateRank(
  backend: Backend,
  a: Model,
  b: Model,
  ta: TensorInfo,
  tb: TensorInfo,
  frob2: number,
  ro: RankOptions,
  chunkBytes: number,
  slots: Slots,
  signal: AbortSignal | undefined,
  onRead: (n: number) => void,
): Promise<Pick<TensorDiff, 'rankEnergy' | 'singularValues'>> {
  const kd = kernelDType(ta.dtype)!;
  const eb = diffElementBytes(kd);
  const [rows, cols] = ta.shape;
  const sketch = Math.max(1, ro.sketch ?? DEFAULT_SKETCH);
  // With at least as many columns as Δ has, the identity spans everything: exact, and one pass.
  const exact = cols <= sketch;
  const k = exact ? cols : sketch;
  let v: Float64Array;
  if (exact) {
    v = new Float64Array(cols * k);
    for (let i = 0; i < cols; i++) v[i * k + i] = 1;
  } else {
    v = gaussianMatrix(cols, k, ro.seed ?? DEFAULT_SEED);
  }
  // Rows per block: one chunk of each tensor, at least one row.
  const blockRows = Math.max(1, Math.floor(Math.min(chunkBytes, RANK_BLOCK_BYTES) / (cols * eb)));
  const pool: Uint8Array[] = [];
  const take = (len: number) => {
    const i = pool.findIndex((x) => x.length === len);
    return i >= 0 ? pool.splice(i, 1)[0] : new Uint8Array(len);
  };
  const give = (bufs: readonly Uint8Array[]) => {
    for (const x of bufs) {
      // A handful of spare blocks covers every block in flight; more would only hold memory.
      if (pool.length >= 8) pool.shift();
      pool.push(x);
    }
  };
  // Per pass, copies of x and output buffers circulate with the blocks (see DeltaSketchArgs.yOut).
  const f32Pool: Float32Array[] = [];
  const takeF32 = (n: number) => {
    const i = f32Pool.findIndex((x) => x.length === n);
    return i >= 0 ? f32Pool.splice(i, 1)[0] : new Float32Array(n);
  };
  const giveF32 = (...xs: (Float32Array | undefined)[]) => {
    for (const x of xs) {
      if (!x) continue;
      // Enough for every block in flight to hold x, y and z; more would only hold memory.
      if (f32Pool.length >= 24) f32Pool.shift();
      f32Pool.push(x);
    }
  };
  const pass = async (x: Float64Array, back: boolean, onBlock: (r0: number, y: Float32Array, z?: Float32Array) => void): Promise<void> => {
    const tasks: Promise<void>[] = [];
    let failure: unknown;
    const xLen = cols * k;
    const xs = Float32Array.from(x);
    for (let r0 = 0; r0 < rows; r0 += blockRows) {
      if (failure) break;
      throwIfCancelled(signal);
      const nr = Math.min(blockRows, rows - r0);
      const len = nr * cols * eb;
      await slots.acquire();
      const ba = take(len);
      const bb = take(len);
      await Promise.all([a.read(ta, r0 * cols * eb, ba), b.read(tb, r0 * cols * eb, bb)]);
      onRead(2 * len);
      if (bytesEqual(ba, bb)) {
        give([ba, bb]);
        slots.release();
        continue;
      }
      const xf = takeF32(xLen);
      xf.set(xs);
      tasks.push(
        backend
          .run(deltaSketchKernel, { dtype: kd, rows: nr, cols, a: ba, b: bb, k, x: xf, back, yOut: takeF32(nr * k), zOut: back ? takeF32(xLen) : undefined }, signal)
          .then((r) => {
            onBlock(r0, r.y, r.z);
            give(r.chunks);
            giveF32(r.x, r.y, r.z);
          })
          .catch((e) => {
            failure ??= e;
          })
          .finally(() => slots.release()),
      );
    }
    await Promise.all(tasks);
    if (failure) throw failure;
  };
  const iterations = exact ? 0 : Math.max(0, ro.powerIterations ?? DEFAULT_POWER_ITERATIONS);
  for (let it = 0; it < iterations; it++) {
    const z = new Float64Array(cols * k);
    await pass(v, true, (_r0, _y, zb) => {
      for (let i = 0; i < z.length; i++) z[i] += zb![i];
    });
    v = orthonormalizeColumns(z, cols, k);
  }
  // Ritz values: eigenvalues of G = (ΔV)ᵀ(ΔV), accumulated block by block.
  const g = new Float64Array(k * k);
  await pass(v, false, (_r0, y) => {
    const nr = y.length / k;
    for (let r = 0; r < nr; r++) {
      const o = r * k;
      for (let i = 0; i < k; i++) {
        const yi = y[o + i];
        if (yi === 0) continue;
        for (let j = i; j < k; j++) g[i * k + j] += yi * y[o + j];
      }
    }
  });
  for (let i = 0; i < k; i++) for (let j = 0; j < i; j++) g[i * k + j] = g[j * k + i];
  const lambda = eigenSymmetric(g, k)
    .map((x) => Math.max(0, x))
    .sort((x, y) => y - x);
  const rankEnergy = {} as Record<`${(typeof RANK_POINTS)[number]}`, number>;
  for (const r of RANK_POINTS) {
    const captured = lambda.slice(0, r).reduce((s, x) => s + x, 0);
    rankEnergy[`${r}`] = frob2 > 0 ? Math.min(1, captured / frob2) : 0;
  }
  return { rankEnergy, singularValues: lambda.slice(0, Math.min(64, lambda.length)).map(Math.sqrt) };
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
  for (let e0 = 0; e0 < ta.numel; e0 += perChunk) {
    throwIfCancelled(ctx.signal);
    const n = Math.min(perChunk, ta.numel - e0);
    const ba = new Uint8Array(n * eb);
    const bb = new Uint8Array(n * eb);
    await Promise.all([a.read(ta, e0 * eb, ba), b.read(tb, e0 * eb, bb)]);
    if (bytesEqual(ba, bb)) continue;
    const r = await backend.run(diffReduceKernel, { dtype: kd, a: ba, b: bb, hist: spec }, ctx.signal);
    for (let i = 0; i < spec.bins; i++) counts[i] += r.hist![i];
    ctx.progress?.({ done: e0 + n, total: ta.numel, unit: 'bytes' });
  }
  return counts;
}
