import { checkArgs, type QuantizeArgs, type QuantizeResult } from './common';
import { scaledRows } from './scalarDrivers';
import { rowsCpu } from './quantSimd';

const fround = Math.fround;
/** Symmetric int8 range: −127..127, so that the scale maps absMax exactly to ±127. */
export const INT8_QMAX = 127;

/** Round half to even of a finite f64. */
function rne(v: number): number {
  const f = Math.floor(v);
  const r = v - f; // exact: f and v share their exponent range
  return r > 0.5 || (r === 0.5 && f % 2 !== 0) ? f + 1 : f;
}

/**
 * Per-row symmetric int8 (compressed-tensors "naive-quantized"): `scale = absMax/127`
 * in f32, `q = round-half-even(x/scale)` with the quotient rounded to f32, clamped to
 * ±127; a row of zeros gets scale 0 and q = 0.
 */
export function int8ChannelCpu(a: QuantizeArgs): QuantizeResult {
  return rowsCpu('int8', 'int8-channel', a, int8ChannelScalar);
}

/** The scalar twin of the SIMD path (rows not a multiple of 16, or no WebAssembly SIMD). */
export function int8ChannelScalar(a: QuantizeArgs): QuantizeResult {
  checkArgs('int8-channel', a, 1);
  return scaledRows(a, {
    scale: (amax) => fround(amax / 127),
    code: (x, scale) => {
      if (scale === 0) return 0;
      const q = rne(fround(x / scale));
      // Stored as a two's-complement byte.
      return (q > INT8_QMAX ? INT8_QMAX : q < -INT8_QMAX ? -INT8_QMAX : q) & 0xff;
    },
    value: (c, scale) => ((c << 24) >> 24) * scale,
  });
}
