// Layout, opcodes and emitters of the Q4_K statistics module (q4kStatsSimd.ts).
import { Fn, OP, SIMD, T } from '../cpu/wasmAsm';
import { emitF16, emitLane, emitScalesMins } from '../dequant/q4kBlockAsm';

/** Blocks per batch: 576 KiB of input, about what a worker's L2 holds. */
export const Q4K_BATCH = 4096;
export const TABLE = 0;
// 65,536 float16 codes × 4 bytes.
export const ACC = TABLE + 65536 * 4;
/** Accumulator fields: byte offsets from ACC. */
export const A = { sum: 0, sq: 8, k: 16, min: 24, max: 28, minAbs: 32, nearT: 40, above: 56, below: 60, near: 64, out: 68 } as const;
export const ABS = ACC + 128;
export const FLAGS = ABS + Q4K_BATCH * 4;
export const IN = FLAGS + Q4K_BATCH * 8 * 4;
export const END = IN + Q4K_BATCH * 144;

// Opcodes the shared tables do not list (numbers from the WebAssembly core and SIMD specs).
export const X = {
  i32_load8_u: 0x2d, i32_popcnt: 0x69, f32_store: 0x38, f64_load: 0x2b, f64_store: 0x39, i32_load: 0x28, i32_store: 0x36,
  f32_lt: 0x5d, f32_gt: 0x5e, f32_neg: 0x8c, f32_abs: 0x8b, f32_convert_i32_u: 0xb3, f32_convert_i32_s: 0xb2,
  f64_lt: 0x63, f64_ge: 0x66, f64_le: 0x65, f64_abs: 0x99, f64_floor: 0x9c, f64_ceil: 0x9b, f64_nearest: 0x9e, f64_mul: 0xa2, f64_div: 0xa3,
  f64_min: 0xa4, f64_max: 0xa5, f32_floor: 0x8e, i32_trunc_f32_s: 0xa8, f64_convert_i32_s: 0xb7, i32_trunc_f64_s: 0xaa, f64_neg: 0x9a,
} as const;
export const V = {
  i8x16_splat: 0x0f, i8x16_le_u: 0x2a, i8x16_ge_u: 0x2c, i8x16_extract_lane_u: 0x16, i8x16_eq: 0x23, i8x16_bitmask: 0x64, i8x16_shr_u: 0x6d, i8x16_add: 0x6e, i8x16_min_u: 0x77, i8x16_max_u: 0x79,
  i8x16_shl: 0x6b, i16x8_extend_low_i8x16_u: 0x89, i16x8_extend_high_i8x16_u: 0x8a, i32x4_extend_low_i16x8_u: 0xa9, i32x4_extend_high_i16x8_u: 0xaa,
  f32x4_neg: 0xe1, f32x4_lt: 0x43, f32x4_gt: 0x44, f32x4_le: 0x45, f32x4_ge: 0x46, f32x4_floor: 0x68, f32x4_nearest: 0x6a, i32x4_bitmask: 0xa4,
  i16x8_extadd_pairwise_u: 0x7d, i32x4_extadd_pairwise_u: 0x7f, i16x8_add: 0x8e, i16x8_extmul_low_u: 0x9e, i16x8_extmul_high_u: 0x9f,
} as const;

/** The locals every sub-block uses, and the emitters that work on them. */
export class Sub {
  readonly d: number;
  readonly dmin: number;
  readonly a: number;
  readonly mm: number;
  readonly n0: number;
  readonly n1: number;
  readonly t: number;
  readonly q: number;
  readonly q0: number;
  /** a (av) and mm (mv) of sub-blocks 0–3 and 4–7 as float32 lanes. */
  readonly av: readonly [number, number];
  readonly mv: readonly [number, number];
  constructor(readonly f: Fn, readonly src: number) {
    this.d = f.local(T.f32);
    this.dmin = f.local(T.f32);
    this.a = f.local(T.f32);
    this.mm = f.local(T.f32);
    this.n0 = f.local(T.v128);
    this.n1 = f.local(T.v128);
    this.t = f.local(T.v128);
    this.q = f.local(T.i32);
    this.q0 = f.local(T.f64);
    this.av = [f.local(T.v128), f.local(T.v128)];
    this.mv = [f.local(T.v128), f.local(T.v128)];
  }
  /** d and dmin of the block at src. */
  block(): void {
    emitF16(this.f, this.src, 0, TABLE);
    this.f.set(this.d);
    emitF16(this.f, this.src, 2, TABLE);
    this.f.set(this.dmin);
  }
  /** av and mv of the block (its 8 scales and mins, times d and dmin). */
  vectors(): void {
    emitScalesMins(this.f, this.src, this.d, this.dmin, this.t, this);
  }
  /** a and mm of sub-block s, from the lanes. */
  scales(s: number): void {
    emitLane(this.f, this.av, s);
    this.f.set(this.a);
    emitLane(this.f, this.mv, s);
    this.f.set(this.mm);
  }
  /** The 32 codes of sub-block s (u8 lanes of n0, n1); even sub-blocks are the low nibbles of their 32 bytes. */
  codes(s: number): void {
    const { f, src } = this;
    for (const [h, n] of [[0, this.n0], [1, this.n1]]) {
      f.get(src).simdMem(SIMD.v128_load, 16 + 32 * (s >> 1) + 16 * h, 0);
      if (s & 1) f.i32(4).simd(V.i8x16_shr_u);
      else f.i32(15).simd(V.i8x16_splat).simd(SIMD.v128_and);
      f.set(n);
    }
  }
  /** Pushes v(q) for the code pushed by `code`. */
  value(code: () => void): void {
    this.f.get(this.a);
    code();
    this.f.op(X.f32_convert_i32_s).op(OP.f32_mul).get(this.mm).op(OP.f32_sub);
  }
  /** Pushes how many of the 32 codes equal the code in local `q`. */
  count(q: number): void {
    const f = this.f;
    for (const n of [this.n0, this.n1]) f.get(n).get(q).simd(V.i8x16_splat).simd(V.i8x16_eq).simd(V.i8x16_bitmask).op(X.i32_popcnt);
    f.op(OP.i32_add);
  }
  /** Pushes 1 when the code in local `q` occurs. */
  present(q: number): void {
    const f = this.f;
    f.get(this.n0).get(q).simd(V.i8x16_splat).simd(V.i8x16_eq);
    f.get(this.n1).get(q).simd(V.i8x16_splat).simd(V.i8x16_eq);
    f.simd(SIMD.v128_or).simd(SIMD.v128_any_true);
  }
  /** Pushes the smallest (`max` false) or largest code that occurs. */
  extreme(max: boolean): void {
    const f = this.f;
    const op = max ? V.i8x16_max_u : V.i8x16_min_u;
    f.get(this.n0).get(this.n1).simd(op).set(this.t);
    for (const lanes of [[8, 9, 10, 11, 12, 13, 14, 15], [4, 5, 6, 7], [2, 3], [1]]) {
      const sel = Array.from({ length: 16 }, (_, i) => lanes[i % lanes.length]);
      f.get(this.t).get(this.t).shuffle(sel).get(this.t).simd(op).set(this.t);
    }
    f.get(this.t).lane(V.i8x16_extract_lane_u, 0);
  }
  /** q0 = mm / a, in float64 (a ≠ 0). */
  crossing(): void {
    this.f.get(this.mm).op(OP.f64_promote_f32).get(this.a).op(OP.f64_promote_f32).op(X.f64_div).set(this.q0);
  }
}

/** Appends (sub-block index << 1) | kind to the flag list; `kind` 1: only its smallest |x| is left to the caller. */
export function emitFlag(f: Fn, nflags: number, index: () => void, kind: number): void {
  f.get(nflags).i32(2).op(OP.i32_shl);
  index();
  f.i32(1).op(OP.i32_shl).i32(kind).op(OP.i32_or).mem(X.i32_store, FLAGS, 2);
  f.get(nflags).i32(1).op(OP.i32_add).set(nflags);
}

/**
 * The loop over `n` blocks (param 0) from sub.src: `pre` after the block's scales are unpacked,
 * then `body(s)` for each sub-block (it loads the scales and codes it needs), inside a `block`
 * it may leave with br 0; `after` ends each block. `empty` pushes the result for n = 0.
 */
export function emitLoop(f: Fn, sub: Sub, n: number, empty: () => void, pre: () => void, body: (s: number) => void, after: () => void, blockIndex: number): void {
  f.get(n).op(OP.i32_eqz).if_();
  empty();
  f.op(OP.return).end();
  f.loop();
  sub.block();
  sub.vectors();
  pre();
  for (let s = 0; s < 8; s++) {
    f.block();
    body(s);
    f.end();
  }
  after();
  f.get(sub.src).i32(144).op(OP.i32_add).set(sub.src);
  f.get(blockIndex).i32(1).op(OP.i32_add).set(blockIndex);
  f.get(n).i32(1).op(OP.i32_sub).tee(n).op(OP.br_if, 0);
  f.end();
}

export function loadAcc(f: Fn, l: number, off: number, type: 'f32' | 'f64' | 'i32'): void {
  f.i32(0).mem(type === 'f32' ? OP.f32_load : type === 'f64' ? X.f64_load : X.i32_load, ACC + off, type === 'f64' ? 3 : 2).set(l);
}
export function storeAcc(f: Fn, l: number, off: number, type: 'f32' | 'f64' | 'i32'): void {
  f.i32(0).get(l).mem(type === 'f32' ? X.f32_store : type === 'f64' ? X.f64_store : X.i32_store, ACC + off, type === 'f64' ? 3 : 2);
}

