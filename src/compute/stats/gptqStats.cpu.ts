// GPTQ int4 statistics without decoding. A weight's values come in cells: one output o and one
// group g (the input rows that g_idx gives it) share a zero point z and a float16 scale s, and
// each value is f32((q − z) · s), as gptqCpu decodes it. For a float16 s that product is exact
// (11 significant bits times |q − z| ≤ 15, far inside float32's range), so a cell's statistics
// follow from a few integers: Σq, Σq², how many q equal z, its smallest and largest code and the
// code nearest z. They are counted in WebAssembly SIMD, 4 outputs a vector (gptqStatsSimd.ts:
// down runs of packed rows, or gathered row by row for act-order), else by the scalar loops here.
// Cells whose scale is Inf or NaN, and the bins phase's cells that straddle a threshold, are
// counted code by code (cellCodes). A weight is one unit (g_idx spans every row), so the slice
// is the whole tensor, and its bins phase can be done here too (`whole`).
import type { StorageType } from '../../format/storage';
import { F16_TO_F32 } from '../dequant/half';
import { num, partInts, str } from '../dequant/partValues';
import { CompensatedSum, shiftedMoments, type BinsResult, type StatsScanArgs, type WideScan } from './stats';
import { binsParams, mergeWide } from './summarize';
import { gptqStatsMemory, gptqStatsModule, type GptqStatsModule } from './gptqStatsSimd';

type Scheme = Extract<StorageType, { kind: 'scheme' }>;

/** Whether the fold applies to a scheme: GPTQ's layout (not AWQ's), 4 bits, float16 scales. */
export function countsGptq(s: Scheme): boolean {
  const p = s.params;
  return s.scheme === 'gptq' && p?.order === 'gptq' && p?.bits === 4 && p?.scaleDtype === 'F16';
}

/**
 * Per 16-bit half of a packed word (4 codes): the codes present as a bit mask (bits 0–15), Σq²
 * (bits 16–25, at most 900) and Σq (bits 26–31, at most 60). One load gives all three.
 */
const HALF = (() => {
  const t = new Int32Array(65536);
  for (let h = 0; h < 65536; h++) {
    let mask = 0, s1 = 0, s2 = 0;
    for (let j = 0; j < 16; j += 4) {
      const q = (h >>> j) & 15;
      mask |= 1 << q;
      s1 += q;
      s2 += q * q;
    }
    t[h] = mask | (s2 << 16) | (s1 << 26);
  }
  return t;
})();

interface Layout {
  /** qweight [cols / 8, rows]: input row 8k + j of output o in bits 4j of word k·rows + o. */
  readonly words: Int32Array;
  readonly rows: number;
  readonly cols: number;
  readonly groups: number;
  /** Float16 scale bits [groups, rows]. */
  readonly scales: Uint16Array;
  /** The zero point of each cell [groups, rows], its stored offset applied. */
  readonly zero: Int32Array;
  /** Input rows ordered by group, and where each group starts there (groups + 1 entries). */
  readonly order: Int32Array;
  readonly start: Int32Array;
  /** The group of each input row. */
  readonly rowGroup: Int32Array;
  /** Per packed row: the group of its 8 input rows when they share one, else −1. */
  readonly wordGroup: Int32Array;
}

/** `bytes` as little-endian words of `Ctor`, copied when misaligned. */
function words<T>(Ctor: { new (b: ArrayBufferLike, o: number, n: number): T; readonly BYTES_PER_ELEMENT: number }, bytes: Uint8Array): T {
  const size = Ctor.BYTES_PER_ELEMENT;
  const b = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  return new Ctor(b.buffer, b.byteOffset, Math.floor(b.length / size));
}

/** The slice's layout when the fold applies: the whole weight, every part the size its shape says, every group index in range. */
function layoutOf(args: StatsScanArgs): Layout | undefined {
  const s = args.storage;
  if (s?.kind !== 'scheme' || !countsGptq(s as Scheme) || !args.more || args.more.length < 2) return undefined;
  const p = (s as Scheme).params;
  const rows = num(p, 'rows');
  const cols = num(p, 'cols');
  const groupSize = num(p, 'groupSize');
  const zeroOffset = num(p, 'zeroOffset');
  const w = words(Int32Array, args.bytes);
  const scales = words(Uint16Array, args.more[1]);
  const groups = scales.length / rows;
  const zWords = Math.ceil(rows / 8);
  const qzeros = words(Int32Array, args.more[0]);
  if (cols % 8 !== 0 || args.count !== rows * cols || w.length !== (cols / 8) * rows || !Number.isInteger(groups) || qzeros.length !== groups * zWords) return undefined;
  const gIdx = args.more.length > 2 ? partInts(args.more[2], str(p, 'gIdxDtype')) : undefined;
  if (gIdx && gIdx.length !== cols) return undefined;
  const rowGroup = gIdx ? Int32Array.from(gIdx) : Int32Array.from({ length: cols }, (_, i) => Math.floor(i / groupSize));
  const start = new Int32Array(groups + 1);
  for (let i = 0; i < cols; i++) {
    const g = rowGroup[i];
    // The decoder would read outside the scales: that weight takes the decoding path, as it is.
    if (!(g >= 0 && g < groups)) return undefined;
    start[g + 1]++;
  }
  for (let g = 0; g < groups; g++) start[g + 1] += start[g];
  const order = new Int32Array(cols);
  const at = start.slice(0, groups);
  for (let i = 0; i < cols; i++) order[at[rowGroup[i]]++] = i;
  const wordGroup = new Int32Array(cols / 8);
  for (let k = 0; k < cols / 8; k++) {
    let g = rowGroup[8 * k];
    for (let j = 1; j < 8; j++) if (rowGroup[8 * k + j] !== g) g = -1;
    wordGroup[k] = g;
  }
  const zero = new Int32Array(groups * rows);
  for (let g = 0; g < groups; g++) {
    for (let o = 0; o < rows; o++) zero[g * rows + o] = (((qzeros[g * zWords + (o >> 3)] >>> ((o & 7) * 4)) & 15) + zeroOffset) & 15;
  }
  return { words: w, rows, cols, groups, scales, zero, order, start, rowGroup, wordGroup };
}

/** Per cell [groups, rows]: Σq, Σq², how many q equal the cell's zero, and the codes present (bit q). */
interface Cells {
  readonly s1: Int32Array;
  readonly s2: Int32Array;
  readonly eq: Int32Array;
  /**
   * The codes present (bit q) while the scalar counts run; then, for the fold, the smallest and
   * largest code and the smallest |q − z| that is not 0 (255: none), as qmin | qmax << 8 | dmin << 16.
   */
  readonly mask: Int32Array;
  /** The cell's smallest and largest values (its extreme codes' values), set by the scan for the bins. */
  readonly lo: Float32Array;
  readonly hi: Float32Array;
}

// One set per worker, grown to the largest weight: a scan allocates nothing per weight.
let cells: Cells = { s1: new Int32Array(0), s2: new Int32Array(0), eq: new Int32Array(0), mask: new Int32Array(0), lo: new Float32Array(0), hi: new Float32Array(0) };

function countCells(l: Layout): Cells {
  const n = l.groups * l.rows;
  if (cells.s1.length < n) cells = { s1: new Int32Array(n), s2: new Int32Array(n), eq: new Int32Array(n), mask: new Int32Array(n), lo: new Float32Array(n), hi: new Float32Array(n) };
  const K = l.cols / 8;
  // Vectors of 4 outputs: the module takes weights whose outputs come in fours.
  const simd = l.rows % 4 === 0 ? gptqStatsModule() : null;
  // Each group one run of whole packed rows (no act-order): read run by run, down the packed rows.
  // Otherwise (act-order) each cell gathers its group's rows from wherever they are.
  const runs = l.wordGroup.every((g, k) => g >= 0 && ((k > 0 && g === l.wordGroup[k - 1]) || l.start[g] === 8 * k));
  if (!runs) {
    if (simd) simdGather(simd, l, cells);
    else {
      for (let g = 0; g < l.groups; g++) if (l.start[g + 1] > l.start[g]) gatherGroup(l, g, cells);
      masksToBounds(l, cells);
    }
    return cells;
  }
  for (let k0 = 0; k0 < K; ) {
    const g = l.wordGroup[k0];
    // A run of packed rows whose input rows all belong to group g (16 of them for groups of 128).
    let k1 = k0 + 1;
    while (k1 < K && l.wordGroup[k1] === g) k1++;
    if (simd) simdRun(simd, l, k0, k1, g, cells);
    else countRun(l.words, l.rows, k0, k1, g * l.rows, l.zero, cells);
    k0 = k1;
  }
  if (!simd) masksToBounds(l, cells);
  return cells;
}

/** The scalar counts' code masks as the bounds that the SIMD module writes (see `Cells.mask`). */
function masksToBounds(l: Layout, c: Cells): void {
  for (let g = 0; g < l.groups; g++) {
    if (l.start[g + 1] === l.start[g]) continue;
    for (let cell = g * l.rows; cell < (g + 1) * l.rows; cell++) {
      const m = c.mask[cell];
      const z = l.zero[cell];
      const below = m & ((1 << z) - 1);
      const above = m >>> (z + 1);
      const dq = Math.min(below ? z - (31 - Math.clz32(below)) : 255, above ? lowBit(above) + 1 : 255);
      c.mask[cell] = lowBit(m) | ((31 - Math.clz32(m)) << 8) | (dq << 16);
    }
  }
}

/** Every group through the SIMD module's gather (act-order), 4 outputs a vector: the whole weight and its rows by group in its memory. */
function simdGather(m: GptqStatsModule, l: Layout, c: Cells): void {
  const { rows, cols } = l;
  const zAt = 0;
  const outAt = rows * 4;
  const listAt = outAt + rows * 16;
  const inAt = listAt + cols * 4;
  gptqStatsMemory(m, inAt + l.words.length * 4);
  const mem = m.memory.buffer;
  new Int32Array(mem, inAt, l.words.length).set(l.words);
  new Int32Array(mem, listAt, cols).set(l.order);
  const z = new Int32Array(mem, zAt, rows);
  const out = new Int32Array(mem, outAt, rows * 4);
  for (let g = 0; g < l.groups; g++) {
    const n = l.start[g + 1] - l.start[g];
    if (n === 0) continue;
    z.set(l.zero.subarray(g * rows, (g + 1) * rows));
    m.gather(inAt, rows, listAt + l.start[g] * 4, n, zAt, outAt, rows / 4);
    readCells(out, rows, g, c);
  }
}

/** The module's output for group g's cells (see gptqStatsSimd.ts). */
function readCells(out: Int32Array, rows: number, g: number, c: Cells): void {
  for (let o4 = 0, cell = g * rows; o4 < rows / 4; o4++) {
    for (let j = 0; j < 4; j++, cell++) {
      c.s1[cell] = out[o4 * 16 + j];
      c.s2[cell] = out[o4 * 16 + 4 + j];
      c.eq[cell] = out[o4 * 16 + 8 + j];
      c.mask[cell] = out[o4 * 16 + 12 + j];
    }
  }
}

/** Packed rows [k0, k1) of group g (all of its rows) through the SIMD module, 4 outputs a vector. */
function simdRun(m: GptqStatsModule, l: Layout, k0: number, k1: number, g: number, c: Cells): void {
  const { rows } = l;
  const zAt = 0;
  const outAt = rows * 4;
  const inAt = outAt + rows * 16;
  gptqStatsMemory(m, inAt + (k1 - k0) * rows * 4);
  const mem = m.memory.buffer;
  new Int32Array(mem, inAt, (k1 - k0) * rows).set(l.words.subarray(k0 * rows, k1 * rows));
  const z = new Int32Array(mem, zAt, rows);
  for (let o = 0; o < rows; o++) z[o] = Math.imul(l.zero[g * rows + o], 0x01010101);
  m.cells(inAt, rows, k1 - k0, zAt, outAt, rows / 4);
  readCells(new Int32Array(mem, outAt, rows * 4), rows, g, c);
}

/**
 * Packed rows [k0, k1) of one group (all of its rows), output by output: the cell's sums stay
 * in registers while its words are read down the column, and are written once.
 */
function countRun(w: Int32Array, rows: number, k0: number, k1: number, cell0: number, zero: Int32Array, c: Cells): void {
  const { s1, s2, eq, mask } = c;
  for (let o = 0; o < rows; o++) {
    // z in every nibble: a code equal to z leaves a zero nibble in w ^ zz.
    const zz = Math.imul(zero[cell0 + o], 0x11111111);
    let a1 = 0, a2 = 0, e = 0, m = 0;
    for (let at = k0 * rows + o, end = k1 * rows + o; at < end; at += rows) {
      const x = w[at];
      const h0 = HALF[x & 0xffff];
      const h1 = HALF[x >>> 16];
      m |= h0 | h1;
      a2 += ((h0 >>> 16) & 1023) + ((h1 >>> 16) & 1023);
      a1 += (h0 >>> 26) + (h1 >>> 26);
      let d = x ^ zz;
      d |= d >>> 1;
      d |= d >>> 2;
      // Bit 4j of ~d is set where nibble j is zero; the multiply adds those bits up in the top nibble.
      e += Math.imul(~d & 0x11111111, 0x11111111) >>> 28;
    }
    s1[cell0 + o] = a1;
    s2[cell0 + o] = a2;
    eq[cell0 + o] = e;
    mask[cell0 + o] = m & 0xffff;
  }
}

/**
 * The cells of group g whose rows are anywhere (act-order), output by output: each row's code
 * is shifted out of its packed word. The group's rows (a few hundred words of each output) stay
 * in cache from one output to the next.
 */
function gatherGroup(l: Layout, g: number, c: Cells): void {
  const { words, rows, order } = l;
  const p0 = l.start[g];
  const p1 = l.start[g + 1];
  for (let o = 0, cell = g * rows; o < rows; o++, cell++) {
    const z = l.zero[cell];
    let a1 = 0, a2 = 0, e = 0, m = 0;
    for (let p = p0; p < p1; p++) {
      const i = order[p];
      const q = (words[(i >> 3) * rows + o] >>> ((i & 7) << 2)) & 15;
      a1 += q;
      a2 += q * q;
      m |= 1 << q;
      e += q === z ? 1 : 0;
    }
    c.s1[cell] = a1;
    c.s2[cell] = a2;
    c.eq[cell] = e;
    c.mask[cell] = m;
  }
}

/** How many times each code occurs in cell (g, o), read code by code (a packed word at once where its 8 rows are the group's, in order). */
function cellCodes(l: Layout, g: number, o: number): Float64Array {
  const h = new Float64Array(16);
  const { order, words, rows } = l;
  for (let p = l.start[g], end = l.start[g + 1]; p < end; ) {
    const i = order[p];
    const x = words[(i >> 3) * rows + o];
    if ((i & 7) === 0 && p + 8 <= end && order[p + 7] === i + 7) {
      for (let sh = 0; sh < 32; sh += 4) h[(x >>> sh) & 15]++;
      p += 8;
    } else {
      h[(x >>> ((i & 7) * 4)) & 15]++;
      p++;
    }
  }
  return h;
}

/** The lowest set bit's index (m ≠ 0). */
function lowBit(m: number): number {
  return 31 - Math.clz32(m & -m);
}

/** The scan of a GPTQ weight (its bins too when `whole` asks for them without histograms); undefined where the fold does not apply. */
export function gptqScan(args: StatsScanArgs): WideScan | undefined {
  if (args.topK > 0) return undefined;
  const l = layoutOf(args);
  if (!l) return undefined;
  const c = countCells(l);
  const scan = foldCells(l, c);
  if (!args.whole || args.whole.histograms) return scan;
  const p = binsParams(mergeWide([scan], 0), args.whole.bins);
  return p ? { ...scan, binned: binCells(l, c, p) } : scan;
}

/** The statistics of every cell, from its counts (cellCodes for a scale that is Inf or NaN). */
function foldCells(l: Layout, c: Cells): WideScan {
  let finite = 0, nan = 0, posInf = 0, negInf = 0, zeros = 0, min = Infinity, max = -Infinity, minAbsNonzero = Infinity;
  let k = NaN;
  const sum = new CompensatedSum();
  const sq = new CompensatedSum();
  let s1 = 0;
  let s2 = 0;
  const value = (v: number, n: number): void => {
    if (v !== v) nan += n;
    else if (v === Infinity) posInf += n;
    else if (v === -Infinity) negInf += n;
    else {
      if (k !== k) k = v;
      finite += n;
      if (v < min) min = v;
      if (v > max) max = v;
      if (v === 0) zeros += n;
      else if (Math.abs(v) < minAbsNonzero) minAbsNonzero = Math.abs(v);
      sum.add(n * (v - k));
      sq.add(n * (v - k) * (v - k));
    }
  };
  for (let g = 0; g < l.groups; g++) {
    const n = l.start[g + 1] - l.start[g];
    if (n === 0) continue;
    for (let o = 0, cell = g * l.rows; o < l.rows; o++, cell++) {
      const s = F16_TO_F32[l.scales[cell]];
      const z = l.zero[cell];
      if (s - s !== 0) {
        // NaN: every value is NaN. ±Inf: the sign of q − z decides, and q = z gives NaN.
        if (s !== s) nan += n;
        else cellCodes(l, g, o).forEach((cq, q) => cq > 0 && value(Math.fround((q - z) * s), cq));
        continue;
      }
      const bounds = c.mask[cell];
      const a = ((bounds & 255) - z) * s;
      const b = (((bounds >>> 8) & 255) - z) * s;
      const lo = a < b ? a : b;
      const hi = a < b ? b : a;
      c.lo[cell] = lo;
      c.hi[cell] = hi;
      if (k !== k) k = lo;
      finite += n;
      zeros += s === 0 ? n : c.eq[cell];
      if (lo < min) min = lo;
      if (hi > max) max = hi;
      // The codes nearest z on either side give the smallest non-zero |x|.
      const dq = bounds >>> 16;
      if (s !== 0 && dq !== 255 && dq * Math.abs(s) < minAbsNonzero) minAbsNonzero = dq * Math.abs(s);
      // Σ (x − K) = s·Σ(q − z) − nK and Σ (x − K)² = s²·Σ(q − z)² − 2Ks·Σ(q − z) + nK², from exact integer sums.
      const d1 = c.s1[cell] - n * z;
      const d2 = c.s2[cell] - 2 * z * c.s1[cell] + n * z * z;
      s1 += s * d1 - n * k;
      s2 += s * s * d2 - 2 * k * s * d1 + n * k * k;
      // Plain sums over runs of 1,024 cells, compensated between runs, as scanWide sums its values.
      if ((o & 1023) === 1023) {
        sum.add(s1);
        sq.add(s2);
        s1 = 0;
        s2 = 0;
      }
    }
  }
  sum.add(s1);
  sq.add(s2);
  return { kind: 'wide', finite, nan, posInf, negInf, zeros, min, max, minAbsNonzero, ...shiftedMoments(finite, k, sum, sq), top: [] };
}

/**
 * Near-zero and outlier counts of every cell with a finite scale, decided as binWide decides them.
 * A cell's non-zero values are at least |s| from 0, and all lie in [lo, hi] (its smallest and
 * largest codes' values): a cell with |s| ≥ the near-zero bound and [lo, hi] inside the outlier
 * bounds has its zeros near zero and no outliers; any other is counted code by code.
 */
function binCells(l: Layout, c: Cells, p: NonNullable<ReturnType<typeof binsParams>>): BinsResult {
  const above = p.mean + p.outlierBeyond;
  const below = p.mean - p.outlierBeyond;
  const nearBelow = p.nearZeroBelow;
  let nearZero = 0;
  let outliers = 0;
  for (let g = 0; g < l.groups; g++) {
    const n = l.start[g + 1] - l.start[g];
    if (n === 0) continue;
    for (let o = 0, cell = g * l.rows; o < l.rows; o++, cell++) {
      const s = F16_TO_F32[l.scales[cell]];
      if (s - s !== 0) continue;
      if (s === 0) {
        // Every value is ±0.
        nearZero += n;
        if (0 > above || 0 < below) outliers += n;
        continue;
      }
      if (Math.abs(s) >= nearBelow && !(c.hi[cell] > above) && !(c.lo[cell] < below)) {
        nearZero += c.eq[cell];
        continue;
      }
      const z = l.zero[cell];
      const h = cellCodes(l, g, o);
      for (let q = 0; q < 16; q++) {
        if (h[q] === 0) continue;
        const v = Math.fround((q - z) * s);
        const a = Math.abs(v);
        if (a === 0 || a < nearBelow) nearZero += h[q];
        if (v > above || v < below) outliers += h[q];
      }
    }
  }
  const bins = p.edges.length - 1;
  return { kind: 'bins', hist: new Uint32Array(bins), logHist: new Uint32Array(p.logEdges.length - 1), nearZero, outliers };
}
