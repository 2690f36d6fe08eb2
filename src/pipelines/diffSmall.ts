// Small tensor pairs, batched: each batch one read per side and one worker task for the pairs
// that differ, instead of two reads and a round trip per pair for a few hundred bytes of work.
import { runBatch } from '../compute/backend';
import type { DiffDType } from '../compute/diff/decodeChunk';
import { diffReduceKernel, type DiffReduceResult } from '../compute/diff/diffReduce';
import { diffReduceManyKernel, REDUCE_FIELDS } from '../compute/diff/diffReduceMany';
import type { Backend } from '../compute/kernel';
import { streamJobs } from '../core/stream';
import { decodeToF32 } from '../format/decode';
import { DTYPE_INFO } from '../format/dtypes';
import type { Model, TensorInfo } from '../format/model';
import { Accum, chunkElements, countDifferingElements, finishTensor, identicalResult, kernelDType } from './diffTensor';
import type { TensorDiff } from './diffTypes';

// Tensor pairs this small are read many to a request and reduced many to a worker task:
// alone, each would cost two reads and a round trip for a few hundred bytes of arithmetic.
const SMALL_PAIR_BYTES = 64 << 10;
// One batch: at most 2,048 pairs and 4 MiB per side, so a few batches in flight stay small.
const SMALL_BATCH_PAIRS = 2048;
const SMALL_BATCH_BYTES = 4 << 20;

type Pair = { readonly a: TensorInfo; readonly b: TensorInfo };

/** Whether a pair goes in a batch: small, non-empty, one chunk, and not C64 (compared byte for byte). */
export function isSmallPair(p: Pair, chunkBytes: number): boolean {
  const ta = p.a;
  return ta.dtype !== 'C64' && ta.numel > 0 && ta.byteLength <= SMALL_PAIR_BYTES && ta.numel <= chunkElements(ta.dtype, chunkBytes);
}

/** A group's bytes in one buffer: tensor i at `at[i]`. */
interface Group {
  readonly bytes: Uint8Array;
  readonly at: Float64Array;
}

/** The bytes of `ts` (increasing offsets) in one buffer: a single span read when they lie close together in one file. */
async function readGroup(m: Model, ts: readonly TensorInfo[]): Promise<Group> {
  const first = ts[0];
  const last = ts[ts.length - 1];
  const sum = ts.reduce((s, t) => s + t.byteLength, 0);
  const ordered = ts.every((t, i) => t.file === first.file && (i === 0 || t.byteOffset >= ts[i - 1].byteOffset + ts[i - 1].byteLength));
  const span = last.byteOffset + last.byteLength - first.byteOffset;
  const at = new Float64Array(ts.length);
  // Reading through gaps up to the data's own size still beats a request per tensor.
  if (m.readSpan && ordered && span <= 2 * sum) {
    const bytes = new Uint8Array(span);
    await m.readSpan(first, last, bytes);
    ts.forEach((t, i) => (at[i] = t.byteOffset - first.byteOffset));
    return { bytes, at };
  }
  const bytes = new Uint8Array(sum);
  let pos = 0;
  ts.forEach((t, i) => {
    at[i] = pos;
    pos += t.byteLength;
  });
  await Promise.all(ts.map((t, i) => m.read(t, 0, bytes.subarray(at[i], at[i] + t.byteLength))));
  return { bytes, at };
}

function batchesOf(pairs: readonly Pair[], small: readonly number[]): number[][] {
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
  return batches;
}

/**
 * One batch: equal pairs are identical; the rest reduced in one kernel run, or (dtypes widened
 * to F32 here first) in one batched run of the per-chunk kernel.
 */
async function compareBatch(pairs: readonly Pair[], batch: readonly number[], ga: Group, gb: Group, backend: Backend, signal: AbortSignal): Promise<{ ti: number; r: TensorDiff }[]> {
  const out: { ti: number; r: TensorDiff }[] = [];
  const bufA = Buffer.from(ga.bytes.buffer, ga.bytes.byteOffset, ga.bytes.byteLength);
  const bufB = Buffer.from(gb.bytes.buffer, gb.bytes.byteOffset, gb.bytes.byteLength);
  const native: number[] = [];
  const widened: { dtype: DiffDType; a: Uint8Array; b: Uint8Array }[] = [];
  const owners: { ti: number; hostDiff?: number }[] = [];
  batch.forEach((ti, j) => {
    const { a: ta, b: tb } = pairs[ti];
    const a0 = ga.at[j];
    const b0 = gb.at[j];
    const len = ta.byteLength;
    if (bufA.compare(bufB, b0, b0 + len, a0, a0 + len) === 0) return void out.push({ ti, r: identicalResult(ta, tb) });
    if (kernelDType(ta.dtype)) return void native.push(j);
    const bits = DTYPE_INFO[ta.dtype].bits;
    const ba = ga.bytes.subarray(a0, a0 + len);
    const bb = gb.bytes.subarray(b0, b0 + len);
    const widen = (x: Uint8Array): Uint8Array => {
      const f = new Float32Array(ta.numel);
      decodeToF32(ta.dtype, x, f, ta.numel);
      return new Uint8Array(f.buffer);
    };
    widened.push({ dtype: 'F32', a: widen(ba), b: widen(bb) });
    // As in the streaming path: widened dtypes count differing elements on their stored bytes.
    owners.push({ ti, hostDiff: bits % 8 === 0 ? countDifferingElements(ba, bb, bits / 8) : undefined });
  });
  const finish = (ti: number, r: Omit<DiffReduceResult, 'chunks'>, hostDiff?: number) => {
    const acc = new Accum();
    acc.add(r as DiffReduceResult, 0);
    if (hostDiff !== undefined) acc.nDiff = hostDiff;
    out.push({ ti, r: finishTensor(pairs[ti].a, pairs[ti].b, acc) });
  };
  if (widened.length > 0) (await runBatch(backend, diffReduceKernel, widened, signal)).forEach((r, j) => finish(owners[j].ti, r, owners[j].hostDiff));
  if (native.length === 0) return out;
  const atA = new Float64Array(native.length);
  const atB = new Float64Array(native.length);
  const bytes = new Float64Array(native.length);
  const dtypes: DiffDType[] = [];
  for (let i = 0; i < native.length; i++) {
    const j = native[i];
    atA[i] = ga.at[j];
    atB[i] = gb.at[j];
    bytes[i] = pairs[batch[j]].a.byteLength;
    dtypes.push(kernelDType(pairs[batch[j]].a.dtype)!);
  }
  // The two buffers are moved to the worker: nothing here reads them after this.
  const packed = await backend.run(diffReduceManyKernel, { a: ga.bytes, b: gb.bytes, dtypes, atA, atB, bytes }, signal);
  const k = REDUCE_FIELDS.length;
  for (let i = 0, p = 0; i < native.length; i++, p += k) {
    // Indexed, not destructured: a typed array's iterator allocates per element.
    finish(batch[native[i]], { n: packed[p], sumA2: packed[p + 1], sumB2: packed[p + 2], dot: packed[p + 3], sumD2: packed[p + 4], sumAbsD: packed[p + 5], maxAbs: packed[p + 6], maxIndex: packed[p + 7], nDiff: packed[p + 8] });
  }
  return out;
}

/**
 * The small pairs (indices into `pairs`), batched and streamed. Each pair is one chunk,
 * so its result is the streaming path's exactly; `done` gets each with its bytes read.
 */
export async function compareSmallPairs(a: Model, b: Model, pairs: readonly Pair[], small: readonly number[], backend: Backend, inFlight: number, signal: AbortSignal | undefined, done: (ti: number, r: TensorDiff, bytes: number) => void): Promise<void> {
  const steps = {
    read: (batch: number[]) => Promise.all([readGroup(a, batch.map((ti) => pairs[ti].a)), readGroup(b, batch.map((ti) => pairs[ti].b))]),
    run: (batch: number[], [ga, gb]: Group[], sig: AbortSignal) => compareBatch(pairs, batch, ga, gb, backend, sig),
  };
  for await (const rs of streamJobs(batchesOf(pairs, small), steps, { inFlight, signal })) {
    for (const { ti, r } of rs) done(ti, r, 2 * pairs[ti].a.byteLength);
  }
}
