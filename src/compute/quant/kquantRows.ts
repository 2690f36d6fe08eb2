/**
 * ggml's K-quant quantizers (Q2_K … Q6_K, 256-value super-blocks), byte-identical to
 * `ggml_quantize_chunk`: without an importance matrix ggml runs `quantize_row_*_ref`,
 * with one it runs the per-row `quantize_row_*_impl`; both are here. Every float step is
 * rounded to f32 (`f`) in the reference's order. Each function quantizes `nb` super-blocks
 * of `x` from `xo` into `out` from `oo`; `qw` is the row's importance weights (or null).
 */
import { f16Table32, putF16 } from './common';
import { makeQ3Quants, makeQkxQuants, makeQpQuants, makeQxQuants, maxByMagnitude, nearestInt, qkxMin, GROUP_MAX_EPS } from './kquantSearch';
import { QUAD_D, QUAD_DM, QUAD_L, QUAD_MAX_VALUES, QUAD_MN, QUAD_SC, QUAD_W, QUAD_X, quadWasm, type QuadKernels } from './kquantQuad';

const f = Math.fround;
const QK = 256;

// Scratch for one super-block; the quantizers are synchronous, so sharing them is safe.
const L = new Uint8Array(QK);
const aux = new Uint8Array(32);
const w = new Float32Array(32);
const scales = new Float32Array(16);
const mins = new Float32Array(16);
const sw = new Float32Array(16);
const Ls = new Uint8Array(16);
const Lm = new Uint8Array(16);


function sumSquares(x: Float32Array, xo: number, n: number): number {
  let s = 0;
  for (let j = 0; j < n; j++) s = f(s + f(x[xo + j] * x[xo + j]));
  return s;
}

/** `weight = qw·sqrt(σ² + x²)`, the imatrix weighting all the `_impl` paths share; returns Σweight. */
function imatrixWeights(n: number, x: Float32Array, xo: number, qw: Float32Array, wo: number, sigma2: number): number {
  let sum = 0;
  for (let l = 0; l < n; l++) {
    const xv = x[xo + l];
    w[l] = f(qw[wo + l] * f(Math.sqrt(f(sigma2 + f(xv * xv)))));
    sum = f(sum + w[l]);
  }
  return sum;
}

/** Four 2-bit codes per byte, 32 bytes per 128 values (Q2_K and Q3_K's low bits). */
function pack2(out: Uint8Array, o: number, src: Uint8Array): void {
  for (let j = 0; j < QK; j += 128) {
    for (let l = 0; l < 32; l++) {
      out[o + j / 4 + l] = src[j + l] | (src[j + l + 32] << 2) | (src[j + l + 64] << 4) | (src[j + l + 96] << 6);
    }
  }
}

/** Q2_K: scales[16] (4-bit scale | 4-bit min), qs[64], f16 d, f16 dmin — 84 bytes. */
export function quantizeQ2K(x: Float32Array, xo: number, nb: number, out: Uint8Array, oo: number, qw: Float32Array | null): void {
  for (let i = 0; i < nb; i++, xo += QK, oo += 84) {
    let D: number, DM: number;
    if (!qw) {
      let maxScale = 0, maxMin = 0;
      for (let j = 0; j < 16; j++) {
        for (let l = 0; l < 16; l++) w[l] = Math.abs(x[xo + 16 * j + l]);
        scales[j] = makeQkxQuants(16, 3, x, xo + 16 * j, w, L, 16 * j, aux, f(-0.5), f(0.1), 15, true);
        mins[j] = qkxMin[0];
        if (scales[j] > maxScale) maxScale = scales[j];
        if (mins[j] > maxMin) maxMin = mins[j];
      }
      if (maxScale > 0) {
        const iscale = f(15 / maxScale);
        for (let j = 0; j < 16; j++) out[oo + j] = nearestInt(f(iscale * scales[j]));
        D = putF16(out, oo + 80, f(maxScale / 15));
      } else {
        out.fill(0, oo, oo + 16);
        D = putF16(out, oo + 80, 0);
      }
      if (maxMin > 0) {
        const iscale = f(15 / maxMin);
        for (let j = 0; j < 16; j++) out[oo + j] |= nearestInt(f(iscale * mins[j])) << 4;
        DM = putF16(out, oo + 82, f(maxMin / 15));
      } else {
        DM = putF16(out, oo + 82, 0);
      }
    } else {
      const sigma2 = f(sumSquares(x, xo, QK) / QK);
      for (let j = 0; j < 16; j++) {
        sw[j] = imatrixWeights(16, x, xo + 16 * j, qw, QK * i + 16 * j, sigma2);
        scales[j] = makeQkxQuants(16, 3, x, xo + 16 * j, w, L, 16 * j, aux, f(-0.9), f(0.05), 36, false);
        mins[j] = qkxMin[0];
      }
      const dm = makeQpQuants(16, 15, scales, Ls, sw);
      const mm = makeQpQuants(16, 15, mins, Lm, sw);
      D = putF16(out, oo + 80, dm);
      DM = putF16(out, oo + 82, mm);
      for (let j = 0; j < 16; j++) out[oo + j] = Ls[j] | (Lm[j] << 4);
    }
    for (let j = 0; j < 16; j++) {
      const d = f(D * (out[oo + j] & 0xf));
      if (!d) continue;
      const dm = f(DM * (out[oo + j] >> 4));
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt(f(f(x[xo + 16 * j + ii] + dm) / d));
        L[16 * j + ii] = Math.max(0, Math.min(3, l));
      }
    }
    pack2(out, oo + 16, L);
  }
}

/** The 6-bit signed scales of Q3_K, packed into 12 bytes as the reference does. */
function putQ3Scale(out: Uint8Array, so: number, j: number, l: number): void {
  if (j < 8) out[so + j] = l & 0xf;
  else out[so + j - 8] |= (l & 0xf) << 4;
  out[so + 8 + (j % 4)] |= (l >> 4) << (2 * (j >> 2));
}

/** Q3_K: hmask[32], qs[64], scales[12], f16 d — 110 bytes. */
export function quantizeQ3K(x: Float32Array, xo: number, nb: number, out: Uint8Array, oo: number, qw: Float32Array | null): void {
  for (let i = 0; i < nb; i++, xo += QK, oo += 110) {
    const so = oo + 96;
    out.fill(0, so, so + 12);
    let D: number;
    if (!qw) {
      for (let j = 0; j < 16; j++) scales[j] = makeQ3Quants(16, 4, x, xo + 16 * j, L, 16 * j);
      const maxScale = maxByMagnitude(16, scales, 0);
      if (maxScale) {
        const iscale = f(-32 / maxScale);
        for (let j = 0; j < 16; j++) {
          const l = (nearestInt(f(iscale * scales[j])) << 24) >> 24; // stored in an int8_t
          putQ3Scale(out, so, j, Math.max(-32, Math.min(31, l)) + 32);
        }
        D = putF16(out, oo + 108, f(1 / iscale));
      } else {
        D = putF16(out, oo + 108, 0);
      }
    } else {
      const sigma2 = f(f(2 * sumSquares(x, xo, QK)) / QK);
      for (let j = 0; j < 16; j++) {
        sw[j] = imatrixWeights(16, x, xo + 16 * j, qw, QK * i + 16 * j, sigma2);
        scales[j] = makeQxQuants(16, 4, x, xo + 16 * j, L, 16 * j, w, 0);
      }
      const dBlock = makeQxQuants(16, 32, scales, 0, Ls, 0, sw, 0);
      for (let j = 0; j < 16; j++) putQ3Scale(out, so, j, Ls[j]);
      D = putF16(out, oo + 108, dBlock);
    }
    for (let j = 0; j < 16; j++) {
      const lo = j < 8 ? out[so + j] & 0xf : out[so + j - 8] >> 4;
      const sc = (lo | (((out[so + 8 + (j % 4)] >> (2 * (j >> 2))) & 3) << 4)) - 32;
      const d = f(D * sc);
      if (!d) continue;
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt(f(x[xo + 16 * j + ii] / d));
        L[16 * j + ii] = Math.max(-4, Math.min(3, l)) + 4;
      }
    }
    out.fill(0, oo, oo + 32);
    for (let j = 0; j < QK; j++) {
      if (L[j] > 3) {
        out[oo + (j & 31)] |= 1 << (j >> 5);
        L[j] -= 4;
      }
    }
    pack2(out, oo + 32, L);
  }
}

/** The 6-bit scale and minimum of sub-block j in Q4_K/Q5_K's 12 packed bytes. */
function putScaleMin(out: Uint8Array, so: number, j: number, ls: number, lm: number): void {
  if (j < 4) {
    out[so + j] = ls;
    out[so + j + 4] = lm;
  } else {
    out[so + j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
    out[so + j - 4] |= (ls >> 4) << 6;
    out[so + j] |= (lm >> 4) << 6;
  }
}

/** The reference path's d, dmin and 12 scale bytes: `scales` and `mins` on a 63/max grid. */
function putScaleMins(out: Uint8Array, oo: number, maxScale: number, maxMin: number): void {
  const invScale = maxScale > 0 ? f(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? f(63 / maxMin) : 0;
  for (let j = 0; j < 8; j++) {
    const ls = Math.min(63, nearestInt(f(invScale * scales[j])) & 0xff);
    const lm = Math.min(63, nearestInt(f(invMin * mins[j])) & 0xff);
    putScaleMin(out, oo + 4, j, ls, lm);
  }
  putF16(out, oo, f(maxScale / 63));
  putF16(out, oo + 2, f(maxMin / 63));
}

// Super-blocks per call of the SIMD searches.
const QUAD_BLOCKS = QUAD_MAX_VALUES / QK;

/**
 * Super-block i of a row through the SIMD search (`kquantQuad`): the first of every
 * QUAD_BLOCKS runs the kernel (`run`, on that many groups) for them all; each then takes
 * its groups' scales, minimums and codes into `scales`, `mins` and L.
 */
function quadSearch(q: QuadKernels, x: Float32Array, xo: number, i: number, nb: number, group: number, run: (groups: number) => void): void {
  const k = i % QUAD_BLOCKS;
  if (k === 0) {
    const n = Math.min(QUAD_BLOCKS, nb - i) * QK;
    q.f32.set(x.subarray(xo, xo + n), QUAD_X >> 2);
    run(n / group);
  }
  const per = QK / group;
  const sc = (QUAD_SC >> 2) + k * per, mn = (QUAD_MN >> 2) + k * per;
  for (let j = 0; j < per; j++) {
    scales[j] = q.f32[sc + j];
    mins[j] = q.f32[mn + j];
  }
}

/** The final codes of super-block i from the steps and offsets in QUAD_D/QUAD_DM (set by the caller), into L. */
function quadCodes(q: QuadKernels, i: number, nmax: number): void {
  const k = i % QUAD_BLOCKS;
  // Q4_K/Q5_K's codes run 0…nmax.
  q.exports.codes(k, 32, 0, nmax, 0);
  const lo = (QUAD_L >> 2) + k * QK;
  for (let j = 0; j < QK; j++) L[j] = q.i32[lo + j];
}

/** Q6_K's ql/qh bytes of super-block i straight from the kernel's codes (signed, stored offset by 32). */
function quadPackQ6K(q: QuadKernels, i: number, out: Uint8Array, oo: number): void {
  const k = i % QUAD_BLOCKS;
  q.exports.codes(k, 16, -32, 31, 32);
  const c = q.i32;
  let ql = oo, qh = oo + 128;
  for (let j = (QUAD_L >> 2) + k * QK, end = j + QK; j < end; j += 128, ql += 64, qh += 32) {
    for (let l = 0; l < 32; l++) {
      const a = c[j + l], b = c[j + l + 32], cc = c[j + l + 64], e = c[j + l + 96];
      out[ql + l] = (a & 0xf) | ((cc & 0xf) << 4);
      out[ql + l + 32] = (b & 0xf) | ((e & 0xf) << 4);
      out[qh + l] = (a >> 4) | ((b >> 4) << 2) | ((cc >> 4) << 4) | ((e >> 4) << 6);
    }
  }
}

/** Q4_K/Q5_K's reference path (no imatrix) with the SIMD search: the 16 head bytes, the codes in L. */
function scaleMinHeadQuad(q: QuadKernels, x: Float32Array, xo: number, i: number, nb: number, nmax: number, out: Uint8Array, oo: number): void {
  quadSearch(q, x, xo, i, nb, 32, (groups) => (nmax === 15 ? q.exports.qkx(groups, 15, -1, f(0.1), 20, 0) : q.exports.qkx(groups, 31, f(-0.5), f(0.1), 15, 0)));
  let maxScale = 0, maxMin = 0;
  for (let j = 0; j < 8; j++) {
    if (scales[j] > maxScale) maxScale = scales[j];
    if (mins[j] > maxMin) maxMin = mins[j];
  }
  out.fill(0, oo + 4, oo + 16);
  putScaleMins(out, oo, maxScale, maxMin);
  const t = f16Table32();
  const D = t[out[oo] | (out[oo + 1] << 8)];
  const DM = t[out[oo + 2] | (out[oo + 3] << 8)];
  const s = oo + 4;
  for (let j = 0; j < 8; j++) {
    const sc = j < 4 ? out[s + j] & 63 : (out[s + j + 4] & 0xf) | ((out[s + j - 4] >> 6) << 4);
    const m = j < 4 ? out[s + j + 4] & 63 : (out[s + j + 4] >> 4) | ((out[s + j] >> 6) << 4);
    q.f32[(QUAD_D >> 2) + j] = f(D * sc);
    q.f32[(QUAD_DM >> 2) + j] = f(DM * m);
  }
  quadCodes(q, i, nmax);
}

/**
 * The scales, minimums and codes of one Q4_K/Q5_K super-block (`nmax` 15 or 31): the
 * reference path (`make_qkx2_quants`, 63/max scaling) or the imatrix path (`make_qkx3_quants`,
 * `make_qp_quants`). Writes d, dmin and the 12 scale bytes; leaves the codes in L.
 */
function scaleMinBlock(x: Float32Array, xo: number, i: number, nmax: number, out: Uint8Array, oo: number, qw: Float32Array | null): void {
  const so = oo + 4;
  if (!qw) {
    let maxScale = 0, maxMin = 0;
    for (let j = 0; j < 8; j++) {
      const avX = f(Math.sqrt(f(sumSquares(x, xo + 32 * j, 32) / 32)));
      for (let l = 0; l < 32; l++) w[l] = f(avX + Math.abs(x[xo + 32 * j + l]));
      scales[j] = nmax === 15
        ? makeQkxQuants(32, 15, x, xo + 32 * j, w, L, 32 * j, aux, -1, f(0.1), 20, false)
        : makeQkxQuants(32, 31, x, xo + 32 * j, w, L, 32 * j, aux, f(-0.5), f(0.1), 15, false);
      mins[j] = qkxMin[0];
      if (scales[j] > maxScale) maxScale = scales[j];
      if (mins[j] > maxMin) maxMin = mins[j];
    }
    putScaleMins(out, oo, maxScale, maxMin);
    return;
  }
  const sigma2 = f(f(2 * sumSquares(x, xo, QK)) / QK);
  for (let j = 0; j < 8; j++) {
    sw[j] = imatrixWeights(32, x, xo + 32 * j, qw, QK * i + 32 * j, sigma2);
    scales[j] = makeQkxQuants(32, nmax, x, xo + 32 * j, w, L, 32 * j, aux, f(-0.9), f(0.05), 36, false);
    mins[j] = qkxMin[0];
  }
  const dBlock = makeQpQuants(8, 63, scales, Ls, sw);
  const mBlock = makeQpQuants(8, 63, mins, Lm, sw);
  // Q5_K's imatrix path clamps to 63; Q4_K's does not (make_qp_quants already keeps ≤ 63).
  for (let j = 0; j < 8; j++) putScaleMin(out, so, j, nmax === 31 ? Math.min(63, Ls[j]) : Ls[j], nmax === 31 ? Math.min(63, Lm[j]) : Lm[j]);
  putF16(out, oo, dBlock);
  putF16(out, oo + 2, mBlock);
}

/** Re-derives Q4_K/Q5_K codes from the stored (f16, 6-bit) scales and minimums. */
function requantScaleMin(x: Float32Array, xo: number, nmax: number, out: Uint8Array, oo: number): void {
  const t = f16Table32();
  const D = t[out[oo] | (out[oo + 1] << 8)];
  const DM = t[out[oo + 2] | (out[oo + 3] << 8)];
  const q = oo + 4;
  for (let j = 0; j < 8; j++) {
    const sc = j < 4 ? out[q + j] & 63 : (out[q + j + 4] & 0xf) | ((out[q + j - 4] >> 6) << 4);
    const m = j < 4 ? out[q + j + 4] & 63 : (out[q + j + 4] >> 4) | ((out[q + j] >> 6) << 4);
    const d = f(D * sc);
    if (!d) continue;
    const dm = f(DM * m);
    for (let ii = 0; ii < 32; ii++) {
      const l = nearestInt(f(f(x[xo + 32 * j + ii] + dm) / d));
      L[32 * j + ii] = Math.max(0, Math.min(nmax, l));
    }
  }
}

/** The 16 bytes Q4_K and Q5_K open with (d, dmin, 12 scale bytes), and the final codes in L, re-derived from them. */
function scaleMinHead(x: Float32Array, xo: number, i: number, nmax: number, out: Uint8Array, oo: number, qw: Float32Array | null): void {
  out.fill(0, oo + 4, oo + 16);
  scaleMinBlock(x, xo, i, nmax, out, oo, qw);
  requantScaleMin(x, xo, nmax, out, oo);
}

/** Q4_K: f16 d, f16 dmin, scales[12], qs[128] — 144 bytes. */
export function quantizeQ4K(x: Float32Array, xo: number, nb: number, out: Uint8Array, oo: number, qw: Float32Array | null): void {
  const quad = quadWasm();
  for (let i = 0; i < nb; i++, xo += QK, oo += 144) {
    if (quad && !qw) scaleMinHeadQuad(quad, x, xo, i, nb, 15, out, oo);
    else scaleMinHead(x, xo, i, 15, out, oo, qw);
    let q = oo + 16;
    for (let j = 0; j < QK; j += 64, q += 32) {
      for (let l = 0; l < 32; l++) out[q + l] = L[j + l] | (L[j + l + 32] << 4);
    }
  }
}

/** Q5_K: f16 d, f16 dmin, scales[12], qh[32], qs[128] — 176 bytes. */
export function quantizeQ5K(x: Float32Array, xo: number, nb: number, out: Uint8Array, oo: number, qw: Float32Array | null): void {
  const quad = quadWasm();
  for (let i = 0; i < nb; i++, xo += QK, oo += 176) {
    if (quad && !qw) scaleMinHeadQuad(quad, x, xo, i, nb, 31, out, oo);
    else scaleMinHead(x, xo, i, 31, out, oo, qw);
    out.fill(0, oo + 16, oo + 48);
    const qh = oo + 16;
    let ql = oo + 48;
    let m1 = 1, m2 = 2;
    for (let n = 0; n < QK; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
      for (let j = 0; j < 32; j++) {
        let l1 = L[n + j];
        if (l1 > 15) { l1 -= 16; out[qh + j] |= m1; }
        let l2 = L[n + j + 32];
        if (l2 > 15) { l2 -= 16; out[qh + j] |= m2; }
        out[ql + j] = l1 | (l2 << 4);
      }
    }
  }
}

/** Q6_K: ql[128], qh[64], int8 scales[16], f16 d — 210 bytes. The imatrix only weights the fit. */
export function quantizeQ6K(x: Float32Array, xo: number, nb: number, out: Uint8Array, oo: number, qw: Float32Array | null): void {
  const quad = quadWasm();
  // The imatrix row's weights go beside the values: the search weighs by them.
  const run = (groups: number, i: number): void => {
    if (qw) quad!.f32.set(qw.subarray(QK * i, QK * i + groups * 16), QUAD_W >> 2);
    quad!.exports.qx(groups, 32, qw ? 1 : 0);
  };
  for (let i = 0; i < nb; i++, xo += QK, oo += 210) {
    if (quad) quadSearch(quad, x, xo, i, nb, 16, (groups) => run(groups, i));
    else for (let ib = 0; ib < 16; ib++) scales[ib] = makeQxQuants(16, 32, x, xo + 16 * ib, L, 16 * ib, qw, QK * i + 16 * ib);
    let maxScale = 0, maxAbs = 0;
    for (let ib = 0; ib < 16; ib++) {
      const a = Math.abs(scales[ib]);
      if (a > maxAbs) { maxAbs = a; maxScale = scales[ib]; }
    }
    if (maxAbs < GROUP_MAX_EPS) {
      out.fill(0, oo, oo + 210);
      continue;
    }
    const iscale = f(-128 / maxScale);
    const D = putF16(out, oo + 208, f(1 / iscale));
    for (let ib = 0; ib < 16; ib++) out[oo + 192 + ib] = Math.min(127, nearestInt(f(iscale * scales[ib])));
    if (quad) {
      for (let j = 0; j < 16; j++) {
        quad.f32[(QUAD_D >> 2) + j] = f(D * ((out[oo + 192 + j] << 24) >> 24));
        quad.f32[(QUAD_DM >> 2) + j] = 0;
      }
      quadPackQ6K(quad, i, out, oo);
      continue;
    }
    for (let j = 0; j < 16; j++) {
      const d = f(D * ((out[oo + 192 + j] << 24) >> 24));
      if (!d) continue;
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt(f(x[xo + 16 * j + ii] / d));
        L[16 * j + ii] = Math.max(-32, Math.min(31, l)) + 32;
      }
    }
    let ql = oo, qh = oo + 128;
    for (let j = 0; j < QK; j += 128, ql += 64, qh += 32) {
      for (let l = 0; l < 32; l++) {
        const a = L[j + l], b = L[j + l + 32], c = L[j + l + 64], e = L[j + l + 96];
        out[ql + l] = (a & 0xf) | ((c & 0xf) << 4);
        out[ql + l + 32] = (b & 0xf) | ((e & 0xf) << 4);
        out[qh + l] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
      }
    }
  }
}
