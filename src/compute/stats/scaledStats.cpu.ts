// Statistics of FP8 weights with a scale per 2-D block (or row, or tensor) without decoding
// them: a block's bytes are counted (256 possible), then each byte that occurs is decoded once,
// value = f32(fp8(byte) × scale) as scaledCpu decodes it, and folded with its count. Every count,
// extreme and comparison is exact; the sums are Σ c·(v − K) and Σ c·(v − K)² in float64
// (compensated), as close as the value-by-value sums. A zero min or
// max may carry the other zero's sign (the value-by-value scan keeps the first zero it meets).
import type { StorageType } from '../../format/storage';
import { patternTable, type PatternDType } from '../decode/patterns';
import { E2M1, num, partFloats, str } from '../dequant/partValues';
import { CompensatedSum, type BinsResult, type StatsBinsArgs, type StatsScanArgs, type WideScan } from './stats';
import { TopKeeper, isNearZero, isOutlier, outlierBounds } from './statsWide.cpu';

type Scheme = Extract<StorageType, { kind: 'scheme' }>;

/** Below this many values a block, folding 256 byte counts costs more than decoding its values. */
const MIN_BLOCK_VALUES = 1024;

// Four tables, one per byte of every 4: runs of one byte value do not wait on their own increments.
const counts = new Uint32Array(1024);

interface Layout {
  readonly data: Uint8Array;
  readonly scale: Float32Array;
  readonly table: ArrayLike<number>;
  readonly rows: number;
  readonly cols: number;
  readonly bh: number;
  readonly bw: number;
  readonly scaleCols: number;
}

/** The slice's layout when the count-based fold applies: FP8 data, no zero point, large blocks. */
function layoutOf(args: StatsScanArgs | StatsBinsArgs): Layout | undefined {
  const s = args.storage;
  if (s?.kind !== 'scheme' || !s.scheme.startsWith('fp8-') || (args.more?.length ?? 0) !== 1) return undefined;
  const p = (s as Scheme).params;
  const dataType = str(p, 'data');
  if (dataType === 'I8') return undefined;
  const cols = num(p, 'cols');
  const scale = partFloats(args.more![0], str(p, 'scaleDtype'));
  const rows = args.bytes.length / cols;
  if (!Number.isInteger(rows) || args.count !== rows * cols) return undefined;
  const whole = scale.length === 1;
  const bh = whole ? rows : num(p, 'blockRows');
  const bw = whole ? cols : num(p, 'blockCols');
  if (bh * Math.min(bw, cols) < MIN_BLOCK_VALUES) return undefined;
  return { data: args.bytes, scale, table: patternTable(dataType as PatternDType), rows, cols, bh, bw, scaleCols: whole ? 1 : num(p, 'scaleCols') };
}

function countRun(data: Uint8Array, i: number, end: number): void {
  for (; i + 4 <= end; i += 4) {
    counts[data[i]]++;
    counts[256 + data[i + 1]]++;
    counts[512 + data[i + 2]]++;
    counts[768 + data[i + 3]]++;
  }
  for (; i < end; i++) counts[data[i]]++;
}

/** Calls `fold(v, c)` for each distinct value v of each block, with its count c. */
function eachBlock(l: Layout, fold: (v: number, c: number) => void): void {
  const { data, scale, table, rows, cols, bh, bw, scaleCols } = l;
  for (let r0 = 0; r0 < rows; r0 += bh) {
    const r1 = Math.min(rows, r0 + bh);
    for (let c0 = 0, k = (r0 / bh) * scaleCols; c0 < cols; c0 += bw, k++) {
      const c1 = Math.min(cols, c0 + bw);
      counts.fill(0);
      for (let r = r0; r < r1; r++) countRun(data, r * cols + c0, r * cols + c1);
      const sk = scale[k];
      for (let b = 0; b < 256; b++) {
        const c = counts[b] + counts[b + 256] + counts[b + 512] + counts[b + 768];
        if (c !== 0) fold(Math.fround(table[b] * sk), c);
      }
    }
  }
}

// (E8M0 scale byte, block byte) pairs: 256 × 256 counts, one increment per two values.
const mxCounts = new Uint32Array(256 * 256);

/**
 * MXFP4: each value is f32(E2M1[code] × 2^(scale − 127)) (NaN for scale 0xFF) as mxfp4Cpu decodes
 * it, whatever the layout, so the slice's (scale, byte) pairs are counted and each (scale, code) pair that
 * occurs is decoded once. Positions play no part: the expert layouts' transposition is irrelevant.
 */
function mxfp4Folds(args: StatsScanArgs | StatsBinsArgs): Folds | undefined {
  const blocks = args.bytes;
  const scales = args.more?.[0];
  if (args.storage?.kind !== 'scheme' || args.storage.scheme !== 'mxfp4' || !scales || args.more!.length !== 1) return undefined;
  if (blocks.length !== scales.length * 16 || args.count !== scales.length * 32) return undefined;
  return (fold) => {
    mxCounts.fill(0);
    for (let g = 0, at = 0; g < scales.length; g++) {
      const base = scales[g] << 8;
      for (const end = at + 16; at < end; at++) mxCounts[base | blocks[at]]++;
    }
    // A byte holds two codes: its count goes to both.
    const pairs = new Float64Array(256 * 16);
    for (let e = 0; e < 256; e++) {
      for (let b = 0; b < 256; b++) {
        const c = mxCounts[(e << 8) | b];
        if (c === 0) continue;
        pairs[(e << 4) | (b & 15)] += c;
        pairs[(e << 4) | (b >> 4)] += c;
      }
    }
    for (let e = 0; e < 256; e++) {
      const m = e === 0xff ? NaN : 2 ** (e - 127);
      for (let q = 0; q < 16; q++) if (pairs[(e << 4) | q] !== 0) fold(Math.fround(E2M1[q] * m), pairs[(e << 4) | q]);
    }
  };
}

/** Calls `fold(v, c)` for each distinct value v of a part of the slice, with its count c there. */
type Folds = (fold: (v: number, c: number) => void) => void;

function foldsOf(args: StatsScanArgs | StatsBinsArgs): Folds | undefined {
  const l = layoutOf(args);
  return l ? (fold) => eachBlock(l, fold) : mxfp4Folds(args);
}

/** The scan phase of an FP8 or MXFP4 scheme slice; undefined where the fold does not apply (top-k wanted, small blocks). */
export function scaledScan(args: StatsScanArgs): WideScan | undefined {
  if (args.topK > 0) return undefined;
  const folds = foldsOf(args);
  if (!folds) return undefined;
  let finite = 0, nan = 0, posInf = 0, negInf = 0, zeros = 0, min = Infinity, max = -Infinity, minAbsNonzero = Infinity;
  let k = NaN;
  const sum = new CompensatedSum();
  const sq = new CompensatedSum();
  folds((v, c) => {
    if (v !== v) nan += c;
    else if (v === Infinity) posInf += c;
    else if (v === -Infinity) negInf += c;
    else {
      if (k !== k) k = v;
      finite += c;
      if (v < min) min = v;
      if (v > max) max = v;
      if (v === 0) zeros += c;
      else if (Math.abs(v) < minAbsNonzero) minAbsNonzero = Math.abs(v);
      sum.add(c * (v - k));
      sq.add(c * (v - k) * (v - k));
    }
  });
  const s = sum.value;
  const m2 = finite > 0 ? Math.max(0, sq.value - (s * s) / finite) : 0;
  return { kind: 'wide', finite, nan, posInf, negInf, zeros, min, max, minAbsNonzero, sum: finite > 0 ? s + finite * k : 0, m2, top: new TopKeeper(0).result() };
}

/** The bins phase without histograms: near-zero and outlier counts, decided as binWide decides them. */
export function scaledNear(args: StatsBinsArgs): BinsResult | undefined {
  if (args.histograms !== false) return undefined;
  const folds = foldsOf(args);
  if (!folds) return undefined;
  const { above, below } = outlierBounds(args);
  let nearZero = 0, outliers = 0;
  folds((v, c) => {
    if (v - v !== 0) return;
    if (isNearZero(Math.abs(v), args.nearZeroBelow)) nearZero += c;
    if (isOutlier(v, above, below)) outliers += c;
  });
  return { kind: 'bins', hist: new Uint32Array(args.edges.length - 1), logHist: new Uint32Array(args.logEdges.length - 1), nearZero, outliers };
}
