/**
 * ggml's Q5_0, Q5_1, IQ4_NL and IQ4_XS quantizers, byte-identical to `ggml_quantize_chunk`.
 * Q5_0/Q5_1 use the plain reference rows without an importance matrix and a weighted
 * search with one (σ² over the whole row); IQ4_NL/IQ4_XS always run the weighted
 * non-linear search (weights x² without an imatrix). Float steps rounded to f32 as in C.
 */
import { KVALUES_IQ4NL } from '../dequant/iqGrids';
import { putF16 } from './common';
import { bestIndexInt8, GROUP_MAX_EPS, makeQkxQuants, makeQxQuants, maxByMagnitude, nearestInt, qkxMin } from './kquantSearch';

const f = Math.fround;
// C's FLT_MAX, the reference's starting min/max for Q5_1.
const FLT_MAX = 3.4028234663852886e38;

const L = new Uint8Array(256);
const aux = new Uint8Array(32);
const w = new Float32Array(32);
const scales = new Float32Array(8);


/** 16 bytes of low nibbles (value j and j+16) and the 32 fifth bits as a little-endian u32. */
function packQ5(out: Uint8Array, qho: number, qso: number, codes: ArrayLike<number>): void {
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    const a = codes[j], b = codes[j + 16];
    out[qso + j] = (a & 0xf) | ((b & 0xf) << 4);
    qh |= ((a & 0x10) >> 4) << j;
    qh |= ((b & 0x10) >> 4) << (j + 16);
  }
  out[qho] = qh & 0xff;
  out[qho + 1] = (qh >>> 8) & 0xff;
  out[qho + 2] = (qh >>> 16) & 0xff;
  out[qho + 3] = qh >>> 24;
}

function rowSigma2(x: Float32Array, xo: number, n: number): number {
  let s = 0;
  for (let j = 0; j < n; j++) s = f(s + f(x[xo + j] * x[xo + j]));
  return f(s / n);
}

function blockWeights(x: Float32Array, xo: number, qw: Float32Array, wo: number, sigma2: number): void {
  for (let j = 0; j < 32; j++) w[j] = f(qw[wo + j] * f(Math.sqrt(f(sigma2 + f(x[xo + j] * x[xo + j])))));
}

const codes = new Uint8Array(32);

/** Q5_0: f16 d, qh[4], qs[16] — 22 bytes per 32 values; one row of `n` values. */
export function quantizeQ5_0(x: Float32Array, xo: number, n: number, out: Uint8Array, oo: number, qw: Float32Array | null): void {
  const sigma2 = qw ? rowSigma2(x, xo, n) : 0;
  for (let ib = 0; ib < n / 32; ib++, xo += 32, oo += 22) {
    if (qw) {
      blockWeights(x, xo, qw, 32 * ib, sigma2);
      putF16(out, oo, makeQxQuants(32, 16, x, xo, L, 0, w, 0));
      packQ5(out, oo + 2, oo + 6, L);
      continue;
    }
    const d = f(maxByMagnitude(32, x, xo) / -16);
    const id = d ? f(1 / d) : 0;
    putF16(out, oo, d);
    for (let j = 0; j < 32; j++) {
      // (int8_t)(x·id + 16.5): truncate, keep the low byte as signed, then MIN(31, ·).
      const t = (f(f(x[xo + j] * id) + 16.5) | 0) << 24 >> 24;
      codes[j] = Math.min(31, t);
    }
    packQ5(out, oo + 2, oo + 6, codes);
  }
}

/** Q5_1: f16 d, f16 m, qh[4], qs[16] — 24 bytes per 32 values; one row of `n` values. */
export function quantizeQ5_1(x: Float32Array, xo: number, n: number, out: Uint8Array, oo: number, qw: Float32Array | null): void {
  const sigma2 = qw ? rowSigma2(x, xo, n) : 0;
  for (let ib = 0; ib < n / 32; ib++, xo += 32, oo += 24) {
    if (qw) {
      blockWeights(x, xo, qw, 32 * ib, sigma2);
      const d = makeQkxQuants(32, 31, x, xo, w, L, 0, aux, f(-0.9), f(0.05), 36, false);
      putF16(out, oo, d);
      putF16(out, oo + 2, -qkxMin[0]);
      packQ5(out, oo + 4, oo + 8, L);
      continue;
    }
    let min = FLT_MAX, max = -FLT_MAX;
    for (let j = 0; j < 32; j++) {
      const v = x[xo + j];
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const d = f(f(max - min) / 31);
    const id = d ? f(1 / d) : 0;
    putF16(out, oo, d);
    putF16(out, oo + 2, min);
    // (uint8_t)((x − min)·id + 0.5), with no clamp: the reference keeps the low byte.
    for (let j = 0; j < 32; j++) codes[j] = f(f(f(x[xo + j] - min) * id) + 0.5) | 0;
    packQ5(out, oo + 4, oo + 8, codes);
  }
}

/**
 * One super-block of `quantize_row_iq4_nl_impl` with ntry 7: per 32 values the scale that
 * best fits the non-linear grid, then (IQ4_XS) 6-bit scales under one f16 d.
 * `qs` is where the nibbles go; for IQ4_XS `so` is the scales_h/scales_l offset.
 */
function iq4Block(sbs: number, x: Float32Array, xo: number, out: Uint8Array, dOff: number, so: number, qs: number, qw: Float32Array | null, wo: number): void {
  const values = KVALUES_IQ4NL;
  const ntry = 7; // ggml_quantize_chunk's search width for both IQ4 types
  let sigma2 = 0;
  for (let j = 0; j < sbs; j++) sigma2 = f(sigma2 + f(x[xo + j] * x[xo + j]));
  sigma2 = f(sigma2 * (2 / sbs));
  out.fill(0, qs, qs + sbs / 2);
  putF16(out, dOff, 0);
  let maxScale = 0, amaxScale = 0;
  const nb = sbs / 32;
  for (let ib = 0; ib < nb; ib++) {
    const xb = xo + 32 * ib;
    if (qw) blockWeights(x, xb, qw, wo + 32 * ib, sigma2);
    else for (let j = 0; j < 32; j++) w[j] = f(x[xb + j] * x[xb + j]);
    const max = maxByMagnitude(32, x, xb);
    if (Math.abs(max) < GROUP_MAX_EPS) {
      scales[ib] = 0;
      continue;
    }
    let d = f(-max / values[0]);
    let id = f(1 / d);
    let sumqx = 0, sumq2 = 0;
    for (let j = 0; j < 32; j++) {
      const l = bestIndexInt8(values, f(id * x[xb + j]));
      L[32 * ib + j] = l;
      const q = values[l];
      sumqx = f(sumqx + f(f(w[j] * q) * x[xb + j]));
      sumq2 = f(sumq2 + f(f(w[j] * q) * q));
    }
    d = sumq2 > 0 ? f(sumqx / sumq2) : 0;
    let best = f(d * sumqx);
    for (let itry = -ntry; itry <= ntry; itry++) {
      id = f((itry + values[0]) / max);
      sumqx = 0;
      sumq2 = 0;
      for (let j = 0; j < 32; j++) {
        const q = values[bestIndexInt8(values, f(id * x[xb + j]))];
        sumqx = f(sumqx + f(f(w[j] * q) * x[xb + j]));
        sumq2 = f(sumq2 + f(f(w[j] * q) * q));
      }
      if (sumq2 > 0 && f(sumqx * sumqx) > f(best * sumq2)) {
        d = f(sumqx / sumq2);
        best = f(d * sumqx);
      }
    }
    scales[ib] = d;
    if (Math.abs(d) > amaxScale) { amaxScale = Math.abs(d); maxScale = d; }
  }
  if (nb > 1) {
    out[so] = 0;
    out[so + 1] = 0;
    const d = f(-maxScale / 32);
    putF16(out, dOff, d);
    const id = d ? f(1 / d) : 0;
    for (let ib = 0; ib < nb; ib++) {
      let l = Math.max(-32, Math.min(31, nearestInt(f(id * scales[ib]))));
      const dl = f(d * l);
      const idl = dl ? f(1 / dl) : 0;
      for (let j = 0; j < 32; j++) L[32 * ib + j] = bestIndexInt8(values, f(idl * x[xo + 32 * ib + j]));
      l += 32;
      if (ib % 2 === 0) out[so + 2 + (ib >> 1)] = l & 0xf;
      else out[so + 2 + (ib >> 1)] |= (l & 0xf) << 4;
      // scales_h is a little-endian u16 holding 2 high bits per sub-block (8 sub-blocks).
      out[so + (ib >> 2)] |= (l >> 4) << (2 * (ib & 3));
    }
  } else {
    putF16(out, dOff, scales[0]);
    const id = scales[0] ? f(1 / scales[0]) : 0;
    for (let j = 0; j < sbs; j++) L[j] = bestIndexInt8(values, f(id * x[xo + j]));
  }
  for (let i = 0; i < sbs / 32; i++) {
    for (let j = 0; j < 16; j++) out[qs + 16 * i + j] = L[32 * i + j] | (L[32 * i + 16 + j] << 4);
  }
}

/** IQ4_NL: f16 d, qs[16] — 18 bytes per 32 values; one row of `n` values. */
export function quantizeIq4Nl(x: Float32Array, xo: number, n: number, out: Uint8Array, oo: number, qw: Float32Array | null): void {
  for (let ib = 0; ib < n / 32; ib++) iq4Block(32, x, xo + 32 * ib, out, oo + 18 * ib, -1, oo + 18 * ib + 2, qw, 32 * ib);
}

/** IQ4_XS: f16 d, u16 scales_h, scales_l[4], qs[128] — 136 bytes per 256 values; one row. */
export function quantizeIq4Xs(x: Float32Array, xo: number, n: number, out: Uint8Array, oo: number, qw: Float32Array | null): void {
  for (let ib = 0; ib < n / 256; ib++) {
    const o = oo + 136 * ib;
    iq4Block(256, x, xo + 256 * ib, out, o, o + 2, o + 8, qw, 256 * ib);
  }
}
