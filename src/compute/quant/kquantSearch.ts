/**
 * The scale searches behind ggml's K-quant, Q5 and IQ4 quantizers, in float32 steps:
 * each product, sum and quotient is rounded to f32 on its own (`f`), in the order the
 * reference evaluates it (left to right, no fused multiply-add), so that the chosen
 * codes and scales come out byte-identical to `ggml_quantize_chunk`.
 *
 * Arrays are passed with offsets rather than as subarrays: these run once per 16 or
 * 32 values and must not allocate.
 */

import { QKX_AUX, QKX_SUMS, QKX_W, QKX_X, QKX_XM, qkxWasm } from './kquantWasm';

const f = Math.fround;

// ggml's GROUP_MAX_EPS (1e-15f): groups whose largest |x| is below it are all zero.
export const GROUP_MAX_EPS = f(1e-15);
const TENTH = f(0.1);

const NI_F = new Float32Array(1);
const NI_U = new Uint32Array(NI_F.buffer);

/**
 * ggml's `nearest_int`: adds 1.5·2^23 in f32 and reads the low mantissa bits, which
 * rounds half to even. Outside ±2^22 the reference's assert is compiled out, and the
 * same bit arithmetic gives the same (meaningless) integer here.
 */
export function nearestInt(v: number): number {
  // Fast path: adding 1.5·2^52 rounds a double to an integer, ties to even; for an f32 v
  // within ±4194303 that is exactly the reference's f32 result. NaN and the rest take the bits.
  const r = v + 6755399441055744 - 6755399441055744;
  if (r <= 4194303 && r >= -4194303) return r | 0;
  NI_F[0] = v + 12582912;
  return (NI_U[0] & 0x7fffff) - 0x400000;
}

/** The value of largest |x| among n (the first of equal magnitudes, whatever its sign); 0 when all are 0 or NaN. */
export function maxByMagnitude(n: number, x: Float32Array, xo: number): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]);
    if (ax > amax) { amax = ax; max = x[xo + i]; }
  }
  return max;
}

/**
 * `make_qx_quants` with `rmse_type` 1: symmetric codes in [0, 2·nmax), weights `qw`
 * (or x² when qw is null), then the ±0.9 scale search. Returns the scale.
 */
export function makeQxQuants(n: number, nmax: number, x: Float32Array, xo: number, L: Uint8Array, lo: number, qw: Float32Array | null, wo: number): number {
  // maxByMagnitude, inlined: this runs once per 16 or 32 values, and the call measured slower here.
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]);
    if (ax > amax) { amax = ax; max = x[xo + i]; }
  }
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, lo, lo + n);
    return 0;
  }
  const wasm = qkxWasm();
  if (wasm) return qxSearchWasm(wasm, n, nmax, x, xo, L, lo, qw, wo, max);
  let iscale = f(-nmax / max);
  let suml2 = symmetricCodes(n, nmax, x, xo, L, lo, qw, wo, iscale);
  let sumlx = first[0];
  let scale = suml2 ? f(sumlx / suml2) : 0;
  let best = f(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = f(-f(nmax + f(TENTH * is)) / max);
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i];
      let l = nearestInt(f(iscale * xi));
      l = Math.max(-nmax, Math.min(nmax - 1, l));
      const w = qw ? qw[wo + i] : f(xi * xi);
      sumlx = f(sumlx + f(f(w * xi) * l));
      suml2 = f(suml2 + f(f(w * l) * l));
    }
    if (suml2 > 0 && f(sumlx * sumlx) > f(best * suml2)) {
      for (let i = 0; i < n; i++) {
        const l = nearestInt(f(iscale * x[xo + i]));
        L[lo + i] = nmax + Math.max(-nmax, Math.min(nmax - 1, l));
      }
      scale = f(sumlx / suml2);
      best = f(scale * sumlx);
    }
  }
  return scale;
}

/** `makeQxQuants` after its all-zero check, with the step loop in WebAssembly (same f32 steps). */
function qxSearchWasm(wasm: NonNullable<ReturnType<typeof qkxWasm>>, n: number, nmax: number, x: Float32Array, xo: number, L: Uint8Array, lo: number, qw: Float32Array | null, wo: number, max: number): number {
  const { exports: e, f32: m, i32: mi } = wasm;
  const X = QKX_X >> 2, W = QKX_W >> 2, AUX = QKX_AUX >> 2, S = QKX_SUMS >> 2;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i];
    m[X + i] = xi;
    m[W + i] = qw ? qw[wo + i] : xi * xi; // the Float32Array store rounds x² to f32, as C does
  }
  e.qx(n, nmax, f(-nmax / max));
  for (let i = 0; i < n; i++) L[lo + i] = mi[AUX + i] + nmax;
  let sumlx = m[S], suml2 = m[S + 1];
  let scale = suml2 ? f(sumlx / suml2) : 0;
  let best = f(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    e.qx(n, nmax, f(-f(nmax + f(TENTH * is)) / max));
    sumlx = m[S];
    suml2 = m[S + 1];
    if (suml2 > 0 && f(sumlx * sumlx) > f(best * suml2)) {
      for (let i = 0; i < n; i++) L[lo + i] = mi[AUX + i] + nmax;
      scale = f(sumlx / suml2);
      best = f(scale * sumlx);
    }
  }
  return scale;
}

// Σw·x·l of the last `symmetricCodes` (its second result, returned without allocating, in typed
// storage as `fit` below).
const first = new Float32Array(1);

/**
 * The first pass of `make_qx_quants` and `make_q3_quants`: codes nearest x·iscale in
 * [−nmax, nmax), stored offset by nmax, under weights `qw` (x² when null). Returns Σw·l²
 * and leaves Σw·x·l in `firstSumlx`.
 */
function symmetricCodes(n: number, nmax: number, x: Float32Array, xo: number, L: Uint8Array, lo: number, qw: Float32Array | null, wo: number, iscale: number): number {
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i];
    let l = nearestInt(f(iscale * xi));
    l = Math.max(-nmax, Math.min(nmax - 1, l));
    L[lo + i] = l + nmax;
    const w = qw ? qw[wo + i] : f(xi * xi);
    sumlx = f(sumlx + f(f(w * xi) * l));
    suml2 = f(suml2 + f(f(w * l) * l));
  }
  first[0] = sumlx;
  return suml2;
}

/**
 * `make_q3_quants` with `do_rmse`: x²-weighted codes in [−nmax, nmax), refined one value
 * at a time for up to five passes, stored offset by nmax.
 */
export function makeQ3Quants(n: number, nmax: number, x: Float32Array, xo: number, L: Uint8Array, lo: number): number {
  const max = maxByMagnitude(n, x, xo);
  if (Math.abs(max) < GROUP_MAX_EPS) {
    L.fill(0, lo, lo + n);
    return 0;
  }
  let suml2 = symmetricCodes(n, nmax, x, xo, L, lo, null, 0, f(-nmax / max));
  let sumlx = first[0];
  for (let itry = 0; itry < 5; itry++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i];
      const w = f(xi * xi);
      const li = L[lo + i] - nmax;
      let slx = f(sumlx - f(f(w * xi) * li));
      if (slx > 0) {
        let sl2 = f(suml2 - f(f(w * li) * li));
        let nl = nearestInt(f(f(xi * sl2) / slx));
        nl = Math.max(-nmax, Math.min(nmax - 1, nl));
        if (nl !== li) {
          slx = f(slx + f(f(w * xi) * nl));
          sl2 = f(sl2 + f(f(w * nl) * nl));
          if (sl2 > 0 && f(f(slx * slx) * suml2) > f(f(sumlx * sumlx) * sl2)) {
            L[lo + i] = nl + nmax;
            sumlx = slx;
            suml2 = sl2;
            changed++;
          }
        }
      }
    }
    if (!changed) break;
  }
  return suml2 > 0 ? f(sumlx / suml2) : 0;
}

// x − min for the current minimum (f32, as the reference computes it in each step).
const xm = new Float32Array(32);

/** Where `makeQkxQuants` leaves the group's minimum (negated, as the reference's `the_min`). */
export const qkxMin = new Float32Array(1);

/** Where `fitStep` leaves its fit, scale then minimum (f32 values; no object is returned in the hot loop). */
const fit = new Float32Array(2);

/**
 * One step's weighted least-squares fit x ≈ scale·l + min from the sums Σw, Σwx, Σwl, Σwl²
 * and Σwlx (f32 steps, as the reference's), with the minimum kept ≤ 0: false where the codes
 * do not spread (the determinant is not positive), else the fit in `fit`.
 */
function fitStep(sumW: number, sumX: number, sumL: number, sumL2: number, sumXL: number): boolean {
  const D = f(f(sumW * sumL2) - f(sumL * sumL));
  if (!(D > 0)) return false;
  const min = f(f(f(sumL2 * sumX) - f(sumL * sumXL)) / D);
  if (min > 0) {
    fit[0] = f(sumXL / sumL2);
    fit[1] = 0;
  } else {
    fit[0] = f(f(f(sumW * sumXL) - f(sumX * sumL)) / D);
    fit[1] = min;
  }
  return true;
}

/**
 * `make_qkx2_quants` / `make_qkx3_quants` (the same steps when the weights are given):
 * asymmetric codes in [0, nmax] with a minimum ≤ 0, then `nstep + 1` least-squares fits
 * of scale and minimum. `mad` picks |error| over error² as the measure.
 * Returns the scale; the minimum goes to `qkxMin[0]`. `aux` holds n scratch codes.
 */
export function makeQkxQuants(n: number, nmax: number, x: Float32Array, xo: number, w: Float32Array, L: Uint8Array, lo: number, aux: Uint8Array, rmin: number, rdelta: number, nstep: number, mad: boolean): number {
  let min = x[xo];
  let max = x[xo];
  let sumW = w[0];
  let sumX = f(sumW * x[xo]);
  for (let i = 1; i < n; i++) {
    const xi = x[xo + i];
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    sumW = f(sumW + w[i]);
    sumX = f(sumX + f(w[i] * xi));
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0, lo, lo + n);
    qkxMin[0] = -min;
    return 0;
  }
  let iscale = f(nmax / f(max - min));
  let scale = f(1 / iscale);
  let bestErr = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i];
    const l = Math.max(0, Math.min(nmax, nearestInt(f(iscale * f(xi - min)))));
    L[lo + i] = l;
    let diff = f(f(f(scale * l) + min) - xi);
    diff = mad ? Math.abs(diff) : f(diff * diff);
    bestErr = f(bestErr + f(w[i] * diff));
  }
  const wasm = qkxWasm();
  if (wasm) return qkxSearchWasm(wasm, n, nmax, x, xo, w, L, lo, min, max, sumW, sumX, scale, bestErr, rmin, rdelta, nstep, mad);
  for (let i = 0; i < n; i++) xm[i] = x[xo + i] - min;
  for (let is = 0; is <= nstep; is++) {
    // min moves when a fit wins, and the reference's later steps use the new one.
    iscale = f(f(f(rmin + f(rdelta * is)) + nmax) / f(max - min));
    let sumL = 0, sumL2 = 0, sumXL = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i];
      const v = f(iscale * xm[i]);
      let l = v + 6755399441055744 - 6755399441055744; // nearestInt, inlined for the hot loop
      if (!(l <= 4194303 && l >= -4194303)) l = nearestInt(v);
      l = l < 0 ? 0 : l > nmax ? nmax : l;
      aux[i] = l;
      const wl = f(w[i] * l);
      sumL = f(sumL + wl);
      sumL2 = f(sumL2 + f(wl * l));
      sumXL = f(sumXL + f(wl * xi));
    }
    if (!fitStep(sumW, sumX, sumL, sumL2, sumXL)) continue;
    const thisScale = fit[0], thisMin = fit[1];
    let err = 0;
    for (let i = 0; i < n; i++) {
      let diff = f(f(f(thisScale * aux[i]) + thisMin) - x[xo + i]);
      diff = mad ? Math.abs(diff) : f(diff * diff);
      err = f(err + f(w[i] * diff));
    }
    if (err < bestErr) {
      for (let i = 0; i < n; i++) L[lo + i] = aux[i];
      bestErr = err;
      scale = thisScale;
      min = thisMin;
      for (let i = 0; i < n; i++) xm[i] = x[xo + i] - min;
    }
  }
  qkxMin[0] = -min;
  return scale;
}

/** The step search of `makeQkxQuants` with its two inner loops in WebAssembly (same f32 steps). */
function qkxSearchWasm(wasm: NonNullable<ReturnType<typeof qkxWasm>>, n: number, nmax: number, x: Float32Array, xo: number, w: Float32Array, L: Uint8Array, lo: number, min: number, max: number, sumW: number, sumX: number, scale: number, bestErr: number, rmin: number, rdelta: number, nstep: number, mad: boolean): number {
  const { exports: e, f32: m, i32: mi } = wasm;
  const X = QKX_X >> 2, XM = QKX_XM >> 2, W = QKX_W >> 2, AUX = QKX_AUX >> 2, S = QKX_SUMS >> 2;
  for (let i = 0; i < n; i++) {
    m[X + i] = x[xo + i];
    m[XM + i] = x[xo + i] - min;
    m[W + i] = w[i];
  }
  const madFlag = mad ? 1 : 0;
  for (let is = 0; is <= nstep; is++) {
    const iscale = f(f(f(rmin + f(rdelta * is)) + nmax) / f(max - min));
    e.step(n, nmax, iscale);
    const sumL = m[S], sumL2 = m[S + 1], sumXL = m[S + 2];
    if (!fitStep(sumW, sumX, sumL, sumL2, sumXL)) continue;
    const thisScale = fit[0], thisMin = fit[1];
    const err = e.err(n, thisScale, thisMin, madFlag);
    if (err < bestErr) {
      for (let i = 0; i < n; i++) L[lo + i] = mi[AUX + i];
      bestErr = err;
      scale = thisScale;
      min = thisMin;
      for (let i = 0; i < n; i++) m[XM + i] = x[xo + i] - min;
    }
  }
  qkxMin[0] = -min;
  return scale;
}

/**
 * `make_qp_quants`: codes in [0, nmax] for non-negative values (the sub-block scales and
 * minimums) under weights `qw`, with a ±0.4 search and five refinement passes.
 */
export function makeQpQuants(n: number, nmax: number, x: Float32Array, L: Uint8Array, qw: Float32Array): number {
  let max = 0;
  for (let i = 0; i < n; i++) max = max > x[i] ? max : x[i];
  if (max < GROUP_MAX_EPS) {
    L.fill(0, 0, n);
    return 0;
  }
  let iscale = f(nmax / max);
  for (let i = 0; i < n; i++) L[i] = nearestInt(f(iscale * x[i]));
  const scale = f(1 / iscale);
  let bestMse = 0;
  for (let i = 0; i < n; i++) {
    const diff = f(x[i] - f(scale * L[i]));
    bestMse = f(bestMse + f(f(qw[i] * diff) * diff));
  }
  for (let is = -4; is <= 4; is++) {
    if (is === 0) continue;
    const iscaleIs = f(f(f(TENTH * is) + nmax) / max);
    const scaleIs = f(1 / iscaleIs);
    let mse = 0;
    for (let i = 0; i < n; i++) {
      const l = Math.min(nmax, nearestInt(f(iscaleIs * x[i])));
      const diff = f(x[i] - f(scaleIs * l));
      mse = f(mse + f(f(qw[i] * diff) * diff));
    }
    if (mse < bestMse) {
      bestMse = mse;
      iscale = iscaleIs;
    }
  }
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const l = Math.min(nmax, nearestInt(f(iscale * x[i])));
    L[i] = l;
    sumlx = f(sumlx + f(f(qw[i] * x[i]) * l));
    suml2 = f(suml2 + f(f(qw[i] * l) * l));
  }
  for (let itry = 0; itry < 5; itry++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const w = qw[i];
      const li = L[i];
      let slx = f(sumlx - f(f(w * x[i]) * li));
      let sl2 = f(suml2 - f(f(w * li) * li));
      if (slx > 0 && sl2 > 0) {
        const nl = Math.min(nmax, nearestInt(f(f(x[i] * sl2) / slx)));
        if (nl !== li) {
          slx = f(slx + f(f(w * x[i]) * nl));
          sl2 = f(sl2 + f(f(w * nl) * nl));
          if (f(f(slx * slx) * suml2) > f(f(sumlx * sumlx) * sl2)) {
            L[i] = nl;
            sumlx = slx;
            suml2 = sl2;
            changed++;
          }
        }
      }
    }
    if (!changed) break;
  }
  return suml2 > 0 ? f(sumlx / suml2) : 0;
}

/** `best_index_int8`: the index of the table value nearest to v (ties to the lower one's neighbour as the reference). */
export function bestIndexInt8(values: Int8Array, v: number): number {
  const n = values.length;
  if (v <= values[0]) return 0;
  if (v >= values[n - 1]) return n - 1;
  let ml = 0;
  let mu = n - 1;
  while (mu - ml > 1) {
    const mav = (ml + mu) >> 1;
    if (v < values[mav]) mu = mav;
    else ml = mav;
  }
  return f(v - values[mu - 1]) < f(values[mu] - v) ? mu - 1 : mu;
}
