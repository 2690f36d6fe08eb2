// The CPU twin of statsWide.wgsl: statistics of F32, F64 and the 32/64-bit integers,
// which have too many bit patterns to count, in two passes (scan, then bins).
import type { DType } from '../../format/dtypes';
import { CompensatedSum, binIndex, compareTop, logBinIndex, type BinsResult, type StatsBinsArgs, type StatsScanArgs, type TopEntry, type WideScan } from './stats';
import { viewOf } from './stats.cpu';

// ---------------------------------------------------------------- wide dtypes


export type Numeric = Float32Array | Float64Array | Int32Array | Uint32Array;

export function numericView(dtype: DType, bytes: Uint8Array, n: number): Numeric {
  switch (dtype) {
    case 'F32':
      return viewOf(Float32Array, bytes, n);
    case 'I32':
      return viewOf(Int32Array, bytes, n);
    case 'U32':
      return viewOf(Uint32Array, bytes, n);
    case 'F64':
      return viewOf(Float64Array, bytes, n);
    case 'I64':
    case 'U64': {
      // Statistics are doubles anyway: integers beyond 2^53 round, as they would in any float reference.
      const src = dtype === 'I64' ? viewOf(BigInt64Array, bytes, n) : viewOf(BigUint64Array, bytes, n);
      const out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = Number(src[i]);
      return out;
    }
    default:
      throw new Error(`stats: ${dtype} is not supported`);
  }
}

/** Keeps the k largest |x| seen so far; ties keep the earlier index, as `compareTop` orders them. */
export class TopKeeper {
  private readonly buf: TopEntry[] = [];
  /** |x| of the k-th entry once the keeper is full; below it nothing can enter. */
  threshold = -1;
  constructor(private readonly k: number) {
    if (k <= 0) this.threshold = Infinity;
  }
  offer(index: number, value: number): void {
    const a = Math.abs(value);
    if (a <= this.threshold) return;
    this.buf.push({ index, value });
    // Sorting in batches of 4k keeps the work per element constant.
    if (this.buf.length >= 4 * this.k) this.trim();
  }
  private trim(): void {
    this.buf.sort(compareTop);
    this.buf.length = Math.min(this.buf.length, this.k);
    if (this.k > 0 && this.buf.length === this.k) this.threshold = Math.abs(this.buf[this.k - 1].value);
  }
  result(): TopEntry[] {
    this.trim();
    return this.buf.slice();
  }
}

export function scanWide(v: Numeric, args: StatsScanArgs): WideScan {
  const n = args.count;
  let nan = 0;
  let posInf = 0;
  let negInf = 0;
  let zeros = 0;
  let finite = 0;
  let min = Infinity;
  let max = -Infinity;
  let minAbsNonzero = Infinity;
  const total = new CompensatedSum();
  let block = 0;
  const top = new TopKeeper(args.topK);
  // Top-k ranks finite values only: ±Inf are reported by the posInf/negInf counts.
  for (let i = 0; i < n; i++) {
    const x = v[i];
    if (x !== x) {
      nan++;
      continue;
    }
    if (x === Infinity) posInf++;
    else if (x === -Infinity) negInf++;
    else {
      finite++;
      block += x;
      // Plain sums over blocks of 1,024, compensated between blocks: error ≤ ~1024·ε·Σ|x| whatever the slice length.
      if ((finite & 1023) === 0) {
        total.add(block);
        block = 0;
      }
      if (x < min) min = x;
      if (x > max) max = x;
      const a = x < 0 ? -x : x;
      if (x === 0) zeros++;
      else if (a < minAbsNonzero) minAbsNonzero = a;
      if (a > top.threshold) top.offer(args.first + i, x);
    }
  }
  total.add(block);
  const sum = total.value;
  // Second, in-memory pass: squared deviations about the slice's own mean, merged across slices by Chan's formula.
  let m2 = 0;
  if (finite > 0) {
    const mean = sum / finite;
    const sq = new CompensatedSum();
    let part = 0;
    let seen = 0;
    for (let i = 0; i < n; i++) {
      const x = v[i];
      if (x - x === 0) {
        const d = x - mean;
        part += d * d;
        if ((++seen & 1023) === 0) {
          sq.add(part);
          part = 0;
        }
      }
    }
    sq.add(part);
    m2 = sq.value;
  }
  return { kind: 'wide', finite, nan, posInf, negInf, zeros, min, max, minAbsNonzero, sum, m2, top: top.result() };
}

/** Near zero, as every bins phase decides it: |x| (`a`) below the threshold, or exactly 0 whatever the threshold. */
export function isNearZero(a: number, nearZeroBelow: number): boolean {
  return a === 0 || a < nearZeroBelow;
}

/**
 * The two outlier thresholds mean ± outlierBeyond, fixed once per tensor, so that the GPU twin
 * (f32 values, thresholds rounded outward) decides identically.
 */
export function outlierBounds(args: Pick<StatsBinsArgs, 'mean' | 'outlierBeyond'>): { above: number; below: number } {
  return { above: args.mean + args.outlierBeyond, below: args.mean - args.outlierBeyond };
}

/** Beyond the thresholds `outlierBounds` gives. */
export function isOutlier(x: number, above: number, below: number): boolean {
  return x > above || x < below;
}

export function binWide(v: Numeric, args: StatsBinsArgs): BinsResult {
  if (args.histograms === false) return countWide(v, args);
  const bins = args.edges.length - 1;
  const hist = new Uint32Array(bins);
  const logHist = new Uint32Array(args.logEdges.length - 1);
  const { edges, logEdges, nearZeroBelow } = args;
  const { above, below } = outlierBounds(args);
  let nearZero = 0;
  let outliers = 0;
  for (let i = 0; i < args.count; i++) {
    const x = v[i];
    // Finite values only: x − x is NaN for NaN and ±Inf.
    if (x - x !== 0) continue;
    hist[binIndex(x, edges)]++;
    const a = x < 0 ? -x : x;
    if (a !== 0) logHist[logBinIndex(a, logEdges)]++;
    if (isNearZero(a, nearZeroBelow)) nearZero++;
    if (isOutlier(x, above, below)) outliers++;
  }
  return { kind: 'bins', hist, logHist, nearZero, outliers };
}

/**
 * binWide without the histograms (the caller keeps none): the log bin's log10 per value was most
 * of its time. Kept as its own loop: binWide's loop with its histogram lines behind a flag was
 * 3–6% slower here (same rules, isNearZero and isOutlier).
 */
function countWide(v: Numeric, args: StatsBinsArgs): BinsResult {
  const { nearZeroBelow } = args;
  const { above, below } = outlierBounds(args);
  let nearZero = 0;
  let outliers = 0;
  for (let i = 0; i < args.count; i++) {
    const x = v[i];
    if (x - x !== 0) continue;
    const a = x < 0 ? -x : x;
    if (isNearZero(a, nearZeroBelow)) nearZero++;
    if (isOutlier(x, above, below)) outliers++;
  }
  return { kind: 'bins', hist: new Uint32Array(args.edges.length - 1), logHist: new Uint32Array(args.logEdges.length - 1), nearZero, outliers };
}
