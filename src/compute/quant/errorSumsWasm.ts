import { Fn, OP, SIMD, T, assemble, instantiate, type WasmMemory } from '../cpu/wasmAsm';
import { qkxWasm } from './kquantWasm';

/**
 * The error sums of a quantizer's output against its input (Σx², Σx·e, Σe², max|e|, with
 * e = x − y) in WebAssembly: the same f64 operations in the same order as the JavaScript
 * loop (one accumulator each, value after value), so the same results to the last bit,
 * without the loop's per-value typed-array checks.
 *
 * Memory: X (f32) at 0, Y (f32) at Y_AT, the four f64 sums at SUMS_AT (carried from call
 * to call, so that a tensor's sums run on across steps in order); then Q6_K blocks and
 * their 16 group steps each, for `dq6`.
 */
export const ERR_MAX_VALUES = 65536;
const Y_AT = ERR_MAX_VALUES * 4;
const SUMS_AT = Y_AT * 2;
const Q6_AT = SUMS_AT + 64;
// Q6_K super-blocks: 256 values in 210 bytes.
const Q6_BYTES = 210;
const Q6_DS_AT = Q6_AT + (ERR_MAX_VALUES / 256) * Q6_BYTES;
const PAGES = Math.ceil((Q6_DS_AT + (ERR_MAX_VALUES / 16) * 4) / 65536);
const F64_MUL = 0xa2;
// SIMD opcodes wasmAsm does not name.
const V128_LOAD8X8_U = 0x02;
const I16X8_SHL = 0x8b;
const I16X8_SHR_U = 0x8d;
const I16X8_SUB = 0x91;
const I32X4_EXTEND_LOW_I16X8_S = 0xa7;
const I32X4_EXTEND_HIGH_I16X8_S = 0xa8;

interface ErrExports {
  memory: WasmMemory;
  /** Adds n values of X against Y to the sums. */
  acc(n: number): void;
  /** Q6_K: nb super-blocks at Q6_AT with their group steps d·scale at Q6_DS_AT → Y, as `q6_K` dequantizes. */
  dq6(nb: number): void;
}

/**
 * Q6_K's values, eight codes a step: q = (4 low bits | 2 high bits << 4) − 32 in i16 lanes,
 * then y = step · q in f32 (the product of an f32 and a 6-bit integer, one rounding, as the
 * scalar dequantizer stores it).
 */
function dq6Fn(): Fn {
  const f = new Fn([T.i32], []);
  const nb = 0;
  const p = f.local(T.i32), y = f.local(T.i32), ds = f.local(T.i32), b = f.local(T.i32), n = f.local(T.i32), l = f.local(T.i32);
  const A = f.local(T.v128), B = f.local(T.v128), H = f.local(T.v128), q = f.local(T.v128), k15 = f.local(T.v128), k3 = f.local(T.v128), k32 = f.local(T.v128);
  // 15, 3 and 32 in every i16 lane.
  f.i32(0xf000f).simd(SIMD.i32x4_splat).set(k15);
  f.i32(0x30003).simd(SIMD.i32x4_splat).set(k3);
  f.i32(0x200020).simd(SIMD.i32x4_splat).set(k32);
  f.block().get(nb).op(OP.i32_eqz).op(OP.br_if, 0).loop();
  f.i32(0).set(n).loop();
  f.i32(0).set(l).loop();
  // ql[l…l+7], ql[l+32…], qh[l…] of this half (p points at its ql, n·64 into the block).
  f.get(p).get(l).op(OP.i32_add).simdMem(V128_LOAD8X8_U, Q6_AT, 0).set(A);
  f.get(p).get(l).op(OP.i32_add).simdMem(V128_LOAD8X8_U, Q6_AT + 32, 0).set(B);
  f.get(b).get(n).i32(32).op(OP.i32_mul).op(OP.i32_add).get(l).op(OP.i32_add).simdMem(V128_LOAD8X8_U, Q6_AT + 128, 0).set(H);
  // Four quarters: (low bits, high-bit shift, output offset in values, step index offset).
  const quarters: Array<[() => void, number, number, number]> = [
    [() => void f.get(A).get(k15).simd(SIMD.v128_and), 0, 0, 0],
    [() => void f.get(B).get(k15).simd(SIMD.v128_and), 2, 32, 2],
    [() => void f.get(A).i32(4).simd(I16X8_SHR_U), 4, 64, 4],
    [() => void f.get(B).i32(4).simd(I16X8_SHR_U), 6, 96, 6],
  ];
  for (const [low, shift, at, step] of quarters) {
    low();
    f.get(H).i32(shift).simd(I16X8_SHR_U).get(k3).simd(SIMD.v128_and).i32(4).simd(I16X8_SHL).simd(SIMD.v128_or);
    f.get(k32).simd(I16X8_SUB).set(q);
    // Step index n·8 + l/16 + step: one step for these eight codes.
    for (const [half, ext] of [[0, I32X4_EXTEND_LOW_I16X8_S], [16, I32X4_EXTEND_HIGH_I16X8_S]] as const) {
      f.get(y).get(l).i32(2).op(OP.i32_shl).op(OP.i32_add);
      f.get(q).simd(ext).simd(SIMD.f32x4_convert_i32x4_s);
      f.get(ds).get(n).i32(32).op(OP.i32_mul).op(OP.i32_add).get(l).i32(4).op(OP.i32_shr_u).i32(2).op(OP.i32_shl).op(OP.i32_add);
      f.mem(OP.f32_load, Q6_DS_AT + step * 4, 2).simd(SIMD.f32x4_splat).simd(SIMD.f32x4_mul);
      f.simdMem(SIMD.v128_store, Y_AT + at * 4 + half, 4);
    }
  }
  f.get(l).i32(8).op(OP.i32_add).tee(l).i32(32).op(OP.i32_lt_u).op(OP.br_if, 0).end();
  f.get(p).i32(64).op(OP.i32_add).set(p);
  f.get(y).i32(512).op(OP.i32_add).set(y);
  f.get(n).i32(1).op(OP.i32_add).tee(n).i32(2).op(OP.i32_lt_u).op(OP.br_if, 0).end();
  f.get(b).i32(Q6_BYTES).op(OP.i32_add).tee(b).set(p);
  f.get(ds).i32(64).op(OP.i32_add).set(ds);
  f.get(nb).i32(1).op(OP.i32_sub).tee(nb).op(OP.br_if, 0);
  f.end().end();
  return f;
}

function accFn(): Fn {
  const f = new Fn([T.i32], []);
  const n = 0;
  const p = f.local(T.i32), end = f.local(T.i32);
  const xv = f.local(T.f64), e = f.local(T.f64), s1 = f.local(T.f64), s2 = f.local(T.f64), s3 = f.local(T.f64), m = f.local(T.f64), ae = f.local(T.f64);
  f.i32(0).mem(OP.f64_load, SUMS_AT, 3).set(s1);
  f.i32(0).mem(OP.f64_load, SUMS_AT + 8, 3).set(s2);
  f.i32(0).mem(OP.f64_load, SUMS_AT + 16, 3).set(s3);
  f.i32(0).mem(OP.f64_load, SUMS_AT + 24, 3).set(m);
  f.get(n).i32(2).op(OP.i32_shl).set(end);
  f.block().get(n).op(OP.i32_eqz).op(OP.br_if, 0).loop();
  f.get(p).mem(OP.f32_load, 0, 2).op(OP.f64_promote_f32).tee(xv);
  f.get(p).mem(OP.f32_load, Y_AT, 2).op(OP.f64_promote_f32).op(OP.f64_sub).set(e);
  f.get(s1).get(xv).get(xv).op(F64_MUL).op(OP.f64_add).set(s1);
  f.get(s2).get(xv).get(e).op(F64_MUL).op(OP.f64_add).set(s2);
  f.get(s3).get(e).get(e).op(F64_MUL).op(OP.f64_add).set(s3);
  // max|e| as `if (ae > max) max = ae`: a NaN error never becomes the maximum.
  f.get(e).op(OP.f64_abs).tee(ae).get(m).get(ae).get(m).op(OP.f64_gt).op(OP.select).set(m);
  f.get(p).i32(4).op(OP.i32_add).tee(p).get(end).op(OP.i32_lt_u).op(OP.br_if, 0);
  f.end().end();
  f.i32(0).get(s1).mem(OP.f64_store, SUMS_AT, 3);
  f.i32(0).get(s2).mem(OP.f64_store, SUMS_AT + 8, 3);
  f.i32(0).get(s3).mem(OP.f64_store, SUMS_AT + 16, 3);
  f.i32(0).get(m).mem(OP.f64_store, SUMS_AT + 24, 3);
  return f;
}

export interface ErrKernel {
  readonly acc: (n: number) => void;
  /** Inputs, ERR_MAX_VALUES each. */
  readonly x: Float32Array;
  readonly y: Float32Array;
  /** Σx², Σx·e, Σe², max|e|: zero them before a tensor's first step. */
  readonly sums: Float64Array;
  /** Q6_K → Y: nb super-blocks in `q6`, each group's step f32(d·scale) in `q6Steps` (16 per super-block). */
  readonly dq6: (nb: number) => void;
  readonly q6: Uint8Array;
  readonly q6Steps: Float32Array;
}

let cached: ErrKernel | null | undefined;

/** The kernel; null where WebAssembly is missing or the scalar loops are asked for (tests). */
export function errorSumsWasm(): ErrKernel | null {
  if (!qkxWasm()) return null;
  if (cached !== undefined) return cached;
  try {
    const e = instantiate<ErrExports>(assemble([['acc', accFn()], ['dq6', dq6Fn()]], PAGES));
    const b = e.memory.buffer;
    cached = {
      acc: e.acc,
      dq6: e.dq6,
      x: new Float32Array(b, 0, ERR_MAX_VALUES),
      y: new Float32Array(b, Y_AT, ERR_MAX_VALUES),
      sums: new Float64Array(b, SUMS_AT, 4),
      q6: new Uint8Array(b, Q6_AT, (ERR_MAX_VALUES / 256) * Q6_BYTES),
      q6Steps: new Float32Array(b, Q6_DS_AT, ERR_MAX_VALUES / 16),
    };
  } catch {
    cached = null;
  }
  return cached;
}
