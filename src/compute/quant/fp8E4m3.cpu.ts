import { checkArgs, decodeInto, E4M3_MAX, e4m3ToF32, emptySums, f32Bits, f32ToE4M3, inputViews, scratch, sumsFrom, type QuantizeArgs, type QuantizeResult } from './common';
import { rowsSimd } from './quantSimd';

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
  checkArgs('fp8-e4m3', a, 1);
  const r = rowsSimd('fp8', a.src, a.dtype, a.rows, a.cols);
  if (r) return { ...r, stats: a.stats === false ? emptySums() : r.stats };
  return fp8E4m3Scalar(a);
}

/** The scalar twin of the SIMD path (rows not a multiple of 16, or no WebAssembly SIMD). */
export function fp8E4m3Scalar(a: QuantizeArgs): QuantizeResult {
  checkArgs('fp8-e4m3', a, 1);
  const { rows, cols } = a;
  const out = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows);
  const v = inputViews(a.src, a.dtype);
  const { f: x, u: xb } = scratch(cols);
  const dec = e4m3Table();
  const wantStats = a.stats !== false;
  let sumX2 = 0, sumXE = 0, sumE2 = 0, maxErr = 0;
  for (let r = 0; r < rows; r++) {
    decodeInto(v, r * cols, cols, x, xb);
    let best = -1;
    let amaxBits = 0;
    for (let j = 0; j < cols; j++) {
      const b = xb[j] & 0x7fffffff;
      if (b > amaxBits) {
        amaxBits = b;
        best = j;
      }
    }
    const amax = best < 0 ? 0 : Math.abs(x[best]);
    const scale = fround(amax / E4M3_MAX);
    scales[r] = scale;
    const o = r * cols;
    for (let j = 0; j < cols; j++) {
      const xv = x[j];
      const c = scale !== 0 ? f32ToE4M3(fround(xv / scale)) : (f32Bits(xv) >>> 24) & 0x80;
      out[o + j] = c;
      if (wantStats) {
        const y = dec[c] * scale;
        const e = xv - y;
        sumX2 += xv * xv;
        sumXE += xv * e;
        sumE2 += e * e;
        const ae = Math.abs(e);
        if (ae > maxErr) maxErr = ae;
      }
    }
  }
  return { data: out, scales, stats: wantStats ? sumsFrom(rows * cols, sumX2, sumXE, sumE2, maxErr) : emptySums() };
}
