import { patternTable, type PatternDType } from '../decode/patterns';
import { CompensatedSum, compareTop, linearBinner, linearEdges, logBinner, logEdges, emptyTally, type BinsResult, type StatsBinsArgs, type Tally, type TopEntry, type WideScan } from './stats';

/** Statistics of one tensor, as `stats` reports them (JSON-safe: null where a statistic has no value). */
export interface TensorStats {
  readonly name: string;
  /** The stored type: a dtype, or a block type's name (`Q4_K`) for values decoded from blocks. */
  readonly dtype: string;
  /** A quantized weight's scheme (`fp8-block`, `mxfp4` …): the statistics are of its dequantized values. */
  readonly scheme?: string;
  readonly shape: readonly number[];
  readonly count: number;
  readonly finite: number;
  readonly nan: number;
  readonly posInf: number;
  readonly negInf: number;
  /** x == 0, −0 included. */
  readonly zeros: number;
  /** |x| < 1e-3 · absMax, zeros included. */
  readonly nearZero: number;
  readonly min: number | null;
  readonly max: number | null;
  readonly absMax: number | null;
  readonly mean: number | null;
  /** Population standard deviation of the finite values. */
  readonly std: number | null;
  /** |x − mean| > 6 · std. */
  readonly outliers: number;
  /** Over [min, max] of the finite values; the last bin is closed. */
  readonly histogram: { readonly min: number | null; readonly max: number | null; readonly counts: number[] };
  /** Over log10 |x| of the non-zero finite values; min and max are log10 values. */
  readonly logHistogram: { readonly min: number | null; readonly max: number | null; readonly counts: number[] };
  /** The largest finite |x|, largest first (ties: smaller index first). */
  readonly topK: TopEntry[];
  /** Set when the dtype has no statistics beyond its count (C64). */
  readonly note?: string;
}

export interface TensorHead {
  readonly name: string;
  readonly dtype: string;
  readonly scheme?: string;
  readonly shape: readonly number[];
  readonly count: number;
}

/** A |x| below this fraction of absMax counts as near zero. */
export const NEAR_ZERO_FRACTION = 1e-3;
/** An |x − mean| beyond this many standard deviations is an outlier. */
export const OUTLIER_SIGMAS = 6;


/** Merges slice top-k lists into the tensor's. */
export function mergeTop(lists: readonly TopEntry[][], k: number): TopEntry[] {
  return lists.flat().sort(compareTop).slice(0, k);
}

/**
 * Every statistic of a ≤16-bit tensor from its pattern table `hist` (`occurring`
 * lists its non-zero entries when the caller already knows them; counts as
 * doubles: exact to 2^53). Each table entry contributes count · value, a product
 * that is exact in f64 (≤ 11 significant bits times a count below 2^42), so the
 * sums are over at most 65,536 exact terms, compensated: mean and std are within
 * a few ulps of the exact values.
 */
export function summarizePatterns(head: TensorHead, hist: Float64Array, top: TopEntry[], bins: number, occurring?: readonly number[]): TensorStats {
  const dtype = head.dtype as PatternDType;
  const table = patternTable(dtype);
  let nan = 0;
  let posInf = 0;
  let negInf = 0;
  let finite = 0;
  let zeros = 0;
  let min = Infinity;
  let max = -Infinity;
  let minAbsNonzero = Infinity;
  const sum = new CompensatedSum();
  // The patterns that occur: a few thousand at most in real weights, so the loops below are short.
  let seen = occurring;
  if (!seen) {
    const found: number[] = [];
    for (let p = 0; p < hist.length; p++) if (hist[p] !== 0) found.push(p);
    seen = found;
  }
  for (const p of seen) {
    const c = hist[p];
    const v = table[p];
    if (Number.isNaN(v)) nan += c;
    else if (v === Infinity) posInf += c;
    else if (v === -Infinity) negInf += c;
    else {
      finite += c;
      if (v === 0) zeros += c;
      else minAbsNonzero = Math.min(minAbsNonzero, Math.abs(v));
      if (v < min) min = v;
      if (v > max) max = v;
      sum.add(c * v);
    }
  }
  const base = { ...head, shape: [...head.shape], finite, nan, posInf, negInf, zeros };
  if (finite === 0) return emptyFinite(base, bins, top);
  const absMax = Math.max(-min, max);
  const mean = sum.value / finite;
  const sq = new CompensatedSum();
  for (const p of seen) {
    const c = hist[p];
    const v = table[p];
    if (!Number.isFinite(v)) continue;
    sq.add(c * (v - mean) * (v - mean));
  }
  const std = Math.sqrt(sq.value / finite);
  const lin = linearBinner(min, max, bins);
  const lg = minAbsNonzero < Infinity ? logBinner(minAbsNonzero, absMax, bins) : undefined;
  const counts = new Array<number>(bins).fill(0);
  const logCounts = new Array<number>(bins).fill(0);
  const nearBelow = NEAR_ZERO_FRACTION * absMax;
  const above = mean + OUTLIER_SIGMAS * std;
  const below = mean - OUTLIER_SIGMAS * std;
  let nearZero = 0;
  let outliers = 0;
  for (const p of seen) {
    const c = hist[p];
    const v = table[p];
    if (!Number.isFinite(v)) continue;
    counts[lin(v)] += c;
    const a = Math.abs(v);
    if (a !== 0 && lg) logCounts[lg(a)] += c;
    if (a === 0 || a < nearBelow) nearZero += c;
    if (v > above || v < below) outliers += c;
  }
  return {
    ...base,
    nearZero,
    min,
    max,
    absMax,
    mean,
    std,
    outliers,
    histogram: { min, max, counts },
    logHistogram: lg ? { min: Math.log10(minAbsNonzero), max: Math.log10(absMax), counts: logCounts } : { min: null, max: null, counts: logCounts },
    topK: top,
  };
}

function emptyFinite(base: Omit<TensorStats, 'nearZero' | 'min' | 'max' | 'absMax' | 'mean' | 'std' | 'outliers' | 'histogram' | 'logHistogram' | 'topK'>, bins: number, top: TopEntry[]): TensorStats {
  const zero = new Array<number>(bins).fill(0);
  return {
    ...base,
    nearZero: 0,
    min: null,
    max: null,
    absMax: null,
    mean: null,
    std: null,
    outliers: 0,
    histogram: { min: null, max: null, counts: zero },
    logHistogram: { min: null, max: null, counts: zero.slice() },
    topK: top,
  };
}

/** A tensor whose dtype has no statistics (C64): its count, and why nothing else. */
export function unsupportedStats(head: TensorHead, bins: number): TensorStats {
  return { ...emptyFinite({ ...head, shape: [...head.shape], finite: 0, nan: 0, posInf: 0, negInf: 0, zeros: 0 }, bins, []), note: `no statistics for ${head.dtype}` };
}

/** Whole-tensor totals of the wide dtypes' first phase. */
export interface WideTotals extends Tally {
  mean: number;
  /** Σ (x − mean)² over the whole tensor (Chan et al.'s pairwise merge of slice M2s). */
  m2: number;
  top: TopEntry[];
}

export function mergeWide(scans: readonly WideScan[], k: number): WideTotals {
  let finite = 0;
  let mean = 0;
  let m2 = 0;
  const t: WideTotals = { ...emptyTally(), mean: 0, m2: 0, top: [] };
  for (const s of scans) {
    t.nan += s.nan;
    t.posInf += s.posInf;
    t.negInf += s.negInf;
    t.zeros += s.zeros;
    t.min = Math.min(t.min, s.min);
    t.max = Math.max(t.max, s.max);
    t.minAbsNonzero = Math.min(t.minAbsNonzero, s.minAbsNonzero);
    if (s.finite === 0) continue;
    const sMean = s.sum / s.finite;
    const n = finite + s.finite;
    const delta = sMean - mean;
    m2 += s.m2 + (delta * delta * finite * s.finite) / n;
    mean += (delta * s.finite) / n;
    finite = n;
  }
  t.finite = finite;
  t.mean = mean;
  t.m2 = m2;
  t.top = mergeTop(scans.map((s) => s.top), k);
  return t;
}

/** What the second phase needs, derived from the totals; undefined when there is nothing finite to bin. */
export function binsParams(t: WideTotals, bins: number): Pick<StatsBinsArgs, 'edges' | 'logEdges' | 'nearZeroBelow' | 'mean' | 'outlierBeyond'> | undefined {
  if (t.finite === 0) return undefined;
  const absMax = Math.max(-t.min, t.max);
  const std = Math.sqrt(t.m2 / t.finite);
  return {
    edges: linearEdges(t.min, t.max, bins),
    // No non-zero values: one degenerate bin range; nothing will be counted in it.
    logEdges: t.minAbsNonzero < Infinity ? logEdges(t.minAbsNonzero, absMax, bins) : new Float64Array(bins + 1).fill(1),
    nearZeroBelow: NEAR_ZERO_FRACTION * absMax,
    mean: t.mean,
    outlierBeyond: OUTLIER_SIGMAS * std,
  };
}

export function summarizeWide(head: TensorHead, t: WideTotals, binned: readonly BinsResult[], bins: number): TensorStats {
  const base = { ...head, shape: [...head.shape], finite: t.finite, nan: t.nan, posInf: t.posInf, negInf: t.negInf, zeros: t.zeros };
  if (t.finite === 0) return emptyFinite(base, bins, t.top);
  const counts = new Array<number>(bins).fill(0);
  const logCounts = new Array<number>(bins).fill(0);
  let nearZero = 0;
  let outliers = 0;
  for (const b of binned) {
    for (let i = 0; i < bins; i++) {
      counts[i] += b.hist[i];
      logCounts[i] += b.logHist[i];
    }
    nearZero += b.nearZero;
    outliers += b.outliers;
  }
  const absMax = Math.max(-t.min, t.max);
  const hasLog = t.minAbsNonzero < Infinity;
  return {
    ...base,
    nearZero,
    min: t.min,
    max: t.max,
    absMax,
    mean: t.mean,
    std: Math.sqrt(t.m2 / t.finite),
    outliers,
    histogram: { min: t.min, max: t.max, counts },
    logHistogram: hasLog ? { min: Math.log10(t.minAbsNonzero), max: Math.log10(absMax), counts: logCounts } : { min: null, max: null, counts: logCounts },
    topK: t.top,
  };
}
