import type { DType } from '../../format/dtypes';
import { bf16ToF32, lutOf } from '../../format/decode';

/**
 * Bit-pattern tables for the float dtypes of 16 bits or fewer: every pattern's
 * value, computed once from the format's definition. Decoding is then one table
 * lookup, and statistics can count patterns instead of decoding values.
 */

/** Dtypes whose every pattern fits a 65,536-entry table. */
export type PatternDType = 'BF16' | 'F16' | 'F8_E5M2' | 'F8_E4M3' | 'F8_E8M0' | 'F8_E4M3FNUZ' | 'F8_E5M2FNUZ' | 'F6_E2M3' | 'F6_E3M2' | 'F4' | 'U8' | 'I8' | 'BOOL' | 'U16' | 'I16';

const PATTERN_BITS: Record<PatternDType, number> = {
  BF16: 16, F16: 16, U16: 16, I16: 16,
  F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8, F8_E4M3FNUZ: 8, F8_E5M2FNUZ: 8, U8: 8, I8: 8, BOOL: 8,
  F6_E2M3: 6, F6_E3M2: 6, F4: 4,
};

export function isPatternDType(d: DType): d is PatternDType {
  return d in PATTERN_BITS;
}

/** Bits per pattern (element) of a pattern dtype. */
export function patternBits(d: PatternDType): number {
  return PATTERN_BITS[d];
}

/** The value of pattern `p` of `dtype`, exactly (every such value is an f32). */
export function patternValue(dtype: PatternDType, p: number): number {
  switch (dtype) {
    case 'BF16':
      return bf16ToF32(p);
    case 'U8':
    case 'BOOL':
    case 'U16':
      return p;
    case 'I8':
      return p >= 0x80 ? p - 0x100 : p;
    case 'I16':
      return p >= 0x8000 ? p - 0x10000 : p;
    default:
      // The small floats and F16: the format core's value tables, built from each format's definition.
      return lutOf(dtype)![p];
  }
}

const tables = new Map<PatternDType, Float64Array>();

/** Every pattern's value, indexed by pattern (2^bits entries). */
export function patternTable(dtype: PatternDType): Float64Array {
  let t = tables.get(dtype);
  if (!t) {
    t = new Float64Array(1 << PATTERN_BITS[dtype]);
    for (let p = 0; p < t.length; p++) t[p] = patternValue(dtype, p);
    tables.set(dtype, t);
  }
  return t;
}

/**
 * Counts the patterns of `n` elements in `bytes` into `hist` (length 2^bits).
 * Sub-byte dtypes are packed LSB-first: element i is bits [i·b, i·b + b) of the
 * little-endian bit stream. `bytes` must start on an element boundary.
 */
export function countPatterns(dtype: PatternDType, bytes: Uint8Array, n: number, hist: Uint32Array): void {
  const bits = PATTERN_BITS[dtype];
  if (bits === 16) {
    if ((bytes.byteOffset & 1) === 0) {
      const u16 = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
      for (let i = 0; i < n; i++) hist[u16[i]]++;
    } else {
      for (let i = 0; i < n; i++) hist[bytes[2 * i] | (bytes[2 * i + 1] << 8)]++;
    }
  } else if (bits === 8) {
    for (let i = 0; i < n; i++) hist[bytes[i]]++;
  } else if (bits === 4) {
    const full = n >> 1;
    for (let i = 0; i < full; i++) {
      const b = bytes[i];
      hist[b & 15]++;
      hist[b >> 4]++;
    }
    if (n & 1) hist[bytes[full] & 15]++;
  } else {
    // 6 bits: four elements in every three bytes.
    const groups = n >> 2;
    let j = 0;
    for (let g = 0; g < groups; g++, j += 3) {
      const w = bytes[j] | (bytes[j + 1] << 8) | (bytes[j + 2] << 16);
      hist[w & 63]++;
      hist[(w >> 6) & 63]++;
      hist[(w >> 12) & 63]++;
      hist[(w >> 18) & 63]++;
    }
    for (let i = groups * 4; i < n; i++) hist[patternAt(dtype, bytes, i)]++;
  }
}

/** The pattern of element `i` (bit-stream order as in `countPatterns`). */
export function patternAt(dtype: PatternDType, bytes: Uint8Array, i: number): number {
  const bits = PATTERN_BITS[dtype];
  if (bits === 16) return bytes[2 * i] | (bytes[2 * i + 1] << 8);
  if (bits === 8) return bytes[i];
  const bit = i * bits;
  const byte = bit >> 3;
  const w = bytes[byte] | ((bytes[byte + 1] ?? 0) << 8);
  return (w >> (bit & 7)) & ((1 << bits) - 1);
}
