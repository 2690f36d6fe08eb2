import { bf16BitsOf, f16BitsOf } from './round';
import { checkMatmulArgs, OUT_BYTES, storedCols, type MatmulArgs, type MatmulResult } from './matmul';

/**
 * The CPU twin. JavaScript arithmetic is float64: products of f32 values are
 * exact there, a rank-r sum carries about r·2⁻⁵³ relative error, and the final
 * narrowing is one correct rounding, so every element lands within 1 ulp of the
 * float64 result for every output dtype.
 *
 * Per stored row: the row's base values seed a float64 accumulator, then each
 * element adds one length-K dot product of the row's coefficients with its
 * column's (plain layout: b[row, ·] · Aᵀ[col, ·]; transposed: A[·, row] · b[col, ·]),
 * both contiguous, then the row is narrowed. Each
 * phase is its own monomorphic loop: per-element branching on dtypes costs more
 * than the arithmetic at small ranks.
 */
export function matmulCpu(args: MatmulArgs): MatmulResult {
  checkMatmulArgs(args);
  const { inFeatures: n, rank: K, a, b, transpose, rowStart, rows, base, baseDtype, out } = args;
  const cols = storedCols(args);
  const count = rows * cols;
  const bytes = new Uint8Array(count * OUT_BYTES[out]);

  // M holds, per stored column, its K rank coefficients contiguously: Aᵀ for the plain layout, b itself when transposed.
  const M: Float32Array | Float64Array = transpose ? b : transposeA(a, K, n);
  const coef = new Float64Array(K);
  let base16: Uint16Array | undefined;
  let base32: Float32Array | undefined;
  if (base && baseDtype) {
    const copy = base.byteOffset % 4 === 0 ? base : base.slice();
    if (baseDtype === 'F32') base32 = new Float32Array(copy.buffer, copy.byteOffset, count);
    else base16 = new Uint16Array(copy.buffer, copy.byteOffset, count);
  }
  const f16Table = baseDtype === 'F16' ? f16Values() : undefined;

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
    // Seed with the base row.
    if (base32) for (let c = 0; c < cols; c++) acc[c] = base32[e0 + c];
    else if (base16 && f16Table) for (let c = 0; c < cols; c++) acc[c] = f16Table[base16[e0 + c]];
    else if (base16) {
      for (let c = 0; c < cols; c++) rowU[c] = base16[e0 + c] << 16;
      for (let c = 0; c < cols; c++) acc[c] = rowF[c];
    } else acc.fill(0);
    // Rank-K update: one dot product of length K per element, the row's coefficients held in `coef`.
    if (transpose) for (let k = 0; k < K; k++) coef[k] = a[k * n + row];
    else for (let k = 0; k < K; k++) coef[k] = b[row * K + k];
    if (M instanceof Float32Array) dots32(acc, coef, M, K, cols);
    else dots64(acc, coef, M, K, cols);
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

function transposeA(a: Float32Array, K: number, n: number): Float32Array {
  const at = new Float32Array(n * K);
  for (let k = 0; k < K; k++) for (let i = 0; i < n; i++) at[i * K + k] = a[k * n + i];
  return at;
}

// Twin loops (f32 and f64 M) so that each stays monomorphic; four products per step.
function dots32(acc: Float64Array, coef: Float64Array, M: Float32Array, K: number, cols: number): void {
  const K4 = K - (K % 4);
  for (let c = 0, off = 0; c < cols; c++, off += K) {
    let s = 0;
    let k = 0;
    for (; k < K4; k += 4) s += coef[k] * M[off + k] + coef[k + 1] * M[off + k + 1] + coef[k + 2] * M[off + k + 2] + coef[k + 3] * M[off + k + 3];
    for (; k < K; k++) s += coef[k] * M[off + k];
    acc[c] += s;
  }
}

function dots64(acc: Float64Array, coef: Float64Array, M: Float64Array, K: number, cols: number): void {
  const K4 = K - (K % 4);
  for (let c = 0, off = 0; c < cols; c++, off += K) {
    let s = 0;
    let k = 0;
    for (; k < K4; k += 4) s += coef[k] * M[off + k] + coef[k + 1] * M[off + k + 1] + coef[k + 2] * M[off + k + 2] + coef[k + 3] * M[off + k + 3];
    for (; k < K; k++) s += coef[k] * M[off + k];
    acc[c] += s;
  }
}

/** Returns the first non-finite column, or -1. */
function narrowBf16(acc: Float64Array, rowF: Float32Array, rowU: Uint32Array, o16: Uint16Array, e0: number, cols: number): number {
  for (let c = 0; c < cols; c++) rowF[c] = acc[c];
  let bad = -1;
  for (let c = 0; c < cols; c++) {
    const u = rowU[c];
    // RNE of the f32 bits to 16 bits; an exact f32 tie (low half 0x8000) is re-rounded from the f64 value.
    const h = (u & 0xffff) === 0x8000 ? bf16BitsOf(acc[c]) : ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
    o16[e0 + c] = h;
    if ((h & 0x7f80) === 0x7f80 && bad < 0) bad = c;
  }
  return bad;
}

function narrowF16(acc: Float64Array, o16: Uint16Array, e0: number, cols: number): number {
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
    const o = new Uint16Array(bytes.buffer, e0 * 2, cols);
    const lim = out === 'BF16' ? 0x7f80 : 0x7c00;
    for (let c = 0; c < cols; c++) if ((o[c] & lim) === lim) n++;
  } else {
    const stride = out === 'PAIR' ? 2 : 1;
    const o = new Float32Array(bytes.buffer, e0 * 4 * stride, cols * stride);
    for (let c = 0; c < cols; c++) if (!Number.isFinite(o[c * stride])) n++;
  }
  return n;
}

let F16_VALUES: Float64Array | undefined;

/** Every F16 bit pattern's value (65,536 entries): one lookup per base element. */
function f16Values(): Float64Array {
  if (F16_VALUES) return F16_VALUES;
  const t = new Float64Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    t[h] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1024 + m) * 2 ** (e - 25);
  }
  F16_VALUES = t;
  return t;
}
