import { checkArgs, emptySums, putF16, inputViews, loadBlock32, scratch, sumsFrom, type QuantizeArgs, type QuantizeResult } from './common';
import { ggmlCpu } from './quantSimd';

/** ggml Q8_0: 32 values per block, an f16 scale then 32 int8 values. */
export const Q8_0_BLOCK = 32;
export const Q8_0_BYTES = 34;

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
  return ggmlCpu('q8_0', a, q8_0Scalar);
}

/** The scalar twin of the SIMD path (where WebAssembly SIMD is missing). */
export function q8_0Scalar(a: QuantizeArgs): QuantizeResult {
  checkArgs('q8_0', a, Q8_0_BLOCK);
  const n = a.rows * a.cols;
  const out = new Uint8Array((n / Q8_0_BLOCK) * Q8_0_BYTES);
  const v = inputViews(a.src, a.dtype);
  const { f: x, u: xb } = scratch(Q8_0_BLOCK);
  const wantStats = a.stats !== false;
  let sumX2 = 0, sumXE = 0, sumE2 = 0, maxErr = 0;
  let o = 0;
  for (let base = 0; base < n; base += Q8_0_BLOCK) {
    const best = loadBlock32(v, base, x, xb);
    const amax = best < 0 ? 0 : Math.abs(x[best]);
    const d = fround(amax / 127);
    const id = d !== 0 ? fround(1 / d) : 0;
    const dq = putF16(out, o, d);
    o += 2;
    if (wantStats) {
      for (let j = 0; j < Q8_0_BLOCK; j++) {
        const xv = x[j];
        const p = fround(xv * id);
        // p ± 0.5 is exact in f64 (|p| < 2^8) and |0 truncates: roundf's halves away from zero.
        const q = (p < 0 ? p - 0.5 : p + 0.5) | 0;
        out[o++] = q;
        const e = xv - q * dq;
        sumX2 += xv * xv;
        sumXE += xv * e;
        sumE2 += e * e;
        const ae = Math.abs(e);
        if (ae > maxErr) maxErr = ae;
      }
    } else {
      for (let j = 0; j < Q8_0_BLOCK; j++) {
        const p = fround(x[j] * id);
        out[o++] = (p < 0 ? p - 0.5 : p + 0.5) | 0;
      }
    }
  }
  return { data: out, stats: wantStats ? sumsFrom(n, sumX2, sumXE, sumE2, maxErr) : emptySums() };
}
