import { checkArgs, decodeInto, emptySums, inputViews, scratch, sumsFrom, type QuantizeArgs, type QuantizeResult } from './common';
import { rowsSimd } from './quantSimd';

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
  checkArgs('int8-channel', a, 1);
  const r = rowsSimd('int8', a.src, a.dtype, a.rows, a.cols);
  if (r) return { ...r, stats: a.stats === false ? emptySums() : r.stats };
  return int8ChannelScalar(a);
}

/** The scalar twin of the SIMD path (rows not a multiple of 16, or no WebAssembly SIMD). */
export function int8ChannelScalar(a: QuantizeArgs): QuantizeResult {
  checkArgs('int8-channel', a, 1);
  const { rows, cols } = a;
  const out = new Int8Array(rows * cols);
  const scales = new Float32Array(rows);
  const v = inputViews(a.src, a.dtype);
  const { f: x, u: xb } = scratch(cols);
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
    const scale = fround(amax / 127);
    scales[r] = scale;
    const o = r * cols;
    for (let j = 0; j < cols; j++) {
      const xv = x[j];
      let q = 0;
      if (scale !== 0) {
        q = rne(fround(xv / scale));
        if (q > INT8_QMAX) q = INT8_QMAX;
        else if (q < -INT8_QMAX) q = -INT8_QMAX;
      }
      out[o + j] = q;
      if (wantStats) {
        const y = q * scale;
        const e = xv - y;
        sumX2 += xv * xv;
        sumXE += xv * e;
        sumE2 += e * e;
        const ae = Math.abs(e);
        if (ae > maxErr) maxErr = ae;
      }
    }
  }
  return { data: new Uint8Array(out.buffer), scales, stats: wantStats ? sumsFrom(rows * cols, sumX2, sumXE, sumE2, maxErr) : emptySums() };
}
