// Kept whole: buildKernel and buildRowKernel each emit one WebAssembly function as a straight run of
// instructions whose locals, loop labels and stack depth are shared from the first op to the
// last; cut into pieces, each piece would need that state passed in and the reader would lose
// the one-to-one order with the scalar loop it reproduces.
import { checkArgs, emptySums, f16Table32, sumsFrom, type ErrorSums, type QuantInputDType, type QuantizeArgs, type QuantizeResult } from './common';
import { Fn, OP, SIMD, T, WASM_PAGE, assemble, emitF16x4, ensureMemory, instantiate, type WasmMemory } from '../cpu/wasmAsm';

/**
 * Q8_0, Q4_0, Q4_1, int8-channel and fp8-e4m3 for BF16, F16 and F32 input in WebAssembly
 * SIMD, four lanes at a time: the same rules as the scalar twins (every step an IEEE
 * f32 operation, which WebAssembly rounds to nearest even and never fuses), about ten
 * times faster. The scalar twins remain for rows the SIMD path does not take and where
 * WebAssembly SIMD is missing; the tests hold both to the same reference.
 *
 * Memory: [0, 256 KiB) the f16 → f32 table, then 256 bytes for results and scratch, then the
 * input, then the output blocks.
 */

const TABLE = 0;
// 65,536 f16 codes × 4 bytes.
const STATS = 65536 * 4;
// Eight vectors of a block's decoded values, for reading one lane by index.
const SCRATCH = STATS + 128;
// Room for the three f64 sums, the f32 maximum and the scratch, so the input starts 16-byte aligned.
const IN = STATS + 256;
/** Input encodings the kernels take (the `mode` argument). */
const MODE = { F32: 0, BF16: 1, F16: 2 } as const;

/** Emits `h = f16(w)` (round to nearest even, overflow to inf) on i32 locals. */
function emitF16(f: Fn, w: number, h: number): void {
  const sign = f.local(T.i32), exp = f.local(T.i32), mant = f.local(T.i32), q = f.local(T.i32), rem = f.local(T.i32), half = f.local(T.i32), sh = f.local(T.i32);
  f.get(w).i32(16).op(OP.i32_shr_u).i32(0x8000).op(OP.i32_and).set(sign);
  f.get(w).i32(23).op(OP.i32_shr_u).i32(0xff).op(OP.i32_and).set(exp);
  f.get(w).i32(0x7fffff).op(OP.i32_and).set(mant);
  f.block();
  // inf / NaN
  f.get(exp).i32(0xff).op(OP.i32_eq).if_();
  f.get(sign).i32(0x7c00).op(OP.i32_or).get(mant).i32(0).op(OP.i32_ne).i32(9).op(OP.i32_shl).op(OP.i32_or).set(h).op(OP.br, 1);
  f.end();
  // overflow
  f.get(exp).i32(143).op(OP.i32_ge_u).if_();
  f.get(sign).i32(0x7c00).op(OP.i32_or).set(h).op(OP.br, 1);
  f.end();
  // subnormal f16 (or zero)
  f.get(exp).i32(112).op(OP.i32_le_s).if_();
  f.get(exp).i32(102).op(OP.i32_lt_s).if_();
  f.get(sign).set(h).op(OP.br, 2);
  f.end();
  f.i32(126).get(exp).op(OP.i32_sub).set(sh);
  f.get(mant).i32(0x800000).op(OP.i32_or).set(mant);
  f.get(mant).get(sh).op(OP.i32_shr_u).set(q);
  f.get(mant).i32(1).get(sh).op(OP.i32_shl).i32(1).op(OP.i32_sub).op(OP.i32_and).set(rem);
  f.i32(1).get(sh).i32(1).op(OP.i32_sub).op(OP.i32_shl).set(half);
  f.get(q).get(rem).get(half).op(OP.i32_gt_u).get(rem).get(half).op(OP.i32_eq).get(q).op(OP.i32_and).op(OP.i32_or).i32(1).op(OP.i32_and).op(OP.i32_add).set(q);
  f.get(sign).get(q).op(OP.i32_or).set(h).op(OP.br, 1);
  f.end();
  // normal
  f.get(mant).i32(13).op(OP.i32_shr_u).set(q);
  f.get(mant).i32(0x1fff).op(OP.i32_and).set(rem);
  f.get(q).get(rem).i32(0x1000).op(OP.i32_gt_u).get(rem).i32(0x1000).op(OP.i32_eq).get(q).op(OP.i32_and).op(OP.i32_or).i32(1).op(OP.i32_and).op(OP.i32_add).set(q);
  f.get(sign).get(exp).i32(112).op(OP.i32_sub).i32(10).op(OP.i32_shl).get(q).op(OP.i32_add).op(OP.i32_or).set(h);
  f.end();
}

/** Horizontal f32 sum of a v128 local, promoted and added to an f64 local. */
function emitHsumInto(f: Fn, v: number, acc: number): void {
  f.get(acc);
  f.get(v).lane(SIMD.f32x4_extract_lane, 0).get(v).lane(SIMD.f32x4_extract_lane, 1).op(OP.f32_add);
  f.get(v).lane(SIMD.f32x4_extract_lane, 2).get(v).lane(SIMD.f32x4_extract_lane, 3).op(OP.f32_add);
  f.op(OP.f32_add, OP.f64_promote_f32, OP.f64_add).set(acc);
}

/** Stores what every kernel leaves at STATS: Σx², Σx·e, Σe² (f64 at +0, +8, +16) and the largest lane of vmax (f32 at +24). */
function emitStoreStats(f: Fn, sX2: number, sXE: number, sE2: number, vmax: number): void {
  f.i32(STATS).get(sX2).mem(0x39, 0, 3);
  f.i32(STATS).get(sXE).mem(0x39, 8, 3);
  f.i32(STATS).get(sE2).mem(0x39, 16, 3);
  f.i32(STATS).get(vmax).lane(SIMD.f32x4_extract_lane, 0).get(vmax).lane(SIMD.f32x4_extract_lane, 1).op(OP.f32_max);
  f.get(vmax).lane(SIMD.f32x4_extract_lane, 2).get(vmax).lane(SIMD.f32x4_extract_lane, 3).op(OP.f32_max).op(OP.f32_max).mem(0x38, 24, 2);
}

type GgmlSimdKind = 'q8_0' | 'q4_0' | 'q4_1';
const BLOCK_BYTES: Record<GgmlSimdKind, number> = { q8_0: 34, q4_0: 18, q4_1: 20 };

/** (inPtr, outPtr, blocks, mode) → writes blocks; Σx², Σx·e, Σe² (f64) and max|e| (f32) at STATS. */
function buildKernel(kind: GgmlSimdKind): Fn {
  const f = new Fn([T.i32, T.i32, T.i32, T.i32], []);
  const [inP, outP, nb, mode] = [0, 1, 2, 3];
  const b = f.local(T.i32), inA = f.local(T.i32), amax = f.local(T.i32), maxb = f.local(T.i32), j = f.local(T.i32), mk = f.local(T.i32), w = f.local(T.i32), h = f.local(T.i32);
  const d = f.local(T.f32), id = f.local(T.f32), dq = f.local(T.f32);
  const sX2 = f.local(T.f64), sXE = f.local(T.f64), sE2 = f.local(T.f64);
  const v = Array.from({ length: 8 }, () => f.local(T.v128));
  const q = Array.from({ length: 8 }, () => f.local(T.v128));
  const absmask = f.local(T.v128), m = f.local(T.v128), idv = f.local(T.v128), dqv = f.local(T.v128), fin = f.local(T.v128);
  const vx2 = f.local(T.v128), vxe = f.local(T.v128), ve2 = f.local(T.v128), vmax = f.local(T.v128), e = f.local(T.v128), tmp = f.local(T.v128);
  const signmask = f.local(T.v128), onef = f.local(T.v128), halff = f.local(T.v128), c85 = f.local(T.v128), c15 = f.local(T.v128), c8 = f.local(T.v128);
  const bytes = BLOCK_BYTES[kind];
  const mn = f.local(T.f32), mx = f.local(T.f32), mnv = f.local(T.v128), mxv = f.local(T.v128), mqv = f.local(T.v128), hm = f.local(T.i32);

  f.i32(0x7fffffff).simd(SIMD.i32x4_splat).set(absmask);
  f.i32(0x80000000 | 0).simd(SIMD.i32x4_splat).set(signmask);
  f.f32(1).simd(SIMD.f32x4_splat).set(onef);
  f.f32(0.5).simd(SIMD.f32x4_splat).set(halff);
  f.f32(8.5).simd(SIMD.f32x4_splat).set(c85);
  f.i32(15).simd(SIMD.i32x4_splat).set(c15);
  f.i32(8).simd(SIMD.i32x4_splat).set(c8);
  f.f32(0).simd(SIMD.f32x4_splat).set(vmax);
  f.i32(0).set(b);
  f.block().loop();
  f.get(b).get(nb).op(OP.i32_ge_u).op(OP.br_if, 1);
  // Load 32 values as 8 × f32x4 (BF16: widen each u16 and shift it into the top half;
  // F16: widen, then convert).
  f.get(mode).i32(MODE.BF16).op(OP.i32_eq).if_();
  f.get(inP).get(b).i32(64).op(OP.i32_mul).op(OP.i32_add).set(inA);
  for (let k = 0; k < 4; k++) {
    f.get(inA).simdMem(SIMD.v128_load, k * 16).set(tmp);
    f.get(tmp).simd(SIMD.i32x4_extend_low_i16x8_u).i32(16).simd(SIMD.i32x4_shl).set(v[2 * k]);
    f.get(tmp).simd(SIMD.i32x4_extend_high_i16x8_u).i32(16).simd(SIMD.i32x4_shl).set(v[2 * k + 1]);
  }
  f.op(OP.else);
  f.get(mode).i32(MODE.F16).op(OP.i32_eq).if_();
  f.get(inP).get(b).i32(64).op(OP.i32_mul).op(OP.i32_add).set(inA);
  for (let k = 0; k < 4; k++) {
    f.get(inA).simdMem(SIMD.v128_load, k * 16).set(tmp);
    f.get(tmp).simd(SIMD.i32x4_extend_low_i16x8_u).set(e);
    emitF16x4(f, e, v[2 * k], m, idv);
    f.get(tmp).simd(SIMD.i32x4_extend_high_i16x8_u).set(e);
    emitF16x4(f, e, v[2 * k + 1], m, idv);
  }
  f.op(OP.else);
  f.get(inP).get(b).i32(128).op(OP.i32_mul).op(OP.i32_add).set(inA);
  for (let k = 0; k < 8; k++) f.get(inA).simdMem(SIMD.v128_load, k * 16).set(v[k]);
  f.end();
  f.end();
  // Kept in memory too, so that one value can be read back by its index.
  for (let k = 0; k < 8; k++) f.i32(0).get(v[k]).simdMem(SIMD.v128_store, SCRATCH + k * 16);
  // amax on the magnitude bits (integer order = float order for non-NaN values).
  if (kind !== 'q4_1') {
    f.get(v[0]).get(absmask).simd(SIMD.v128_and).set(m);
    for (let k = 1; k < 8; k++) f.get(m).get(v[k]).get(absmask).simd(SIMD.v128_and).simd(SIMD.i32x4_max_u).set(m);
    f.get(m).lane(SIMD.i32x4_extract_lane, 0).set(amax);
    for (let l = 1; l < 4; l++) {
      f.get(m).lane(SIMD.i32x4_extract_lane, l).set(w);
      f.get(w).get(amax).get(w).get(amax).op(OP.i32_gt_u).op(OP.select).set(amax);
    }
  }
  if (kind === 'q4_1') {
    // min and max by value; only the f16 of m keeps a sign of zero, the first zero's as in C.
    f.get(v[0]).set(mnv);
    f.get(v[0]).set(mxv);
    for (let k = 1; k < 8; k++) {
      f.get(mnv).get(v[k]).simd(SIMD.f32x4_min).set(mnv);
      f.get(mxv).get(v[k]).simd(SIMD.f32x4_max).set(mxv);
    }
    f.get(mnv).lane(SIMD.f32x4_extract_lane, 0).get(mnv).lane(SIMD.f32x4_extract_lane, 1).op(OP.f32_min);
    f.get(mnv).lane(SIMD.f32x4_extract_lane, 2).get(mnv).lane(SIMD.f32x4_extract_lane, 3).op(OP.f32_min).op(OP.f32_min).set(mn);
    f.get(mxv).lane(SIMD.f32x4_extract_lane, 0).get(mxv).lane(SIMD.f32x4_extract_lane, 1).op(OP.f32_max);
    f.get(mxv).lane(SIMD.f32x4_extract_lane, 2).get(mxv).lane(SIMD.f32x4_extract_lane, 3).op(OP.f32_max).op(OP.f32_max).set(mx);
    f.get(mn).op(OP.i32_reinterpret_f32).set(maxb);
    f.get(mn).f32(0).op(OP.f32_eq).if_();
    f.i32(-1).set(j);
    for (let k = 0; k < 8; k++) {
      f.get(j).i32(0).op(OP.i32_lt_s).if_();
      f.get(v[k]).f32(0).simd(SIMD.f32x4_splat).simd(SIMD.f32x4_eq).simd(SIMD.i32x4_bitmask).tee(mk);
      f.if_().i32(k * 4).get(mk).op(OP.i32_ctz).op(OP.i32_add).set(j).end();
      f.end();
    }
    f.get(j).i32(2).op(OP.i32_shl).mem(0x28, SCRATCH, 2).set(maxb);
    f.end();
    f.get(mx).get(mn).op(OP.f32_sub).f32(15).op(OP.f32_div).set(d);
    f.get(mn).simd(SIMD.f32x4_splat).set(mnv);
  } else if (kind === 'q8_0') {
    f.get(amax).op(OP.f32_reinterpret_i32).f32(127).op(OP.f32_div).set(d);
  } else {
    // The first value of largest magnitude, with its sign; +0 when the block is all zeros.
    f.i32(-1).set(j);
    for (let k = 0; k < 8; k++) {
      f.get(j).i32(0).op(OP.i32_lt_s).if_();
      f.get(v[k]).get(absmask).simd(SIMD.v128_and).get(amax).simd(SIMD.i32x4_splat).simd(SIMD.i32x4_eq).simd(SIMD.i32x4_bitmask).tee(mk);
      f.if_().i32(k * 4).get(mk).op(OP.i32_ctz).op(OP.i32_add).set(j).end();
      f.end();
    }
    f.i32(0).set(maxb);
    f.get(amax).if_();
    f.get(j).i32(2).op(OP.i32_shl).mem(0x28, SCRATCH, 2).set(maxb);
    f.end();
    f.get(maxb).op(OP.f32_reinterpret_i32).f32(-8).op(OP.f32_div).set(d);
  }
  f.f32(0).set(id);
  f.get(d).f32(0).op(OP.f32_ne).if_().f32(1).get(d).op(OP.f32_div).set(id).end();
  // 1/d overflows only for blocks whose f16 scale is 0: their values convert to 0, as in the scalar twin.
  f.i32(0).get(id).op(OP.i32_reinterpret_f32).i32(0x7f800000).op(OP.i32_and).i32(0x7f800000).op(OP.i32_ne).op(OP.i32_sub).simd(SIMD.i32x4_splat).set(fin);
  f.get(d).op(OP.i32_reinterpret_f32).set(w);
  emitF16(f, w, h);
  f.get(outP).get(h).mem(0x3b, 0, 0); // i32.store16
  f.get(h).i32(2).op(OP.i32_shl).mem(0x2a, TABLE, 2).set(dq); // f32.load from the table
  if (kind === 'q4_1') {
    emitF16(f, maxb, hm);
    f.get(outP).get(hm).mem(0x3b, 2, 0);
    f.get(hm).i32(2).op(OP.i32_shl).mem(0x2a, TABLE, 2).simd(SIMD.f32x4_splat).set(mqv);
  }
  f.get(id).simd(SIMD.f32x4_splat).set(idv);
  f.get(dq).simd(SIMD.f32x4_splat).set(dqv);
  for (let k = 0; k < 8; k++) {
    f.get(v[k]).get(idv).simd(SIMD.f32x4_mul).set(tmp);
    if (kind === 'q8_0') {
      // roundf: trunc, then one step away from zero when the (exact) fraction is at least 1/2.
      f.get(tmp).simd(SIMD.f32x4_trunc).set(e);
      f.get(e);
      f.get(tmp).get(e).simd(SIMD.f32x4_sub).simd(SIMD.f32x4_abs).get(halff).simd(SIMD.f32x4_ge);
      f.get(tmp).get(signmask).simd(SIMD.v128_and).get(onef).simd(SIMD.v128_or).simd(SIMD.v128_and);
      f.simd(SIMD.f32x4_add).simd(SIMD.i32x4_trunc_sat_f32x4_s).get(fin).simd(SIMD.v128_and).set(q[k]);
      f.get(q[k]).simd(SIMD.f32x4_convert_i32x4_s).get(dqv).simd(SIMD.f32x4_mul).set(tmp);
    } else if (kind === 'q4_1') {
      f.get(v[k]).get(mnv).simd(SIMD.f32x4_sub).get(idv).simd(SIMD.f32x4_mul).get(halff).simd(SIMD.f32x4_add);
      f.simd(SIMD.i32x4_trunc_sat_f32x4_s).get(c15).simd(SIMD.i32x4_min_s).get(fin).simd(SIMD.v128_and).set(q[k]);
      f.get(q[k]).simd(SIMD.f32x4_convert_i32x4_s).get(dqv).simd(SIMD.f32x4_mul).get(mqv).simd(SIMD.f32x4_add).set(tmp);
    } else {
      f.get(tmp).get(c85).simd(SIMD.f32x4_add).simd(SIMD.i32x4_trunc_sat_f32x4_s).get(c15).simd(SIMD.i32x4_min_s).get(fin).simd(SIMD.v128_and).set(q[k]);
      f.get(q[k]).get(c8).simd(SIMD.i32x4_sub).simd(SIMD.f32x4_convert_i32x4_s).get(dqv).simd(SIMD.f32x4_mul).set(tmp);
    }
    // Error sums: tmp holds the dequantized values.
    f.get(v[k]).get(tmp).simd(SIMD.f32x4_sub).set(e);
    if (k === 0) {
      f.get(v[k]).get(v[k]).simd(SIMD.f32x4_mul).set(vx2);
      f.get(v[k]).get(e).simd(SIMD.f32x4_mul).set(vxe);
      f.get(e).get(e).simd(SIMD.f32x4_mul).set(ve2);
    } else {
      f.get(vx2).get(v[k]).get(v[k]).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(vx2);
      f.get(vxe).get(v[k]).get(e).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(vxe);
      f.get(ve2).get(e).get(e).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(ve2);
    }
    // pmax keeps the accumulator when the new value is NaN, as the scalar twin's `>` does.
    f.get(vmax).get(e).simd(SIMD.f32x4_abs).simd(SIMD.f32x4_pmax).set(vmax);
  }
  if (kind === 'q8_0') {
    for (let half = 0; half < 2; half++) {
      const o = 2 + half * 16;
      f.get(outP);
      f.get(q[half * 4]).get(q[half * 4 + 1]).simd(SIMD.i16x8_narrow_i32x4_s);
      f.get(q[half * 4 + 2]).get(q[half * 4 + 3]).simd(SIMD.i16x8_narrow_i32x4_s);
      f.simd(SIMD.i8x16_narrow_i16x8_s).simdMem(SIMD.v128_store, o);
    }
  } else {
    f.get(outP);
    f.get(q[0]).get(q[1]).simd(SIMD.i16x8_narrow_i32x4_s).get(q[2]).get(q[3]).simd(SIMD.i16x8_narrow_i32x4_s).simd(SIMD.i8x16_narrow_i16x8_s);
    f.get(q[4]).get(q[5]).simd(SIMD.i16x8_narrow_i32x4_s).get(q[6]).get(q[7]).simd(SIMD.i16x8_narrow_i32x4_s).simd(SIMD.i8x16_narrow_i16x8_s);
    f.i32(4).simd(SIMD.i8x16_shl).simd(SIMD.v128_or).simdMem(SIMD.v128_store, kind === 'q4_1' ? 4 : 2);
  }
  emitHsumInto(f, vx2, sX2);
  emitHsumInto(f, vxe, sXE);
  emitHsumInto(f, ve2, sE2);
  f.get(outP).i32(bytes).op(OP.i32_add).set(outP);
  f.get(b).i32(1).op(OP.i32_add).set(b);
  f.op(OP.br, 0).end().end();
  emitStoreStats(f, sX2, sXE, sE2, vmax);
  return f;
}

/** The slice of the WebAssembly JS API used here (the project's lib settings do not declare it). */
/**
 * (inPtr, outPtr, rows, cols, mode, scalesPtr): per-row 8-bit codes, cols a multiple
 * of 16. int8: `scale = absMax/127`, `q = clamp(nearest(x/scale), ±127)`. fp8:
 * `scale = absMax/448`, x/scale rounded to E4M3 (to nearest even at the 3rd mantissa
 * bit, saturating at 448; below 2^-6 in steps of 2^-9). f32 division and ties-to-even
 * rounding are exact in WebAssembly. Error sums as for the blocks.
 */
function buildRowKernel(kind: 'int8' | 'fp8'): Fn {
  const f = new Fn([T.i32, T.i32, T.i32, T.i32, T.i32, T.i32], []);
  const [inP, outP, rows, cols, mode, scalesP] = [0, 1, 2, 3, 4, 5];
  const r = f.local(T.i32), i = f.local(T.i32), rowIn = f.local(T.i32), step = f.local(T.i32), amax = f.local(T.i32), w = f.local(T.i32), a = f.local(T.i32);
  const scale = f.local(T.f32);
  const sX2 = f.local(T.f64), sXE = f.local(T.f64), sE2 = f.local(T.f64);
  const x = f.local(T.v128), m = f.local(T.v128), absmask = f.local(T.v128), sv = f.local(T.v128), mask = f.local(T.v128), e = f.local(T.v128), y = f.local(T.v128);
  const vx2 = f.local(T.v128), vxe = f.local(T.v128), ve2 = f.local(T.v128), vmax = f.local(T.v128), c127 = f.local(T.v128), cm127 = f.local(T.v128);
  const q = Array.from({ length: 4 }, () => f.local(T.v128));
  const qv = f.local(T.v128), ab = f.local(T.v128), sgn = f.local(T.v128), rn = f.local(T.v128), sub = f.local(T.v128), isSub = f.local(T.v128);
  const signmask = f.local(T.v128);
  f.i32(0x80000000 | 0).simd(SIMD.i32x4_splat).set(signmask);
  f.i32(0x7fffffff).simd(SIMD.i32x4_splat).set(absmask);
  f.i32(127).simd(SIMD.i32x4_splat).set(c127);
  f.i32(-127).simd(SIMD.i32x4_splat).set(cm127);
  f.f32(0).simd(SIMD.f32x4_splat).set(vmax);
  // Bytes per 4 values: 16 (F32) or 8 (BF16, F16).
  f.i32(16).i32(8).get(mode).op(OP.i32_eqz).op(OP.select).set(step);
  /** Loads 4 values at address `a` as f32x4 into `x`. */
  const load = () => {
    f.get(mode).i32(MODE.BF16).op(OP.i32_eq).if_();
    f.get(a).simdMem(SIMD.v128_load16x4_u, 0).i32(16).simd(SIMD.i32x4_shl).set(x);
    f.op(OP.else);
    f.get(mode).i32(MODE.F16).op(OP.i32_eq).if_();
    f.get(a).simdMem(SIMD.v128_load16x4_u, 0).set(e);
    emitF16x4(f, e, x, qv, ab);
    f.op(OP.else);
    f.get(a).simdMem(SIMD.v128_load, 0).set(x);
    f.end();
    f.end();
  };
  f.i32(0).set(r);
  f.block().loop();
  f.get(r).get(rows).op(OP.i32_ge_u).op(OP.br_if, 1);
  f.get(inP).get(r).get(cols).op(OP.i32_mul).get(step).op(OP.i32_mul).i32(2).op(OP.i32_shr_u).op(OP.i32_add).set(rowIn);
  // Pass 1: absMax of the row on the magnitude bits.
  f.i32(0).simd(SIMD.i32x4_splat).set(m);
  f.i32(0).set(i);
  f.get(rowIn).set(a);
  f.block().loop();
  f.get(i).get(cols).op(OP.i32_ge_u).op(OP.br_if, 1);
  load();
  f.get(m).get(x).get(absmask).simd(SIMD.v128_and).simd(SIMD.i32x4_max_u).set(m);
  f.get(a).get(step).op(OP.i32_add).set(a);
  f.get(i).i32(4).op(OP.i32_add).set(i);
  f.op(OP.br, 0).end().end();
  f.get(m).lane(SIMD.i32x4_extract_lane, 0).set(amax);
  for (let l = 1; l < 4; l++) {
    f.get(m).lane(SIMD.i32x4_extract_lane, l).set(w);
    f.get(w).get(amax).get(w).get(amax).op(OP.i32_gt_u).op(OP.select).set(amax);
  }
  f.get(amax).op(OP.f32_reinterpret_i32).f32(kind === 'int8' ? 127 : 448).op(OP.f32_div).set(scale);
  f.get(scalesP).get(r).i32(2).op(OP.i32_shl).op(OP.i32_add).get(scale).mem(0x38, 0, 2);
  f.get(scale).simd(SIMD.f32x4_splat).set(sv);
  // A zero scale (an all-zero row) gives q = 0 (int8) or signed zeros (fp8) everywhere.
  f.i32(0).get(scale).f32(0).op(OP.f32_ne).op(OP.i32_sub).simd(SIMD.i32x4_splat).set(mask);
  // Pass 2: 16 values per step.
  f.f32(0).simd(SIMD.f32x4_splat).set(vx2);
  f.f32(0).simd(SIMD.f32x4_splat).set(vxe);
  f.f32(0).simd(SIMD.f32x4_splat).set(ve2);
  f.i32(0).set(i);
  f.get(rowIn).set(a);
  f.block().loop();
  f.get(i).get(cols).op(OP.i32_ge_u).op(OP.br_if, 1);
  for (let k = 0; k < 4; k++) {
    load();
    if (kind === 'int8') {
      f.get(x).get(sv).simd(SIMD.f32x4_div).simd(SIMD.f32x4_nearest).simd(SIMD.i32x4_trunc_sat_f32x4_s);
      f.get(c127).simd(SIMD.i32x4_min_s).get(cm127).simd(SIMD.i32x4_max_s).get(mask).simd(SIMD.v128_and).set(q[k]);
      f.get(q[k]).simd(SIMD.f32x4_convert_i32x4_s).get(sv).simd(SIMD.f32x4_mul).set(y);
    } else {
      f.get(x).get(sv).simd(SIMD.f32x4_div).set(qv);
      f.get(qv).get(absmask).simd(SIMD.v128_and).set(ab);
      // The sign of a NaN quotient (inf/inf) is not specified: such lanes count as positive, as in the scalar twin.
      f.get(qv).get(signmask).simd(SIMD.v128_and).get(qv).get(qv).simd(SIMD.f32x4_ne).simd(SIMD.v128_andnot).set(sgn);
      // Normal E4M3: round the f32 bits to 3 mantissa bits (ties to even), saturate at 448.
      f.get(ab).i32(0x7ffff).simd(SIMD.i32x4_splat).simd(SIMD.i32x4_add);
      f.get(ab).i32(20).simd(SIMD.i32x4_shr_u).i32(1).simd(SIMD.i32x4_splat).simd(SIMD.v128_and).simd(SIMD.i32x4_add);
      f.i32(0xfff00000 | 0).simd(SIMD.i32x4_splat).simd(SIMD.v128_and);
      f.i32(0x43e00000).simd(SIMD.i32x4_splat).simd(SIMD.i32x4_min_u).set(rn);
      // Subnormal E4M3 (below 2^-6): whole steps of 2^-9.
      f.get(ab).f32(512).simd(SIMD.f32x4_splat).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_nearest).set(sub);
      f.get(ab).i32(0x3c800000).simd(SIMD.i32x4_splat).simd(SIMD.i32x4_lt_s).set(isSub);
      // Codes: subnormal steps, or (f32 bits >> 20) − (120 << 3).
      f.get(sub).simd(SIMD.i32x4_trunc_sat_f32x4_s);
      f.get(rn).i32(20).simd(SIMD.i32x4_shr_u).i32(960).simd(SIMD.i32x4_splat).simd(SIMD.i32x4_sub);
      f.get(isSub).simd(SIMD.v128_bitselect);
      f.get(sgn).i32(24).simd(SIMD.i32x4_shr_u).simd(SIMD.v128_or);
      f.get(x).get(signmask).simd(SIMD.v128_and).i32(24).simd(SIMD.i32x4_shr_u);
      f.get(mask).simd(SIMD.v128_bitselect).set(q[k]);
      // The rounded value (signed) times the scale, 0 for a zero scale.
      f.get(sub).f32(1 / 512).simd(SIMD.f32x4_splat).simd(SIMD.f32x4_mul).get(rn).get(isSub).simd(SIMD.v128_bitselect);
      f.get(sgn).simd(SIMD.v128_or).get(sv).simd(SIMD.f32x4_mul).get(mask).simd(SIMD.v128_and).set(y);
    }
    f.get(x).get(y).simd(SIMD.f32x4_sub).set(e);
    f.get(vx2).get(x).get(x).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(vx2);
    f.get(vxe).get(x).get(e).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(vxe);
    f.get(ve2).get(e).get(e).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(ve2);
    f.get(vmax).get(e).simd(SIMD.f32x4_abs).simd(SIMD.f32x4_pmax).set(vmax);
    f.get(a).get(step).op(OP.i32_add).set(a);
  }
  f.get(outP).get(r).get(cols).op(OP.i32_mul).op(OP.i32_add).get(i).op(OP.i32_add);
  f.get(q[0]).get(q[1]).simd(SIMD.i16x8_narrow_i32x4_s).get(q[2]).get(q[3]).simd(SIMD.i16x8_narrow_i32x4_s);
  // int8 values saturate signed; fp8 codes (0..254) unsigned.
  f.simd(kind === 'int8' ? SIMD.i8x16_narrow_i16x8_s : SIMD.i8x16_narrow_i16x8_u);
  f.simdMem(SIMD.v128_store, 0);
  f.get(i).i32(16).op(OP.i32_add).set(i);
  f.op(OP.br, 0).end().end();
  emitHsumInto(f, vx2, sX2);
  emitHsumInto(f, vxe, sXE);
  emitHsumInto(f, ve2, sE2);
  f.get(r).i32(1).op(OP.i32_add).set(r);
  f.op(OP.br, 0).end().end();
  emitStoreStats(f, sX2, sXE, sE2, vmax);
  return f;
}

interface SimdModule {
  readonly memory: WasmMemory;
  readonly q8_0: (inP: number, outP: number, nb: number, mode: number) => void;
  readonly q4_0: (inP: number, outP: number, nb: number, mode: number) => void;
  readonly q4_1: (inP: number, outP: number, nb: number, mode: number) => void;
  readonly int8Rows: (inP: number, outP: number, rows: number, cols: number, mode: number, scalesP: number) => void;
  readonly fp8Rows: (inP: number, outP: number, rows: number, cols: number, mode: number, scalesP: number) => void;
}

let instance: SimdModule | null | undefined;

/** The compiled module, or null where WebAssembly SIMD is unavailable (the scalar twin runs instead). */
function simdModule(): SimdModule | null {
  if (instance !== undefined) return instance;
  try {
    const bytes = assemble(
      [['q8_0', buildKernel('q8_0')], ['q4_0', buildKernel('q4_0')], ['q4_1', buildKernel('q4_1')], ['int8Rows', buildRowKernel('int8')], ['fp8Rows', buildRowKernel('fp8')]],
      Math.ceil(IN / WASM_PAGE) + 1,
    );
    const ex = instantiate<SimdModule>(bytes);
    new Float32Array(ex.memory.buffer, TABLE, 65536).set(f16Table32());
    instance = ex;
  } catch {
    instance = null;
  }
  return instance;
}

export function simdAvailable(): boolean {
  return simdModule() !== null;
}

/**
 * Quantizes `n` values (a multiple of 32) of BF16, F16 or F32 bytes into ggml blocks
 * (into `into` when it has exactly the output's size).
 * Returns undefined when WebAssembly SIMD is unavailable.
 */
export function ggmlSimd(kind: GgmlSimdKind, src: Uint8Array, dtype: QuantInputDType, n: number, into?: Uint8Array): { data: Uint8Array; stats: ErrorSums } | undefined {
  const mod = simdModule();
  if (!mod) return undefined;
  const nb = n / 32;
  const outBytes = nb * BLOCK_BYTES[kind];
  const outP = IN + Math.ceil(src.byteLength / 16) * 16;
  // 16 bytes of slack: the last block's vector store may run past its 18 bytes.
  const need = outP + outBytes + 16;
  ensureMemory(mod.memory, need);
  new Uint8Array(mod.memory.buffer, IN, src.byteLength).set(src);
  mod[kind](IN, outP, nb, MODE[dtype]);
  const view = new Uint8Array(mod.memory.buffer, outP, outBytes);
  let data: Uint8Array;
  if (into && into.byteLength === outBytes) {
    into.set(view);
    data = into;
  } else {
    data = view.slice();
  }
  const st = new Float64Array(mod.memory.buffer, STATS, 3);
  const maxErr = new Float32Array(mod.memory.buffer, STATS + 24, 1)[0];
  return { data, stats: sumsFrom(n, st[0], st[1], st[2], maxErr) };
}

/**
 * Per-row int8 or F8_E4M3 codes of `rows × cols` BF16, F16 or F32 values (cols a multiple
 * of 16). Returns undefined when WebAssembly SIMD is unavailable or cols does not fit.
 */
export function rowsSimd(kind: 'int8' | 'fp8', src: Uint8Array, dtype: QuantInputDType, rows: number, cols: number): { data: Uint8Array; scales: Float32Array; stats: ErrorSums } | undefined {
  const mod = simdModule();
  if (!mod || cols % 16 !== 0) return undefined;
  const n = rows * cols;
  const outP = IN + Math.ceil(src.byteLength / 16) * 16;
  const scalesP = outP + Math.ceil(n / 16) * 16;
  const need = scalesP + rows * 4;
  ensureMemory(mod.memory, need);
  new Uint8Array(mod.memory.buffer, IN, src.byteLength).set(src);
  (kind === 'int8' ? mod.int8Rows : mod.fp8Rows)(IN, outP, rows, cols, MODE[dtype], scalesP);
  const data = new Uint8Array(mod.memory.buffer, outP, n).slice();
  const scales = new Float32Array(mod.memory.buffer, scalesP, rows).slice();
  const st = new Float64Array(mod.memory.buffer, STATS, 3);
  const maxErr = new Float32Array(mod.memory.buffer, STATS + 24, 1)[0];
  return { data, scales, stats: sumsFrom(n, st[0], st[1], st[2], maxErr) };
}

/** A ggml block quantizer's CPU twin: its SIMD kernel, or `scalar` where WebAssembly SIMD is missing. */
export function ggmlCpu(kind: GgmlSimdKind, a: QuantizeArgs, scalar: (a: QuantizeArgs) => QuantizeResult): QuantizeResult {
  checkArgs(kind, a, 32);
  const r = ggmlSimd(kind, a.src, a.dtype, a.rows * a.cols, a.out);
  if (r) return { data: r.data, stats: a.stats === false ? emptySums() : r.stats };
  return scalar(a);
}

/** A per-row quantizer's CPU twin (scheme `name`): its SIMD kernel, or `scalar` (rows not a multiple of 16, or no WebAssembly SIMD). */
export function rowsCpu(kind: 'int8' | 'fp8', name: string, a: QuantizeArgs, scalar: (a: QuantizeArgs) => QuantizeResult): QuantizeResult {
  checkArgs(name, a, 1);
  const r = rowsSimd(kind, a.src, a.dtype, a.rows, a.cols);
  if (r) return { ...r, stats: a.stats === false ? emptySums() : r.stats };
  return scalar(a);
}
