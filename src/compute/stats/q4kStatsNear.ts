// The near pass of the Q4_K statistics module (q4kStatsSimd.ts): near-zero and outlier counts.
import { Fn, OP, SIMD, T } from '../cpu/wasmAsm';
import { A, Sub, V, X, emitLoop, loadAcc, storeAcc } from './q4kStatsAsm';

// Opcodes the shared tables do not list (numbers from the WebAssembly SIMD spec).
const W = { i8x16_swizzle: 0x0e, f32x4_replace_lane: 0x20, i8x16_narrow_i16x8_s: 0x65, i16x8_narrow_i32x4_s: 0x85, i16x8_extadd_pairwise_s: 0x7c, i32x4_extadd_pairwise_s: 0x7e } as const;

interface OutLocals {
  readonly above: number;
  readonly below: number;
  readonly v: number;
  readonly out: number;
}

/** Outliers of sub-block s (its bit set in the block's mask): each code is tested and its occurrences counted. */
function emitOutliers(f: Fn, sub: Sub, l: OutLocals): void {
  f.i32(0).set(sub.q);
  f.block().loop();
  f.get(sub.q).i32(15).op(OP.i32_gt_s).op(OP.br_if, 1);
  sub.value(() => f.get(sub.q));
  f.set(l.v);
  f.get(l.v).get(l.above).op(X.f32_gt).get(l.v).get(l.below).op(X.f32_lt).op(OP.i32_or);
  f.if_().get(l.out);
  sub.count(sub.q);
  f.op(OP.i32_add).set(l.out).end();
  f.get(sub.q).i32(1).op(OP.i32_add).set(sub.q);
  f.op(OP.br, 0).end().end();
}

/** Bits of `mask`: the sub-blocks whose v(0) or v(15) is beyond a threshold (v is monotonic in q: none other holds an outlier). */
function emitOutMask(f: Fn, sub: Sub, l: OutLocals, mask: number, lo: number, hi: number): void {
  f.i32(0).set(mask);
  for (let g = 0; g < 2; g++) {
    const a = sub.av[g], mm = sub.mv[g];
    f.get(mm).simd(V.f32x4_neg).set(lo);
    f.get(a).f32(15).simd(SIMD.f32x4_splat).simd(SIMD.f32x4_mul).get(mm).simd(SIMD.f32x4_sub).set(hi);
    f.get(lo).get(hi).simd(SIMD.f32x4_max).get(l.above).simd(SIMD.f32x4_splat).simd(V.f32x4_gt);
    f.get(lo).get(hi).simd(SIMD.f32x4_min).get(l.below).simd(SIMD.f32x4_splat).simd(V.f32x4_lt).simd(SIMD.v128_or).simd(V.i32x4_bitmask);
    if (g === 1) f.i32(4).op(OP.i32_shl);
    f.get(mask).op(OP.i32_or).set(mask);
  }
}

interface NearVec {
  /** f32x4 codes 0–3, 4–7, 8–11, 12–15. */
  readonly q: number[];
  readonly a: number;
  readonly mm: number;
  readonly t: number;
  readonly zero: number;
  readonly v: number;
  readonly m: number;
  /** i8x16 negative counts of the block so far; i32x4 of the call. */
  readonly acc8: number;
  readonly acc32: number;
}

/**
 * Near-zero values of the sub-block, without a branch: v(q) = f32(f32(a·q) − mm) for the 16 codes
 * (four f32x4, rounded as the scalar decoder rounds), |v| < T or v = 0 as a byte mask over the
 * codes, then each of the 32 codes looks its byte up (i8x16.swizzle) and the −1s are added up.
 */
function emitNearCount(f: Fn, sub: Sub, l: NearVec): void {
  f.get(sub.a).simd(SIMD.f32x4_splat).set(l.a);
  f.get(sub.mm).simd(SIMD.f32x4_splat).set(l.mm);
  for (let k = 0; k < 4; k++) {
    f.get(l.a).get(l.q[k]).simd(SIMD.f32x4_mul).get(l.mm).simd(SIMD.f32x4_sub).set(l.v);
    f.get(l.v).simd(SIMD.f32x4_abs).get(l.t).simd(V.f32x4_lt).get(l.v).get(l.zero).simd(SIMD.f32x4_eq).simd(SIMD.v128_or);
    if (k & 1) f.simd(W.i16x8_narrow_i32x4_s);
  }
  f.simd(W.i8x16_narrow_i16x8_s).set(l.m);
  f.get(l.acc8).get(l.m).get(sub.n0).simd(W.i8x16_swizzle).simd(V.i8x16_add).get(l.m).get(sub.n1).simd(W.i8x16_swizzle).simd(V.i8x16_add).set(l.acc8);
}

/** near: counts |x| < T (or x = 0) and x outside [below, above], as binWide decides them. */
export function buildNear(): Fn {
  const f = new Fn([T.i32, T.i32], [T.i32]);
  const n = 0;
  const sub = new Sub(f, 1);
  const blockIndex = f.local(T.i32), mask = f.local(T.i32), near = f.local(T.i32), out = f.local(T.i32);
  const [nearT, above, below, v] = Array.from({ length: 4 }, () => f.local(T.f32));
  const vl = (): number => f.local(T.v128);
  const l: NearVec = { q: [vl(), vl(), vl(), vl()], a: vl(), mm: vl(), t: vl(), zero: vl(), v: vl(), m: vl(), acc8: vl(), acc32: vl() };
  const lo = vl(), hi = vl();
  const ol: OutLocals = { above, below, v, out };
  loadAcc(f, nearT, A.nearT, 'f32');
  loadAcc(f, above, A.above, 'f32');
  loadAcc(f, below, A.below, 'f32');
  loadAcc(f, near, A.near, 'i32');
  loadAcc(f, out, A.out, 'i32');
  for (let k = 0; k < 4; k++) {
    f.f32(4 * k).simd(SIMD.f32x4_splat);
    for (let j = 1; j < 4; j++) f.f32(4 * k + j).lane(W.f32x4_replace_lane, j);
    f.set(l.q[k]);
  }
  f.get(nearT).simd(SIMD.f32x4_splat).set(l.t);
  f.f32(0).simd(SIMD.f32x4_splat).set(l.zero);
  f.i32(0).simd(SIMD.i32x4_splat).set(l.acc8);
  f.i32(0).simd(SIMD.i32x4_splat).set(l.acc32);
  const finish = (): void => {
    f.get(near);
    for (let j = 0; j < 4; j++) f.get(l.acc32).lane(SIMD.i32x4_extract_lane, j).op(OP.i32_sub);
    f.set(near);
    storeAcc(f, near, A.near, 'i32');
    storeAcc(f, out, A.out, 'i32');
    // No sub-block is left to the caller.
    f.i32(0);
  };
  const body = (s: number): void => {
    sub.scales(s);
    sub.codes(s);
    emitNearCount(f, sub, l);
    f.get(mask).i32(1 << s).op(OP.i32_and).if_();
    emitOutliers(f, sub, ol);
    f.end();
  };
  const after = (): void => {
    // 8 sub-blocks add at most 16 to a byte lane: the block's counts move to 32-bit lanes.
    f.get(l.acc8).simd(W.i16x8_extadd_pairwise_s).simd(W.i32x4_extadd_pairwise_s).get(l.acc32).simd(SIMD.i32x4_add).set(l.acc32);
    f.i32(0).simd(SIMD.i32x4_splat).set(l.acc8);
  };
  emitLoop(f, sub, n, finish, () => emitOutMask(f, sub, ol, mask, lo, hi), body, after, blockIndex);
  finish();
  return f;
}
