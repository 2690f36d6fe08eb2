/**
 * Rank selection over a tensor streamed in chunks, without holding it: which elements
 * of |Δ| fall in a window of ranks [lo, hi) in ascending order. Magnitudes are compared
 * as float32 (as mergekit sorts them), ties broken by position (the earlier element
 * ranks lower). Two histogram passes find each boundary's key exactly (the high 16 bits
 * of the float's bit pattern, then the low 16 within that bin: non-negative floats
 * order as their bits do); the combine pass then classifies each element in order,
 * counting the elements equal to a boundary's key to place the ties.
 */
// 16 bits a pass: two passes cover a 32-bit key, with 65,536 counters (512 KB) a histogram.
const BINS = 1 << 16;

interface Boundary {
  /** The rank; 0 or numel need no pass. */
  readonly rank: number;
  bin: number;
  /** Rank of the boundary within its bin after pass 1, within its key after pass 2. */
  within: number;
  key: number;
  low?: Float64Array;
  /** Elements equal to `key` seen so far in the combine pass. */
  seen: number;
}

export class RankWindow {
  private readonly high = new Float64Array(BINS);
  private readonly bounds: Boundary[];

  /** Keeps ranks [lo, hi) of `numel` elements. */
  constructor(
    readonly numel: number,
    lo: number,
    hi: number,
  ) {
    this.bounds = [lo, hi].map((rank) => ({ rank, bin: -1, within: 0, key: 0, seen: 0 }));
  }

  /** Pass 1: the high 16 bits of each key. */
  countHigh(keys: Uint32Array): void {
    const h = this.high;
    for (let i = 0; i < keys.length; i++) h[keys[i] >>> 16]++;
  }

  /** After pass 1: the bin each boundary lies in. */
  endHigh(): void {
    for (const b of this.bounds) {
      if (b.rank <= 0 || b.rank >= this.numel) continue;
      let acc = 0;
      let bin = 0;
      while (acc + this.high[bin] <= b.rank) acc += this.high[bin++];
      b.bin = bin;
      b.within = b.rank - acc;
      b.low = new Float64Array(BINS);
    }
  }

  /** Pass 2: the low 16 bits of the keys in each boundary's bin. */
  countLow(keys: Uint32Array): void {
    for (const b of this.bounds) {
      if (!b.low) continue;
      const low = b.low;
      const bin = b.bin;
      for (let i = 0; i < keys.length; i++) if (keys[i] >>> 16 === bin) low[keys[i] & 0xffff]++;
    }
  }

  /** After pass 2: each boundary's exact key and how many elements equal to it rank below it. */
  endLow(): void {
    for (const b of this.bounds) {
      if (!b.low) continue;
      let acc = 0;
      let l = 0;
      while (acc + b.low[l] <= b.within) acc += b.low[l++];
      b.key = ((b.bin << 16) | l) >>> 0;
      b.within -= acc;
      b.low = undefined;
    }
  }

  /** Pass 1 from a worker: a chunk's histogram of the high 16 bits. */
  addHigh(h: Uint32Array): void {
    for (let i = 0; i < BINS; i++) this.high[i] += h[i];
  }

  /** After endHigh: the bin of the window's lower boundary that pass 2 counts, or -1 when it needs none. */
  lowBin(): number {
    return this.bounds[0].low ? this.bounds[0].bin : -1;
  }

  /** Pass 2 from a worker: a chunk's histogram of the low 16 bits within the lower boundary's bin. */
  addLow(h: Uint32Array): void {
    const low = this.bounds[0].low;
    if (low) for (let i = 0; i < BINS; i++) low[i] += h[i];
  }

  /**
   * After endLow, for windows that keep the top ranks (hi = numel): keep every element, none,
   * or those whose key is at least the boundary's (elements equal to it are settled by `ties`).
   */
  lower(): { readonly mode: 'all' | 'none' } | { readonly mode: 'key'; readonly key: number } {
    const [lo, hi] = this.bounds;
    if (hi.rank < this.numel) throw new Error('lower(): the window has an upper boundary');
    if (lo.rank <= 0) return { mode: 'all' };
    if (lo.rank >= this.numel) return { mode: 'none' };
    return { mode: 'key', key: lo.key };
  }

  /** The next `count` elements equal to the lower boundary's key, in order: how many of them rank below it. */
  ties(count: number): number {
    const lo = this.bounds[0];
    const below = Math.min(count, Math.max(0, lo.within - lo.seen));
    lo.seen += count;
    return below;
  }

  /** Whether each key (the next elements in order) ranks in the window; writes 1 or 0 into `keep`. */
  classify(keys: Uint32Array, keep: Uint8Array): void {
    const [lo, hi] = this.bounds;
    for (let i = 0; i < keys.length; i++) {
      // Both counters must see every element, so neither test may be skipped.
      const underLo = this.below(lo, keys[i]);
      const underHi = this.below(hi, keys[i]);
      keep[i] = !underLo && underHi ? 1 : 0;
    }
  }

  private below(b: Boundary, key: number): boolean {
    if (b.rank <= 0) return false;
    if (b.rank >= this.numel) return true;
    if (key !== b.key) return key < b.key;
    return b.seen++ < b.within;
  }
}
