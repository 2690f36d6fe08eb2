import type { DType } from '../../format/dtypes';
import type { StorageType } from '../../format/storage';
import type { KernelDef } from '../kernel';
import { statsCpu } from './stats.cpu';
import { statsGpu } from './stats.gpu';

/**
 * One slice of one tensor, the unit of work of the statistics kernel.
 *
 * Dtypes of 16 bits or fewer take ONE pass ('scan'): the slice's bit patterns
 * are counted in a 2^bits table, from which every statistic, both histograms and
 * the exact sums follow on the host (`summarize.ts`). Wider dtypes (F32, F64,
 * 32/64-bit integers) take two: 'scan' (counts, range, sums, top-k), then 'bins'
 * (histograms, nearZero, outliers), which needs the whole tensor's range, mean and std.
 */
interface SliceArgs {
  readonly dtype: DType;
  /**
   * A block storage (a ggml type) or a scheme: `bytes` hold whole units of its data part (a
   * scheme's other parts in `more`), decoded to float32 in the kernel and then treated as F32
   * (two passes), so that decoded values never cross threads. Absent for plain dtypes.
   */
  readonly storage?: Exclude<StorageType, { kind: 'dtype' }>;
  readonly more?: readonly Uint8Array[];
  /** Flat index of the slice's first element within its tensor (top-k reports flat indices). */
  readonly first: number;
  readonly count: number;
  /**
   * The slice's bytes, read by the caller through its ByteSource. On the CPU they reach the worker
   * shared (a SharedArrayBuffer the caller reuses for a later slice) or else moved.
   */
  readonly bytes: Uint8Array;
}

export interface StatsScanArgs extends SliceArgs {
  readonly phase: 'scan';
  /** How many of the largest |x| to keep (16 in reports). */
  readonly topK: number;
  /**
   * Set when the slice is its whole tensor: a kernel may then return the bins phase's result
   * with the scan (`WideScan.binned`, for these bins), which spares the tensor a second task.
   */
  readonly whole?: { readonly bins: number; readonly histograms: boolean };
}

export interface StatsBinsArgs extends SliceArgs {
  readonly phase: 'bins';
  /** bins + 1 increasing edges over [min, max] (see `binIndex`). */
  readonly edges: Float64Array;
  /** bins + 1 increasing edges over [min |x|, max |x|] of the non-zero finite values, spaced evenly in log10. */
  readonly logEdges: Float64Array;
  /** |x| below this counts as near zero (1e-3 · absMax). */
  readonly nearZeroBelow: number;
  readonly mean: number;
  /** x > mean + outlierBeyond or x < mean − outlierBeyond is an outlier (6 · std). */
  readonly outlierBeyond: number;
  /**
   * false when the caller keeps no histogram (the CLI's table): a kernel may then count only
   * nearZero and outliers and leave hist and logHist zero. Absent or true: all of them.
   */
  readonly histograms?: boolean;
}

export type StatsArgs = StatsScanArgs | StatsBinsArgs;

/** One of the largest |x|: its flat index and value. */
export interface TopEntry {
  readonly index: number;
  readonly value: number;
}

/**
 * The pattern table of a slice, sparse: the patterns that occur (ascending) and
 * their counts (u32 is exact: a slice holds far fewer than 2^32 elements).
 */
export interface PatternScan {
  readonly kind: 'patterns';
  readonly patterns: Uint32Array;
  readonly counts: Uint32Array;
  readonly top: TopEntry[];
}

/** The non-zero entries of a dense pattern table. */
export function sparseTable(hist: Uint32Array): { patterns: Uint32Array; counts: Uint32Array } {
  if (sparseScratch.length < hist.length) sparseScratch = new Uint32Array(hist.length);
  const nz = fillSparse(hist, sparseScratch);
  const patterns = sparseScratch.slice(0, nz);
  const counts = new Uint32Array(nz);
  for (let j = 0; j < nz; j++) counts[j] = hist[patterns[j]];
  return { patterns, counts };
}

/** Reused between calls: one slice's table is converted, copied out, and forgotten. */
let sparseScratch = new Uint32Array(0);

// Its own function, ending with its loop: V8 compiles a long loop on-stack before the code after
// it has run, and code without type feedback there deoptimizes it again. Branch-free, because
// whether a pattern occurs is a coin toss in the middle of a weight distribution.
function fillSparse(hist: Uint32Array, patterns: Uint32Array): number {
  let nz = 0;
  for (let p = 0; p < hist.length; p++) {
    patterns[nz] = p;
    nz += hist[p] !== 0 ? 1 : 0;
  }
  return nz;
}

/** The counts and extremes of a run of values: what a slice's scan and the whole tensor's merge both keep. */
export interface Tally {
  finite: number;
  nan: number;
  posInf: number;
  negInf: number;
  zeros: number;
  min: number;
  max: number;
  /** Smallest non-zero finite |x| (Infinity when none): the low end of the log histogram. */
  minAbsNonzero: number;
}

/** The tally of no values. */
export function emptyTally(): Tally {
  return { finite: 0, nan: 0, posInf: 0, negInf: 0, zeros: 0, min: Infinity, max: -Infinity, minAbsNonzero: Infinity };
}

export interface WideScan extends Readonly<Tally> {
  readonly kind: 'wide';
  readonly sum: number;
  /** Σ (x − slice mean)² over the finite values, for Chan's parallel variance merge. */
  readonly m2: number;
  readonly top: TopEntry[];
  /**
   * The slice's finite values as a table of distinct values and counts, from a kernel that
   * counts codes rather than decoding them: the bins phase follows from it (`binsOfValues`)
   * without reading the slice again.
   */
  readonly values?: ValueCounts;
  /** The whole tensor's bins phase, done in the same task (see `StatsScanArgs.whole`). */
  readonly binned?: BinsResult;
}

/** Values (float32, as decoded) and how many times each occurs; a value may repeat. */
export interface ValueCounts {
  readonly values: Float32Array;
  readonly counts: Uint32Array;
}

export interface BinsResult {
  readonly kind: 'bins';
  readonly hist: Uint32Array;
  readonly logHist: Uint32Array;
  readonly nearZero: number;
  readonly outliers: number;
}

export type StatsResult = PatternScan | WideScan | BinsResult;

/** Orders top-k candidates: larger |x| first, then the smaller flat index (so twins agree on ties). */
export function compareTop(a: TopEntry, b: TopEntry): number {
  return Math.abs(b.value) - Math.abs(a.value) || a.index - b.index;
}

/**
 * The bin of `x` given increasing `edges` (length bins + 1): the largest k with
 * x ≥ edges[k], at most bins − 1, so the last bin is closed. `guess` (a position
 * in [0, 1]) only chooses where to start; the answer is fixed by comparisons with
 * the edges themselves, so every caller (host, worker, GPU with f32 edges rounded
 * up) puts a value in the same bin.
 */
function binFrom(x: number, edges: Float64Array | Float32Array, guess: number): number {
  const bins = edges.length - 1;
  let k = Math.floor(guess * bins);
  if (!(k >= 0)) k = 0;
  if (k > bins - 1) k = bins - 1;
  while (k > 0 && x < edges[k]) k--;
  while (k < bins - 1 && x >= edges[k + 1]) k++;
  return k;
}

/** The bin of `x` among linearly spaced `edges` (see `linearEdges`). */
export function binIndex(x: number, edges: Float64Array | Float32Array): number {
  const lo = edges[0];
  const width = edges[edges.length - 1] - lo;
  return binFrom(x, edges, width > 0 ? (x - lo) / width : 0);
}

const logBits = new Float64Array(1);
const logWords = new Uint32Array(logBits.buffer);

/**
 * log10 of a positive finite `a`, within 0.003 (a guess for `binFrom`, which settles the bin by
 * comparisons): the exponent bits, plus log2 of the mantissa by a quadratic. Math.log10 per
 * value was most of the time of a float32 tensor's histograms.
 */
function roughLog10(a: number): number {
  logBits[0] = a;
  const hi = logWords[1];
  const x = (hi & 0xfffff) / 0x100000;
  // log2(1 + x) ≈ x (1.3466 − 0.3466 x), |error| < 0.0086 (in octaves); subnormals come out low, and walk further.
  return (((hi >>> 20) & 0x7ff) - 1023 + x * (1.3466 - 0.3466 * x)) * 0.3010299956639812;
}

/** The bin of `a` > 0 among log-spaced `edges` (see `logEdges`). */
export function logBinIndex(a: number, edges: Float64Array | Float32Array): number {
  if (edges !== logOf.edges) {
    logOf.edges = edges;
    logOf.la = Math.log10(edges[0]);
    logOf.span = Math.log10(edges[edges.length - 1]) - logOf.la;
  }
  const { la, span } = logOf;
  return binFrom(a, edges, span > 0 ? (roughLog10(a) - la) / span : 0);
}

/** The last edges' log10 range: a slice bins all its values against the same edges. */
const logOf: { edges?: Float64Array | Float32Array; la: number; span: number } = { la: 0, span: 0 };

/** bins + 1 edges evenly spaced over [lo, hi], ending exactly at hi. */
export function linearEdges(lo: number, hi: number, bins: number): Float64Array {
  const e = new Float64Array(bins + 1);
  for (let k = 0; k < bins; k++) e[k] = lo + ((hi - lo) * k) / bins;
  e[bins] = hi;
  return e;
}

/** bins + 1 edges over [lo, hi] (both > 0), evenly spaced in log10, ending exactly at lo and hi. */
export function logEdges(lo: number, hi: number, bins: number): Float64Array {
  const a = Math.log10(lo);
  const b = Math.log10(hi);
  const e = new Float64Array(bins + 1);
  e[0] = lo;
  for (let k = 1; k < bins; k++) e[k] = Math.max(e[k - 1], 10 ** (a + ((b - a) * k) / bins));
  e[bins] = hi;
  return e;
}

// Below this spacing (in decades per bin), rounding could make two neighbouring log edges equal or
// out of order, which `logEdges` repairs with a running maximum; above it, each edge is simply its
// own formula (10^(spacing) − 1 ≥ 2.3e-9, millions of ulps), so it can be computed on demand.
const LAZY_LOG_SPACING = 1e-9;

/**
 * Bin lookup with the same answer as `binIndex(x, linearEdges(lo, hi, bins))`, computing only the
 * edges the lookup visits (each by `linearEdges`'s own formula): a tiny tensor then costs a few
 * edges instead of all of them. Edges 0 and `bins` are never visited (see `binFrom`).
 */
export function linearBinner(lo: number, hi: number, bins: number): (x: number) => number {
  const edge = (k: number): number => lo + ((hi - lo) * k) / bins;
  const e0 = edge(0);
  const width = hi - e0;
  return (x) => {
    let k = Math.floor((width > 0 ? (x - e0) / width : 0) * bins);
    if (!(k >= 0)) k = 0;
    if (k > bins - 1) k = bins - 1;
    while (k > 0 && x < edge(k)) k--;
    while (k < bins - 1 && x >= edge(k + 1)) k++;
    return k;
  };
}

/** The same as `logBinIndex(a, logEdges(lo, hi, bins))`; edges on demand when they need no repair (see LAZY_LOG_SPACING). */
export function logBinner(lo: number, hi: number, bins: number): (a: number) => number {
  const la = Math.log10(lo);
  const lb = Math.log10(hi);
  if (!((lb - la) / bins > LAZY_LOG_SPACING)) {
    const edges = logEdges(lo, hi, bins);
    return (a) => logBinIndex(a, edges);
  }
  const span = Math.log10(hi) - Math.log10(lo);
  const edge = (k: number): number => 10 ** (la + ((lb - la) * k) / bins);
  // Every edge and log10(a) is within 4e-13 of its exact value in log10 space (a few ulps of
  // |log10| ≤ 330, and pow's sub-ulp error): a position that far from a bin boundary, in bin
  // units, is in that bin, and needs no edge at all.
  const margin = (1e-12 * bins) / (lb - la);
  return (a) => {
    const g = ((Math.log10(a) - la) / span) * bins;
    let k = Math.floor(g);
    if (k >= 0 && k <= bins - 1 && g - k > margin && g - k < 1 - margin) return k;
    if (!(k >= 0)) k = 0;
    if (k > bins - 1) k = bins - 1;
    while (k > 0 && a < edge(k)) k--;
    while (k < bins - 1 && a >= edge(k + 1)) k++;
    return k;
  };
}

/**
 * Whether the CPU twin reads slices of this block type without decoding them to float32
 * (q4kStats.cpu.ts): then a slice needs no room for its values, and may hold more blocks.
 */
export function foldsUndecoded(type: string, histograms: boolean): boolean {
  return type === 'Q4_K' && !histograms;
}

/** Fused statistics of one tensor slice (see `StatsArgs`). */
export const statsKernel: KernelDef<StatsArgs, StatsResult> = {
  name: 'stats',
  cpu: statsCpu,
  gpu: statsGpu,
  // Shared bytes cross as they are; others move, a view at the start of a larger buffer with its buffer.
  transfer: (a) => (a.bytes.byteOffset === 0 && a.bytes.buffer instanceof ArrayBuffer ? [a.bytes.buffer] : []),
  // Pattern tables, sums and histograms: small, and the worker stays free of detached buffers.
  copyResults: true,
};

/**
 * Running sum with Neumaier's compensation: error ≤ 2ε|Σ| + O(nε²)Σ|x|, independent of
 * order. Used by the CPU twin and by the host's summary of the GPU twin's partials.
 */
/**
 * The sum and Σ (x − mean)² of `finite` values from the compensated sums of (x − k) and (x − k)²
 * (k a value of the set, so the squares lose nothing to a mean far from 0).
 */
export function shiftedMoments(finite: number, k: number, sum: CompensatedSum, sq: CompensatedSum): { sum: number; m2: number } {
  const total = sum.value;
  if (finite === 0) return { sum: 0, m2: 0 };
  return { sum: total + finite * k, m2: Math.max(0, sq.value - (total * total) / finite) };
}

export class CompensatedSum {
  private s = 0;
  private c = 0;
  add(x: number): void {
    const t = this.s + x;
    this.c += Math.abs(this.s) >= Math.abs(x) ? this.s - t + x : x - t + this.s;
    this.s = t;
  }
  get value(): number {
    return this.s + this.c;
  }
}

