import { decodeInto, emptySums, inputViews, loadBlock32, scratch, sumsFrom, type ErrorSums, type QuantizeArgs } from './common';

/**
 * The scalar twins' loops, shared: the quantizers differ only in how a block or a row
 * picks its scale and codes a value, which they pass in. These run where WebAssembly
 * SIMD is missing (or for odd row counts), so a call per value costs little.
 */

/** Running error sums of x against its reconstruction y. */
export class ErrorAcc {
  private sumX2 = 0;
  private sumXE = 0;
  private sumE2 = 0;
  private maxErr = 0;
  constructor(readonly enabled: boolean) {}

  add(x: number, y: number): void {
    const e = x - y;
    this.sumX2 += x * x;
    this.sumXE += x * e;
    this.sumE2 += e * e;
    const ae = Math.abs(e);
    if (ae > this.maxErr) this.maxErr = ae;
  }

  sums(n: number): ErrorSums {
    return this.enabled ? sumsFrom(n, this.sumX2, this.sumXE, this.sumE2, this.maxErr) : emptySums();
  }
}

/** How one 32-value block of a 4-bit ggml type is coded, after its header is written. */
export interface NibbleBlock {
  /** The 4-bit code of x. */
  code(x: number): number;
  /** The value a code decodes to. */
  value(q: number): number;
}

/**
 * 32-value blocks of `headerBytes` then 16 bytes of nibbles (byte j: element j low,
 * element j+16 high). `header` writes a block's header at `out[o]` from its values
 * (and the index of the first largest |x|) and returns how to code them.
 */
export function nibbleBlocks(a: QuantizeArgs, headerBytes: number, header: (x: Float32Array, best: number, out: Uint8Array, o: number) => NibbleBlock): { data: Uint8Array; stats: ErrorSums } {
  const n = a.rows * a.cols;
  const out = new Uint8Array((n / 32) * (headerBytes + 16));
  const v = inputViews(a.src, a.dtype);
  const { f: x, u: xb } = scratch(32);
  const acc = new ErrorAcc(a.stats !== false);
  let o = 0;
  for (let base = 0; base < n; base += 32) {
    const best = loadBlock32(v, base, x, xb);
    const b = header(x, best, out, o);
    o += headerBytes;
    for (let j = 0; j < 16; j++) {
      const q0 = b.code(x[j]);
      const q1 = b.code(x[j + 16]);
      out[o++] = q0 | (q1 << 4);
      if (acc.enabled) {
        acc.add(x[j], b.value(q0));
        acc.add(x[j + 16], b.value(q1));
      }
    }
  }
  return { data: out, stats: acc.sums(n) };
}

/** How the values of one row scaled by its absMax are coded. */
export interface RowCoder {
  /** The scale of a row whose largest |x| is `amax`. */
  scale(amax: number): number;
  /** The stored byte of x under `scale`. */
  code(x: number, scale: number): number;
  /** The value a stored byte decodes to under `scale`. */
  value(c: number, scale: number): number;
}

/** One f32 scale per row (absMax / the format's largest value) and one byte per value. */
export function scaledRows(a: QuantizeArgs, coder: RowCoder): { data: Uint8Array; scales: Float32Array; stats: ErrorSums } {
  const { rows, cols } = a;
  const out = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows);
  const v = inputViews(a.src, a.dtype);
  const { f: x, u: xb } = scratch(cols);
  const acc = new ErrorAcc(a.stats !== false);
  for (let r = 0; r < rows; r++) {
    decodeInto(v, r * cols, cols, x, xb);
    // The first largest |x|, compared on the bits (a NaN's bits are larger than Inf's).
    let best = -1;
    let amaxBits = 0;
    for (let j = 0; j < cols; j++) {
      const b = xb[j] & 0x7fffffff;
      if (b > amaxBits) {
        amaxBits = b;
        best = j;
      }
    }
    const scale = coder.scale(best < 0 ? 0 : Math.abs(x[best]));
    scales[r] = scale;
    const o = r * cols;
    for (let j = 0; j < cols; j++) {
      const c = coder.code(x[j], scale);
      out[o + j] = c;
      if (acc.enabled) acc.add(x[j], coder.value(c, scale));
    }
  }
  return { data: out, scales, stats: acc.sums(rows * cols) };
}
