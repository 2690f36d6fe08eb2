import { checkArgs, putF16, type QuantizeArgs, type QuantizeResult } from './common';
import { nibbleBlocks } from './scalarDrivers';
import { ggmlCpu } from './quantSimd';

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
  return ggmlCpu('q4_0', a, q4_0Scalar);
}

/** The scalar twin of the SIMD path (where WebAssembly SIMD is missing). */
export function q4_0Scalar(a: QuantizeArgs): QuantizeResult {
  checkArgs('q4_0', a, Q4_0_BLOCK);
  return nibbleBlocks(a, Q4_0_BYTES - 16, (x, best, out, o) => {
    // max/−8 is exact in f64 (fround matters for subnormals only); 0/−8 is −0, as in C.
    const d = fround((best < 0 ? 0 : x[best]) / -8);
    const id = d !== 0 ? fround(1 / d) : 0;
    const dq = putF16(out, o, d);
    return {
      code: (xv) => {
        const q = fround(fround(xv * id) + 8.5) | 0;
        return q > 15 ? 15 : q;
      },
      value: (q) => (q - 8) * dq,
    };
  });
}
