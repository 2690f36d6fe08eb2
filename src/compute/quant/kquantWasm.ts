import { Fn, OP, T, assemble, instantiate, type WasmMemory } from '../cpu/wasmAsm';

/**
 * The two inner loops of `make_qkx2/3_quants` (one least-squares step, and the error of a
 * fit) in WebAssembly: native f32 arithmetic, each operation rounded once and never fused,
 * so the sums equal the scalar twin's `Math.fround` chains bit for bit, without the f64
 * round trips that make those chains slow. `nearest_int` is the reference's own bit trick.
 *
 * Memory (f32/i32 words): X at 0, XM (x − min) at 128, W at 256, AUX codes at 384,
 * the three sums at 512; one group holds at most 32 values.
 */
export const QKX_X = 0;
export const QKX_XM = 128;
export const QKX_W = 256;
export const QKX_AUX = 384;
export const QKX_SUMS = 512;

const F32_CONVERT_I32_S = 0xb2;

interface QkxExports {
  memory: WasmMemory;
  /** Codes `clamp(nearest_int(iscale·xm[i]), 0, nmax)` into AUX; Σw·l, Σ(w·l)·l, Σ(w·l)·x into SUMS. */
  step(n: number, nmax: number, iscale: number): void;
  /** Σ w·d where d = |scale·aux + min − x| (mad) or its square. */
  err(n: number, scale: number, min: number, mad: number): number;
  /** `make_qx_quants`' step: codes clamp(nearest_int(iscale·x), −nmax, nmax−1) into AUX; Σ(w·x)·l, Σ(w·l)·l into SUMS. */
  qx(n: number, nmax: number, iscale: number): void;
}

function stepFn(): Fn {
  const f = new Fn([T.i32, T.i32, T.f32], []);
  const [n, nmax, iscale] = [0, 1, 2];
  const i = f.local(T.i32), l = f.local(T.i32), fl = f.local(T.f32), wl = f.local(T.f32);
  const sl = f.local(T.f32), sl2 = f.local(T.f32), sxl = f.local(T.f32);
  f.block().loop();
  f.get(i).get(n).op(OP.i32_ge_s).op(OP.br_if, 1);
  // nearest_int(iscale·xm[i]): add 1.5·2^23 in f32, keep the low 23 bits, subtract 2^22.
  f.get(iscale).get(i).i32(2).op(OP.i32_shl).mem(OP.f32_load, QKX_XM, 2).op(OP.f32_mul).f32(12582912).op(OP.f32_add);
  f.op(OP.i32_reinterpret_f32).i32(0x7fffff).op(OP.i32_and).i32(0x400000).op(OP.i32_sub).set(l);
  f.get(l).i32(0).get(l).i32(0).op(OP.i32_gt_s).op(OP.select).set(l);
  f.get(l).get(nmax).get(l).get(nmax).op(OP.i32_lt_s).op(OP.select).set(l);
  f.get(i).i32(2).op(OP.i32_shl).get(l).mem(OP.i32_store, QKX_AUX, 2);
  f.get(l).op(F32_CONVERT_I32_S).set(fl);
  f.get(i).i32(2).op(OP.i32_shl).mem(OP.f32_load, QKX_W, 2).get(fl).op(OP.f32_mul).set(wl);
  f.get(sl).get(wl).op(OP.f32_add).set(sl);
  f.get(sl2).get(wl).get(fl).op(OP.f32_mul).op(OP.f32_add).set(sl2);
  f.get(sxl).get(wl).get(i).i32(2).op(OP.i32_shl).mem(OP.f32_load, QKX_X, 2).op(OP.f32_mul).op(OP.f32_add).set(sxl);
  f.get(i).i32(1).op(OP.i32_add).set(i).op(OP.br, 0);
  f.end().end();
  f.i32(0).get(sl).mem(OP.f32_store, QKX_SUMS, 2);
  f.i32(0).get(sl2).mem(OP.f32_store, QKX_SUMS + 4, 2);
  f.i32(0).get(sxl).mem(OP.f32_store, QKX_SUMS + 8, 2);
  return f;
}

function errFn(): Fn {
  const f = new Fn([T.i32, T.f32, T.f32, T.i32], [T.f32]);
  const [n, scale, min, mad] = [0, 1, 2, 3];
  const i = f.local(T.i32), d = f.local(T.f32), e = f.local(T.f32);
  f.block().loop();
  f.get(i).get(n).op(OP.i32_ge_s).op(OP.br_if, 1);
  f.get(scale).get(i).i32(2).op(OP.i32_shl).mem(OP.i32_load, QKX_AUX, 2).op(F32_CONVERT_I32_S).op(OP.f32_mul).get(min).op(OP.f32_add);
  f.get(i).i32(2).op(OP.i32_shl).mem(OP.f32_load, QKX_X, 2).op(OP.f32_sub).set(d);
  f.get(d).op(OP.f32_abs).get(d).get(d).op(OP.f32_mul).get(mad).op(OP.select).set(d);
  f.get(e).get(i).i32(2).op(OP.i32_shl).mem(OP.f32_load, QKX_W, 2).get(d).op(OP.f32_mul).op(OP.f32_add).set(e);
  f.get(i).i32(1).op(OP.i32_add).set(i).op(OP.br, 0);
  f.end().end();
  f.get(e);
  return f;
}

function qxFn(): Fn {
  const f = new Fn([T.i32, T.i32, T.f32], []);
  const [n, nmax, iscale] = [0, 1, 2];
  const i = f.local(T.i32), l = f.local(T.i32), fl = f.local(T.f32), w = f.local(T.f32), lo = f.local(T.i32), hi = f.local(T.i32);
  const slx = f.local(T.f32), sl2 = f.local(T.f32);
  f.i32(0).get(nmax).op(OP.i32_sub).set(lo);
  f.get(nmax).i32(1).op(OP.i32_sub).set(hi);
  f.block().loop();
  f.get(i).get(n).op(OP.i32_ge_s).op(OP.br_if, 1);
  f.get(iscale).get(i).i32(2).op(OP.i32_shl).mem(OP.f32_load, QKX_X, 2).op(OP.f32_mul).f32(12582912).op(OP.f32_add);
  f.op(OP.i32_reinterpret_f32).i32(0x7fffff).op(OP.i32_and).i32(0x400000).op(OP.i32_sub).set(l);
  f.get(l).get(hi).get(l).get(hi).op(OP.i32_lt_s).op(OP.select).set(l);
  f.get(l).get(lo).get(l).get(lo).op(OP.i32_gt_s).op(OP.select).set(l);
  f.get(i).i32(2).op(OP.i32_shl).get(l).mem(OP.i32_store, QKX_AUX, 2);
  f.get(l).op(F32_CONVERT_I32_S).set(fl);
  f.get(i).i32(2).op(OP.i32_shl).mem(OP.f32_load, QKX_W, 2).set(w);
  f.get(slx).get(w).get(i).i32(2).op(OP.i32_shl).mem(OP.f32_load, QKX_X, 2).op(OP.f32_mul).get(fl).op(OP.f32_mul).op(OP.f32_add).set(slx);
  f.get(sl2).get(w).get(fl).op(OP.f32_mul).get(fl).op(OP.f32_mul).op(OP.f32_add).set(sl2);
  f.get(i).i32(1).op(OP.i32_add).set(i).op(OP.br, 0);
  f.end().end();
  f.i32(0).get(slx).mem(OP.f32_store, QKX_SUMS, 2);
  f.i32(0).get(sl2).mem(OP.f32_store, QKX_SUMS + 4, 2);
  return f;
}

let cached: { exports: QkxExports; f32: Float32Array; i32: Int32Array } | null | undefined;
let scalarOnly = false;

/** Tests hold the scalar loops (taken where WebAssembly is missing) to the same reference. */
export function useScalarQkx(on: boolean): void {
  scalarOnly = on;
}

/** The module and views of its memory; null where WebAssembly is missing (the scalar loops run). */
export function qkxWasm(): { exports: QkxExports; f32: Float32Array; i32: Int32Array } | null {
  if (scalarOnly) return null;
  if (cached !== undefined) return cached;
  try {
    const exports = instantiate<QkxExports>(assemble([['step', stepFn()], ['err', errFn()], ['qx', qxFn()]], 1));
    cached = { exports, f32: new Float32Array(exports.memory.buffer), i32: new Int32Array(exports.memory.buffer) };
  } catch {
    cached = null;
  }
  return cached;
}
