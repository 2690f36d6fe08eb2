import { checkArgs, decodeInto, emptySums, f16Table32, f32ToF16Bits, inputViews, scratch, type QuantizeArgs, type QuantizeResult } from './common';

/** ggml Q4_0: 32 values per block, an f16 scale then 16 bytes of nibbles. */
export const Q4_0_BLOCK = 32;
export const Q4_0_BYTES = 18;

// Values decoded per step: a multiple of the block size that keeps the scratch in L1.
const TILE = 2048;
const fround = Math.fround;

/**
 * Quantizes like ggml's reference `quantize_row_q4_0`: `max` is the first value with
 * the largest |x|, `d = max/−8`, `id = 1/d`, `q = min(15, trunc(x·id + 8.5))`, each
 * step rounded to f32. Byte j holds element j (low nibble) and j+16 (high nibble).
 * A non-finite `x·id + 8.5` (only when `1/d` overflows, where the f16 scale is 0)
 * converts to 0, as x86's scalar conversion and JS's ToInt32 do.
 */
export function q4_0Cpu(a: QuantizeArgs): QuantizeResult {
  checkArgs('q4_0', a, Q4_0_BLOCK);
  const n = a.rows * a.cols;
  const nb = n / Q4_0_BLOCK;
  const out = new Uint8Array(nb * Q4_0_BYTES);
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
    for (let b = 0; b < cnt; b += Q4_0_BLOCK) {
      let amax = 0;
      let max = 0;
      for (let j = b; j < b + Q4_0_BLOCK; j++) {
        const xv = x[j];
        const ax = Math.abs(xv);
        if (amax < ax) {
          amax = ax;
          max = xv;
        }
      }
      // max/−8 is exact in f64 and fround only matters for subnormals; 0/−8 is −0, as in C.
      const d = fround(max / -8);
      const id = d !== 0 ? fround(1 / d) : 0;
      const h = f32ToF16Bits(d);
      out[o] = h & 0xff;
      out[o + 1] = h >>> 8;
      const dq = f16[h];
      o += 2;
      for (let j = b; j < b + 16; j++) {
        const x0 = x[j];
        const x1 = x[j + 16];
        const a0 = fround(fround(x0 * id) + 8.5) | 0;
        const a1 = fround(fround(x1 * id) + 8.5) | 0;
        const q0 = a0 > 15 ? 15 : a0;
        const q1 = a1 > 15 ? 15 : a1;
        out[o++] = q0 | (q1 << 4);
        if (wantStats) {
          const y0 = (q0 - 8) * dq;
          const y1 = (q1 - 8) * dq;
          const e0 = x0 - y0;
          const e1 = x1 - y1;
          sumX2 += x0 * x0 + x1 * x1;
          sumY2 += y0 * y0 + y1 * y1;
          sumXY += x0 * y0 + x1 * y1;
          sumE2 += e0 * e0 + e1 * e1;
          const ae0 = Math.abs(e0);
          const ae1 = Math.abs(e1);
          if (ae0 > maxErr) maxErr = ae0;
          if (ae1 > maxErr) maxErr = ae1;
        }
      }
    }
  }
  if (wantStats) Object.assign(s, { n, sumX2, sumY2, sumXY, sumE2, maxAbsErr: maxErr });
  return { data: out, stats: s };
}
