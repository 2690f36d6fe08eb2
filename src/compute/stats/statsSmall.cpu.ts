import { storageDecoder } from '../decode/blocks';
import { isPatternDType, patternBits, patternTable, type PatternDType } from '../decode/patterns';
import { isNearZero, isOutlier, numericView, scanWide, type Numeric } from './statsWide.cpu';
import { patternOf } from './stats.cpu';
import { SMALL_SCALARS, type SmallTensorItem, type StatsSmallArgs, type StatsSmallResult } from './statsSmall';
import { mergeTop, mergeWide, NEAR_ZERO_FRACTION, OUTLIER_SIGMAS, summarizePatterns, type TensorHead, type TensorStats, type WideTotals } from './summarize';
import { compareTop, linearBinner, logBinner, type BinsResult, type TopEntry, type WideScan } from './stats';

/** The CPU twin of `statsSmallKernel`: each item scanned, binned and summarized in place. */
export function statsSmallCpu(args: StatsSmallArgs): StatsSmallResult {
  const all = args.bytes;
  const n = args.items.length;
  const out: StatsSmallResult = {
    scalars: new Float64Array(n * SMALL_SCALARS),
    hist: new Uint32Array(args.histograms ? n * args.bins : 0),
    logHist: new Uint32Array(args.histograms ? n * args.bins : 0),
    topLength: new Uint32Array(n),
    top: new Float64Array(n * args.topK * 2),
  };
  args.items.forEach((item, i) => {
    const bytes = all.subarray(item.at, item.at + item.byteLength);
    const head = { name: item.name, dtype: item.dtype, shape: item.shape, count: item.count };
    if (item.blocks) smallWide(out, i, { ...item, dtype: 'F32' }, decodeBlocks(item.blocks, bytes, item.count), args);
    else if (isPatternDType(item.dtype)) packOne(out, i, smallPatterns(item, item.dtype, bytes, head, args), args);
    else smallWide(out, i, item, bytes, args);
  });
  return out;
}

/** Whole blocks decoded to float32, as the bytes of an F32 tensor. */
function decodeBlocks(type: string, bytes: Uint8Array, count: number): Uint8Array {
  const values = new Float32Array(count);
  const storage = { kind: 'blocks' as const, type, blockElements: 0, blockBytes: 0 };
  storageDecoder(storage).cpu([bytes], values, storage);
  return new Uint8Array(values.buffer);
}

/** Pattern counts per bit width, reused: only the entries a tensor touched are cleared after it. */
const tables = new Map<number, Float64Array>();

function smallPatterns(item: SmallTensorItem, dtype: PatternDType, bytes: Uint8Array, head: TensorHead, args: StatsSmallArgs): TensorStats {
  const bits = patternBits(dtype);
  let hist = tables.get(bits);
  if (!hist) tables.set(bits, (hist = new Float64Array(2 ** bits)));
  const table = patternTable(dtype);
  const mask = 2 ** bits - 1;
  const occurring: number[] = [];
  const candidates: TopEntry[] = [];
  for (let i = 0; i < item.count; i++) {
    const p = patternOf(bytes, i, bits, mask);
    if (hist[p]++ === 0) occurring.push(p);
    const v = table[p];
    // The top-k ranks finite values only, as the sliced scan does.
    if (v - v === 0) candidates.push({ index: i, value: v });
  }
  occurring.sort((a, b) => a - b);
  const top = mergeTop([candidates.sort(compareTop).slice(0, args.topK)], args.topK);
  try {
    return summarizePatterns(head, hist, top, args.bins, occurring);
  } finally {
    for (const p of occurring) hist[p] = 0;
  }
}

/** One wide-dtype tensor, written straight into the packed result: the fields `summarizeWide` would give. */
function smallWide(out: StatsSmallResult, i: number, item: SmallTensorItem, bytes: Uint8Array, args: StatsSmallArgs): void {
  const values = numericView(item.dtype, bytes, item.count);
  const t: WideScan = scanWide(values, { phase: 'scan', dtype: item.dtype, first: 0, count: item.count, bytes, topK: args.topK });
  // One slice: its top-k is already the tensor's, in order (mergeWide of one scan adds nothing else).
  putTop(out, i, t.top, args.topK);
  const o = i * SMALL_SCALARS;
  const v = out.scalars;
  v[o] = t.finite;
  v[o + 1] = t.nan;
  v[o + 2] = t.posInf;
  v[o + 3] = t.negInf;
  v[o + 4] = t.zeros;
  if (t.finite === 0) return;
  // Its top-k left out: merging a single list would only sort it again.
  const totals = mergeWide([{ ...t, top: [] }], args.topK);
  const absMax = Math.max(-t.min, t.max);
  const h = args.histograms ? out.hist.subarray(i * args.bins, (i + 1) * args.bins) : undefined;
  const lh = args.histograms ? out.logHist.subarray(i * args.bins, (i + 1) * args.bins) : undefined;
  const b = binLazy(values, item.count, totals, args.bins, h, lh);
  v[o + 5] = b.nearZero;
  v[o + 6] = t.min;
  v[o + 7] = t.max;
  v[o + 8] = absMax;
  v[o + 9] = totals.mean;
  v[o + 10] = Math.sqrt(totals.m2 / totals.finite);
  v[o + 11] = b.outliers;
  if (t.minAbsNonzero < Infinity) {
    v[o + 12] = Math.log10(t.minAbsNonzero);
    v[o + 13] = Math.log10(absMax);
  }
}

function putTop(out: StatsSmallResult, i: number, top: readonly TopEntry[], k: number): void {
  out.topLength[i] = top.length;
  for (let j = 0; j < top.length; j++) {
    out.top[(i * k + j) * 2] = top[j].index;
    out.top[(i * k + j) * 2 + 1] = top[j].value;
  }
}

/** A summary made by `summarizePatterns`, packed. */
function packOne(out: StatsSmallResult, i: number, s: TensorStats, args: StatsSmallArgs): void {
  out.scalars.set([s.finite, s.nan, s.posInf, s.negInf, s.zeros, s.nearZero, s.min ?? 0, s.max ?? 0, s.absMax ?? 0, s.mean ?? 0, s.std ?? 0, s.outliers, s.logHistogram.min ?? 0, s.logHistogram.max ?? 0], i * SMALL_SCALARS);
  if (args.histograms) {
    out.hist.set(s.histogram.counts, i * args.bins);
    out.logHist.set(s.logHistogram.counts, i * args.bins);
  }
  putTop(out, i, s.topK, args.topK);
}

/** The bins phase of `binWide` for one whole tensor, with the thresholds `binsParams` derives and edges on demand. */
function binLazy(v: Numeric, count: number, t: WideTotals, bins: number, hist?: Uint32Array, logHist?: Uint32Array): Omit<BinsResult, 'hist' | 'logHist' | 'kind'> {
  const absMax = Math.max(-t.min, t.max);
  const lin = linearBinner(t.min, t.max, bins);
  // No non-zero values: nothing reaches the log histogram, so it needs no edges.
  const lg = t.minAbsNonzero < Infinity ? logBinner(t.minAbsNonzero, absMax, bins) : undefined;
  const nearZeroBelow = NEAR_ZERO_FRACTION * absMax;
  const outlierBeyond = OUTLIER_SIGMAS * Math.sqrt(t.m2 / t.finite);
  const above = t.mean + outlierBeyond;
  const below = t.mean - outlierBeyond;
  let nearZero = 0;
  let outliers = 0;
  for (let i = 0; i < count; i++) {
    const x = v[i];
    if (x - x !== 0) continue;
    if (hist) hist[lin(x)]++;
    const a = x < 0 ? -x : x;
    if (a !== 0 && lg && logHist) logHist[lg(a)]++;
    if (isNearZero(a, nearZeroBelow)) nearZero++;
    if (isOutlier(x, above, below)) outliers++;
  }
  return { nearZero, outliers };
}
