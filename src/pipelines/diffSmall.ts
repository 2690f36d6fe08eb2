// Small tensor pairs, batched: each batch one read per side and one worker task for the pairs
// that differ, instead of two reads and a round trip per pair for a few hundred bytes of work.
import { runBatch } from '../compute/backend';
import type { DiffDType } from '../compute/diff/decodeChunk';
import { diffReduceKernel } from '../compute/diff/diffReduce';
import type { Backend } from '../compute/kernel';
import { streamJobs } from '../core/stream';
import { decodeToF32 } from '../format/decode';
import { DTYPE_INFO } from '../format/dtypes';
import type { Model, TensorInfo } from '../format/model';
import { Accum, bytesEqual, chunkElements, countDifferingElements, finishTensor, identicalResult, kernelDType } from './diffTensor';
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

/** One batch: equal pairs are identical; the rest reduced in one batched kernel run. */
async function compareBatch(pairs: readonly Pair[], batch: readonly number[], ba: Uint8Array[], bb: Uint8Array[], backend: Backend, signal: AbortSignal): Promise<{ ti: number; r: TensorDiff }[]> {
  const out: { ti: number; r: TensorDiff }[] = [];
  const items: { dtype: DiffDType; a: Uint8Array; b: Uint8Array }[] = [];
  const owners: { ti: number; hostDiff?: number }[] = [];
  batch.forEach((ti, j) => {
    const { a: ta, b: tb } = pairs[ti];
    if (bytesEqual(ba[j], bb[j])) return void out.push({ ti, r: identicalResult(ta, tb) });
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
  if (items.length === 0) return out;
  const rs = await runBatch(backend, diffReduceKernel, items, signal);
  rs.forEach((r, j) => {
    const { ti, hostDiff } = owners[j];
    const acc = new Accum();
    acc.add(r, 0);
    if (hostDiff !== undefined) acc.nDiff = hostDiff;
    out.push({ ti, r: finishTensor(pairs[ti].a, pairs[ti].b, acc) });
  });
  return out;
}

/**
 * The small pairs (indices into `pairs`), batched and streamed. Each pair is one chunk,
 * so its result is the streaming path's exactly; `done` gets each with its bytes read.
 */
export async function compareSmallPairs(a: Model, b: Model, pairs: readonly Pair[], small: readonly number[], backend: Backend, inFlight: number, signal: AbortSignal | undefined, done: (ti: number, r: TensorDiff, bytes: number) => void): Promise<void> {
  const steps = {
    read: (batch: number[]) => Promise.all([readGroup(a, batch.map((ti) => pairs[ti].a)), readGroup(b, batch.map((ti) => pairs[ti].b))]),
    run: (batch: number[], [ba, bb]: Uint8Array[][], sig: AbortSignal) => compareBatch(pairs, batch, ba, bb, backend, sig),
  };
  for await (const rs of streamJobs(batchesOf(pairs, small), steps, { inFlight, signal })) {
    for (const { ti, r } of rs) done(ti, r, 2 * pairs[ti].a.byteLength);
  }
}
