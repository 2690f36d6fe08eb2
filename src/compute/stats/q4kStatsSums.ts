// Σ (x − K) and Σ (x − K)² of four Q4_K sub-blocks at once (q4kStatsSimd.ts's scan), for the
// sub-blocks the screens leave to the vector path.
import { Fn, SIMD, T } from '../cpu/wasmAsm';
import { Sub, V } from './q4kStatsAsm';

// Opcodes the shared tables do not list (numbers from the WebAssembly SIMD spec).
const W = { f64x2_splat: 0x14, f64x2_extract_lane: 0x21, f64x2_neg: 0xed, f64x2_convert_low_i32x4_s: 0xfe, i64x2_extend_low_i32x4_s: 0xc7, i64x2_extend_high_i32x4_s: 0xc8, i8x16_swizzle: 0x0e, i8x16_replace_lane: 0x17 } as const;

/** Byte lanes of an i8x16.shuffle that picks i32 lanes `lanes` (0–7 over both operands). */
function words(lanes: readonly number[]): number[] {
  return lanes.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]);
}

export interface VectorSums {
  /** i32x4 partial sums of q and q² of the last four sub-blocks, by s & 3. */
  readonly w: number[];
  readonly u: number[];
  /** f64x2 running Σ (x − K) and Σ (x − K)², two partial sums each. */
  readonly sum: number;
  readonly sq: number;
  readonly s1: number;
  readonly s2: number;
  readonly t: number;
  /** u8 lanes q² for q = 0–15. */
  readonly squares: number;
}

export function vectorSumLocals(f: Fn): VectorSums {
  const v = (): number => f.local(T.v128);
  return { w: [v(), v(), v(), v()], u: [v(), v(), v(), v()], sum: v(), sq: v(), s1: v(), s2: v(), t: v(), squares: v() };
}

/** Zeroes the running sums and fills the table of squares (at entry). */
export function emitSumsInit(f: Fn, l: VectorSums): void {
  f.i32(0).simd(V.i8x16_splat);
  for (let q = 1; q < 16; q++) f.i32(q * q).lane(W.i8x16_replace_lane, q);
  f.set(l.squares);
  f.f64(0).simd(W.f64x2_splat).set(l.sum);
  f.f64(0).simd(W.f64x2_splat).set(l.sq);
}

/** Pushes the sum of both lanes of f64x2 local `v`. */
export function emitLanesSum(f: Fn, v: number): void {
  f.get(v).lane(W.f64x2_extract_lane, 0).get(v).lane(W.f64x2_extract_lane, 1).op(0xa0);
}

/** Partial sums of q and q² (i32x4) of the codes in sub.n0, sub.n1, into w[s & 3] and u[s & 3]. */
export function emitCodeSums(f: Fn, sub: Sub, l: VectorSums, s: number): void {
  f.get(sub.n0).get(sub.n1).simd(V.i8x16_add).simd(V.i16x8_extadd_pairwise_u).simd(V.i32x4_extadd_pairwise_u).set(l.w[s & 3]);
  // q² ≤ 225 is a byte: looked up, then pairs added in 16 bits.
  f.get(l.squares).get(sub.n0).simd(W.i8x16_swizzle).simd(V.i16x8_extadd_pairwise_u);
  f.get(l.squares).get(sub.n1).simd(W.i8x16_swizzle).simd(V.i16x8_extadd_pairwise_u);
  f.simd(V.i16x8_add).simd(V.i32x4_extadd_pairwise_u).set(l.u[s & 3]);
}

/** Pushes [Σ v0, Σ v1, Σ v2, Σ v3] of four i32x4 locals. */
function emitTranspose(f: Fn, v: number[]): void {
  for (const [x, y] of [[v[0], v[1]], [v[2], v[3]]]) {
    f.get(x).get(y).shuffle(words([0, 2, 4, 6])).get(x).get(y).shuffle(words([1, 3, 5, 7])).simd(SIMD.i32x4_add);
  }
  f.set(v[1]).set(v[0]);
  f.get(v[0]).get(v[1]).shuffle(words([0, 2, 4, 6])).get(v[0]).get(v[1]).shuffle(words([1, 3, 5, 7])).simd(SIMD.i32x4_add);
}

/**
 * Folds sub-blocks 4g to 4g + 3 into the running sums, lanes of `slow` (i32x4, all ones) left out:
 * per sub-block Σ (x − K) = a·Σq + 32·bp and Σ (x − K)² = a²·Σq² + 2·a·bp·Σq + 32·bp², bp = −mm − K,
 * in float64 as emitSums computes them one at a time.
 */
export function emitGroupSums(f: Fn, sub: Sub, l: VectorSums, g: number, slow: number, k: number): void {
  emitTranspose(f, l.w);
  f.set(l.s1);
  emitTranspose(f, l.u);
  f.set(l.s2);
  const HI = words([2, 3, 2, 3]);
  for (let h = 0; h < 2; h++) {
    const low = (v: number): void => {
      f.get(v);
      if (h) f.get(v).shuffle(HI);
    };
    const a = (): void => {
      low(sub.av[g]);
      f.simd(SIMD.f64x2_promote_low_f32x4);
    };
    const bp = (): void => {
      low(sub.mv[g]);
      f.simd(SIMD.f64x2_promote_low_f32x4).simd(W.f64x2_neg).get(k).simd(W.f64x2_splat).simd(SIMD.f64x2_sub);
    };
    const int = (v: number): void => {
      low(v);
      f.simd(W.f64x2_convert_low_i32x4_s);
    };
    const keep = (): void => {
      f.get(slow).simd(h ? W.i64x2_extend_high_i32x4_s : W.i64x2_extend_low_i32x4_s).simd(SIMD.v128_andnot);
    };
    bp();
    f.set(l.t);
    // Σ (x − K)
    a();
    int(l.s1);
    f.simd(SIMD.f64x2_mul).get(l.t).f64(32).simd(W.f64x2_splat).simd(SIMD.f64x2_mul).simd(SIMD.f64x2_add);
    keep();
    f.get(l.sum).simd(SIMD.f64x2_add).set(l.sum);
    // Σ (x − K)²
    a();
    a();
    f.simd(SIMD.f64x2_mul);
    int(l.s2);
    f.simd(SIMD.f64x2_mul);
    a();
    f.get(l.t).simd(SIMD.f64x2_mul);
    int(l.s1);
    f.simd(SIMD.f64x2_mul).f64(2).simd(W.f64x2_splat).simd(SIMD.f64x2_mul).simd(SIMD.f64x2_add);
    f.get(l.t).get(l.t).simd(SIMD.f64x2_mul).f64(32).simd(W.f64x2_splat).simd(SIMD.f64x2_mul).simd(SIMD.f64x2_add);
    keep();
    f.get(l.sq).simd(SIMD.f64x2_add).set(l.sq);
  }
}
