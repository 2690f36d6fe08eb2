import { checkArgs, emptySums, f16Table32, f32ToF16Bits, inputViews, loadBlock32, scratch, sumsFrom, type QuantizeArgs, type QuantizeResult } from './common';
import { ggmlSimd } from './quantSimd';

/** ggml Q4_0: 32 values per block, an f16 scale then 16 bytes of nibbles. */
export const Q4_0_BLOCK = 32;
export const Q4_0_BYTES = 18;

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
  const r = ggmlSimd('q4_0', a.src, a.dtype, a.rows * a.cols, a.out);
  if (r) return { data: r.data, stats: a.stats === false ? emptySums() : r.stats };
  return q4_0Scalar(a);
}

/** The scalar twin of the SIMD path (where WebAssembly SIMD is missing). */
export function q4_0Scalar(a: QuantizeArgs): QuantizeResult {
  checkArgs('q4_0', a, Q4_0_BLOCK);
  const n = a.rows * a.cols;
  const out = new Uint8Array((n / Q4_0_BLOCK) * Q4_0_BYTES);
  const v = inputViews(a.src, a.dtype);
  const { f: x, u: xb } = scratch(Q4_0_BLOCK);
  const f16 = f16Table32();
  const wantStats = a.stats !== false;
  let sumX2 = 0, sumXE = 0, sumE2 = 0, maxErr = 0;
  let o = 0;
  for (let base = 0; base < n; base += Q4_0_BLOCK) {
    const best = loadBlock32(v, base, x, xb);
    // max/−8 is exact in f64 (fround matters for subnormals only); 0/−8 is −0, as in C.
    const d = fround((best < 0 ? 0 : x[best]) / -8);
    const id = d !== 0 ? fround(1 / d) : 0;
    const h = f32ToF16Bits(d);
    out[o] = h & 0xff;
    out[o + 1] = h >>> 8;
    o += 2;
    const dq = f16[h];
    for (let j = 0; j < 16; j++) {
      const x0 = x[j];
      const x1 = x[j + 16];
      const a0 = fround(fround(x0 * id) + 8.5) | 0;
      const a1 = fround(fround(x1 * id) + 8.5) | 0;
      const q0 = a0 > 15 ? 15 : a0;
      const q1 = a1 > 15 ? 15 : a1;
      out[o++] = q0 | (q1 << 4);
      if (wantStats) {
        const e0 = x0 - (q0 - 8) * dq;
        const e1 = x1 - (q1 - 8) * dq;
        sumX2 += x0 * x0 + x1 * x1;
        sumXE += x0 * e0 + x1 * e1;
        sumE2 += e0 * e0 + e1 * e1;
        const ae = Math.max(Math.abs(e0), Math.abs(e1));
        if (ae > maxErr) maxErr = ae;
      }
    }
  }
  return { data: out, stats: wantStats ? sumsFrom(n, sumX2, sumXE, sumE2, maxErr) : emptySums() };
}
