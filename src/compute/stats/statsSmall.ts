import type { DType } from '../../format/dtypes';
import type { KernelDef } from '../kernel';
import { statsSmallCpu } from './statsSmall.cpu';
import type { TensorStats } from './summarize';

/** One small tensor of a batch: where its bytes start in the batch's source, and what `stats` reports it as. */
export interface SmallTensorItem {
  readonly name: string;
  readonly dtype: DType;
  /** A ggml block type (`Q4_K`): the bytes are whole blocks, decoded to float32 and scanned as F32; reported under this name. */
  readonly blocks?: string;
  readonly shape: readonly number[];
  readonly count: number;
  /** Byte offset of the tensor's data within the batch's bytes. */
  readonly at: number;
  readonly byteLength: number;
}

/**
 * Many small tensors in one task: both phases and the summary run where the bytes
 * are, so a tensor of a few hundred bytes costs no round trip and no edge tables of
 * its own. The results are those of the sliced path (`stats.ts`) exactly.
 */
export interface StatsSmallArgs {
  /** The bytes that hold every item (a local file range, or bytes the host read). */
  /** The batch's bytes (its tensors at `at`), read by the caller through its ByteSource. */
  readonly bytes: Uint8Array;
  readonly items: readonly SmallTensorItem[];
  readonly bins: number;
  readonly topK: number;
  /** Return the histogram counts (false: the text report, which shows none, leaves them empty). */
  readonly histograms: boolean;
}

/**
 * The items' statistics, packed: thousands of small objects cost far more to clone
 * across the worker boundary than these few typed arrays. `unpackSmallStats` rebuilds them.
 */
export interface StatsSmallResult {
  /** SMALL_SCALARS numbers per item (see `packSmallStats`). */
  readonly scalars: Float64Array;
  /** items × bins counts of each histogram, item after item; empty without `histograms`. */
  readonly hist: Uint32Array;
  readonly logHist: Uint32Array;
  /** Each item's top-k: its length, then (index, value) pairs, item after item. */
  readonly topLength: Uint32Array;
  readonly top: Float64Array;
}

// finite, nan, posInf, negInf, zeros, nearZero, min, max, absMax, mean, std, outliers, log min, log max.
export const SMALL_SCALARS = 14;

// One empty list shared by every tensor without histogram counts or top-k (never written to):
// 100,000 tensors would otherwise hold 300,000 empty arrays.
const NONE: never[] = Object.freeze([]) as unknown as never[];

/** The `TensorStats` that the CPU twin packed, key for key (the JSON report does not change). */
export function unpackSmallStats(items: readonly SmallTensorItem[], r: StatsSmallResult, bins: number, topK: number): TensorStats[] {
  const histograms = r.hist.length > 0;
  return items.map((it, i) => {
    const v = r.scalars.subarray(i * SMALL_SCALARS, (i + 1) * SMALL_SCALARS);
    const some = v[0] > 0;
    // A log range exists when some finite value is non-zero.
    const someLog = some && v[4] < v[0];
    const counts = (h: Uint32Array): number[] => (histograms ? Array.from(h.subarray(i * bins, (i + 1) * bins)) : NONE);
    const topK_: { index: number; value: number }[] = r.topLength[i] > 0 ? [] : NONE;
    for (let j = 0; j < r.topLength[i]; j++) topK_.push({ index: r.top[(i * topK + j) * 2], value: r.top[(i * topK + j) * 2 + 1] });
    const min = some ? v[6] : null;
    const max = some ? v[7] : null;
    return {
      name: it.name,
      dtype: it.blocks ?? it.dtype,
      // The tensor's own (read-only) shape, as the sliced path reports it: no copy per tensor.
      shape: it.shape,
      count: it.count,
      finite: v[0],
      nan: v[1],
      posInf: v[2],
      negInf: v[3],
      zeros: v[4],
      nearZero: v[5],
      min,
      max,
      absMax: some ? v[8] : null,
      mean: some ? v[9] : null,
      std: some ? v[10] : null,
      outliers: v[11],
      histogram: { min, max, counts: counts(r.hist) },
      logHistogram: { min: someLog ? v[12] : null, max: someLog ? v[13] : null, counts: counts(r.logHist) },
      topK: topK_,
    };
  });
}

/**
 * A CPU-only kernel: for tensors of a few kilobytes each, an upload, two dispatches and two
 * readbacks per tensor would cost far more than scanning its bytes.
 */
export const statsSmallKernel: KernelDef<StatsSmallArgs, StatsSmallResult> = {
  name: 'stats.small',
  cpu: statsSmallCpu,
  // Moved, not copied (and not handed back: a batch's buffer is fresh), unless the caller shares it.
  transfer: (a) => (a.bytes.byteOffset === 0 && a.bytes.byteLength === a.bytes.buffer.byteLength && a.bytes.buffer instanceof ArrayBuffer ? [a.bytes.buffer] : []),
  // Packed summaries, small beside the batch's bytes (see statsKernel).
  copyResults: true,
};
