import { decodeChunkF32, Scratch } from './decodeChunk';
import type { DeltaSketchArgs, DeltaSketchResult } from './deltaSketch';
import { sketchBuffers } from './deltaSketchSimd';

const scratchA = new Scratch();
const scratchB = new Scratch();

/** A Float64Array of exactly `n` zeros, reusing one buffer per worker (calls would otherwise leave megabytes of garbage each). */
class Zeros64 {
  private buf = new Float64Array(0);
  get(n: number): Float64Array {
    if (this.buf.length < n) this.buf = new Float64Array(n);
    const v = this.buf.subarray(0, n);
    v.fill(0);
    return v;
  }
}
const xtScratch = new Zeros64();
const ztScratch = new Zeros64();
const yrScratch = new Zeros64();

/**
 * Rows of Δ handled together: each element of x (or of zᵀ) loaded from memory
 * then feeds four rows' products from registers, and the four Δ rows are still
 * in cache when their Δᵀ·y contribution is added right after.
 */
const ROWS = 4;

export function deltaSketchCpu(args: DeltaSketchArgs): DeltaSketchResult {
  return deltaSketchSimd(args) ?? deltaSketchScalar(args);
}

/** The products in WebAssembly SIMD, f32 as on the GPU; undefined where that path is missing. */
function deltaSketchSimd(args: DeltaSketchArgs): DeltaSketchResult | undefined {
  const { rows, cols, k } = args;
  const m = sketchBuffers(rows, cols, k);
  if (!m) return undefined;
  const n = rows * cols;
  const fa = scratchA.get(n);
  decodeChunkF32(args.dtype, args.a, n, fa);
  decodeChunkF32(args.dtype, args.b, n, m.d);
  subtractInPlace(m.d, fa, n);
  const { kp, x } = m;
  for (let c = 0; c < cols; c++) {
    const o = c * kp;
    for (let j = 0; j < k; j++) x[o + j] = args.x[c * k + j];
    for (let j = k; j < kp; j++) x[o + j] = 0;
  }
  m.run(args.back);
  const y = args.yOut && args.yOut.length === rows * k ? args.yOut : new Float32Array(rows * k);
  for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) y[r * k + j] = m.y[r * kp + j];
  if (!args.back) return { y, chunks: [args.a, args.b], x: args.x };
  const z = args.zOut && args.zOut.length === cols * k ? args.zOut : new Float32Array(cols * k);
  for (let c = 0; c < cols; c++) for (let j = 0; j < k; j++) z[c * k + j] = m.z[c * kp + j];
  return { y, z, chunks: [args.a, args.b], x: args.x };
}

/** d ← d − a: Δ in f32, as the GPU twin forms it. */
function subtractInPlace(d: Float32Array, a: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) d[i] -= a[i];
}

/** The portable loops, in f64 sums, for where WebAssembly SIMD is missing. */
export function deltaSketchScalar(args: DeltaSketchArgs): DeltaSketchResult {
  const { rows, cols, k } = args;
  const n = rows * cols;
  const d = scratchA.get(n);
  const fb = scratchB.get(n);
  decodeChunkF32(args.dtype, args.a, n, d);
  decodeChunkF32(args.dtype, args.b, n, fb);
  // Δ in f32, as the GPU twin forms it.
  for (let i = 0; i < n; i++) d[i] = fb[i] - d[i];
  // xᵀ and zᵀ (k × cols): the inner loops then run along contiguous rows.
  const xt = xtScratch.get(k * cols);
  for (let c = 0; c < cols; c++) for (let j = 0; j < k; j++) xt[j * cols + c] = args.x[c * k + j];
  const y = args.yOut && args.yOut.length === rows * k ? args.yOut : new Float32Array(rows * k);
  const zt = args.back ? ztScratch.get(k * cols) : undefined;
  const yr = yrScratch.get(ROWS * k);
  for (let r0 = 0; r0 < rows; r0 += ROWS) {
    const nr = Math.min(ROWS, rows - r0);
    // Missing rows of a short last group read row r0 again and are never stored.
    const o0 = r0 * cols;
    const o1 = (nr > 1 ? r0 + 1 : r0) * cols;
    const o2 = (nr > 2 ? r0 + 2 : r0) * cols;
    const o3 = (nr > 3 ? r0 + 3 : r0) * cols;
    for (let j = 0; j < k; j++) {
      const xo = j * cols;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let c = 0; c < cols; c++) {
        const x = xt[xo + c];
        s0 += d[o0 + c] * x;
        s1 += d[o1 + c] * x;
        s2 += d[o2 + c] * x;
        s3 += d[o3 + c] * x;
      }
      yr[j] = s0;
      yr[k + j] = s1;
      yr[2 * k + j] = s2;
      yr[3 * k + j] = s3;
    }
    for (let q = 0; q < nr; q++) for (let j = 0; j < k; j++) y[(r0 + q) * k + j] = yr[q * k + j];
    if (!zt) continue;
    for (let j = 0; j < k; j++) {
      const zo = j * cols;
      const c0 = yr[j];
      const c1 = nr > 1 ? yr[k + j] : 0;
      const c2 = nr > 2 ? yr[2 * k + j] : 0;
      const c3 = nr > 3 ? yr[3 * k + j] : 0;
      for (let c = 0; c < cols; c++) zt[zo + c] += c0 * d[o0 + c] + c1 * d[o1 + c] + c2 * d[o2 + c] + c3 * d[o3 + c];
    }
  }
  if (!zt) return { y, chunks: [args.a, args.b], x: args.x };
  const z = args.zOut && args.zOut.length === cols * k ? args.zOut : new Float32Array(cols * k);
  for (let j = 0; j < k; j++) for (let c = 0; c < cols; c++) z[c * k + j] = zt[j * cols + c];
  return { y, z, chunks: [args.a, args.b], x: args.x };
}
