import { checkArgs, emptySums, f16Table32, f32ToF16Bits, inputViews, loadBlock32, scratch, sumsFrom, type QuantizeArgs, type QuantizeResult } from './common';
import { ggmlSimd } from './quantSimd';

/** ggml Q4_1: 32 values per block, f16 scale d, f16 minimum m, then 16 bytes of nibbles. */
export const Q4_1_BLOCK = 32;
export const Q4_1_BYTES = 20;

const fround = Math.fround;
// C's FLT_MAX, the reference's starting min/max.
const FLT_MAX = 3.4028234663852886e38;

/**
 * Quantizes like ggml's reference `quantize_row_q4_1`: `d = (max − min)/15`,
 * `id = 1/d`, `q = min(15, trunc((x − min)·id + 0.5))`, each step rounded to f32;
 * `m = min` is stored as f16. Non-finite intermediates (overflowing max − min, or
 * `1/d` overflowing) convert to 0, as x86's scalar conversion and JS's ToInt32 do.
 */
export function q4_1Cpu(a: QuantizeArgs): QuantizeResult {
  checkArgs('q4_1', a, Q4_1_BLOCK);
  const r = ggmlSimd('q4_1', a.src, a.dtype, a.rows * a.cols, a.out);
  if (r) return { data: r.data, stats: a.stats === false ? emptySums() : r.stats };
  return q4_1Scalar(a);
}

/** The scalar twin of the SIMD path (where WebAssembly SIMD is missing). */
export function q4_1Scalar(a: QuantizeArgs): QuantizeResult {
  checkArgs('q4_1', a, Q4_1_BLOCK);
  const n = a.rows * a.cols;
  const out = new Uint8Array((n / Q4_1_BLOCK) * Q4_1_BYTES);
  const v = inputViews(a.src, a.dtype);
  const { f: x, u: xb } = scratch(Q4_1_BLOCK);
  const f16 = f16Table32();
  const wantStats = a.stats !== false;
  let sumX2 = 0, sumXE = 0, sumE2 = 0, maxErr = 0;
  let o = 0;
  for (let base = 0; base < n; base += Q4_1_BLOCK) {
    loadBlock32(v, base, x, xb);
    let min = FLT_MAX;
    let max = -FLT_MAX;
    for (let j = 0; j < Q4_1_BLOCK; j++) {
      const xv = x[j];
      if (xv < min) min = xv;
      if (xv > max) max = xv;
    }
    const d = fround(fround(max - min) / 15);
    const id = d !== 0 ? fround(1 / d) : 0;
    const hd = f32ToF16Bits(d);
    const hm = f32ToF16Bits(min);
    out[o] = hd & 0xff;
    out[o + 1] = hd >>> 8;
    out[o + 2] = hm & 0xff;
    out[o + 3] = hm >>> 8;
    o += 4;
    const dq = f16[hd];
    const mq = f16[hm];
    for (let j = 0; j < 16; j++) {
      const x0 = x[j];
      const x1 = x[j + 16];
      const a0 = fround(fround(fround(x0 - min) * id) + 0.5) | 0;
      const a1 = fround(fround(fround(x1 - min) * id) + 0.5) | 0;
      const q0 = a0 > 15 ? 15 : a0;
      const q1 = a1 > 15 ? 15 : a1;
      out[o++] = q0 | (q1 << 4);
      if (wantStats) {
        const e0 = x0 - (q0 * dq + mq);
        const e1 = x1 - (q1 * dq + mq);
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
