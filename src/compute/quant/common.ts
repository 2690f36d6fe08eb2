/**
 * Shared pieces of the quantizer twins: the argument/result types, input decoding
 * straight from the tensor's bytes, IEEE conversions done with integer bit logic
 * (so the CPU result never depends on a platform's float conversions), and the
 * error sums every kernel accumulates for the report.
 */
import { f16Table } from '../decode/f16';

/** Input dtypes the kernels decode themselves; others are decoded to F32 first by the pipeline. */
export type QuantInputDType = 'BF16' | 'F16' | 'F32';

export const QUANT_INPUT_DTYPES: readonly QuantInputDType[] = ['BF16', 'F16', 'F32'];

export function bytesPerInput(dtype: QuantInputDType): number {
  return dtype === 'F32' ? 4 : 2;
}

export interface QuantizeArgs {
  /** `rows × cols` values, row-major, little-endian. */
  readonly src: Uint8Array;
  readonly dtype: QuantInputDType;
  readonly rows: number;
  readonly cols: number;
  /** Accumulate the error sums (quantize → dequantize against the input). Default true. */
  readonly stats?: boolean;
  /** The caller gives `src.buffer` (and `out.buffer`) up: they move to the worker instead of being copied. */
  readonly give?: boolean;
  /** A buffer of exactly the output's size to write into (recycled memory); kernels may ignore it. */
  readonly out?: Uint8Array;
  /**
   * Importance weights, one per column, as `ggml_quantize_chunk` takes them. Only the
   * K-quant, Q5_0/Q5_1 and IQ4 kernels use them; Q8_0 ignores them as ggml does.
   */
  readonly imatrix?: Float32Array;
}

/** `KernelDef.transfer` for the quantizers: moves the input only when the caller gave it up. */
export function giveSrc(a: QuantizeArgs): ArrayBuffer[] {
  if (!a.give) return [];
  const bufs = [a.src.buffer, a.out?.buffer].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
  return [...new Set(bufs)];
}

/** Sums from which the report derives RMSE, SNR and cosine; they add across chunks. */
export interface ErrorSums {
  n: number;
  /** Σx² of the original values. */
  sumX2: number;
  /** Σy² of the dequantized values. */
  sumY2: number;
  /** Σx·y. */
  sumXY: number;
  /** Σ(x−y)². */
  sumE2: number;
  maxAbsErr: number;
}

export interface QuantizeResult {
  /** ggml blocks, I8 values or F8_E4M3 codes, in row-major order. */
  readonly data: Uint8Array;
  /** One f32 scale per row (per-channel schemes), or per 128×128 block (fp8-block), row-major. */
  readonly scales?: Float32Array;
  /** Byte scales (MXFP4's E8M0 exponents, one per 32 values). */
  readonly scaleBytes?: Uint8Array;
  readonly stats: ErrorSums;
  /** GPU twins: blocks (or rows) outside the shader's exact range, redone with the CPU twin. */
  readonly hostRedone?: number;
  /** The input, handed back when the caller gave it up (`give`), so that its memory can be reused. */
  readonly src?: Uint8Array;
}

/** Wraps a CPU twin so that a given-up input travels back with the result. */
export function handBack(cpu: (a: QuantizeArgs) => QuantizeResult): (a: QuantizeArgs) => QuantizeResult {
  return (a) => {
    const r = cpu(a);
    return a.give ? { ...r, src: a.src } : r;
  };
}

export function emptySums(): ErrorSums {
  return { n: 0, sumX2: 0, sumY2: 0, sumXY: 0, sumE2: 0, maxAbsErr: 0 };
}

export function addSums(into: ErrorSums, s: ErrorSums): ErrorSums {
  into.n += s.n;
  into.sumX2 += s.sumX2;
  into.sumY2 += s.sumY2;
  into.sumXY += s.sumXY;
  into.sumE2 += s.sumE2;
  if (s.maxAbsErr > into.maxAbsErr) into.maxAbsErr = s.maxAbsErr;
  return into;
}

export interface ErrorReport {
  readonly rmse: number;
  readonly maxAbsErr: number;
  /** 10·log10(Σx² / Σ(x−y)²); Infinity when the error is zero. */
  readonly snrDb: number;
  /** x·y / (|x|·|y|); 1 when both are all zero. */
  readonly cosine: number;
}

export function reportOf(s: ErrorSums): ErrorReport {
  const rmse = s.n ? Math.sqrt(s.sumE2 / s.n) : 0;
  const snrDb = s.sumE2 === 0 ? Infinity : s.sumX2 === 0 ? -Infinity : 10 * Math.log10(s.sumX2 / s.sumE2);
  const den = Math.sqrt(s.sumX2) * Math.sqrt(s.sumY2);
  const cosine = den === 0 ? (s.sumX2 === 0 && s.sumY2 === 0 ? 1 : 0) : s.sumXY / den;
  return { rmse, maxAbsErr: s.maxAbsErr, snrDb, cosine };
}

export { f32Bits, f32FromBits } from '../../format/cast';

// One scratch word for reading an f32's bits in the conversions below (kept local to their
// per-value loops); kernels are synchronous, so sharing it is safe.
const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/**
 * f32 → IEEE binary16 bits, round to nearest even, overflow to ±inf, NaN kept quiet.
 * `v` is first rounded to f32 (callers pass f32 values, so that is a no-op).
 */
export function f32ToF16Bits(v: number): number {
  F32[0] = v;
  const w = U32[0];
  const sign = (w >>> 16) & 0x8000;
  const exp = (w >>> 23) & 0xff;
  const mant = w & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112; // rebias 127 → 15
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Below 2^-25 even the largest f32 mantissa rounds to zero; f32 subnormals land here too.
    if (exp < 102) return sign;
    const full = mant | 0x800000;
    const sh = 126 - exp; // 14..24: bits dropped to reach units of 2^-24
    let q = full >>> sh;
    const rem = full & ((1 << sh) - 1);
    const half = 1 << (sh - 1);
    if (rem > half || (rem === half && q & 1)) q++;
    return sign | q; // q = 0x400 is the smallest normal, encoded the same way
  }
  let q = mant >>> 13;
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && q & 1)) q++;
  return sign | ((e << 10) + q); // a carry out of the mantissa bumps the exponent, up to inf
}

/** All 65,536 binary16 values as f32 (exact: every f16 is an f32). */
export const f16Table32 = f16Table;

/** Stores v as f16 at out[o] (little end first) and returns the value that f16 holds. */
export function putF16(out: Uint8Array, o: number, v: number): number {
  const h = f32ToF16Bits(v);
  out[o] = h & 0xff;
  out[o + 1] = h >>> 8;
  return f16Table32()[h];
}

export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1024 + m) * 2 ** (e - 25);
}

/** Largest finite F8_E4M3 (OCP "FN" variant: no infinities, S.1111.111 is NaN). */
export const E4M3_MAX = 448;

/**
 * f32 → F8_E4M3 code: round to nearest even, saturating to ±448; signed zeros kept.
 * Works on the f32's bits so that the rounding is a single one from the f32 value.
 */
export function f32ToE4M3(v: number): number {
  F32[0] = v;
  const w = U32[0];
  const sign = (w >>> 24) & 0x80;
  const a = w & 0x7fffffff;
  if (a >= 0x43e00000) return sign | 0x7e; // |v| ≥ 448 (and inf/NaN): saturate
  const exp = a >>> 23;
  const e = exp - 127;
  if (e >= -6) {
    const m = a & 0x7fffff;
    let q = m >>> 20;
    const rem = m & 0xfffff;
    if (rem > 0x80000 || (rem === 0x80000 && q & 1)) q++;
    const r = ((e + 7) << 3) + q;
    return sign | (r > 0x7e ? 0x7e : r);
  }
  if (exp === 0) return sign; // f32 subnormals are far below E4M3's 2^-9 step
  const full = (a & 0x7fffff) | 0x800000;
  const sh = 14 - e; // value / 2^-9 = full · 2^(e−14)
  if (sh > 25) return sign; // below a quarter of the smallest subnormal step
  let q = full >>> sh;
  const rem = full & ((1 << sh) - 1);
  const half = 1 << (sh - 1);
  if (rem > half || (rem === half && q & 1)) q++;
  return sign | q; // q = 8 is the smallest normal, encoded the same way
}

export function e4m3ToF32(c: number): number {
  const sign = c & 0x80 ? -1 : 1;
  const e = (c >>> 3) & 0xf;
  const m = c & 7;
  if (e === 15 && m === 7) return NaN;
  if (e === 0) return sign * m * 2 ** -9;
  return sign * (8 + m) * 2 ** (e - 10);
}

/**
 * Decodes `count` values starting at element `start` of `src` into `out[0..count)`.
 * `u16` must view `src` when dtype is 16-bit (made once per call by `inputViews`).
 */
export interface InputViews {
  readonly dtype: QuantInputDType;
  readonly u16?: Uint16Array;
  readonly f32?: Float32Array;
}

export function inputViews(src: Uint8Array, dtype: QuantInputDType): InputViews {
  const width = bytesPerInput(dtype);
  let bytes = src;
  if (bytes.byteOffset % width !== 0) bytes = bytes.slice(); // a copy is aligned
  const n = Math.floor(bytes.byteLength / width);
  if (dtype === 'F32') return { dtype, f32: new Float32Array(bytes.buffer, bytes.byteOffset, n) };
  return { dtype, u16: new Uint16Array(bytes.buffer, bytes.byteOffset, n) };
}

export function decodeInto(v: InputViews, start: number, count: number, out: Float32Array, outBits: Uint32Array): void {
  if (v.dtype === 'BF16') {
    const s = v.u16!;
    for (let i = 0; i < count; i++) outBits[i] = s[start + i] << 16;
  } else if (v.dtype === 'F16') {
    const s = v.u16!;
    const t = f16Table32();
    for (let i = 0; i < count; i++) out[i] = t[s[start + i]];
  } else {
    out.set(v.f32!.subarray(start, start + count));
  }
}

/**
 * Loads 32 values from element `base` into `bx` (with `bb` viewing the same memory as
 * bits) and returns the index of the first value of largest |x| (−1 when all are zero):
 * magnitudes compare as integers on the bits, which orders every non-NaN value.
 */
export function loadBlock32(v: InputViews, base: number, bx: Float32Array, bb: Uint32Array): number {
  if (v.dtype === 'BF16') {
    const s = v.u16!;
    for (let j = 0; j < 32; j++) bb[j] = s[base + j] << 16;
  } else if (v.dtype === 'F16') {
    const s = v.u16!;
    const t = f16Table32();
    for (let j = 0; j < 32; j++) bx[j] = t[s[base + j]];
  } else {
    const s = v.f32!;
    for (let j = 0; j < 32; j++) bx[j] = s[base + j];
  }
  let best = -1;
  let amax = 0;
  for (let j = 0; j < 32; j++) {
    const a = bb[j] & 0x7fffffff;
    if (a > amax) {
      amax = a;
      best = j;
    }
  }
  return best;
}

/**
 * Error sums kept as Σx², Σx·e and Σe² (e = x − y) in the hot loops, three
 * accumulators instead of four; Σy² and Σx·y follow exactly in real arithmetic.
 */
export function sumsFrom(n: number, sumX2: number, sumXE: number, sumE2: number, maxAbsErr: number): ErrorSums {
  return { n, sumX2, sumY2: Math.max(0, sumX2 - 2 * sumXE + sumE2), sumXY: sumX2 - sumXE, sumE2, maxAbsErr };
}

/** A Float32Array with a Uint32Array over the same memory, for bit-level decoding. */
export function scratch(n: number): { f: Float32Array; u: Uint32Array } {
  const f = new Float32Array(n);
  return { f, u: new Uint32Array(f.buffer) };
}

export function checkArgs(name: string, a: QuantizeArgs, blockSize: number): void {
  const width = bytesPerInput(a.dtype);
  if (!Number.isInteger(a.rows) || !Number.isInteger(a.cols) || a.rows < 0 || a.cols < 0) {
    throw new RangeError(`${name}: rows and cols must be non-negative integers`);
  }
  if (a.cols % blockSize !== 0) throw new RangeError(`${name}: row length ${a.cols} is not a multiple of ${blockSize}`);
  if (a.src.byteLength !== a.rows * a.cols * width) {
    throw new RangeError(`${name}: expected ${a.rows * a.cols * width} bytes of ${a.dtype}, got ${a.src.byteLength}`);
  }
}
