import { Fn, OP, SIMD, T, assemble, instantiate, type WasmMemory } from '../cpu/wasmAsm';
import { qkxWasm } from './kquantWasm';

/**
 * The whole scale searches of `make_qkx2/3_quants` (Q4_K, Q5_K) and `make_qx_quants`
 * (Q6_K) in WebAssembly SIMD, four groups at once: lane g of every vector belongs to group
 * g of a quad, so each group's sums run in the reference's order, one f32 rounding per
 * operation, never fused. The reference's branches become per-lane selects; a lane the
 * reference would skip (D ≤ 0, an all-equal or all-zero group) is masked out of the
 * update. Results equal `makeQkxQuants` / `makeQxQuants` bit for bit.
 *
 * Memory (bytes): X input values in natural order, W weights in natural order (when
 * given), L codes out (i32, indexed as X), SC scale per group, MN −min per group; then
 * the transposed scratch of one quad.
 *
 * `qkxFn` and `qxFn` are longer than 80 lines on purpose: each emits one WebAssembly
 * function, and its two dozen locals are shared by every step of the search; split up, the
 * pieces would pass them all around and read less like the reference they follow.
 */
export const QUAD_X = 0;
export const QUAD_W = 16384;
export const QUAD_L = 32768;
export const QUAD_SC = 49152;
export const QUAD_MN = 50176;
// One call takes at most this many values: the regions above hold 4096 words each.
export const QUAD_MAX_VALUES = 4096;
const XT = 51200, XMT = 51712, WT = 52224, AUX = 52736, LB = 53248;
/** Per-group step d and offset dm of one super-block, for `codes` (16 f32 each). */
export const QUAD_D = 53760;
export const QUAD_DM = 53824;

// Opcodes wasmAsm does not name.
const F32_CONVERT_I32_S = 0xb2;
const F32_NEG = 0x8c;
const F32X4_LT = 0x43;
const F32X4_GT = 0x44;
const F32X4_NEG = 0xe1;
const F32X4_SQRT = 0xe3;
const F32X4_PMIN = 0xea;
const I32X4_ALL_TRUE = 0xa3;
const I32_DIV_U = 0x6e;
// ggml's GROUP_MAX_EPS.
const GROUP_MAX_EPS = 1e-15;

export interface QuadExports {
  memory: WasmMemory;
  /** `make_qkx2/3_quants` on `groups` groups of 32 (a multiple of 4); `wmode` 1 reads W, 0 uses Q4_K/Q5_K's av_x + |x|. */
  qkx(groups: number, nmax: number, rmin: number, rdelta: number, nstep: number, wmode: number): void;
  /** `make_qx_quants` (rmse_type 1) on `groups` groups of 16 (a multiple of 4); `wmode` 1 reads W, 0 weighs by x². */
  qx(groups: number, nmax: number, wmode: number): void;
  /**
   * The final codes of super-block k of the call: clamp(nearest_int((x + dm)/d), lo, hi) + bias
   * per group of n, from QUAD_D/QUAD_DM; a group whose d is 0 keeps the search's codes.
   */
  codes(k: number, n: number, lo: number, hi: number, bias: number): void;
}

/** Emission helpers for one function: constant locals and the loops every kernel uses. */
class Emit {
  readonly magic: number;
  readonly mask: number;
  readonly off: number;
  readonly zero: number;
  constructor(readonly f: Fn) {
    this.magic = f.local(T.v128);
    this.mask = f.local(T.v128);
    this.off = f.local(T.v128);
    this.zero = f.local(T.v128);
    f.f32(12582912).simd(SIMD.f32x4_splat).set(this.magic);
    f.i32(0x7fffff).simd(SIMD.i32x4_splat).set(this.mask);
    f.i32(0x400000).simd(SIMD.i32x4_splat).set(this.off);
    f.f32(0).simd(SIMD.f32x4_splat).set(this.zero);
  }
  /** Pushes the v128 at base + o. */
  ld(o: number, base: number): Fn {
    return this.f.get(o).simdMem(SIMD.v128_load, base, 4);
  }
  /** f32x4 on the stack → ggml's nearest_int of each lane (add 1.5·2^23 in f32, keep the low mantissa bits). */
  nearest(): Fn {
    return this.f.get(this.magic).simd(SIMD.f32x4_add).get(this.mask).simd(SIMD.v128_and).get(this.off).simd(SIMD.i32x4_sub);
  }
  /** local `dst` = `a` where `m`, else `b`. */
  sel(dst: number, a: number, b: number, m: number): void {
    this.f.get(a).get(b).get(m).simd(SIMD.v128_bitselect).set(dst);
  }
  /** A loop over rows: `o` takes the byte offsets from·16, (from+1)·16, … below n·16. */
  rows(o: number, from: number, n: number, body: () => void): void {
    const f = this.f;
    f.i32(from * 16).set(o).loop();
    body();
    f.get(o).i32(16).op(OP.i32_add).tee(o).i32(n * 16).op(OP.i32_lt_u).op(OP.br_if, 0).end();
  }
  /** Four groups of n f32 at src + base (natural order) → dst transposed: lane g of row i is group g's value i. */
  transpose(src: number, dst: number, n: number, base: number, p: number, t: number): void {
    const f = this.f;
    for (let g = 0; g < 4; g++) {
      f.get(base).i32(g * n * 4).op(OP.i32_add).set(p).i32(g * 4).set(t).loop();
      f.get(t).get(p).mem(OP.f32_load, src, 2).mem(OP.f32_store, dst, 2);
      f.get(p).i32(4).op(OP.i32_add).set(p);
      f.get(t).i32(16).op(OP.i32_add).tee(t).i32(n * 16 + g * 4).op(OP.i32_lt_u).op(OP.br_if, 0).end();
    }
  }
  /** Lane g of the n rows at `from` (i32) → L at base + g·n·4 + i·4 (natural order), zero in the lanes of `drop`. */
  untranspose(from: number, n: number, base: number, drop: number, o: number, p: number): void {
    const f = this.f;
    for (let g = 0; g < 4; g++) {
      f.get(base).i32(g * n * 4).op(OP.i32_add).set(p);
      this.rows(o, 0, n, () => {
        f.get(p);
        this.ld(o, from).get(drop).simd(SIMD.v128_andnot).lane(SIMD.i32x4_extract_lane, g);
        f.mem(OP.i32_store, QUAD_L, 2);
        f.get(p).i32(4).op(OP.i32_add).set(p);
      });
    }
  }
  /** Pushes clamp(nearest(iscale · row o of `src`), lo, hi) as i32x4 and stores it at `dst` + o. */
  codes(o: number, iscale: number, src: number, lo: number, hi: number, dst: number, l: number): void {
    const f = this.f;
    f.get(o).get(iscale);
    this.ld(o, src).simd(SIMD.f32x4_mul);
    this.nearest().get(hi).simd(SIMD.i32x4_min_s).get(lo).simd(SIMD.i32x4_max_s).tee(l).simdMem(SIMD.v128_store, dst, 4);
  }
}

function qkxFn(): Fn {
  const f = new Fn([T.i32, T.i32, T.f32, T.f32, T.i32, T.i32], []);
  const [groups, nmax, rmin, rdelta, nstep, wmode] = [0, 1, 2, 3, 4, 5];
  const e = new Emit(f);
  const qb = f.local(T.i32), sc = f.local(T.i32), p = f.local(T.i32), t = f.local(T.i32), o = f.local(T.i32), is = f.local(T.i32);
  const v = () => f.local(T.v128);
  const x = v(), w = v(), vmin = v(), vmax = v(), sumW = v(), sumX = v(), scale = v(), bestErr = v(), iscale = v(), acc = v();
  const sumL = v(), sumL2 = v(), sumXL = v(), D = v(), ts = v(), tm = v(), pm = v(), upd = v(), eq = v(), l = v(), fl = v(), wl = v(), nmaxI = v();
  f.get(nmax).simd(SIMD.i32x4_splat).set(nmaxI);
  f.i32(0).set(qb).i32(0).set(sc).loop();
  e.transpose(QUAD_X, XT, 32, qb, p, t);
  f.get(wmode).if_();
  e.transpose(QUAD_W, WT, 32, qb, p, t);
  f.op(OP.else);
  // Q4_K/Q5_K's reference weights: av_x = sqrt(Σx²/32) (summed in order), w = av_x + |x|.
  f.get(e.zero).set(acc);
  e.rows(o, 0, 32, () => void f.get(acc).get(o).simdMem(SIMD.v128_load, XT, 4).tee(x).get(x).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(acc));
  f.get(acc).f32(32).simd(SIMD.f32x4_splat).simd(SIMD.f32x4_div).simd(F32X4_SQRT).set(acc);
  e.rows(o, 0, 32, () => void f.get(o).get(acc).get(o).simdMem(SIMD.v128_load, XT, 4).simd(SIMD.f32x4_abs).simd(SIMD.f32x4_add).simdMem(SIMD.v128_store, WT, 4));
  f.end();
  // min, max, Σw, Σw·x, in the reference's order.
  f.i32(0).set(o);
  e.ld(o, XT).tee(vmin).set(vmax);
  e.ld(o, WT).tee(sumW).get(vmin).simd(SIMD.f32x4_mul).set(sumX);
  e.rows(o, 1, 32, () => {
    e.ld(o, XT).set(x);
    e.ld(o, WT).set(w);
    f.get(x).get(vmin).get(x).get(vmin).simd(F32X4_LT).simd(SIMD.v128_bitselect).set(vmin);
    f.get(x).get(vmax).get(x).get(vmax).simd(F32X4_GT).simd(SIMD.v128_bitselect).set(vmax);
    f.get(sumW).get(w).simd(SIMD.f32x4_add).set(sumW);
    f.get(sumX).get(w).get(x).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(sumX);
  });
  f.get(e.zero).get(vmin).get(vmin).get(e.zero).simd(F32X4_GT).simd(SIMD.v128_bitselect).set(vmin);
  f.get(vmax).get(vmin).simd(SIMD.f32x4_eq).set(eq);
  f.get(nmax).op(F32_CONVERT_I32_S).simd(SIMD.f32x4_splat).get(vmax).get(vmin).simd(SIMD.f32x4_sub).simd(SIMD.f32x4_div).set(iscale);
  f.f32(1).simd(SIMD.f32x4_splat).get(iscale).simd(SIMD.f32x4_div).set(scale);
  // The first codes and their error; x − min for the steps.
  f.get(e.zero).set(bestErr);
  e.rows(o, 0, 32, () => {
    e.ld(o, XT).tee(x).get(vmin).simd(SIMD.f32x4_sub).set(fl);
    f.get(o).get(fl).simdMem(SIMD.v128_store, XMT, 4);
    f.get(o).get(iscale).get(fl).simd(SIMD.f32x4_mul);
    e.nearest().get(nmaxI).simd(SIMD.i32x4_min_s).get(e.zero).simd(SIMD.i32x4_max_s).tee(l).simdMem(SIMD.v128_store, LB, 4);
    f.get(scale).get(l).simd(SIMD.f32x4_convert_i32x4_s).simd(SIMD.f32x4_mul).get(vmin).simd(SIMD.f32x4_add).get(x).simd(SIMD.f32x4_sub).tee(fl).get(fl).simd(SIMD.f32x4_mul).set(fl);
    f.get(bestErr);
    e.ld(o, WT).get(fl).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(bestErr);
  });
  // The steps: iscale = (rmin + rdelta·is + nmax) / (max − min), min as the last winning fit left it.
  f.i32(0).set(is).loop();
  f.get(rmin).get(rdelta).get(is).op(F32_CONVERT_I32_S).op(OP.f32_mul).op(OP.f32_add).get(nmax).op(F32_CONVERT_I32_S).op(OP.f32_add).simd(SIMD.f32x4_splat);
  f.get(vmax).get(vmin).simd(SIMD.f32x4_sub).simd(SIMD.f32x4_div).set(iscale);
  f.get(e.zero).tee(sumL).tee(sumL2).set(sumXL);
  e.rows(o, 0, 32, () => {
    e.codes(o, iscale, XMT, e.zero, nmaxI, AUX, l);
    f.get(l).simd(SIMD.f32x4_convert_i32x4_s).set(fl);
    e.ld(o, WT).get(fl).simd(SIMD.f32x4_mul).set(wl);
    f.get(sumL).get(wl).simd(SIMD.f32x4_add).set(sumL);
    f.get(sumL2).get(wl).get(fl).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(sumL2);
    f.get(sumXL).get(wl);
    e.ld(o, XT).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(sumXL);
  });
  f.get(sumW).get(sumL2).simd(SIMD.f32x4_mul).get(sumL).get(sumL).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_sub).set(D);
  f.get(sumW).get(sumXL).simd(SIMD.f32x4_mul).get(sumX).get(sumL).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_sub).get(D).simd(SIMD.f32x4_div).set(ts);
  f.get(sumL2).get(sumX).simd(SIMD.f32x4_mul).get(sumL).get(sumXL).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_sub).get(D).simd(SIMD.f32x4_div).set(tm);
  f.get(tm).get(e.zero).simd(F32X4_GT).set(pm);
  f.get(sumXL).get(sumL2).simd(SIMD.f32x4_div).set(acc);
  e.sel(ts, acc, ts, pm);
  e.sel(tm, e.zero, tm, pm);
  f.get(e.zero).set(acc);
  e.rows(o, 0, 32, () => {
    f.get(acc);
    e.ld(o, WT).get(ts);
    e.ld(o, AUX).simd(SIMD.f32x4_convert_i32x4_s).simd(SIMD.f32x4_mul).get(tm).simd(SIMD.f32x4_add);
    e.ld(o, XT).simd(SIMD.f32x4_sub).tee(fl).get(fl).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(acc);
  });
  f.get(D).get(e.zero).simd(F32X4_GT).get(acc).get(bestErr).simd(F32X4_LT).simd(SIMD.v128_and).get(eq).simd(SIMD.v128_andnot).tee(upd);
  f.simd(SIMD.v128_any_true).if_();
  e.sel(bestErr, acc, bestErr, upd);
  e.sel(scale, ts, scale, upd);
  e.sel(vmin, tm, vmin, upd);
  e.rows(o, 0, 32, () => {
    f.get(o);
    e.ld(o, AUX);
    e.ld(o, LB).get(upd).simd(SIMD.v128_bitselect).simdMem(SIMD.v128_store, LB, 4);
    f.get(o);
    e.ld(o, XT).get(vmin).simd(SIMD.f32x4_sub);
    e.ld(o, XMT).get(upd).simd(SIMD.v128_bitselect).simdMem(SIMD.v128_store, XMT, 4);
  });
  f.end();
  f.get(is).i32(1).op(OP.i32_add).tee(is).get(nstep).op(OP.i32_le_s).op(OP.br_if, 0).end();
  // Out: scale (0 where all values were equal), −min, codes (0 there too).
  f.get(sc).get(e.zero).get(scale).get(eq).simd(SIMD.v128_bitselect).simdMem(SIMD.v128_store, QUAD_SC, 4);
  f.get(sc).get(vmin).simd(F32X4_NEG).simdMem(SIMD.v128_store, QUAD_MN, 4);
  e.untranspose(LB, 32, qb, eq, o, p);
  f.get(qb).i32(512).op(OP.i32_add).set(qb);
  f.get(sc).i32(16).op(OP.i32_add).tee(sc).get(groups).i32(4).op(OP.i32_mul).op(OP.i32_lt_u).op(OP.br_if, 0).end();
  return f;
}

function qxFn(): Fn {
  const f = new Fn([T.i32, T.i32, T.i32], []);
  const [groups, nmax, wmode] = [0, 1, 2];
  const e = new Emit(f);
  const qb = f.local(T.i32), sc = f.local(T.i32), p = f.local(T.i32), t = f.local(T.i32), o = f.local(T.i32), is = f.local(T.i32);
  const v = () => f.local(T.v128);
  const x = v(), w = v(), amax = v(), vmax = v(), zero = v(), iscale = v(), scale = v(), best = v(), sumlx = v(), suml2 = v(), upd = v(), l = v(), fl = v(), lo = v(), hi = v(), ns = v();
  const loF = v(), hiF = v(), fin = v(), fast = f.local(T.i32);
  f.i32(0).get(nmax).op(OP.i32_sub).simd(SIMD.i32x4_splat).set(lo);
  f.get(nmax).i32(1).op(OP.i32_sub).simd(SIMD.i32x4_splat).set(hi);
  f.get(lo).simd(SIMD.f32x4_convert_i32x4_s).set(loF);
  f.get(hi).simd(SIMD.f32x4_convert_i32x4_s).set(hiF);
  // w·x, the same f32 product at every step (XMT is free in this search).
  const WX = XMT;
  /**
   * The step sums where every value of the quad is finite: then |iscale·x| ≤ nmax + 1, where
   * roundeven, clamped as floats, is exactly the clamped nearest_int (its bit trick holds below
   * 2^22); the codes themselves are only stored when a step wins (keepCodes).
   */
  const sumsFast = () => {
    f.get(e.zero).tee(sumlx).set(suml2);
    e.rows(o, 0, 16, () => {
      f.get(iscale);
      e.ld(o, XT).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_nearest).get(hiF).simd(F32X4_PMIN).get(loF).simd(SIMD.f32x4_pmax).set(fl);
      f.get(sumlx);
      e.ld(o, WX).get(fl).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(sumlx);
      f.get(suml2);
      e.ld(o, WT).get(fl).simd(SIMD.f32x4_mul).get(fl).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(suml2);
    });
  };
  // The codes of the current iscale into LB, in the lanes of `m` only.
  const keepCodes = (m: number) => {
    e.rows(o, 0, 16, () => {
      f.get(o).get(iscale);
      e.ld(o, XT).simd(SIMD.f32x4_mul);
      e.nearest().get(hi).simd(SIMD.i32x4_min_s).get(lo).simd(SIMD.i32x4_max_s);
      e.ld(o, LB).get(m).simd(SIMD.v128_bitselect).simdMem(SIMD.v128_store, LB, 4);
    });
  };
  // Σw·x·l and Σw·l² of codes clamp(nearest(iscale·x), −nmax, nmax − 1), stored at `dst`.
  const sums = (dst: number) => {
    f.get(e.zero).tee(sumlx).set(suml2);
    e.rows(o, 0, 16, () => {
      e.codes(o, iscale, XT, lo, hi, dst, l);
      f.get(l).simd(SIMD.f32x4_convert_i32x4_s).set(fl);
      e.ld(o, WT).set(w);
      f.get(sumlx).get(w);
      e.ld(o, XT).simd(SIMD.f32x4_mul).get(fl).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(sumlx);
      f.get(suml2).get(w).get(fl).simd(SIMD.f32x4_mul).get(fl).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(suml2);
    });
  };
  f.i32(0).set(qb).i32(0).set(sc).loop();
  e.transpose(QUAD_X, XT, 16, qb, p, t);
  f.get(wmode).if_();
  e.transpose(QUAD_W, WT, 16, qb, p, t);
  f.op(OP.else);
  e.rows(o, 0, 16, () => void f.get(o).get(o).simdMem(SIMD.v128_load, XT, 4).tee(x).get(x).simd(SIMD.f32x4_mul).simdMem(SIMD.v128_store, WT, 4));
  f.end();
  e.rows(o, 0, 16, () => void f.get(o).get(o).simdMem(SIMD.v128_load, WT, 4).get(o).simdMem(SIMD.v128_load, XT, 4).simd(SIMD.f32x4_mul).simdMem(SIMD.v128_store, WX, 4));
  // The value of largest magnitude (the first of equals); whether every value is finite.
  f.get(e.zero).tee(amax).set(vmax);
  f.i32(-1).simd(SIMD.i32x4_splat).set(fin);
  e.rows(o, 0, 16, () => {
    e.ld(o, XT).tee(x).simd(SIMD.f32x4_abs).tee(w).get(amax).simd(F32X4_GT).set(upd);
    e.sel(amax, w, amax, upd);
    e.sel(vmax, x, vmax, upd);
    f.get(fin).get(w).f32(Infinity).simd(SIMD.f32x4_splat).simd(F32X4_LT).simd(SIMD.v128_and).set(fin);
  });
  f.get(fin).simd(I32X4_ALL_TRUE).set(fast);
  f.get(amax).f32(GROUP_MAX_EPS).simd(SIMD.f32x4_splat).simd(F32X4_LT).set(zero);
  f.i32(0).get(nmax).op(OP.i32_sub).op(F32_CONVERT_I32_S).simd(SIMD.f32x4_splat).get(vmax).simd(SIMD.f32x4_div).set(iscale);
  sums(LB);
  f.get(sumlx).get(suml2).simd(SIMD.f32x4_div).get(e.zero).get(suml2).get(e.zero).simd(SIMD.f32x4_ne).simd(SIMD.v128_bitselect).tee(scale);
  f.get(sumlx).simd(SIMD.f32x4_mul).set(best);
  f.i32(-9).set(is).loop();
  f.get(is).if_();
  f.get(nmax).op(F32_CONVERT_I32_S).f32(0.1).get(is).op(F32_CONVERT_I32_S).op(OP.f32_mul).op(OP.f32_add).op(F32_NEG).simd(SIMD.f32x4_splat);
  f.get(vmax).simd(SIMD.f32x4_div).set(iscale);
  f.get(fast).if_();
  sumsFast();
  f.op(OP.else);
  sums(AUX);
  f.end();
  f.get(suml2).get(e.zero).simd(F32X4_GT);
  f.get(sumlx).get(sumlx).simd(SIMD.f32x4_mul).get(best).get(suml2).simd(SIMD.f32x4_mul).simd(F32X4_GT).simd(SIMD.v128_and);
  f.get(zero).simd(SIMD.v128_andnot).tee(upd).simd(SIMD.v128_any_true).if_();
  f.get(sumlx).get(suml2).simd(SIMD.f32x4_div).set(ns);
  e.sel(scale, ns, scale, upd);
  f.get(ns).get(sumlx).simd(SIMD.f32x4_mul).set(ns);
  e.sel(best, ns, best, upd);
  keepCodes(upd);
  f.end();
  f.end();
  f.get(is).i32(1).op(OP.i32_add).tee(is).i32(9).op(OP.i32_le_s).op(OP.br_if, 0).end();
  // Out: codes offset by nmax (0 in all-zero groups), the scale (0 there).
  e.rows(o, 0, 16, () => void f.get(o).get(o).simdMem(SIMD.v128_load, LB, 4).get(nmax).simd(SIMD.i32x4_splat).simd(SIMD.i32x4_add).simdMem(SIMD.v128_store, LB, 4));
  f.get(sc).get(e.zero).get(scale).get(zero).simd(SIMD.v128_bitselect).simdMem(SIMD.v128_store, QUAD_SC, 4);
  e.untranspose(LB, 16, qb, zero, o, p);
  f.get(qb).i32(256).op(OP.i32_add).set(qb);
  f.get(sc).i32(16).op(OP.i32_add).tee(sc).get(groups).i32(4).op(OP.i32_mul).op(OP.i32_lt_u).op(OP.br_if, 0).end();
  return f;
}

function codesFn(): Fn {
  const f = new Fn([T.i32, T.i32, T.i32, T.i32, T.i32], []);
  const [k, n, lo, hi, bias] = [0, 1, 2, 3, 4];
  const e = new Emit(f);
  const p = f.local(T.i32), end = f.local(T.i32), j = f.local(T.i32), d = f.local(T.f32);
  const dv = f.local(T.v128), mv = f.local(T.v128), lov = f.local(T.v128), hiv = f.local(T.v128), bv = f.local(T.v128);
  f.get(lo).simd(SIMD.i32x4_splat).set(lov).get(hi).simd(SIMD.i32x4_splat).set(hiv).get(bias).simd(SIMD.i32x4_splat).set(bv);
  f.get(k).i32(1024).op(OP.i32_mul).set(p);
  f.i32(0).set(j).loop();
  f.get(p).get(n).i32(4).op(OP.i32_mul).op(OP.i32_add).set(end);
  f.get(j).mem(OP.f32_load, QUAD_D, 2).tee(d).f32(0).op(OP.f32_ne).if_();
  f.get(d).simd(SIMD.f32x4_splat).set(dv);
  f.get(j).mem(OP.f32_load, QUAD_DM, 2).simd(SIMD.f32x4_splat).set(mv);
  f.loop();
  f.get(p).get(p).simdMem(SIMD.v128_load, QUAD_X, 4).get(mv).simd(SIMD.f32x4_add).get(dv).simd(SIMD.f32x4_div);
  e.nearest().get(hiv).simd(SIMD.i32x4_min_s).get(lov).simd(SIMD.i32x4_max_s).get(bv).simd(SIMD.i32x4_add).simdMem(SIMD.v128_store, QUAD_L, 4);
  f.get(p).i32(16).op(OP.i32_add).tee(p).get(end).op(OP.i32_lt_u).op(OP.br_if, 0).end();
  f.op(OP.else).get(end).set(p).end();
  f.get(j).i32(4).op(OP.i32_add).tee(j).i32(1024).get(n).op(I32_DIV_U).op(OP.i32_lt_u).op(OP.br_if, 0).end();
  return f;
}

export interface QuadKernels {
  readonly exports: QuadExports;
  readonly f32: Float32Array;
  readonly i32: Int32Array;
}

let cached: QuadKernels | null | undefined;

/** The module and views of its memory; null where WebAssembly SIMD is missing or the scalar loops are asked for. */
export function quadWasm(): QuadKernels | null {
  if (!qkxWasm()) return null;
  if (cached !== undefined) return cached;
  try {
    const exports = instantiate<QuadExports>(assemble([['qkx', qkxFn()], ['qx', qxFn()], ['codes', codesFn()]], 1));
    cached = { exports, f32: new Float32Array(exports.memory.buffer), i32: new Int32Array(exports.memory.buffer) };
  } catch {
    cached = null;
  }
  return cached;
}
