import { bf16BitsOf, f16BitsOf } from './round';
import { checkMatmulArgs, OUT_BYTES, storedCols, type MatmulArgs, type MatmulResult } from './matmul';

/**
 * The CPU twin. JavaScript arithmetic is float64: products of f32 values are
 * exact there, a rank-r sum carries about r·2⁻⁵³ relative error, and the final
 * narrowing is one correct rounding, so every element lands within 1 ulp of the
 * float64 result for every output dtype.
 *
 * Per stored row, `acc[col] += l·R[k, col]` runs over contiguous memory: for the
 * plain layout l = b[row, k] and R = a; transposed, l = a[k, row] and R = bᵀ.
 */
export function matmulCpu(args: MatmulArgs): MatmulResult {
  checkMatmulArgs(args);
  const { outFeatures: m, inFeatures: n, rank: K, a, b, transpose, rowStart, rows, base, baseDtype, out } = args;
  const cols = storedCols(args);
  const count = rows * cols;
  const bytes = new Uint8Array(count * OUT_BYTES[out]);

  // R as float64 rows of length `cols`.
  let R: Float64Array | Float32Array;
  if (transpose) {
    const bt = new Float64Array(K * m);
    for (let o = 0; o < m; o++) for (let k = 0; k < K; k++) bt[k * m + o] = b[o * K + k];
    R = bt;
  } else {
    R = a;
  }

  let base16: Uint16Array | undefined;
  let base32: Float32Array | undefined;
  if (base && baseDtype) {
    const copy = base.byteOffset % 4 === 0 ? base : base.slice();
    if (baseDtype === 'F32') base32 = new Float32Array(copy.buffer, copy.byteOffset, count);
    else base16 = new Uint16Array(copy.buffer, copy.byteOffset, count);
  }
  const f16Table = baseDtype === 'F16' ? f16Values() : undefined;
  const bits = new Uint32Array(1);
  const bitsF = new Float32Array(bits.buffer);

  const o16 = out === 'BF16' || out === 'F16' ? new Uint16Array(bytes.buffer) : undefined;
  const o32 = out === 'F32' || out === 'PAIR' ? new Float32Array(bytes.buffer) : undefined;
  const acc = new Float64Array(cols);
  let nonFinite = 0;
  let firstNonFinite = -1;

  for (let r = 0; r < rows; r++) {
    const row = rowStart + r;
    acc.fill(0);
    for (let k = 0; k < K; k++) {
      const l = transpose ? a[k * n + row] : b[row * K + k];
      if (l === 0) continue;
      const off = k * cols;
      for (let c = 0; c < cols; c++) acc[c] += l * R[off + c];
    }
    const e0 = r * cols;
    for (let c = 0; c < cols; c++) {
      const e = e0 + c;
      let w = 0;
      if (base32) w = base32[e];
      else if (base16) {
        if (f16Table) w = f16Table[base16[e]];
        else {
          bits[0] = base16[e] << 16;
          w = bitsF[0];
        }
      }
      const v = acc[c] + w;
      let finite: boolean;
      if (out === 'BF16') {
        const h = bf16BitsOf(v);
        o16![e] = h;
        finite = (h & 0x7f80) !== 0x7f80;
      } else if (out === 'F16') {
        const h = f16BitsOf(v);
        o16![e] = h;
        finite = (h & 0x7c00) !== 0x7c00;
      } else if (out === 'F32') {
        const f = Math.fround(v);
        o32![e] = f;
        finite = Number.isFinite(f);
      } else {
        const hi = Math.fround(v);
        o32![2 * e] = hi;
        o32![2 * e + 1] = Number.isFinite(hi) ? Math.fround(v - hi) : 0;
        finite = Number.isFinite(hi);
      }
      if (!finite) {
        if (nonFinite === 0) firstNonFinite = e;
        nonFinite++;
      }
    }
  }
  return { bytes, nonFinite, firstNonFinite };
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
