// Q4_K statistics without a float32 copy of the values: the WebAssembly module
// (q4kStatsSimd.ts) folds each 32-value sub-block from its codes and scales; the sub-blocks
// it flags, the blocks with Inf or NaN scales, and the blocks that may hold a top-k value are
// decoded here by the scalar decoder and folded value by value, as scanWide and binWide do.
import { q4_K } from '../dequant/kquants.cpu';
import { CompensatedSum, emptyTally, type BinsResult, type Tally, type StatsBinsArgs, type StatsScanArgs, type WideScan } from './stats';
import { TopKeeper, isNearZero, isOutlier, outlierBounds } from './statsWide.cpu';
import { A, ABS, ACC, FLAGS, IN, Q4K_BATCH } from './q4kStatsAsm';
import { q4kStatsModule, type Q4kStatsModule } from './q4kStatsSimd';

const BLOCK_BYTES = 144;
const BLOCK_VALUES = 256;

/** One block's values, decoded by the scalar twin (the reference the module reproduces), and its bytes. */
const scratch = new Float32Array(BLOCK_VALUES);
const scratchIn = new Uint8Array(BLOCK_BYTES);

/** A float16 exponent of all ones is Inf or NaN: such a block's values may be non-finite. */
function finiteScales(bytes: Uint8Array, p: number): boolean {
  return (bytes[p + 1] & 0x7c) !== 0x7c && (bytes[p + 3] & 0x7c) !== 0x7c;
}

/** The slice's blocks, when the fused path applies to it: whole blocks, every value counted, SIMD present. */
function blocksOf(args: StatsScanArgs | StatsBinsArgs): { m: Q4kStatsModule; nb: number } | undefined {
  const nb = args.bytes.length / BLOCK_BYTES;
  if (!Number.isInteger(nb) || args.count !== nb * BLOCK_VALUES) return undefined;
  const m = q4kStatsModule();
  return m ? { m, nb } : undefined;
}

/** Calls `run(first, count)` for each run of blocks with finite scales in [b0, b1), and `bad(b)` for the others. */
function runs(bytes: Uint8Array, b0: number, b1: number, run: (first: number, count: number) => void, bad: (b: number) => void): void {
  let start = b0;
  for (;;) {
    const b = nextBad(bytes, start, b1);
    if (b > start) run(start, b - start);
    if (b === b1) return;
    bad(b);
    start = b + 1;
  }
}

/** The first block in [b, b1) whose d or dmin is Inf or NaN, else b1. */
function nextBad(bytes: Uint8Array, b: number, b1: number): number {
  for (let p = b * BLOCK_BYTES; b < b1; b++, p += BLOCK_BYTES) if ((bytes[p + 1] & 0x7c) === 0x7c || (bytes[p + 3] & 0x7c) === 0x7c) return b;
  return b1;
}

/**
 * Copies the slice into the module's input a batch at a time, and calls `run(first, count, at)`
 * for each run of blocks with finite scales (`at`: the run's address in the module's input),
 * `bad(b)` for each other block, and `flush()` after each batch.
 */
function batches(m: Q4kStatsModule, bytes: Uint8Array, nb: number, run: (first: number, count: number, at: number) => void, bad: (b: number) => void, flush?: () => void): void {
  for (let b0 = 0; b0 < nb; b0 += Q4K_BATCH) {
    const b1 = Math.min(nb, b0 + Q4K_BATCH);
    new Uint8Array(m.memory.buffer, IN, (b1 - b0) * BLOCK_BYTES).set(bytes.subarray(b0 * BLOCK_BYTES, b1 * BLOCK_BYTES));
    runs(bytes, b0, b1, (first, count) => run(first, count, IN + (first - b0) * BLOCK_BYTES), bad);
    flush?.();
  }
}

function decodeBlock(bytes: Uint8Array, b: number): Float32Array {
  for (let i = 0, p = b * BLOCK_BYTES; i < BLOCK_BYTES; i++) scratchIn[i] = bytes[p + i];
  q4_K(scratchIn, scratch, 1);
  return scratch;
}

/** The running totals of a slice, the SIMD module's and the decoded sub-blocks' together. */
interface Totals extends Tally {
  readonly sum: CompensatedSum;
  readonly sq: CompensatedSum;
  readonly k: number;
}

/** The scan phase of a Q4_K slice; undefined where the fused path does not apply. */
export function q4kScan(args: StatsScanArgs): WideScan | undefined {
  const at = blocksOf(args);
  if (!at) return undefined;
  const { m, nb } = at;
  const bytes = args.bytes;
  const t: Totals = { ...emptyTally(), sum: new CompensatedSum(), sq: new CompensatedSum(), k: shiftOf(bytes, nb) };
  const f64 = new Float64Array(m.memory.buffer, ACC, 16);
  const f32 = new Float32Array(m.memory.buffer, ACC, 32);
  f64[A.sum / 8] = 0;
  f64[A.sq / 8] = 0;
  f64[A.k / 8] = t.k;
  f32[A.min / 4] = Infinity;
  f32[A.max / 4] = -Infinity;
  f32[A.minAbs / 4] = Infinity;
  const top = new TopKeeper(args.topK);
  const abs = new Float32Array(m.memory.buffer, ABS, Q4K_BATCH);
  const flags = new Int32Array(m.memory.buffer, FLAGS, Q4K_BATCH * 8);
  const cache = new BlockCache(bytes);
  batches(
    m,
    bytes,
    nb,
    (first, count, at) => {
      const nflags = m.scan(count, at);
      t.finite += count * BLOCK_VALUES;
      for (let j = 0; j < nflags; j++) {
        const v = cache.flagged(first, flags[j]);
        if (flags[j] & 1) minAbsOf(t, v);
        else foldFinite(t, v);
      }
      if (top.threshold === Infinity) return;
      // Blocks that can hold a top-k value (their bound passes the k-th |x| so far, or a sub-block was flagged), in order.
      for (let b = first, j = 0; b < first + count; b++) {
        let flagged = false;
        while (j < nflags && first + (flags[j] >> 4) === b) {
          flagged = true;
          j++;
        }
        if (flagged || abs[b - first] > top.threshold) offerBlock(top, cache.values(b), args.first + b * BLOCK_VALUES);
      }
    },
    (b) => foldValues(t, top, cache.values(b), args.first + b * BLOCK_VALUES),
    () => {
      // Flushed per batch, so that a float64 sum runs over at most 32,768 sub-blocks.
      t.sum.add(f64[A.sum / 8]);
      t.sq.add(f64[A.sq / 8]);
      f64[A.sum / 8] = 0;
      f64[A.sq / 8] = 0;
    },
  );
  t.min = Math.min(t.min, f32[A.min / 4]);
  t.max = Math.max(t.max, f32[A.max / 4]);
  t.minAbsNonzero = Math.min(t.minAbsNonzero, f32[A.minAbs / 4]);
  const s = t.sum.value;
  const m2 = t.finite > 0 ? Math.max(0, t.sq.value - (s * s) / t.finite) : 0;
  const { finite, nan, posInf, negInf, zeros, min, max, minAbsNonzero } = t;
  return { kind: 'wide', finite, nan, posInf, negInf, zeros, min, max, minAbsNonzero, sum: s + finite * t.k, m2, top: top.result() };
}

/** K for the sums of x − K: the mean of the first block with finite scales (a shift near the data keeps Σ(x − K)² − (Σ(x − K))²/n free of cancellation). */
function shiftOf(bytes: Uint8Array, nb: number): number {
  for (let b = 0; b < nb; b++) {
    if (!finiteScales(bytes, b * BLOCK_BYTES)) continue;
    const v = decodeBlock(bytes, b);
    let k = 0;
    for (let i = 0; i < BLOCK_VALUES; i++) k += v[i];
    return k / BLOCK_VALUES;
  }
  return 0;
}

/** The last block decoded, kept: a block's flagged sub-blocks and its top-k check decode it once. */
class BlockCache {
  private at = -1;
  constructor(private readonly bytes: Uint8Array) {}
  values(b: number): Float32Array {
    if (b !== this.at) {
      decodeBlock(this.bytes, b);
      this.at = b;
    }
    return scratch;
  }
  /** The 32 values of the sub-block that flag `flag` names, in the run of blocks from `first`. */
  flagged(first: number, flag: number): Float32Array {
    const sb = flag >> 1;
    return this.values(first + (sb >> 3)).subarray((sb & 7) * 32, (sb & 7) * 32 + 32);
  }
}

function offerBlock(top: TopKeeper, v: Float32Array, first: number): void {
  for (let i = 0; i < BLOCK_VALUES; i++) top.offer(first + i, v[i]);
}

/** A flagged sub-block's finite values, folded as scanWide folds them (its count is already in `finite`). */
function foldFinite(t: Totals, v: Float32Array): void {
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (x < t.min) t.min = x;
    if (x > t.max) t.max = x;
    if (x === 0) t.zeros++;
    else if (Math.abs(x) < t.minAbsNonzero) t.minAbsNonzero = Math.abs(x);
    t.sum.add(x - t.k);
    t.sq.add((x - t.k) * (x - t.k));
  }
}

function minAbsOf(t: Totals, v: Float32Array): void {
  for (let i = 0; i < v.length; i++) if (v[i] !== 0 && Math.abs(v[i]) < t.minAbsNonzero) t.minAbsNonzero = Math.abs(v[i]);
}

/** A block with an Inf or NaN scale (rare, and off the SIMD path): every value, as scanWide folds it. */
function foldValues(t: Totals, top: TopKeeper, v: Float32Array, first: number): void {
  for (let i = 0; i < BLOCK_VALUES; i++) {
    const x = v[i];
    if (x !== x) t.nan++;
    else if (x === Infinity) t.posInf++;
    else if (x === -Infinity) t.negInf++;
    else {
      t.finite++;
      foldFinite(t, v.subarray(i, i + 1));
      top.offer(first + i, x);
    }
  }
}

const bits = new Uint32Array(1);
const float = new Float32Array(bits.buffer);

/** The float32 next to `f` (a float32) towards +Infinity (`up`) or −Infinity. */
function next32(f: number, up: boolean): number {
  if (f === 0) return up ? 2 ** -149 : -(2 ** -149);
  float[0] = f;
  bits[0] += f > 0 === up ? 1 : -1;
  return float[0];
}

/** For float32 x: x < t ⟺ x < up32(t), and x > t ⟺ x > down32(t), whatever the float64 t. */
function up32(t: number): number {
  const f = Math.fround(t);
  return f >= t ? f : next32(f, true);
}
function down32(t: number): number {
  const f = Math.fround(t);
  return f <= t ? f : next32(f, false);
}

/**
 * The bins phase of a Q4_K slice when no histogram is wanted (`histograms: false`): only the
 * near-zero and outlier counts, decided as binWide decides them. Undefined otherwise.
 */
export function q4kNear(args: StatsBinsArgs): BinsResult | undefined {
  if (args.histograms !== false) return undefined;
  const at = blocksOf(args);
  if (!at) return undefined;
  const { m, nb } = at;
  const bytes = args.bytes;
  const { above, below } = outlierBounds(args);
  const f32 = new Float32Array(m.memory.buffer, ACC, 32);
  const i32 = new Int32Array(m.memory.buffer, ACC, 32);
  f32[A.nearT / 4] = up32(args.nearZeroBelow);
  f32[A.above / 4] = down32(above);
  f32[A.below / 4] = up32(below);
  i32[A.near / 4] = 0;
  i32[A.out / 4] = 0;
  const flags = new Int32Array(m.memory.buffer, FLAGS, Q4K_BATCH * 8);
  const cache = new BlockCache(bytes);
  const c = { nearZero: 0, outliers: 0 };
  const count = (v: Float32Array): void => {
    for (let i = 0; i < v.length; i++) {
      const x = v[i];
      if (x - x !== 0) continue;
      if (isNearZero(Math.abs(x), args.nearZeroBelow)) c.nearZero++;
      if (isOutlier(x, above, below)) c.outliers++;
    }
  };
  batches(
    m,
    bytes,
    nb,
    (first, n, at) => {
      const nflags = m.near(n, at);
      for (let j = 0; j < nflags; j++) count(cache.flagged(first, flags[j]));
    },
    (b) => count(cache.values(b)),
  );
  c.nearZero += i32[A.near / 4];
  c.outliers += i32[A.out / 4];
  return { kind: 'bins', hist: new Uint32Array(args.edges.length - 1), logHist: new Uint32Array(args.logEdges.length - 1), ...c };
}
