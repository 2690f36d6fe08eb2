// Tensor pairs compared by value rather than by bytes: stored in different types (an F32
// original beside its Q8_0 quantization, BF16 beside F16, two block types), or with one side's
// rows in another order (llama.cpp's q/k layout). Both sides are decoded to float32 by the
// decoded value stream (the decode kernel), rows put back in order, and reduced as F32 by
// the diff kernel. A quantized weight (FP8 with block scales, AWQ …) against its original
// comes this way: its relL2, SNR and cosine are what the quantization cost.
import { cpuPoolSize } from '../compute/cpu/pool';
import { STORAGE_DECODERS } from '../compute/decode/blocks';
import { decodeValues } from '../compute/decode/tensorValues';
import { diffReduceKernel } from '../compute/diff/diffReduce';
import type { Backend } from '../compute/kernel';
import type { ByteProgress } from '../core/stream';
import { streamJobs, type JobSteps } from '../core/stream';
import { isFloatDType } from '../format/dtypes';
import { storageOf, type Model, type TensorInfo } from '../format/model';
import { storageUnit } from '../format/storage';
import { unitElementsOf } from '../format/tensorUnits';
import type { RowOrder } from './diffNames';
import { Accum, bytesEqual, finishTensor, identicalResult, IN_FLIGHT_PER_WORKER } from './diffTensor';
import type { TensorDiff } from './diffTypes';

export interface ValuePair {
  /** Index of the pair's row in the report. */
  readonly ti: number;
  readonly a: TensorInfo;
  readonly b: TensorInfo;
  readonly orderA?: RowOrder;
  readonly orderB?: RowOrder;
}

/** Whether a tensor's values can be decoded to float32: a float dtype, a block type or a scheme with a decoder. */
export function decodable(t: TensorInfo): boolean {
  const s = storageOf(t);
  if (s.kind === 'dtype') return isFloatDType(s.dtype);
  return Object.prototype.hasOwnProperty.call(STORAGE_DECODERS, s.kind === 'blocks' ? s.type : s.scheme);
}

interface PairState {
  readonly p: ValuePair;
  readonly cols: number;
  readonly acc: Accum;
  identical: boolean;
  folded: number;
}

interface RowJob {
  readonly s: PairState;
  readonly r0: number;
  readonly rows: number;
}

/**
 * Rows of `cols` values (the innermost dimension), or one row when neither a row is whole
 * storage units nor a unit whole rows (a scheme whose unit is 128 rows, or one expert).
 */
function colsOf(t: TensorInfo): number {
  const cols = t.shape.length > 0 ? t.shape[t.shape.length - 1] : 1;
  const u = storageUnit(storageOf(t)).elements;
  return cols > 0 && (cols % u === 0 || u % cols === 0) ? cols : Math.max(1, t.numel);
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/**
 * Jobs of whole rows that are also whole storage units on both sides (a 128×128-block FP8
 * weight decodes 128 rows at a time) and whole groups of reordered rows.
 */
function rowJobs(s: PairState, chunkBytes: number): RowJob[] {
  const rows = s.p.a.numel / s.cols;
  let group = s.p.orderA?.groupRows ?? s.p.orderB?.groupRows ?? 1;
  for (const t of [s.p.a, s.p.b]) {
    const u = unitElementsOf(t);
    // A unit of whole rows widens the group; a unit within a row (a block of 32) already divides it (colsOf).
    const unitRows = u > s.cols ? Math.ceil(u / s.cols) : 1;
    group = (group / gcd(group, unitRows)) * unitRows;
  }
  // Decoded values (4 bytes each, both sides) bound a chunk.
  const per = Math.max(group, Math.floor(chunkBytes / 4 / s.cols / group) * group);
  const out: RowJob[] = [];
  for (let r0 = 0; r0 < rows; r0 += per) out.push({ s, r0, rows: Math.min(per, rows - r0) });
  return out;
}

/** Rows of `values` (row-major, `cols` wide) put in HF order, group by group. */
function reorder(values: Float32Array, cols: number, order: RowOrder): Float32Array {
  const out = new Float32Array(values.length);
  const g = order.groupRows;
  for (let base = 0; base < values.length / cols; base += g) {
    for (let l = 0; l < g; l++) out.set(values.subarray((base + order.inv[l]) * cols, (base + order.inv[l] + 1) * cols), (base + l) * cols);
  }
  return out;
}

/** Compares every pair by value; writes each pair's row into `results[p.ti]`. */
export async function compareValues(a: Model, b: Model, pairs: readonly ValuePair[], backend: Backend, chunkBytes: number, progress: ByteProgress, results: (TensorDiff | undefined)[], signal?: AbortSignal): Promise<void> {
  const states = pairs.map((p): PairState => ({ p, cols: colsOf(p.a) === colsOf(p.b) ? colsOf(p.a) : Math.max(1, p.a.numel), acc: new Accum(), identical: true, folded: 0 }));
  const jobs = states.flatMap((s) => (s.p.a.numel === 0 ? [] : rowJobs(s, chunkBytes)));
  for (const s of states) if (s.p.a.numel === 0) results[s.p.ti] = identicalResult(s.p.a, s.p.b);
  const side = async (m: Model, t: TensorInfo, job: RowJob, order: RowOrder | undefined, sig?: AbortSignal): Promise<Float32Array> => {
    const e0 = job.r0 * job.s.cols;
    const values = await decodeValues(m, t, e0, e0 + job.rows * job.s.cols, backend, sig);
    progress.add(Math.round((t.byteLength * values.length) / Math.max(1, t.numel)), t.name);
    return order ? reorder(values, job.s.cols, order) : values;
  };
  const steps: JobSteps<RowJob, RowJob, { job: RowJob; equal: boolean; r: Awaited<ReturnType<typeof reduce>> }> = {
    read: async (job) => job,
    run: async (job, _, sig) => {
      const { p } = job.s;
      const [va, vb] = await Promise.all([side(a, p.a, job, p.orderA, sig), side(b, p.b, job, p.orderB, sig)]);
      const ba = new Uint8Array(va.buffer, va.byteOffset, va.byteLength);
      const bb = new Uint8Array(vb.buffer, vb.byteOffset, vb.byteLength);
      return { job, equal: bytesEqual(ba, bb), r: await reduce(backend, ba, bb, sig) };
    },
  };
  const workers = backend.kind === 'cpu' ? cpuPoolSize() : 1;
  for await (const { job, equal, r } of streamJobs(jobs, steps, { inFlight: workers * IN_FLIGHT_PER_WORKER, signal })) {
    const s = job.s;
    s.acc.add(r, job.r0 * s.cols);
    s.identical &&= equal;
    s.folded += job.rows * s.cols;
    if (s.folded === s.p.a.numel) results[s.p.ti] = { ...(s.identical ? identicalResult(s.p.a, s.p.b) : finishTensor(s.p.a, s.p.b, s.acc)), decoded: true };
  }
}

function reduce(backend: Backend, a: Uint8Array, b: Uint8Array, signal?: AbortSignal) {
  return backend.run(diffReduceKernel, { dtype: 'F32', a, b }, signal);
}
