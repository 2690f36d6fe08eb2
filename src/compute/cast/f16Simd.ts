import { Fn, OP, SIMD, T, assemble, instantiate, type WasmMemory } from '../cpu/wasmAsm';

/**
 * BF16 or F32 → F16 in WebAssembly SIMD, eight values a step, bit for bit as the scalar
 * cast (`f16FromF32Bits`): round to nearest even; subnormals as round(|v|·2^24), which is
 * exact in f32; overflow to ±inf; NaN keeps its top payload bits (at least one). It also
 * counts what the scalar cast counts: finite values that became ±inf, non-zeros that became 0.
 *
 * Memory: input at 0 (at most SLICE values), output at OUT, the counts after it.
 */

// Values per call: 256 KiB of F32 input, 128 KiB of F16 output.
const SLICE = 65536;
const OUT = SLICE * 4;
const PAGES = (OUT + SLICE * 2) / 65536;

const F32X4_NEAREST = SIMD.f32x4_nearest;
const I32X4_GE_S = 0x3f;

interface CastExports {
  memory: WasmMemory;
  /** Casts n values (a multiple of 8) from BF16 (`bf16` 1) or F32 bits. */
  cast(n: number, bf16: number): void;
  /** The last call's count of finite values that became ±inf. */
  over(): number;
  /** The last call's count of non-zero values that became 0. */
  under(): number;
}

/** Emits: i32x4 f32 bits in local `x` → f16 bits (i32 lanes) in local `r`; counts into `ov`, `un`. */
function toF16(f: Fn, x: number, r: number, ax: number, t: number, ov: number, un: number): void {
  const splat = (v: number) => f.i32(v).simd(SIMD.i32x4_splat);
  f.get(x);
  splat(0x7fffffff).simd(SIMD.v128_and).set(ax);
  // Normal range: (ax + 0xfff + lsb) >> 13, rebiased 127 → 15 (a carry rounds up into the exponent, to inf at the top).
  f.get(ax).get(ax).i32(13).simd(SIMD.i32x4_shr_u);
  splat(1).simd(SIMD.v128_and).simd(SIMD.i32x4_add);
  splat(0xfff).simd(SIMD.i32x4_add).i32(13).simd(SIMD.i32x4_shr_u);
  splat(112 << 10).simd(SIMD.i32x4_sub).set(r);
  // Exponent ≥ 143 (|v| ≥ 65536, beyond the largest f16 after rounding) and ±inf: 0x7c00.
  splat(0x7c00).get(r).get(ax);
  splat(0x47800000).simd(I32X4_GE_S).simd(SIMD.v128_bitselect).set(r);
  // NaN: 0x7c00 | max(mantissa >> 13, 1).
  f.get(ax).i32(13).simd(SIMD.i32x4_shr_u);
  splat(0x3ff).simd(SIMD.v128_and);
  splat(1).simd(SIMD.i32x4_max_s);
  splat(0x7c00).simd(SIMD.v128_or).get(r).get(ax);
  splat(0x7f800000).simd(SIMD.i32x4_gt_s).simd(SIMD.v128_bitselect).set(r);
  // Below the f16 normals: round(|v|·2^24), exact in f32 (a carry gives the least normal, 0x400).
  f.get(ax).f32(2 ** 24).simd(SIMD.f32x4_splat).simd(SIMD.f32x4_mul).simd(F32X4_NEAREST).simd(SIMD.i32x4_trunc_sat_f32x4_s).get(r).get(ax);
  splat(0x38800000).simd(SIMD.i32x4_lt_s).simd(SIMD.v128_bitselect).set(r);
  // Counts: finite → inf, non-zero → 0.
  f.get(ov).get(r);
  splat(0x7c00).simd(SIMD.i32x4_eq).get(ax);
  splat(0x7f800000).simd(SIMD.i32x4_lt_s).simd(SIMD.v128_and).simd(SIMD.i32x4_sub).set(ov);
  f.get(un).get(r).get(t).simd(SIMD.i32x4_eq).get(ax).get(t).simd(SIMD.i32x4_eq).simd(SIMD.v128_andnot).simd(SIMD.i32x4_sub).set(un);
  // The sign.
  f.get(r).get(x).i32(16).simd(SIMD.i32x4_shr_u);
  splat(0x8000).simd(SIMD.v128_and).simd(SIMD.v128_or).set(r);
}

function castFn(ovG: number, unG: number): Fn {
  const f = new Fn([T.i32, T.i32], []);
  const [n, bf16] = [0, 1];
  const p = f.local(T.i32), q = f.local(T.i32), end = f.local(T.i32);
  const a = f.local(T.v128), b = f.local(T.v128), ax = f.local(T.v128), zero = f.local(T.v128), ov = f.local(T.v128), un = f.local(T.v128), ra = f.local(T.v128), rb = f.local(T.v128);
  f.i32(0).simd(SIMD.i32x4_splat).tee(zero).tee(ov).set(un);
  f.get(n).i32(2).op(OP.i32_shl).set(end);
  f.block().get(n).op(OP.i32_eqz).op(OP.br_if, 0).loop();
  f.get(bf16).if_();
  // Eight BF16 values: their f32 bits are the 16 bits shifted up.
  f.get(p).simdMem(SIMD.v128_load, 0, 4).tee(a).simd(SIMD.i32x4_extend_low_i16x8_u).i32(16).simd(SIMD.i32x4_shl).set(b);
  f.get(a).simd(SIMD.i32x4_extend_high_i16x8_u).i32(16).simd(SIMD.i32x4_shl).set(a);
  f.get(p).i32(16).op(OP.i32_add).set(p);
  f.op(OP.else);
  f.get(p).simdMem(SIMD.v128_load, 0, 4).set(b);
  f.get(p).simdMem(SIMD.v128_load, 16, 4).set(a);
  f.get(p).i32(32).op(OP.i32_add).set(p);
  f.end();
  toF16(f, b, rb, ax, zero, ov, un);
  toF16(f, a, ra, ax, zero, ov, un);
  f.get(q).get(rb).get(ra).simd(SIMD.i16x8_narrow_i32x4_u).simdMem(SIMD.v128_store, OUT, 4);
  f.get(q).i32(16).op(OP.i32_add).tee(q).get(end).i32(1).op(OP.i32_shr_u).op(OP.i32_lt_u).op(OP.br_if, 0);
  f.end().end();
  // Lane sums of the counts, in two words after the output.
  for (const [v, at] of [[ov, ovG], [un, unG]] as const) {
    f.i32(0);
    for (let l = 0; l < 4; l++) {
      f.get(v).lane(SIMD.i32x4_extract_lane, l);
      if (l) f.op(OP.i32_add);
    }
    f.mem(OP.i32_store, at, 2);
  }
  return f;
}

function readFn(at: number): Fn {
  const f = new Fn([], [T.i32]);
  f.i32(0).mem(OP.i32_load, at, 2);
  return f;
}

let cached: CastExports | null | undefined;
// The two counts of the last call, after the output.
const COUNTS = OUT + SLICE * 2;

function module(): CastExports | null {
  if (cached !== undefined) return cached;
  try {
    cached = instantiate<CastExports>(assemble([['cast', castFn(COUNTS, COUNTS + 4)], ['over', readFn(COUNTS)], ['under', readFn(COUNTS + 4)]], PAGES + 1));
  } catch {
    cached = null;
  }
  return cached;
}

/** BF16 or F32 bytes → F16 bytes as `castBytes` writes them, adding to `counts`; undefined where WebAssembly SIMD is missing. */
export function castToF16Simd(src: Uint8Array, from: 'BF16' | 'F32', counts: { overflow: number; underflow: number }): Uint8Array | undefined {
  const m = module();
  if (!m) return undefined;
  const width = from === 'BF16' ? 2 : 4;
  const n = src.length / width;
  if (!Number.isInteger(n)) return undefined;
  const out = new Uint8Array(n * 2);
  const mem = new Uint8Array(m.memory.buffer);
  for (let at = 0; at < n; at += SLICE) {
    const k = Math.min(SLICE, n - at);
    // The step takes eight values; the tail's padding is cast and dropped.
    const k8 = Math.ceil(k / 8) * 8;
    mem.set(src.subarray(at * width, (at + k) * width), 0);
    mem.fill(0, k * width, k8 * width);
    m.cast(k8, from === 'BF16' ? 1 : 0);
    counts.overflow += m.over();
    counts.underflow += m.under();
    out.set(mem.subarray(OUT, OUT + k * 2), at * 2);
  }
  return out;
}
