import { Fn, OP, T, assemble, instantiate, type WasmMemory } from '../cpu/wasmAsm';
import { qkxWasm } from './kquantWasm';

/**
 * The error sums of a quantizer's output against its input (Σx², Σx·e, Σe², max|e|, with
 * e = x − y) in WebAssembly: the same f64 operations in the same order as the JavaScript
 * loop (one accumulator each, value after value), so the same results to the last bit,
 * without the loop's per-value typed-array checks.
 *
 * Memory: X (f32) at 0, Y (f32) at Y_AT, the four f64 sums at SUMS_AT (carried from call
 * to call, so that a tensor's sums run on across steps in order).
 */
export const ERR_MAX_VALUES = 65536;
const Y_AT = ERR_MAX_VALUES * 4;
const SUMS_AT = Y_AT * 2;
const PAGES = SUMS_AT / 65536 + 1;
const F64_MUL = 0xa2;

interface ErrExports {
  memory: WasmMemory;
  /** Adds n values of X against Y to the sums. */
  acc(n: number): void;
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
}

let cached: ErrKernel | null | undefined;

/** The kernel; null where WebAssembly is missing or the scalar loops are asked for (tests). */
export function errorSumsWasm(): ErrKernel | null {
  if (!qkxWasm()) return null;
  if (cached !== undefined) return cached;
  try {
    const e = instantiate<ErrExports>(assemble([['acc', accFn()]], PAGES));
    const b = e.memory.buffer;
    cached = { acc: e.acc, x: new Float32Array(b, 0, ERR_MAX_VALUES), y: new Float32Array(b, Y_AT, ERR_MAX_VALUES), sums: new Float64Array(b, SUMS_AT, 4) };
  } catch {
    cached = null;
  }
  return cached;
}
