import { isPatternDType, patternBits, patternTable, type PatternDType } from '../decode/patterns';
import { storageDecoder } from '../decode/blocks';
import { binWide, numericView, scanWide } from './statsWide.cpu';
import { q4kNear, q4kScan } from './q4kStats.cpu';
import { scaledNear, scaledScan } from './scaledStats.cpu';
import { gptqScan } from './gptqStats.cpu';
import { binsParams, mergeWide } from './summarize';
import { compareTop, sparseTable, type PatternScan, type StatsArgs, type StatsResult, type TopEntry } from './stats';

/** The CPU twin of the statistics kernel; runs in a worker (see stats.ts for the two phases). */
export function statsCpu(args: StatsArgs): StatsResult {
  const bytes = args.bytes;
  if (isPatternDType(args.dtype)) {
    if (args.phase !== 'scan') throw new Error(`stats: ${args.dtype} needs no bins phase`);
    return scanPatterns(args.dtype, bytes, args.count, args.first, args.topK);
  }
  // Q4_K folds its blocks as it decodes them, without a float32 copy (q4kStats.cpu.ts).
  if (args.storage?.kind === 'blocks' && args.storage.type === 'Q4_K') {
    const fused = args.phase === 'scan' ? q4kScan(args) : q4kNear(args);
    if (fused) return fused;
  }
  // FP8 with large scale blocks and MXFP4 fold their byte counts (scaledStats.cpu.ts), GPTQ int4 its cells' sums (gptqStats.cpu.ts).
  if (args.storage?.kind === 'scheme') {
    const fused = args.phase === 'scan' ? (gptqScan(args) ?? scaledScan(args)) : scaledNear(args);
    if (fused) return fused;
  }
  const values = args.storage ? storageValues(args.storage, [bytes, ...(args.more ?? [])], args.count) : numericView(args.dtype, bytes, args.count);
  if (args.phase === 'bins') return binWide(values, args);
  const scan = scanWide(values, args);
  // A slice that is its whole tensor bins the values it has just decoded, rather than decoding them again in a second task.
  const p = args.whole ? binsParams(mergeWide([scan], args.topK), args.whole.bins) : undefined;
  return { ...scan, ...(p ? { binned: binWide(values, { ...args, ...p, phase: 'bins', histograms: args.whole!.histograms }) } : {}) };
}

// ---------------------------------------------------------------- input

// One decode buffer per worker, grown to the largest slice: a scan allocates nothing per slice.
let blockScratch = new Float32Array(0);

/** Whole units of a block or scheme storage decoded to float32 (the first `count` values), into the worker's scratch. */
function storageValues(storage: NonNullable<StatsArgs['storage']>, parts: readonly Uint8Array[], count: number): Float32Array {
  if (blockScratch.length < count) blockScratch = new Float32Array(count);
  const out = blockScratch.subarray(0, count);
  storageDecoder(storage).cpu(parts, out, storage);
  return out;
}

/** `bytes` as `align`-aligned memory (typed-array views need it); copies only when misaligned. */
export function aligned(bytes: Uint8Array, align: number): Uint8Array {
  return bytes.byteOffset % align === 0 ? bytes : bytes.slice();
}

type ViewOf<T> = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => T;

/** The first n elements of `bytes` as a typed array, little-endian as stored (copied only when misaligned for it). */
export function viewOf<T>(Ctor: ViewOf<T> & { readonly BYTES_PER_ELEMENT: number }, bytes: Uint8Array, n: number): T {
  const b = aligned(bytes, Ctor.BYTES_PER_ELEMENT);
  return new Ctor(b.buffer, b.byteOffset, n);
}

// ---------------------------------------------------------------- bit patterns

/** Finite patterns by decreasing |value|, per dtype: the walk that finds the k-th largest |x| in a table. */
const absOrders = new Map<PatternDType, Uint32Array>();

function absOrder(dtype: PatternDType): Uint32Array {
  let o = absOrders.get(dtype);
  if (!o) {
    const t = patternTable(dtype);
    const ps: number[] = [];
    for (let p = 0; p < t.length; p++) if (Number.isFinite(t[p])) ps.push(p);
    ps.sort((a, b) => Math.abs(t[b]) - Math.abs(t[a]) || a - b);
    o = Uint32Array.from(ps);
    absOrders.set(dtype, o);
  }
  return o;
}

/** Counts patterns; 16-bit dtypes two per u32 word, which runs about twice as fast as one u16 at a time. */
function countInto(dtype: PatternDType, bytes: Uint8Array, n: number, hist: Uint32Array): void {
  const bits = patternBits(dtype);
  if (bits === 16 && n >= 2) {
    const pairs = n >> 1;
    const words = viewOf(Uint32Array, bytes, pairs);
    for (let i = 0; i < pairs; i++) {
      const w = words[i];
      hist[w & 0xffff]++;
      hist[w >>> 16]++;
    }
    if (n & 1) hist[bytes[2 * n - 2] | (bytes[2 * n - 1] << 8)]++;
    return;
  }
  if (bits === 8) {
    for (let i = 0; i < n; i++) hist[bytes[i]]++;
    return;
  }
  const mask = (1 << bits) - 1;
  for (let i = 0; i < n; i++) hist[patternOf(bytes, i, bits, mask)]++;
}

export function patternOf(bytes: Uint8Array, i: number, bits: number, mask: number): number {
  if (bits === 16) return bytes[2 * i] | (bytes[2 * i + 1] << 8);
  if (bits === 8) return bytes[i];
  const bit = i * bits;
  const byte = bit >> 3;
  const w = bytes[byte] | ((byte + 1 < bytes.length ? bytes[byte + 1] : 0) << 8);
  return (w >> (bit & 7)) & mask;
}

/**
 * The slice's pattern table, plus its own top-k: the table says how large the
 * k-th largest |x| is (T) and how many exceed it, so one cheap rescan collects
 * every |x| > T and the first (smallest-index) |x| = T. The whole tensor's top-k
 * is a subset of the union of its slices' top-k.
 */
export function scanPatterns(dtype: PatternDType, bytes: Uint8Array, n: number, first: number, topK: number): PatternScan {
  const bits = patternBits(dtype);
  const hist = tableOf(bits);
  try {
    let top: TopEntry[];
    if (SIGN_MAGNITUDE.has(dtype) && n >= 4) {
      top = bits === 16 ? countAndTop16(dtype, bytes, n, first, topK, hist) : countAndTop8(dtype, bytes, n, first, topK, hist);
    } else {
      countInto(dtype, bytes, n, hist);
      top = topFromTable(dtype, bytes, n, first, topK, hist);
    }
    const sparse = sparseTable(hist);
    // Only the patterns that occur were counted: clearing them is far less than a fresh table.
    for (let j = 0; j < sparse.patterns.length; j++) hist[sparse.patterns[j]] = 0;
    return { kind: 'patterns', ...sparse, top };
  } catch (e) {
    hist.fill(0);
    throw e;
  }
}

/**
 * The worker's pattern table of each width, zero between slices: a fresh 2^16-entry table per
 * slice (256 KiB zeroed, page-faulted in and later collected) cost about 0.2 ms of CPU a slice.
 */
const tables = new Map<number, Uint32Array>();

function tableOf(bits: number): Uint32Array {
  let t = tables.get(bits);
  if (!t) tables.set(bits, (t = new Uint32Array(1 << bits)));
  return t;
}

/**
 * Sign-magnitude formats whose |x| order is the order of the pattern without its
 * sign bit: the top-k can be screened inside the counting loop, two (16-bit) or
 * four (8-bit) lanes per u32 word, with one add and one mask (SWAR).
 */
const SIGN_MAGNITUDE: ReadonlySet<PatternDType> = new Set(['BF16', 'F16', 'F8_E5M2', 'F8_E4M3', 'F8_E4M3FNUZ', 'F8_E5M2FNUZ']);

/**
 * Candidates for the top-k while counting: a lane enters when its magnitude bits
 * reach `floor` (the k-th best so far, plus one, so later ties lose to earlier
 * indices). Candidates are trimmed in batches, so the screen stays cheap.
 */
class LaneTop {
  // Fixed-size typed storage: candidates arrive in the hot loop, and arrays that change
  // element kind (small ints, then doubles) there would make V8 throw its optimized code away.
  private readonly idx: Float64Array;
  private readonly val: Float64Array;
  private readonly mag: Int32Array;
  private len = 0;
  /** Lowest magnitude (sign-stripped pattern) that can still enter. */
  floor = 0;
  constructor(
    private readonly k: number,
    private readonly table: Float64Array,
    private readonly magMask: number,
  ) {
    const cap = Math.max(4, 4 * k);
    this.idx = new Float64Array(cap);
    this.val = new Float64Array(cap);
    this.mag = new Int32Array(cap);
    if (k <= 0) this.floor = magMask + 1;
  }
  /** Returns true when `floor` rose (the caller refreshes its SWAR constant). */
  offer(index: number, p: number): boolean {
    const m = p & this.magMask;
    if (m < this.floor) return false;
    const v = this.table[p];
    if (v - v !== 0) return false;
    const at = this.len++;
    this.idx[at] = index;
    this.val[at] = v;
    this.mag[at] = m;
    return this.len === this.idx.length && this.trim();
  }
  trim(): boolean {
    // Typed copies, not arrays from map(): their element kind (small ints or doubles) would vary
    // with the data, and the inlined stores below deoptimize the counting loop on each change.
    const order = new Int32Array(this.len);
    for (let i = 0; i < this.len; i++) order[i] = i;
    order.sort((a, b) => this.mag[b] - this.mag[a] || this.idx[a] - this.idx[b]);
    const keep = Math.min(this.k, this.len);
    const idx = new Float64Array(keep);
    const val = new Float64Array(keep);
    const mag = new Int32Array(keep);
    for (let j = 0; j < keep; j++) {
      idx[j] = this.idx[order[j]];
      val[j] = this.val[order[j]];
      mag[j] = this.mag[order[j]];
    }
    for (let j = 0; j < keep; j++) {
      this.idx[j] = idx[j];
      this.val[j] = val[j];
      this.mag[j] = mag[j];
    }
    this.len = keep;
    if (keep < this.k) return false;
    const before = this.floor;
    // The k-th magnitude, plus one: equal magnitudes later in the slice lose on index.
    // Not Math.max: its result may be a heap double, and a double stored in a field that held small
    // integers changes LaneTop's hidden class, deoptimizing every loop that reads `floor`.
    const next = this.mag[this.k - 1] + 1;
    if (next > this.floor) this.floor = next;
    return this.floor !== before;
  }
  result(): TopEntry[] {
    if (this.k <= 0) return [];
    this.trim();
    const out: TopEntry[] = [];
    for (let j = 0; j < this.len; j++) out.push({ index: this.idx[j], value: this.val[j] });
    return out.sort(compareTop);
  }
}

// Words per screened block: 4 KiB, rescanned from L1 in the rare blocks that hold a candidate.
const SCREEN_BLOCK = 1024;

function countAndTop16(dtype: PatternDType, bytes: Uint8Array, n: number, first: number, topK: number, hist: Uint32Array): TopEntry[] {
  const top = new LaneTop(topK, patternTable(dtype), 0x7fff);
  countTop16(viewOf(Uint32Array, bytes, n >> 1), first, top, hist);
  if (n & 1) {
    const p = bytes[2 * n - 2] | (bytes[2 * n - 1] << 8);
    hist[p]++;
    top.offer(first + n - 1, p);
  }
  return top.result();
}

/** Counts `words` (element `first` at the low half of the first) into `hist`, offering the screened lanes to `top`. */
function countTop16(words: Uint32Array, first: number, top: LaneTop, hist: Uint32Array): void {
  const pairs = words.length;
  // The screen works on magnitudes halved to 14 bits, so that every sum stays a small integer
  // (V8 keeps it in a register, not a heap double): adding (0x4000 − ⌊floor/2⌋) sets a lane's
  // bit 14 when ⌊mag/2⌋ ≥ ⌊floor/2⌋, a superset of mag ≥ floor that `offer` then tests exactly.
  // Lanes never carry into each other. OR-ing over a block keeps the unrolled loop branch-free;
  // a block is looked at lane by lane only when some lane in it may enter.
  let add = (0x4000 - (top.floor >> 1)) * 0x10001;
  for (let start = 0; start < pairs; start += SCREEN_BLOCK) {
    const end = Math.min(pairs, start + SCREEN_BLOCK);
    const flags = countBlock16(words, start, end, hist, add);
    if ((flags & 0x40004000) !== 0) add = offerBlock16(words, start, end, first, top, add);
  }
}

/**
 * Counts words [start, end) and returns the OR of their screened lanes. Functions of their own
 * (this and offerBlock16), called per block, rather than loops inside countAndTop16: V8 then
 * optimizes each as a whole
 * with complete type feedback, instead of compiling the long-running caller on-stack (OSR)
 * before its later code has run, deoptimizing, and recompiling, which made each worker's
 * first slice about 5× slower.
 */
function countBlock16(words: Uint32Array, start: number, end: number, hist: Uint32Array, add: number): number {
  let flags = 0;
  let i = start;
  for (; i + 3 < end; i += 4) {
    const w0 = words[i];
    const w1 = words[i + 1];
    const w2 = words[i + 2];
    const w3 = words[i + 3];
    hist[w0 & 0xffff]++;
    hist[w0 >>> 16]++;
    hist[w1 & 0xffff]++;
    hist[w1 >>> 16]++;
    hist[w2 & 0xffff]++;
    hist[w2 >>> 16]++;
    hist[w3 & 0xffff]++;
    hist[w3 >>> 16]++;
    flags |= (((w0 >>> 1) & 0x3fff3fff) + add) | (((w1 >>> 1) & 0x3fff3fff) + add) | (((w2 >>> 1) & 0x3fff3fff) + add) | (((w3 >>> 1) & 0x3fff3fff) + add);
  }
  for (; i < end; i++) {
    const w = words[i];
    hist[w & 0xffff]++;
    hist[w >>> 16]++;
    flags |= ((w >>> 1) & 0x3fff3fff) + add;
  }
  return flags;
}

/** Offers the block's screened lanes to `top`; returns the screen constant for the floor that results. */
function offerBlock16(words: Uint32Array, start: number, end: number, first: number, top: LaneTop, add: number): number {
  for (let j = start; j < end; j++) {
    const w = words[j];
    if (((((w >>> 1) & 0x3fff3fff) + add) & 0x40004000) !== 0) {
      const up = top.offer(first + 2 * j, w & 0xffff);
      if (top.offer(first + 2 * j + 1, w >>> 16) || up) add = (0x4000 - (top.floor >> 1)) * 0x10001;
    }
  }
  return add;
}

function countAndTop8(dtype: PatternDType, bytes: Uint8Array, n: number, first: number, topK: number, hist: Uint32Array): TopEntry[] {
  const top = new LaneTop(topK, patternTable(dtype), 0x7f);
  const quads = n >> 2;
  const words = viewOf(Uint32Array, bytes, quads);
  let add = (0x80 - top.floor) * 0x01010101;
  for (let i = 0; i < quads; i++) {
    const w = words[i];
    hist[w & 0xff]++;
    hist[(w >>> 8) & 0xff]++;
    hist[(w >>> 16) & 0xff]++;
    hist[w >>> 24]++;
    if ((((w & 0x7f7f7f7f) + add) & 0x80808080) !== 0) {
      let up = top.offer(first + 4 * i, w & 0xff);
      up = top.offer(first + 4 * i + 1, (w >>> 8) & 0xff) || up;
      up = top.offer(first + 4 * i + 2, (w >>> 16) & 0xff) || up;
      if (top.offer(first + 4 * i + 3, w >>> 24) || up) add = (0x80 - top.floor) * 0x01010101;
    }
  }
  for (let i = quads * 4; i < n; i++) {
    hist[bytes[i]]++;
    top.offer(first + i, bytes[i]);
  }
  return top.result();
}

/** The k-th largest finite |x| of a pattern table, and how many finite values lie strictly above it; undefined when none is finite. */
export function thresholdOf(dtype: PatternDType, hist: Uint32Array, topK: number): { threshold: number; greater: number } | undefined {
  const table = patternTable(dtype);
  const order = absOrder(dtype);
  let acc = 0;
  let threshold = -1;
  let greater = 0;
  for (let j = 0; j < order.length; j++) {
    const p = order[j];
    if (hist[p] === 0) continue;
    const a = Math.abs(table[p]);
    if (a !== threshold) {
      if (acc >= topK) break;
      greater = acc;
      threshold = a;
    }
    acc += hist[p];
  }
  return threshold < 0 ? undefined : { threshold, greater };
}

/**
 * Per pattern: 2 when |x| > threshold, 1 when |x| = threshold, else 0 (non-finite
 * values are never hot). Walks the |x| order only as far as the threshold.
 */
export function hotTable(dtype: PatternDType, threshold: number): Uint8Array {
  const table = patternTable(dtype);
  const order = absOrder(dtype);
  const hot = new Uint8Array(table.length);
  for (let j = 0; j < order.length; j++) {
    const p = order[j];
    const a = Math.abs(table[p]);
    if (a < threshold) break;
    hot[p] = a > threshold ? 2 : 1;
  }
  return hot;
}

export function topFromTable(dtype: PatternDType, bytes: Uint8Array, n: number, first: number, topK: number, hist: Uint32Array): TopEntry[] {
  if (topK <= 0 || n === 0) return [];
  const t = thresholdOf(dtype, hist, topK);
  if (!t) return [];
  const { greater } = t;
  const table = patternTable(dtype);
  const bits = patternBits(dtype);
  const hot = hotTable(dtype, t.threshold);
  const need = topK - greater;
  const out: TopEntry[] = [];
  let foundGreater = 0;
  let foundEqual = 0;
  const take = (i: number, p: number): void => {
    const h = hot[p];
    if (h === 2) {
      out.push({ index: first + i, value: table[p] });
      foundGreater++;
    } else if (h === 1 && foundEqual < need) {
      out.push({ index: first + i, value: table[p] });
      foundEqual++;
    }
  };
  if (bits === 16 && n >= 2) {
    const pairs = n >> 1;
    const words = viewOf(Uint32Array, bytes, pairs);
    for (let i = 0; i < pairs; i++) {
      const w = words[i];
      if (hot[w & 0xffff] | hot[w >>> 16]) {
        take(2 * i, w & 0xffff);
        take(2 * i + 1, w >>> 16);
        if (foundGreater === greater && foundEqual >= need) break;
      }
    }
    if (n & 1 && !(foundGreater === greater && foundEqual >= need)) take(n - 1, bytes[2 * n - 2] | (bytes[2 * n - 1] << 8));
  } else {
    const mask = (1 << bits) - 1;
    for (let i = 0; i < n; i++) {
      const p = patternOf(bytes, i, bits, mask);
      if (hot[p]) {
        take(i, p);
        if (foundGreater === greater && foundEqual >= need) break;
      }
    }
  }
  return out.sort(compareTop).slice(0, topK);
}
