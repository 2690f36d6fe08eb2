import { checkArgs, putF16, type QuantizeArgs, type QuantizeResult } from './common';
import { nibbleBlocks } from './scalarDrivers';
import { ggmlCpu } from './quantSimd';

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
  return ggmlCpu('q4_1', a, q4_1Scalar);
}

/** The scalar twin of the SIMD path (where WebAssembly SIMD is missing). */
export function q4_1Scalar(a: QuantizeArgs): QuantizeResult {
  checkArgs('q4_1', a, Q4_1_BLOCK);
  return nibbleBlocks(a, Q4_1_BYTES - 16, (x, _best, out, o) => {
    let min = FLT_MAX;
    let max = -FLT_MAX;
    for (let j = 0; j < Q4_1_BLOCK; j++) {
      const xv = x[j];
      if (xv < min) min = xv;
      if (xv > max) max = xv;
    }
    const d = fround(fround(max - min) / 15);
    const id = d !== 0 ? fround(1 / d) : 0;
    const dq = putF16(out, o, d);
    const mq = putF16(out, o + 2, min);
    return {
      code: (xv) => {
        const q = fround(fround(fround(xv - min) * id) + 0.5) | 0;
        return q > 15 ? 15 : q;
      },
      value: (q) => q * dq + mq,
    };
  });
}
