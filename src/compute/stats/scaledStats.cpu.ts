// Statistics of FP8 weights with a scale per 2-D block (or row, or tensor) and of MXFP4 without
// decoding them: a block's bytes are counted (256 possible), then each byte that occurs is decoded
// once, value = f32(fp8(byte) × scale) as scaledCpu decodes it, into a table of distinct values
// and counts (valueCounts.ts) from which the scan and the bins phase follow. Every count, extreme
// and comparison is exact; the sums are Σ c·(v − K) and Σ c·(v − K)² in float64 (compensated), as
// close as the value-by-value sums. A zero min or max may carry the other zero's sign (the
// value-by-value scan keeps the first zero it meets).
import type { StorageType } from '../../format/storage';
import { patternTable, type PatternDType } from '../decode/patterns';
import { E2M1, num, partFloats, str } from '../dequant/partValues';
import type { BinsResult, StatsBinsArgs, StatsScanArgs, WideScan } from './stats';
import { binsParams, mergeWide } from './summarize';
import { ValueTable, binsOfValues } from './valueCounts';
import { COUNTS, DATA, PAIRS, byteCountsModule, byteCountsRoom } from './byteCounts';

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

/**
 * Whether the count-based fold applies to a scheme's slices: FP8 data, no zero point, scale
 * blocks of at least MIN_BLOCK_VALUES (or one scale for the tensor); MXFP4.
 */
export function countsScaled(s: Scheme): boolean {
  if (s.scheme === 'mxfp4') return true;
  const p = s.params;
  if (!s.scheme.startsWith('fp8-') || p?.data === 'I8' || (p?.zeroDtype ?? '') !== '') return false;
  if (s.scheme === 'fp8-tensor') return true;
  const { blockRows, blockCols, cols } = p ?? {};
  return typeof blockRows === 'number' && typeof blockCols === 'number' && typeof cols === 'number' && blockRows * Math.min(blockCols, cols) >= MIN_BLOCK_VALUES;
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

/** Counts bytes [i, end) into the four tables, byte by byte (a run that is not whole aligned words). */
function countRun(data: Uint8Array, i: number, end: number): void {
  for (; i + 4 <= end; i += 4) {
    counts[data[i]]++;
    counts[256 + data[i + 1]]++;
    counts[512 + data[i + 2]]++;
    counts[768 + data[i + 3]]++;
  }
  for (; i < end; i++) counts[data[i]]++;
}

/**
 * Counts a block's rows [r0, r1), words [w0, w1) of each (`stride` words a row), into the four
 * tables: one u32 load per 4 bytes measured 30% faster than byte loads, and one call per block
 * rather than per row.
 */
function countBlock(words: Uint32Array, r0: number, r1: number, stride: number, w0: number, w1: number): void {
  for (let r = r0; r < r1; r++) {
    for (let j = r * stride + w0, end = r * stride + w1; j < end; j++) {
      const w = words[j];
      counts[w & 255]++;
      counts[256 + ((w >>> 8) & 255)]++;
      counts[512 + ((w >>> 16) & 255)]++;
      counts[768 + (w >>> 24)]++;
    }
  }
}

/** Adds each distinct value of each block, with its count, to `out`. */
function eachBlock(l: Layout, out: ValueTable): void {
  const { data, scale, table, rows, cols, bh, bw, scaleCols } = l;
  // Little-endian words: byte j of a word is its bits 8j, so the tables see the bytes as they are.
  const words = data.byteOffset % 4 === 0 && cols % 4 === 0 && (bw >= cols || bw % 4 === 0) ? new Uint32Array(data.buffer, data.byteOffset, data.length >> 2) : undefined;
  const wasm = words ? byteCountsModule() : null;
  for (let r0 = 0; r0 < rows; r0 += bh) {
    const r1 = Math.min(rows, r0 + bh);
    // A band of block rows at a time in the module's memory (copied once, counted from cache).
    let tables = counts;
    if (wasm) {
      byteCountsRoom(wasm, (r1 - r0) * cols).set(data.subarray(r0 * cols, r1 * cols));
      tables = new Uint32Array(wasm.memory.buffer, COUNTS, 1024);
    }
    for (let c0 = 0, k = (r0 / bh) * scaleCols; c0 < cols; c0 += bw, k++) {
      const c1 = Math.min(cols, c0 + bw);
      tables.fill(0);
      if (wasm) wasm.count(DATA + c0, r1 - r0, cols, (c1 - c0) >> 2);
      else if (words) countBlock(words, r0, r1, cols >> 2, c0 >> 2, c1 >> 2);
      else for (let r = r0; r < r1; r++) countRun(data, r * cols + c0, r * cols + c1);
      const sk = scale[k];
      for (let b = 0; b < 256; b++) {
        const c = tables[b] + tables[b + 256] + tables[b + 512] + tables[b + 768];
        if (c !== 0) out.add(Math.fround(table[b] * sk), c);
      }
    }
  }
}

// Groups copied into the WebAssembly module at a time: 1 MiB of blocks, so that its memory stays small.
const MX_CHUNK = 65536;

// (E8M0 scale byte, block byte) pairs: 256 × 256 counts, one increment per two values.
const mxCounts = new Uint32Array(256 * 256);
// The scale bytes a slice holds: only their rows of mxCounts are read and cleared.
const mxSeen = new Uint8Array(256);
// (scale, code) counts: a byte's count goes to both of its codes.
const mxPairs = new Float64Array(16);

/** Counts each group's 16 block bytes in its scale's row (16 bytes a group, as 4 aligned words where they are). */
function countMx(blocks: Uint8Array, scales: Uint8Array): void {
  if (blocks.byteOffset % 4 === 0) {
    const words = new Uint32Array(blocks.buffer, blocks.byteOffset, blocks.length >> 2);
    for (let g = 0, at = 0; g < scales.length; g++, at += 4) {
      const e = scales[g];
      const base = e << 8;
      mxSeen[e] = 1;
      const w0 = words[at], w1 = words[at + 1], w2 = words[at + 2], w3 = words[at + 3];
      mxCounts[base | (w0 & 255)]++;
      mxCounts[base | ((w0 >>> 8) & 255)]++;
      mxCounts[base | ((w0 >>> 16) & 255)]++;
      mxCounts[base | (w0 >>> 24)]++;
      mxCounts[base | (w1 & 255)]++;
      mxCounts[base | ((w1 >>> 8) & 255)]++;
      mxCounts[base | ((w1 >>> 16) & 255)]++;
      mxCounts[base | (w1 >>> 24)]++;
      mxCounts[base | (w2 & 255)]++;
      mxCounts[base | ((w2 >>> 8) & 255)]++;
      mxCounts[base | ((w2 >>> 16) & 255)]++;
      mxCounts[base | (w2 >>> 24)]++;
      mxCounts[base | (w3 & 255)]++;
      mxCounts[base | ((w3 >>> 8) & 255)]++;
      mxCounts[base | ((w3 >>> 16) & 255)]++;
      mxCounts[base | (w3 >>> 24)]++;
    }
    return;
  }
  for (let g = 0, at = 0; g < scales.length; g++) {
    const base = scales[g] << 8;
    mxSeen[scales[g]] = 1;
    for (const end = at + 16; at < end; at++) mxCounts[base | blocks[at]]++;
  }
}

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
  return (out) => {
    const wasm = byteCountsModule();
    let pairs = mxCounts;
    if (wasm) {
      // Blocks, then scales, in the module's memory, MX_CHUNK groups at a time; its table's rows are cleared below as they are read.
      const room = byteCountsRoom(wasm, MX_CHUNK * 17);
      for (let g0 = 0; g0 < scales.length; g0 += MX_CHUNK) {
        const g1 = Math.min(scales.length, g0 + MX_CHUNK);
        room.set(blocks.subarray(g0 * 16, g1 * 16));
        room.set(scales.subarray(g0, g1), MX_CHUNK * 16);
        wasm.pairs(DATA, DATA + MX_CHUNK * 16, g1 - g0);
      }
      for (let g = 0; g < scales.length; g++) mxSeen[scales[g]] = 1;
      pairs = new Uint32Array(wasm.memory.buffer, PAIRS, 256 * 256);
    } else countMx(blocks, scales);
    for (let e = 0; e < 256; e++) {
      if (mxSeen[e] === 0) continue;
      mxSeen[e] = 0;
      mxPairs.fill(0);
      const row = e << 8;
      for (let b = 0; b < 256; b++) {
        const c = pairs[row | b];
        if (c === 0) continue;
        pairs[row | b] = 0;
        mxPairs[b & 15] += c;
        mxPairs[b >> 4] += c;
      }
      const m = e === 0xff ? NaN : 2 ** (e - 127);
      for (let q = 0; q < 16; q++) if (mxPairs[q] !== 0) out.add(Math.fround(E2M1[q] * m), mxPairs[q]);
    }
  };
}

/** Adds each distinct value of the slice, with its count there, to a table. */
type Folds = (out: ValueTable) => void;

function foldsOf(args: StatsScanArgs | StatsBinsArgs): Folds | undefined {
  const l = layoutOf(args);
  return l ? (out) => eachBlock(l, out) : mxfp4Folds(args);
}

/** One table per worker, reused: a slice's distinct values are copied out with its scan. */
let shared: ValueTable | undefined;

/**
 * The scan phase of an FP8 or MXFP4 scheme slice, with its finite values' table (the bins phase
 * then needs no second read); undefined where the fold does not apply (top-k wanted, small blocks).
 */
export function scaledScan(args: StatsScanArgs): WideScan | undefined {
  if (args.topK > 0) return undefined;
  const folds = foldsOf(args);
  if (!folds) return undefined;
  const table = (shared ??= new ValueTable());
  table.clear();
  folds(table);
  const scan = table.scan();
  // The whole tensor: its bins from the table here, rather than the table sent to the caller.
  const p = args.whole ? binsParams(mergeWide([scan], 0), args.whole.bins) : undefined;
  return p ? { ...scan, values: undefined, binned: binsOfValues(scan.values!, p, args.whole!.histograms) } : scan;
}

/** The bins phase without histograms: near-zero and outlier counts, decided as binWide decides them. */
export function scaledNear(args: StatsBinsArgs): BinsResult | undefined {
  if (args.histograms !== false) return undefined;
  const folds = foldsOf(args);
  if (!folds) return undefined;
  const table = (shared ??= new ValueTable());
  table.clear();
  folds(table);
  return binsOfValues(table.scan().values!, args, false);
}
