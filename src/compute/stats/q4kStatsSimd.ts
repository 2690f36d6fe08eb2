import { Fn, OP, SIMD, T, WASM_PAGE, assemble, type WasmMemory } from '../cpu/wasmAsm';
import { instantiateWithF16Table } from '../dequant/q4kBlockAsm';
import { A, ABS, END, Sub, TABLE, V, X, emitFlag, emitLoop, loadAcc, storeAcc } from './q4kStatsAsm';
import { buildNear } from './q4kStatsNear';
import { emitCodeSums, emitGroupSums, emitLanesSum, emitSumsInit, vectorSumLocals } from './q4kStatsSums';

/**
 * Statistics of Q4_K blocks in WebAssembly, without decoding their values. The block's 8 scales
 * and mins are unpacked in one vector, and the screens and the sums take 4 sub-blocks per
 * vector; the scalar steps below run only for the sub-blocks a screen marks. A sub-block's value for code q is v(q) = f32(f32(a·q) − mm), with
 * a = f32(d·sc) and mm = f32(dmin·m) as ggml's dequantize_row_q4_K computes them: monotonic
 * in q, so every statistic but the sums follows from a few codes and a few SIMD counts:
 *
 *  - min and max: v(0) and v(15) bound the sub-block; only when a bound passes the running
 *    minimum (maximum) are the smallest and largest codes present found (u8 min/max);
 *  - the smallest non-zero |x|: the codes on either side of the zero crossing q0 = mm / a;
 *  - near-zero counts: a byte mask over the 16 codes, looked up by each code (q4kStatsNear.ts);
 *  - outlier counts: only where v(0) or v(15) is beyond a threshold, code by code;
 *  - the sums: Σ (x − K) and Σ (x − K)² of the affine values a·q − mm, from Σq and Σq²
 *    (those differ from the float32 values by two roundings, |δ| ≤ 2⁻²⁴ (|a·q| + |x|)).
 *
 * A sub-block whose zero crossing falls on a code (a zero, or a tie the screen cannot
 * settle), or whose a is 0, is flagged by the scan: the caller decodes it and folds its values.
 * The caller gives only blocks whose scales d and dmin are finite.
 *
 * Memory: [0, 256 KiB) the float16 → float32 table, then the accumulators (ACC), the
 * per-block bounds on |x| (ABS), the flagged sub-blocks (FLAGS), and the input batch (IN).
 */

/** Flags the sub-block (kind 0: all of it to the caller) and leaves it, when a is 0 or its zero crossing is (nearly) a code. */
function emitScreen(f: Fn, sub: Sub, flag: (kind: number) => void, r: number): void {
  f.get(sub.a).f32(0).op(OP.f32_eq).if_();
  flag(0);
  f.op(OP.br, 1).end();
  sub.crossing();
  f.get(sub.q0).op(X.f64_nearest).set(r);
  // A crossing within 1e-3 of a code in range: v there may be 0, and the sides of the crossing are not
  // certain from q0 alone (q0 is within 2e-6 of the true crossing whenever it lies in [−1, 16]).
  f.get(r).f64(0).op(X.f64_ge).get(r).f64(15).op(X.f64_le).op(OP.i32_and);
  f.get(sub.q0).get(r).op(OP.f64_sub).op(X.f64_abs).f64(1e-3).op(X.f64_lt).op(OP.i32_and).if_();
  flag(0);
  f.op(OP.br, 1).end();
}

/** Σ (x − K) and Σ (x − K)² of the sub-block's affine values a·q − mm, from Σq and Σq² (SIMD). */
function emitSums(f: Fn, sub: Sub, l: { sum: number; sq: number; k: number; s1: number; s2: number; av: number; bp: number; pair: number }): void {
  // Σq and Σq² as i32x4 partial sums, then both reduced at once: [Σq, ·, Σq², ·] in the lanes.
  f.get(sub.n0).get(sub.n1).simd(V.i8x16_add).simd(V.i16x8_extadd_pairwise_u).simd(V.i32x4_extadd_pairwise_u);
  f.get(sub.n0).get(sub.n0).simd(V.i16x8_extmul_low_u).get(sub.n0).get(sub.n0).simd(V.i16x8_extmul_high_u).simd(V.i16x8_add);
  f.get(sub.n1).get(sub.n1).simd(V.i16x8_extmul_low_u).get(sub.n1).get(sub.n1).simd(V.i16x8_extmul_high_u).simd(V.i16x8_add);
  f.simd(V.i16x8_add).simd(V.i32x4_extadd_pairwise_u).set(sub.t).set(l.pair);
  f.get(l.pair).get(sub.t).shuffle([0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23]);
  f.get(l.pair).get(sub.t).shuffle([8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31]).simd(SIMD.i32x4_add).set(sub.t);
  f.get(sub.t).get(sub.t).get(sub.t).shuffle([4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11]).simd(SIMD.i32x4_add).set(sub.t);
  f.get(sub.t).lane(SIMD.i32x4_extract_lane, 0).op(X.f64_convert_i32_s).set(l.s1);
  f.get(sub.t).lane(SIMD.i32x4_extract_lane, 2).op(X.f64_convert_i32_s).set(l.s2);
  f.get(sub.a).op(OP.f64_promote_f32).set(l.av);
  f.get(sub.mm).op(OP.f64_promote_f32).op(X.f64_neg).get(l.k).op(OP.f64_sub).set(l.bp);
  f.get(l.sum).get(l.av).get(l.s1).op(X.f64_mul).get(l.bp).f64(32).op(X.f64_mul).op(OP.f64_add).op(OP.f64_add).set(l.sum);
  f.get(l.sq).get(l.av).get(l.av).op(X.f64_mul).get(l.s2).op(X.f64_mul);
  f.get(l.av).get(l.bp).op(X.f64_mul).get(l.s1).op(X.f64_mul).f64(2).op(X.f64_mul).op(OP.f64_add);
  f.get(l.bp).get(l.bp).op(X.f64_mul).f64(32).op(X.f64_mul).op(OP.f64_add);
  f.op(OP.f64_add).set(l.sq);
}

/** Updates min and max: the bounds v(0) = −mm and v(15) first, the codes that occur only when a bound passes. */
function emitRange(f: Fn, sub: Sub, l: { min: number; max: number; bound: number; v0: number; v15: number }): void {
  f.get(sub.mm).op(X.f32_neg).set(l.v0);
  sub.value(() => f.i32(15));
  f.set(l.v15);
  f.get(l.bound).get(l.v0).op(X.f32_abs).op(OP.f32_max).get(l.v15).op(X.f32_abs).op(OP.f32_max).set(l.bound);
  for (const low of [true, false]) {
    const acc = low ? l.min : l.max;
    f.get(l.v0).get(l.v15).op(low ? OP.f32_min : OP.f32_max).get(acc).op(low ? X.f32_lt : X.f32_gt).if_();
    // a > 0: v rises with q, so the minimum is at the smallest code that occurs.
    sub.extreme(!low);
    sub.extreme(low);
    f.get(sub.a).f32(0).op(X.f32_gt).op(OP.select).set(sub.q);
    f.get(acc);
    sub.value(() => f.get(sub.q));
    f.op(low ? OP.f32_min : OP.f32_max).set(acc);
    f.end();
  }
}

/**
 * The smallest non-zero |x|: the codes qf = ⌊q0⌋ and qf + 1 on either side of the crossing are
 * the nearest to 0 on their side. One that occurs updates it; one that does not, but would
 * have, leaves the sub-block to the caller (kind 1), as a farther code on its side may occur.
 */
function emitMinAbs(f: Fn, sub: Sub, l: { minAbs: number; val: number; toCaller: number }, flag: (kind: number) => void): void {
  f.i32(0).set(l.toCaller);
  f.get(sub.q0).op(X.f64_floor).f64(15).op(X.f64_min).f64(-1).op(X.f64_max).op(X.i32_trunc_f64_s).set(sub.q);
  for (let side = 0; side < 2; side++) {
    if (side === 1) f.get(sub.q).i32(1).op(OP.i32_add).set(sub.q);
    f.get(sub.q).i32(0).op(OP.i32_ge_s).get(sub.q).i32(15).op(OP.i32_le_s).op(OP.i32_and).if_();
    sub.value(() => f.get(sub.q));
    f.op(X.f32_abs).set(l.val);
    f.get(l.val).get(l.minAbs).op(X.f32_lt).if_();
    sub.present(sub.q);
    f.if_().get(l.val).set(l.minAbs).op(OP.else).i32(1).set(l.toCaller).end();
    f.end();
    f.end();
  }
  f.get(l.toCaller).if_();
  flag(1);
  f.end();
}

/**
 * The screens of the block's 8 sub-blocks at once (f32x4, 4 sub-blocks a vector), as bits of
 * `mask`: a sub-block whose bit is clear is folded from its sums alone. A bit is set when a is 0,
 * when q0 = mm / a (float32, within 1e-6 of the float64 q0 in [−1, 16]) is within 2e-3 of a code
 * (so every sub-block emitScreen flags, at 1e-3), when v(0) or v(15) passes the running min or max,
 * or when a code next to the crossing is nearer 0 than the running minAbs: the running values only
 * shrink within the block, so a clear bit is exact. `bound` gets the block's max |v(0)|, |v(15)|.
 */
function emitScanMask(f: Fn, sub: Sub, l: { mask: number; min: number; max: number; minAbs: number; bound: number; slow: number[] }, vec: number[]): void {
  const [q0, lo, hi, m, b] = vec;
  f.i32(0).set(l.mask);
  for (let g = 0; g < 2; g++) {
    const a = sub.av[g], mm = sub.mv[g];
    f.get(mm).get(a).simd(SIMD.f32x4_div).set(q0);
    f.get(a).f32(0).simd(SIMD.f32x4_splat).simd(SIMD.f32x4_eq);
    // The crossing near a code in [0, 15].
    f.get(q0).simd(V.f32x4_nearest).tee(lo).f32(0).simd(SIMD.f32x4_splat).simd(V.f32x4_ge);
    f.get(lo).f32(15).simd(SIMD.f32x4_splat).simd(V.f32x4_le).simd(SIMD.v128_and);
    f.get(q0).get(lo).simd(SIMD.f32x4_sub).simd(SIMD.f32x4_abs).f32(2e-3).simd(SIMD.f32x4_splat).simd(V.f32x4_lt).simd(SIMD.v128_and);
    f.simd(SIMD.v128_or).set(m);
    // v(0) and v(15) against the running min and max; their |·| bound the block.
    f.get(mm).simd(V.f32x4_neg).set(lo);
    f.get(a).f32(15).simd(SIMD.f32x4_splat).simd(SIMD.f32x4_mul).get(mm).simd(SIMD.f32x4_sub).set(hi);
    f.get(lo).get(hi).simd(SIMD.f32x4_min).get(l.min).simd(SIMD.f32x4_splat).simd(V.f32x4_lt);
    f.get(lo).get(hi).simd(SIMD.f32x4_max).get(l.max).simd(SIMD.f32x4_splat).simd(V.f32x4_gt).simd(SIMD.v128_or);
    f.get(m).simd(SIMD.v128_or).set(m);
    f.get(lo).simd(SIMD.f32x4_abs).get(hi).simd(SIMD.f32x4_abs).simd(SIMD.f32x4_max);
    if (g === 1) f.get(b).simd(SIMD.f32x4_max);
    f.set(b);
    // The codes ⌊q0⌋ and ⌊q0⌋ + 1, where in [0, 15], against the running minAbs.
    f.get(q0).simd(V.f32x4_floor).f32(15).simd(SIMD.f32x4_splat).simd(SIMD.f32x4_min).f32(-1).simd(SIMD.f32x4_splat).simd(SIMD.f32x4_max).set(q0);
    for (const [off, inRange] of [[0, () => f.get(q0).f32(0).simd(SIMD.f32x4_splat).simd(V.f32x4_ge)], [1, () => f.get(q0).f32(14).simd(SIMD.f32x4_splat).simd(V.f32x4_le)]] as const) {
      f.get(a).get(q0);
      if (off) f.f32(1).simd(SIMD.f32x4_splat).simd(SIMD.f32x4_add);
      f.simd(SIMD.f32x4_mul).get(mm).simd(SIMD.f32x4_sub).simd(SIMD.f32x4_abs).get(l.minAbs).simd(SIMD.f32x4_splat).simd(V.f32x4_lt);
      inRange();
      f.simd(SIMD.v128_and).get(m).simd(SIMD.v128_or).set(m);
    }
    f.get(m).tee(l.slow[g]).simd(V.i32x4_bitmask);
    if (g === 1) f.i32(4).op(OP.i32_shl);
    f.get(l.mask).op(OP.i32_or).set(l.mask);
  }
  for (const lane of [0, 1, 2, 3]) f.get(b).lane(SIMD.f32x4_extract_lane, lane);
  f.op(OP.f32_max).op(OP.f32_max).op(OP.f32_max).set(l.bound);
}


export function buildScan(): Fn {
  // scan(blocks, src) → flagged sub-blocks
  const f = new Fn([T.i32, T.i32], [T.i32]);
  const n = 0;
  const sub = new Sub(f, 1);
  const blockIndex = f.local(T.i32), nflags = f.local(T.i32), toCaller = f.local(T.i32);
  const [sum, sq, k, s1, s2, av, bp, r] = Array.from({ length: 8 }, () => f.local(T.f64));
  const [min, max, minAbs, bound, v0, v15, val] = Array.from({ length: 7 }, () => f.local(T.f32));
  const pair = f.local(T.v128);
  loadAcc(f, sum, A.sum, 'f64');
  loadAcc(f, sq, A.sq, 'f64');
  loadAcc(f, k, A.k, 'f64');
  loadAcc(f, min, A.min, 'f32');
  loadAcc(f, max, A.max, 'f32');
  loadAcc(f, minAbs, A.minAbs, 'f32');
  const finish = (): void => {
    f.get(sum);
    emitLanesSum(f, vs.sum);
    f.op(OP.f64_add).set(sum);
    f.get(sq);
    emitLanesSum(f, vs.sq);
    f.op(OP.f64_add).set(sq);
    storeAcc(f, sum, A.sum, 'f64');
    storeAcc(f, sq, A.sq, 'f64');
    storeAcc(f, min, A.min, 'f32');
    storeAcc(f, max, A.max, 'f32');
    storeAcc(f, minAbs, A.minAbs, 'f32');
    f.get(nflags);
  };
  let s = 0;
  const flag = (kind: number): void => emitFlag(f, nflags, () => f.get(blockIndex).i32(3).op(OP.i32_shl).i32(s).op(OP.i32_or), kind);
  const mask = f.local(T.i32);
  const vec = Array.from({ length: 5 }, () => f.local(T.v128));
  const slow = [f.local(T.v128), f.local(T.v128)];
  const vs = vectorSumLocals(f);
  emitSumsInit(f, vs);
  emitLoop(
    f,
    sub,
    n,
    () => finish(),
    () => emitScanMask(f, sub, { mask, min, max, minAbs, bound, slow }, vec),
    (sb) => {
      s = sb;
      sub.codes(sb);
      emitCodeSums(f, sub, vs, sb);
      // The screens' sub-blocks one at a time; the others' sums four at a time.
      f.get(mask).i32(1 << sb).op(OP.i32_and).if_();
      sub.scales(sb);
      emitScreen(f, sub, flag, r);
      emitSums(f, sub, { sum, sq, k, s1, s2, av, bp, pair });
      emitRange(f, sub, { min, max, bound, v0, v15 });
      emitMinAbs(f, sub, { minAbs, val, toCaller }, flag);
      f.end();
      if ((sb & 3) === 3) emitGroupSums(f, sub, vs, sb >> 2, slow[sb >> 2], k);
    },
    () => {
      // The block's bound on |x|, for the top-k screen.
      f.get(blockIndex).i32(2).op(OP.i32_shl).get(bound).mem(X.f32_store, ABS, 2);
      f.f32(0).set(bound);
    },
    blockIndex,
  );
  finish();
  return f;
}

export interface Q4kStatsModule {
  memory: WasmMemory;
  /** Folds `blocks` blocks at `src` into the scan accumulators; returns how many sub-blocks it flagged (at FLAGS). */
  scan(blocks: number, src: number): number;
  /** Counts near-zero values and outliers of `blocks` blocks at `src`; returns how many sub-blocks it flagged. */
  near(blocks: number, src: number): number;
}

let mod: Q4kStatsModule | null | undefined;

/** The module, or null where WebAssembly SIMD is missing (the caller then decodes and scans). */
export function q4kStatsModule(): Q4kStatsModule | null {
  if (mod === undefined) mod = instantiateWithF16Table<Q4kStatsModule>(() => assemble([['scan', buildScan()], ['near', buildNear()]], Math.ceil(END / WASM_PAGE)), END, TABLE);
  return mod;
}

