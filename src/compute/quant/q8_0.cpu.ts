import { checkArgs, decodeInto, emptySums, f16Table32, f32ToF16Bits, inputViews, scratch, type QuantizeArgs, type QuantizeResult } from './common';

/** ggml Q8_0: 32 values per block, an f16 scale then 32 int8 values. */
export const Q8_0_BLOCK = 32;
export const Q8_0_BYTES = 34;

// Values decoded per step: a multiple of the block size that keeps the scratch in L1.
const TILE = 2048;
const fround = Math.fround;

/**
 * Quantizes like ggml's reference `quantize_row_q8_0`: every step rounds to f32 as C
 * does (`d = amax/127`, `id = 1/d`, `x·id`), `roundf` rounds halves away from zero,
 * and the f16 scale is rounded to nearest even. Where C's float→int8 conversion of a
 * non-finite value is undefined (only when `d` underflows so that `1/d` is infinite,
 * blocks whose f16 scale is 0 anyway), the value becomes 0, as x86's scalar
 * conversion gives and as JS's ToInt32 does.
 */
export function q8_0Cpu(a: QuantizeArgs): QuantizeResult {
  checkArgs('q8_0', a, Q8_0_BLOCK);
  const n = a.rows * a.cols;
  const nb = n / Q8_0_BLOCK;
  const out = new Uint8Array(nb * Q8_0_BYTES);
  const v = inputViews(a.src, a.dtype);
  const { f: x, u: xb } = scratch(TILE);
  const f16 = f16Table32();
  const wantStats = a.stats !== false;
  const s = emptySums();
  let sumX2 = 0, sumY2 = 0, sumXY = 0, sumE2 = 0, maxErr = 0;
  let o = 0;
  for (let t = 0; t < n; t += TILE) {
    const cnt = Math.min(TILE, n - t);
    decodeInto(v, t, cnt, x, xb);
    for (let b = 0; b < cnt; b += Q8_0_BLOCK) {
      let amax = 0;
      for (let j = b; j < b + Q8_0_BLOCK; j++) {
        const ax = Math.abs(x[j]);
        if (ax > amax) amax = ax;
      }
      const d = fround(amax / 127);
      const id = d !== 0 ? fround(1 / d) : 0;
      const h = f32ToF16Bits(d);
      out[o] = h & 0xff;
      out[o + 1] = h >>> 8;
      const dq = f16[h];
      o += 2;
      if (wantStats) {
        for (let j = b; j < b + Q8_0_BLOCK; j++) {
          const xv = x[j];
          const p = fround(xv * id);
          // p + ±0.5 is exact in f64 (|p| < 2^8), so trunc gives roundf's half-away rounding.
          const q = Math.trunc(p < 0 ? p - 0.5 : p + 0.5) | 0;
          out[o++] = q;
          const y = q * dq;
          const e = xv - y;
          sumX2 += xv * xv;
          sumY2 += y * y;
          sumXY += xv * y;
          sumE2 += e * e;
          const ae = Math.abs(e);
          if (ae > maxErr) maxErr = ae;
        }
      } else {
        for (let j = b; j < b + Q8_0_BLOCK; j++) {
          const p = fround(x[j] * id);
          out[o++] = Math.trunc(p < 0 ? p - 0.5 : p + 0.5) | 0;
        }
      }
    }
  }
  if (wantStats) Object.assign(s, { n, sumX2, sumY2, sumXY, sumE2, maxAbsErr: maxErr });
  return { data: out, stats: s };
}
