// Statistics from a table of distinct values and their counts: what the code-counting kernels
// (scaledStats.cpu.ts) know about a slice. The scan folds each distinct value once with its
// count; the bins phase decides each distinct value exactly as binWide decides each value, so
// its counts are those of the decoded values, without the slice being read a second time.
import { isNearZero, isOutlier, outlierBounds } from './statsWide.cpu';
import { CompensatedSum, shiftedMoments, binIndex, logBinIndex, type BinsResult, type StatsBinsArgs, type ValueCounts, type WideScan } from './stats';

/** A growing table of (value, count) pairs, reused by a worker from slice to slice. */
export class ValueTable {
  // Float32 values (every value is a float32 decoding) and u32 counts (a slice holds far fewer than 2^32 values).
  private values = new Float32Array(4096);
  private counts = new Uint32Array(4096);
  length = 0;

  clear(): void {
    this.length = 0;
  }

  add(v: number, c: number): void {
    if (this.length === this.values.length) this.grow();
    this.values[this.length] = v;
    this.counts[this.length++] = c;
  }

  private grow(): void {
    const values = new Float32Array(this.values.length * 2);
    const counts = new Uint32Array(this.values.length * 2);
    values.set(this.values);
    counts.set(this.counts);
    this.values = values;
    this.counts = counts;
  }

  /** The scan of the table's values (`top` empty: these kernels run only when no top-k is wanted), carrying a copy of its finite entries. */
  scan(): WideScan {
    const { values, counts, length } = this;
    let finite = 0, nan = 0, posInf = 0, negInf = 0, zeros = 0, min = Infinity, max = -Infinity, minAbsNonzero = Infinity;
    let k = NaN;
    const sum = new CompensatedSum();
    const sq = new CompensatedSum();
    // Plain sums over runs of 1,024 entries, compensated between runs, as scanWide sums its values.
    let s1 = 0;
    let s2 = 0;
    for (let j = 0; j < length; j++) {
      const v = values[j];
      const c = counts[j];
      if (v - v !== 0) {
        if (v !== v) nan += c;
        else if (v > 0) posInf += c;
        else negInf += c;
        continue;
      }
      // The sums are of c·(v − K), K the first value: Σ (v − K)² then loses nothing to a mean far from 0.
      if (k !== k) k = v;
      finite += c;
      if (v < min) min = v;
      if (v > max) max = v;
      const a = v < 0 ? -v : v;
      if (v === 0) zeros += c;
      else if (a < minAbsNonzero) minAbsNonzero = a;
      const d = v - k;
      s1 += c * d;
      s2 += c * d * d;
      if ((j & 1023) === 1023) {
        sum.add(s1);
        sq.add(s2);
        s1 = 0;
        s2 = 0;
      }
    }
    sum.add(s1);
    sq.add(s2);
    return { kind: 'wide', finite, nan, posInf, negInf, zeros, min, max, minAbsNonzero, ...shiftedMoments(finite, k, sum, sq), top: [], values: this.finiteEntries(nan + posInf + negInf > 0) };
  }

  /** A copy of the finite entries (all of them, unless some are not). */
  private finiteEntries(filter: boolean): ValueCounts {
    if (!filter) return { values: this.values.slice(0, this.length), counts: this.counts.slice(0, this.length) };
    const values: number[] = [];
    const counts: number[] = [];
    for (let j = 0; j < this.length; j++) {
      if (this.values[j] - this.values[j] !== 0) continue;
      values.push(this.values[j]);
      counts.push(this.counts[j]);
    }
    return { values: Float32Array.from(values), counts: Uint32Array.from(counts) };
  }
}

type BinsParams = Pick<StatsBinsArgs, 'edges' | 'logEdges' | 'nearZeroBelow' | 'mean' | 'outlierBeyond'>;

/** The bins phase of a slice from its finite values' table: binWide's decisions, one per distinct value. */
export function binsOfValues(t: ValueCounts, p: BinsParams, histograms: boolean): BinsResult {
  const hist = new Uint32Array(p.edges.length - 1);
  const logHist = new Uint32Array(p.logEdges.length - 1);
  const { above, below } = outlierBounds(p);
  if (histograms) {
    for (let j = 0; j < t.values.length; j++) {
      const x = t.values[j];
      hist[binIndex(x, p.edges)] += t.counts[j];
      if (x !== 0) logHist[logBinIndex(x < 0 ? -x : x, p.logEdges)] += t.counts[j];
    }
  }
  const [nearZero, outliers] = nearAndOutliers(t.values, t.counts, p.nearZeroBelow, above, below);
  return { kind: 'bins', hist, logHist, nearZero, outliers };
}

// Its own function, with its thresholds in locals: one short loop per slice on the host.
function nearAndOutliers(values: Float32Array, counts: Uint32Array, nearZeroBelow: number, above: number, below: number): [number, number] {
  let nearZero = 0;
  let outliers = 0;
  for (let j = 0; j < values.length; j++) {
    const x = values[j];
    if (isNearZero(x < 0 ? -x : x, nearZeroBelow)) nearZero += counts[j];
    if (isOutlier(x, above, below)) outliers += counts[j];
  }
  return [nearZero, outliers];
}
