/**
 * Correctly rounded (RNE) narrowing of a float64 value to F32, BF16 or F16
 * bits, in one rounding step. The value goes through `Math.fround` (itself
 * RNE); where that f32 sits exactly halfway between two narrower neighbours,
 * the residual `v - fround(v)` decides the direction, so there is no double
 * rounding. The GPU twin uses the same rule with its (hi, lo) pair.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** F32 bits of `v`, RNE. */
export function f32BitsOf(v: number): number {
  f32[0] = v;
  return u32[0];
}

/** True when a tie at the narrow precision must round away from zero, given the f32 `f` and the exact `v`. */
function tieUp(v: number, f: number, lsb: number): boolean {
  if (v === f) return lsb === 1;
  return Math.abs(v) > Math.abs(f);
}

/** BF16 bits of `v`, RNE from the float64 value. */
export function bf16BitsOf(v: number): number {
  f32[0] = v;
  const u = u32[0];
  const f = f32[0];
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) & 0x8000) | 0x7fc0;
  let h = u >>> 16;
  const rem = u & 0xffff;
  if (rem > 0x8000 || (rem === 0x8000 && tieUp(v, f, h & 1))) h++;
  return h & 0xffff;
}

/** F16 bits of `v`, RNE from the float64 value, subnormals included; past 65504 after rounding: ±Inf. */
export function f16BitsOf(v: number): number {
  f32[0] = v;
  const u = u32[0];
  const f = f32[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const man = u & 0x7fffff;
  if (exp === 0xff) return man !== 0 ? sign | 0x7e00 : sign | 0x7c00;
  const e = exp - 112; // rebias 127 → 15
  if (e >= 31) return sign | 0x7c00;
  let q: number;
  let rem: number;
  let half: number;
  if (e > 0) {
    q = (e << 10) | (man >>> 13);
    rem = man & 0x1fff;
    half = 0x1000;
  } else {
    // Subnormal F16: units of 2^-24; the f32 significand shifted right by 14 - e.
    const shift = 14 - e;
    if (shift > 24) return sign; // below 2^-25: rounds to zero whatever the residual
    const m = exp === 0 ? man : man | 0x800000;
    q = m >>> shift;
    rem = m & ((1 << shift) - 1);
    half = 1 << (shift - 1);
  }
  if (rem > half || (rem === half && tieUp(v, f, q & 1))) q++;
  return sign | q;
}

export function isFiniteBf16(h: number): boolean {
  return (h & 0x7f80) !== 0x7f80;
}

export function isFiniteF16(h: number): boolean {
  return (h & 0x7c00) !== 0x7c00;
}
