import { checkArgs, decodeInto, E4M3_MAX, e4m3ToF32, emptySums, f32Bits, f32ToE4M3, inputViews, scratch, type QuantizeArgs, type QuantizeResult } from './common';

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
  const { rows, cols } = a;
  const out = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows);
  const v = inputViews(a.src, a.dtype);
  const { f: x, u: xb } = scratch(cols);
  const dec = e4m3Table();
  const wantStats = a.stats !== false;
  const s = emptySums();
  let sumX2 = 0, sumY2 = 0, sumXY = 0, sumE2 = 0, maxErr = 0;
  for (let r = 0; r < rows; r++) {
    decodeInto(v, r * cols, cols, x, xb);
    let amax = 0;
    for (let j = 0; j < cols; j++) {
      const ax = Math.abs(x[j]);
      if (ax > amax) amax = ax;
    }
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
        sumY2 += y * y;
        sumXY += xv * y;
        sumE2 += e * e;
        const ae = Math.abs(e);
        if (ae > maxErr) maxErr = ae;
      }
    }
  }
  if (wantStats) Object.assign(s, { n: rows * cols, sumX2, sumY2, sumXY, sumE2, maxAbsErr: maxErr });
  return { data: out, scales, stats: s };
}
