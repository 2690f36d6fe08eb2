import type { DType } from './dtypes';
import { FormatError } from './errors';

/**
 * Casts between the four IEEE-style float dtypes (F64, F32, BF16, F16) with
 * round-to-nearest-even, in a single rounding step from the exact input value:
 * - NaN stays NaN with its sign and the top bits of its payload (a payload that
 *   truncates to zero becomes 1, so it stays NaN): numpy's rule for float16;
 * - finite values past the target's largest finite value (after rounding) become ±Inf;
 * - values below half the smallest subnormal become ±0 (subnormals are produced, not flushed).
 * Counts, per call, the finite values that became ±Inf and the non-zero values that became ±0.
 * Byte order is little-endian, as safetensors stores it (and as the hosts we run on are).
 */

export type CastDType = 'F64' | 'F32' | 'BF16' | 'F16';

export const CAST_DTYPES: readonly CastDType[] = ['F64', 'F32', 'BF16', 'F16'];

export function isCastDType(d: DType | string): d is CastDType {
  return d === 'F64' || d === 'F32' || d === 'BF16' || d === 'F16';
}

export interface CastCounts {
  /** Finite inputs that became ±Inf. */
  overflow: number;
  /** Non-zero inputs (not NaN) that became ±0. */
  underflow: number;
}

const BYTES: Record<CastDType, number> = { F64: 8, F32: 4, BF16: 2, F16: 2 };

export function castElementBytes(d: CastDType): number {
  return BYTES[d];
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0];
}

export function f32FromBits(b: number): number {
  u32[0] = b;
  return f32[0];
}

/** F32 bits → BF16 bits, RNE. A carry out of the mantissa rolls into the exponent, and from the top exponent into Inf. */
export function bf16FromF32Bits(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return (x >>> 16) | ((x & 0x7f0000) === 0 ? 1 : 0);
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** F32 bits → F16 bits, RNE, including the subnormal range (one rounding: the input value is exact). */
export function f16FromF32Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return mant === 0 ? sign | 0x7c00 : sign | 0x7c00 | (mant >>> 13 || 1);
  const e = exp - 112; // rebias 127 → 15
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Below the f16 normal range. Anything under 2^-25 (half the least subnormal) rounds to zero; f32 subnormals are far below.
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let r = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (r & 1) !== 0)) r++;
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1) !== 0)) r++;
  return sign | r;
}

/** F16 bits → F32 bits (exact). */
export function f32BitsFromF16(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // Subnormal: normalise the mantissa.
  let e = 113;
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

const f64 = new Float64Array(1);
const u32of64 = new Uint32Array(f64.buffer);

/**
 * F64 → a narrow float format with `mbits` mantissa and `ebits` exponent bits,
 * RNE from the exact double (no intermediate F32 rounding, so a double just
 * above a tie still rounds up). Returns the bits.
 */
function narrowFromF64(x: number, mbits: number, ebits: number): number {
  const bias = (1 << (ebits - 1)) - 1;
  const signBit = 1 << (mbits + ebits);
  const infBits = ((1 << ebits) - 1) << mbits;
  f64[0] = x;
  const neg = (u32of64[1] >>> 31) !== 0;
  const sign = neg ? signBit : 0;
  if (Number.isNaN(x)) {
    // Top payload bits of the double's mantissa, never all zero.
    const top = u32of64[1] & 0xfffff;
    return sign | infBits | (top >>> (20 - mbits) || 1);
  }
  const a = Math.abs(x);
  if (a === Infinity) return sign | infBits;
  if (a === 0) return sign;
  const emin = 1 - bias;
  let e = Math.floor(Math.log2(a));
  // log2 can be off by one near powers of two; correct it exactly.
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  const q = 2 ** (Math.max(e, emin) - mbits); // the quantum at this binade
  const y = a / q; // exact: a power-of-two scaling within the double range
  let r = Math.floor(y);
  const d = y - r;
  if (d > 0.5 || (d === 0.5 && r % 2 === 1)) r++;
  if (r === 0) return sign;
  const v = r * q;
  let ev = Math.floor(Math.log2(v));
  if (2 ** ev > v) ev--;
  else if (2 ** (ev + 1) <= v) ev++;
  if (ev < emin) return sign | r; // subnormal: r < 2^mbits
  const be = ev + bias;
  if (be >= (1 << ebits) - 1) return sign | infBits;
  const mant = v / 2 ** (ev - mbits) - 2 ** mbits;
  return sign | (be << mbits) | mant;
}

export function f16FromF64(x: number): number {
  return narrowFromF64(x, 10, 5);
}

export function bf16FromF64(x: number): number {
  return narrowFromF64(x, 7, 8);
}

export function f64FromBf16(b: number): number {
  return f32FromBits((b << 16) >>> 0);
}

export function f64FromF16(h: number): number {
  return f32FromBits(f32BitsFromF16(h));
}

/** A view that starts on an aligned offset: typed arrays over the input need it, so unaligned input is copied once. */
function aligned(bytes: Uint8Array, align: number): Uint8Array {
  if (bytes.byteOffset % align === 0) return bytes;
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return copy;
}

function isZeroBits16(b: number): boolean {
  return (b & 0x7fff) === 0;
}

function isInfBits16(b: number, inf: number): boolean {
  return (b & 0x7fff) === inf;
}

/**
 * Casts `src` (whole elements of `from`) into a new array of `to`, adding to `counts`.
 * `out` may be given to reuse a buffer; it must hold exactly the output bytes.
 */
export function castBytes(src: Uint8Array, from: CastDType, to: CastDType, counts: CastCounts, out?: Uint8Array): Uint8Array {
  const n = src.length / BYTES[from];
  if (!Number.isInteger(n)) throw new FormatError('size_mismatch', `${src.length} bytes is not a whole number of ${from} elements`);
  const dst = out ?? new Uint8Array(n * BYTES[to]);
  if (dst.length !== n * BYTES[to]) throw new FormatError('size_mismatch', `output buffer holds ${dst.length} bytes, not ${n * BYTES[to]}`);
  if (from === to) {
    dst.set(src);
    return dst;
  }
  const s = aligned(src, BYTES[from]);
  const sb = s.buffer;
  const so = s.byteOffset;
  const db = dst.buffer;
  const dof = dst.byteOffset;
  if (dof % BYTES[to] !== 0) throw new FormatError('unsupported', 'output buffer is not aligned');

  // Every path goes through F32 bits when the input is exactly representable in F32 (all but F64).
  if (from === 'F64') return castFromF64(new Float64Array(sb, so, n), to, dst, counts);

  // Source → F32 bits.
  let bits: Uint32Array;
  if (from === 'F32') bits = new Uint32Array(sb, so, n);
  else {
    const h = new Uint16Array(sb, so, n);
    bits = new Uint32Array(n);
    if (from === 'BF16') for (let i = 0; i < n; i++) bits[i] = h[i] << 16;
    else for (let i = 0; i < n; i++) bits[i] = f32BitsFromF16(h[i]);
  }
  if (to === 'F32') {
    new Uint32Array(db, dof, n).set(bits);
    return dst;
  }
  if (to === 'F64') {
    const o = new Float64Array(db, dof, n);
    const fv = new Float32Array(bits.buffer, bits.byteOffset, n);
    for (let i = 0; i < n; i++) o[i] = fv[i];
    return dst;
  }
  roundF32BitsTo16(bits, to, new Uint16Array(db, dof, n), counts);
  return dst;
}

/** F64 → F32, F16 or BF16 (round to nearest even), counting overflows to ±Inf and flushes to zero. */
function castFromF64(a: Float64Array, to: CastDType, dst: Uint8Array, counts: CastCounts): Uint8Array {
  const n = a.length;
  if (to === 'F32') {
    const o = new Float32Array(dst.buffer, dst.byteOffset, n);
    for (let i = 0; i < n; i++) {
      const v = a[i];
      const r = Math.fround(v); // ECMAScript specifies roundTiesToEven
      o[i] = r;
      if (r === Infinity || r === -Infinity) {
        if (Number.isFinite(v)) counts.overflow++;
      } else if (r === 0 && v !== 0) counts.underflow++;
    }
    return dst;
  }
  const o = new Uint16Array(dst.buffer, dst.byteOffset, n);
  const f = to === 'F16' ? f16FromF64 : bf16FromF64;
  const inf = to === 'F16' ? 0x7c00 : 0x7f80;
  for (let i = 0; i < n; i++) {
    const v = a[i];
    const r = f(v);
    o[i] = r;
    if (isInfBits16(r, inf)) {
      if (Number.isFinite(v)) counts.overflow++;
    } else if (isZeroBits16(r) && v !== 0 && !Number.isNaN(v)) counts.underflow++;
  }
  return dst;
}

/** F32 bits → F16 or BF16 bits (round to nearest even), counting overflows to ±Inf and flushes to zero. */
function roundF32BitsTo16(bits: Uint32Array, to: CastDType, o: Uint16Array, counts: CastCounts): void {
  const n = bits.length;
  let overflow = 0;
  let underflow = 0;
  if (to === 'BF16') {
    for (let i = 0; i < n; i++) {
      const x = bits[i];
      const ax = x & 0x7fffffff;
      if (ax > 0x7f800000) {
        o[i] = (x >>> 16) | ((x & 0x7f0000) === 0 ? 1 : 0);
        continue;
      }
      const r = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
      o[i] = r;
      // Counted only on the rare paths, so the common loop stays a shift and an add.
      if ((r & 0x7f80) === 0x7f80 && ax < 0x7f800000) overflow++;
      else if ((r & 0x7fff) === 0 && ax !== 0) underflow++;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const x = bits[i];
      const r = f16FromF32Bits(x);
      o[i] = r;
      const ax = x & 0x7fffffff;
      if ((r & 0x7fff) === 0x7c00 && ax < 0x7f800000) overflow++;
      else if ((r & 0x7fff) === 0 && ax !== 0) underflow++;
    }
  }
  counts.overflow += overflow;
  counts.underflow += underflow;
}
