import { bf16BitsOf, f16BitsOf } from './round';
import { checkMatmulArgs, OUT_BYTES, storedCols, type MatmulArgs, type MatmulResult } from './matmul';
import { matmulSimdPass, type SimdPass } from './matmulSimd';
import { f16Table } from '../decode/f16';

/** The CPU twin: the WebAssembly SIMD pass where it exists, else the scalar loop; both sum in float64. */
export function matmulCpu(args: MatmulArgs): MatmulResult {
  checkMatmulArgs(args);
  const pass = matmulSimdPass(args);
  return pass ? finishSimd(args, pass) : matmulScalar(args);
}

/** Narrows the SIMD pass's F16 sums, and recounts the rows it flagged, exactly. */
function finishSimd(args: MatmulArgs, pass: SimdPass): MatmulResult {
  const cols = storedCols(args);
  let nonFinite = 0;
  let firstNonFinite = -1;
  if (args.out === 'F16') {
    const sums = new Float64Array(pass.bytes.buffer, pass.bytes.byteOffset, args.rows * cols);
    const bytes = new Uint8Array(args.rows * cols * 2);
    const o16 = new Uint16Array(bytes.buffer);
    for (let r = 0; r < args.rows; r++) {
      const e0 = r * cols;
      const bad = narrowF16(sums.subarray(e0, e0 + cols), o16, e0, cols);
      if (bad >= 0) {
        if (nonFinite === 0) firstNonFinite = e0 + bad;
        nonFinite += countNonFinite('F16', bytes, e0, cols);
      }
    }
    return { bytes, nonFinite, firstNonFinite };
  }
  for (const r of pass.flagged) {
    const e0 = r * cols;
    const n = countNonFinite(args.out, pass.bytes, e0, cols);
    if (n === 0) continue;
    if (nonFinite === 0) firstNonFinite = e0 + firstNonFiniteIn(args.out, pass.bytes, e0, cols);
    nonFinite += n;
  }
  return { bytes: pass.bytes, nonFinite, firstNonFinite };
}

/**
 * The scalar CPU twin (where WebAssembly SIMD is missing). JavaScript arithmetic is float64: products of f32 values are
 * exact there, a rank-r sum carries about r·2⁻⁵³ relative error, and the final
 * narrowing is one correct rounding, so every element lands within 1 ulp of the
 * float64 result for every output dtype.
 *
 * Per stored row: the row's base values seed a float64 accumulator, then
 * `acc[col] += l·R[k, col]` runs over contiguous memory (plain layout: l = b[row, k],
 * R = a; transposed: l = a[k, row], R = bᵀ), then the row is narrowed. Each
 * phase is its own monomorphic loop: per-element branching on dtypes costs more
 * than the arithmetic at small ranks.
 */
export function matmulScalar(args: MatmulArgs): MatmulResult {
  checkMatmulArgs(args);
  const { outFeatures: m, inFeatures: n, rank: K, a, b, transpose, rowStart, rows, base, baseDtype, out } = args;
  const cols = storedCols(args);
  const count = rows * cols;
  const bytes = new Uint8Array(count * OUT_BYTES[out]);

  const bt = transpose ? transposeB(b, m, K) : undefined;
  let base16: Uint16Array | undefined;
  let base32: Float32Array | undefined;
  if (base && baseDtype) {
    const copy = base.byteOffset % 4 === 0 ? base : base.slice();
    if (baseDtype === 'F32') base32 = new Float32Array(copy.buffer, copy.byteOffset, count);
    else base16 = new Uint16Array(copy.buffer, copy.byteOffset, count);
  }
  const f16 = baseDtype === 'F16' ? f16Table() : undefined;

  const acc = new Float64Array(cols);
  const rowF = new Float32Array(cols);
  const rowU = new Uint32Array(rowF.buffer);
  const o16 = out === 'BF16' || out === 'F16' ? new Uint16Array(bytes.buffer) : undefined;
  const o32 = out === 'F32' || out === 'PAIR' ? new Float32Array(bytes.buffer) : undefined;
  let nonFinite = 0;
  let firstNonFinite = -1;

  for (let r = 0; r < rows; r++) {
    const row = rowStart + r;
    const e0 = r * cols;
    // The base row, as f32 (exact for every base dtype), seeds the first rank pass.
    if (base32) rowF.set(base32.subarray(e0, e0 + cols));
    else if (base16 && f16) for (let c = 0; c < cols; c++) rowF[c] = f16[base16[e0 + c]];
    else if (base16) for (let c = 0; c < cols; c++) rowU[c] = base16[e0 + c] << 16;
    else rowF.fill(0);
    let k = 0;
    if (bt) {
      if (K >= 8) {
        seed8x64(acc, rowF, a, row, n, bt, 0, cols);
        k = 8;
      } else for (let c = 0; c < cols; c++) acc[c] = rowF[c];
      for (; k + 8 <= K; k += 8) axpy8x64(acc, a, k * n + row, n, bt, k * cols, cols);
      for (; k + 4 <= K; k += 4) axpy4x64(acc, a[k * n + row], a[(k + 1) * n + row], a[(k + 2) * n + row], a[(k + 3) * n + row], bt, k * cols, cols);
      for (; k < K; k++) axpy64(acc, a[k * n + row], bt, k * cols, cols);
    } else {
      const b0 = row * K;
      if (K >= 8) {
        seed8x32(acc, rowF, b, b0, 1, a, 0, cols);
        k = 8;
      } else for (let c = 0; c < cols; c++) acc[c] = rowF[c];
      for (; k + 8 <= K; k += 8) axpy8x32(acc, b, b0 + k, 1, a, k * cols, cols);
      for (; k + 4 <= K; k += 4) axpy4x32(acc, b[b0 + k], b[b0 + k + 1], b[b0 + k + 2], b[b0 + k + 3], a, k * cols, cols);
      for (; k < K; k++) axpy32(acc, b[b0 + k], a, k * cols, cols);
    }
    // Narrowing: through f32 (RNE), with the f64 residual settling the rare exact ties.
    let bad = -1;
    if (out === 'BF16') bad = narrowBf16(acc, rowF, rowU, o16!, e0, cols);
    else if (out === 'F16') bad = narrowF16(acc, o16!, e0, cols);
    else if (out === 'F32') bad = narrowF32(acc, o32!, e0, cols);
    else bad = narrowPair(acc, o32!, e0, cols);
    if (bad >= 0) {
      const n2 = countNonFinite(out, bytes, e0, cols);
      if (nonFinite === 0) firstNonFinite = e0 + bad;
      nonFinite += n2;
    }
  }
  return { bytes, nonFinite, firstNonFinite };
}

function transposeB(b: Float64Array, m: number, K: number): Float64Array {
  const bt = new Float64Array(K * m);
  for (let o = 0; o < m; o++) for (let k = 0; k < K; k++) bt[k * m + o] = b[o * K + k];
  return bt;
}

// Four rank rows per pass: the accumulator is loaded and stored once per four products.
// Each kernel below comes in a Float32Array (x32) and a Float64Array (x64) copy on purpose:
// V8 compiles a loop for the typed-array kinds it has seen, and one function fed both runs
// the polymorphic (slower) element loads in the scalar path's innermost loop.
function axpy4x32(acc: Float64Array, l0: number, l1: number, l2: number, l3: number, R: Float32Array, off: number, cols: number): void {
  const o1 = off + cols;
  const o2 = o1 + cols;
  const o3 = o2 + cols;
  for (let c = 0; c < cols; c++) acc[c] += l0 * R[off + c] + l1 * R[o1 + c] + l2 * R[o2 + c] + l3 * R[o3 + c];
}

function axpy4x64(acc: Float64Array, l0: number, l1: number, l2: number, l3: number, R: Float64Array, off: number, cols: number): void {
  const o1 = off + cols;
  const o2 = o1 + cols;
  const o3 = o2 + cols;
  for (let c = 0; c < cols; c++) acc[c] += l0 * R[off + c] + l1 * R[o1 + c] + l2 * R[o2 + c] + l3 * R[o3 + c];
}

// The first eight rank rows, added to the seed row: saves a pass that copies the seed.
function seed8x32(acc: Float64Array, seed: Float32Array, l: Float64Array, l0: number, ls: number, R: Float32Array, off: number, cols: number): void {
  const c0 = l[l0], c1 = l[l0 + ls], c2 = l[l0 + 2 * ls], c3 = l[l0 + 3 * ls];
  const c4 = l[l0 + 4 * ls], c5 = l[l0 + 5 * ls], c6 = l[l0 + 6 * ls], c7 = l[l0 + 7 * ls];
  const o1 = off + cols, o2 = o1 + cols, o3 = o2 + cols, o4 = o3 + cols, o5 = o4 + cols, o6 = o5 + cols, o7 = o6 + cols;
  for (let c = 0; c < cols; c++) {
    acc[c] = seed[c] + (c0 * R[off + c] + c1 * R[o1 + c] + c2 * R[o2 + c] + c3 * R[o3 + c] + (c4 * R[o4 + c] + c5 * R[o5 + c] + c6 * R[o6 + c] + c7 * R[o7 + c]));
  }
}

function seed8x64(acc: Float64Array, seed: Float32Array, l: Float32Array, l0: number, ls: number, R: Float64Array, off: number, cols: number): void {
  const c0 = l[l0], c1 = l[l0 + ls], c2 = l[l0 + 2 * ls], c3 = l[l0 + 3 * ls];
  const c4 = l[l0 + 4 * ls], c5 = l[l0 + 5 * ls], c6 = l[l0 + 6 * ls], c7 = l[l0 + 7 * ls];
  const o1 = off + cols, o2 = o1 + cols, o3 = o2 + cols, o4 = o3 + cols, o5 = o4 + cols, o6 = o5 + cols, o7 = o6 + cols;
  for (let c = 0; c < cols; c++) {
    acc[c] = seed[c] + (c0 * R[off + c] + c1 * R[o1 + c] + c2 * R[o2 + c] + c3 * R[o3 + c] + (c4 * R[o4 + c] + c5 * R[o5 + c] + c6 * R[o6 + c] + c7 * R[o7 + c]));
  }
}

// Eight rank rows per pass, coefficients l[l0 + j·ls]: half the accumulator traffic of four.
function axpy8x32(acc: Float64Array, l: Float64Array, l0: number, ls: number, R: Float32Array, off: number, cols: number): void {
  const c0 = l[l0], c1 = l[l0 + ls], c2 = l[l0 + 2 * ls], c3 = l[l0 + 3 * ls];
  const c4 = l[l0 + 4 * ls], c5 = l[l0 + 5 * ls], c6 = l[l0 + 6 * ls], c7 = l[l0 + 7 * ls];
  const o1 = off + cols, o2 = o1 + cols, o3 = o2 + cols, o4 = o3 + cols, o5 = o4 + cols, o6 = o5 + cols, o7 = o6 + cols;
  for (let c = 0; c < cols; c++) {
    acc[c] += c0 * R[off + c] + c1 * R[o1 + c] + c2 * R[o2 + c] + c3 * R[o3 + c] + (c4 * R[o4 + c] + c5 * R[o5 + c] + c6 * R[o6 + c] + c7 * R[o7 + c]);
  }
}

function axpy8x64(acc: Float64Array, l: Float32Array, l0: number, ls: number, R: Float64Array, off: number, cols: number): void {
  const c0 = l[l0], c1 = l[l0 + ls], c2 = l[l0 + 2 * ls], c3 = l[l0 + 3 * ls];
  const c4 = l[l0 + 4 * ls], c5 = l[l0 + 5 * ls], c6 = l[l0 + 6 * ls], c7 = l[l0 + 7 * ls];
  const o1 = off + cols, o2 = o1 + cols, o3 = o2 + cols, o4 = o3 + cols, o5 = o4 + cols, o6 = o5 + cols, o7 = o6 + cols;
  for (let c = 0; c < cols; c++) {
    acc[c] += c0 * R[off + c] + c1 * R[o1 + c] + c2 * R[o2 + c] + c3 * R[o3 + c] + (c4 * R[o4 + c] + c5 * R[o5 + c] + c6 * R[o6 + c] + c7 * R[o7 + c]);
  }
}

function axpy32(acc: Float64Array, l: number, R: Float32Array, off: number, cols: number): void {
  for (let c = 0; c < cols; c++) acc[c] += l * R[off + c];
}

function axpy64(acc: Float64Array, l: number, R: Float64Array, off: number, cols: number): void {
  for (let c = 0; c < cols; c++) acc[c] += l * R[off + c];
}

/** Returns the first non-finite column, or -1. */
function narrowBf16(acc: Float64Array, rowF: Float32Array, rowU: Uint32Array, o16: Uint16Array, e0: number, cols: number): number {
  let bad = -1;
  for (let c = 0; c < cols; c++) {
    rowF[c] = acc[c];
    const u = rowU[c];
    // RNE of the f32 bits to 16 bits, on the magnitude capped just above inf so that no NaN pattern
    // carries into the sign (NaN becomes inf: flagged either way); an exact f32 tie (low half
    // 0x8000) is re-rounded from the f64 value.
    const mag = Math.min(u & 0x7fffffff, 0x7f800001);
    const h = (u & 0xffff) === 0x8000 ? bf16BitsOf(acc[c]) : ((mag + 0x7fff + ((mag >>> 16) & 1)) >>> 16) | ((u >>> 16) & 0x8000);
    o16[e0 + c] = h;
    if ((h & 0x7f80) === 0x7f80 && bad < 0) bad = c;
  }
  return bad;
}

function narrowF16(acc: ArrayLike<number>, o16: Uint16Array, e0: number, cols: number): number {
  let bad = -1;
  for (let c = 0; c < cols; c++) {
    const h = f16BitsOf(acc[c]);
    o16[e0 + c] = h;
    if ((h & 0x7c00) === 0x7c00 && bad < 0) bad = c;
  }
  return bad;
}

function narrowF32(acc: Float64Array, o32: Float32Array, e0: number, cols: number): number {
  let bad = -1;
  for (let c = 0; c < cols; c++) {
    const f = Math.fround(acc[c]);
    o32[e0 + c] = f;
    if (bad < 0 && f - f !== 0) bad = c;
  }
  return bad;
}

function narrowPair(acc: Float64Array, o32: Float32Array, e0: number, cols: number): number {
  let bad = -1;
  for (let c = 0; c < cols; c++) {
    const v = acc[c];
    const hi = Math.fround(v);
    const ok = hi - hi === 0;
    o32[2 * (e0 + c)] = hi;
    o32[2 * (e0 + c) + 1] = ok ? Math.fround(v - hi) : 0;
    if (!ok && bad < 0) bad = c;
  }
  return bad;
}

function countNonFinite(out: MatmulArgs['out'], bytes: Uint8Array, e0: number, cols: number): number {
  let n = 0;
  if (out === 'BF16' || out === 'F16') {
    const o = new Uint16Array(bytes.buffer, bytes.byteOffset + e0 * 2, cols);
    const lim = out === 'BF16' ? 0x7f80 : 0x7c00;
    for (let c = 0; c < cols; c++) if ((o[c] & lim) === lim) n++;
  } else {
    const stride = out === 'PAIR' ? 2 : 1;
    const o = new Float32Array(bytes.buffer, bytes.byteOffset + e0 * 4 * stride, cols * stride);
    for (let c = 0; c < cols; c++) if (!Number.isFinite(o[c * stride])) n++;
  }
  return n;
}

function firstNonFiniteIn(out: MatmulArgs['out'], bytes: Uint8Array, e0: number, cols: number): number {
  if (out === 'BF16' || out === 'F16') {
    const o = new Uint16Array(bytes.buffer, bytes.byteOffset + e0 * 2, cols);
    const lim = out === 'BF16' ? 0x7f80 : 0x7c00;
    for (let c = 0; c < cols; c++) if ((o[c] & lim) === lim) return c;
  } else {
    const stride = out === 'PAIR' ? 2 : 1;
    const o = new Float32Array(bytes.buffer, bytes.byteOffset + e0 * 4 * stride, cols * stride);
    for (let c = 0; c < cols; c++) if (!Number.isFinite(o[c * stride])) return c;
  }
  return -1;
}

