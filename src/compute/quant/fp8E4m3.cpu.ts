import { checkArgs, E4M3_MAX, e4m3ToF32, f32Bits, f32ToE4M3, type QuantizeArgs, type QuantizeResult } from './common';
import { scaledRows } from './scalarDrivers';
import { rowsCpu } from './quantSimd';

const fround = Math.fround;

let decodeTable: Float32Array | undefined;
function e4m3Table(): Float32Array {
  if (!decodeTable) {
    decodeTable = new Float32Array(256);
    for (let c = 0; c < 256; c++) decodeTable[c] = e4m3ToF32(c);
  }
  return decodeTable;
}

/**
 * Per-row FP8 (compressed-tensors "float-quantized"): `scale = absMax/448` in f32,
 * code = F8_E4M3(x/scale) with the quotient rounded to f32, then to E4M3 by round to
 * nearest even with saturation at ±448. A row of zeros gets scale 0 and signed zeros.
 */
export function fp8E4m3Cpu(a: QuantizeArgs): QuantizeResult {
  return rowsCpu('fp8', 'fp8-e4m3', a, fp8E4m3Scalar);
}

/** The scalar twin of the SIMD path (rows not a multiple of 16, or no WebAssembly SIMD). */
export function fp8E4m3Scalar(a: QuantizeArgs): QuantizeResult {
  checkArgs('fp8-e4m3', a, 1);
  const dec = e4m3Table();
  return scaledRows(a, {
    scale: (amax) => fround(amax / E4M3_MAX),
    // A row of zeros keeps each value's sign.
    code: (x, scale) => (scale !== 0 ? f32ToE4M3(fround(x / scale)) : (f32Bits(x) >>> 24) & 0x80),
    value: (c, scale) => dec[c] * scale,
  });
}
