import { Fn, OP, SIMD, T, WASM_PAGE, assemble, ensureMemory, instantiate, type WasmMemory } from '../cpu/wasmAsm';
import { F16_TO_F32 } from './half';

/**
 * Q4_K in WebAssembly SIMD, sixteen values a step: the same float32 operations as
 * kquants.cpu.ts (`d1 = d * sc`, `m1 = dmin * m`, then `d1 * q - m1`, each step rounded to
 * float32 and never fused, as WebAssembly guarantees), several times faster than the scalar
 * loop. The block scale d and dmin are float16, decoded through ggml's exact table.
 *
 * Memory: [0, 256 KiB) the float16 → float32 table, then a batch of input blocks, then its output.
 */

/** Blocks per batch: 144 KiB in, 1 MiB out, a size that stays in the L2 cache of most CPUs. */
const BATCH = 1024;
const TABLE = 0;
// 65,536 float16 codes × 4 bytes.
const IN = TABLE + 65536 * 4;
const OUT = IN + BATCH * 144;
const END = OUT + BATCH * 1024;

// Opcodes the shared tables do not list (numbers from the WebAssembly core and SIMD specs).
const I32_LOAD8_U = 0x2d;
const F32_CONVERT_I32_U = 0xb3;
const I8X16_SPLAT = 0x0f;
const I8X16_SHR_U = 0x6d;
const I16X8_EXTEND_LOW_I8X16_U = 0x87;
const I16X8_EXTEND_HIGH_I8X16_U = 0x88;

/** Expands 16 nibbles (u8 lanes of `v`) to 16 floats `d * q - m`, stored at dst + `at`. */
function emitScale16(f: Fn, v: number, d: number, m: number, dst: number, at: number, t: number): void {
  const halves: [number, number][] = [[I16X8_EXTEND_LOW_I8X16_U, 0], [I16X8_EXTEND_HIGH_I8X16_U, 32]];
  for (const [widen8, off8] of halves) {
    f.get(v).simd(widen8).set(t);
    for (const [widen16, off16] of [[SIMD.i32x4_extend_low_i16x8_u, 0], [SIMD.i32x4_extend_high_i16x8_u, 16]] as const) {
      f.get(dst);
      f.get(t).simd(widen16).simd(SIMD.f32x4_convert_i32x4_s).get(d).simd(SIMD.f32x4_mul).get(m).simd(SIMD.f32x4_sub);
      f.simdMem(SIMD.v128_store, at + off8 + off16, 4);
    }
  }
}

/** Pushes byte `off` of the block at `src`. */
function byte(f: Fn, src: number, off: number): Fn {
  return f.get(src).mem(I32_LOAD8_U, off, 0);
}

/** Pushes the 6-bit scale (`min` false) or min of sub-block j, as ggml's get_scale_min_k4 unpacks them. */
function emitScaleMin(f: Fn, src: number, j: number, min: boolean): void {
  const s = 4; // the 12 scale bytes start at byte 4
  if (j < 4) {
    byte(f, src, s + j + (min ? 4 : 0)).i32(63).op(OP.i32_and);
  } else {
    byte(f, src, s + j + 4);
    if (min) f.i32(4).op(OP.i32_shr_u);
    else f.i32(15).op(OP.i32_and);
    byte(f, src, s + j - (min ? 0 : 4)).i32(6).op(OP.i32_shr_u).i32(4).op(OP.i32_shl).op(OP.i32_or);
  }
}

/** Pushes the float32 value of the float16 at src + off, from the table. */
function emitF16(f: Fn, src: number, off: number): void {
  f.get(src).mem(OP.i32_load16_u, off, 0).i32(2).op(OP.i32_shl).mem(OP.f32_load, TABLE, 2);
}

function build(): Uint8Array {
  // q4k(blocks, srcPtr, dstPtr)
  const f = new Fn([T.i32, T.i32, T.i32], []);
  const [n, src, dst] = [0, 1, 2];
  const d = f.local(T.f32), dmin = f.local(T.f32);
  const v = f.local(T.v128), lo = f.local(T.v128), hi = f.local(T.v128), t = f.local(T.v128), mask = f.local(T.v128);
  const ds = [f.local(T.v128), f.local(T.v128)];
  const ms = [f.local(T.v128), f.local(T.v128)];
  f.i32(15).simd(I8X16_SPLAT).set(mask);
  f.get(n).op(OP.i32_eqz).if_().op(OP.return).end();
  f.loop();
  emitF16(f, src, 0);
  f.set(d);
  emitF16(f, src, 2);
  f.set(dmin);
  for (let j = 0; j < 4; j++) {
    for (let k = 0; k < 2; k++) {
      f.get(d);
      emitScaleMin(f, src, 2 * j + k, false);
      f.op(F32_CONVERT_I32_U).op(OP.f32_mul).simd(SIMD.f32x4_splat).set(ds[k]);
      f.get(dmin);
      emitScaleMin(f, src, 2 * j + k, true);
      f.op(F32_CONVERT_I32_U).op(OP.f32_mul).simd(SIMD.f32x4_splat).set(ms[k]);
    }
    for (let h = 0; h < 2; h++) {
      f.get(src).simdMem(SIMD.v128_load, 16 + 32 * j + 16 * h, 0).set(v);
      f.get(v).get(mask).simd(SIMD.v128_and).set(lo);
      f.get(v).i32(4).simd(I8X16_SHR_U).set(hi);
      emitScale16(f, lo, ds[0], ms[0], dst, 4 * (64 * j + 16 * h), t);
      emitScale16(f, hi, ds[1], ms[1], dst, 4 * (64 * j + 32 + 16 * h), t);
    }
  }
  f.get(src).i32(144).op(OP.i32_add).set(src);
  f.get(dst).i32(1024).op(OP.i32_add).set(dst);
  f.get(n).i32(1).op(OP.i32_sub).tee(n).op(OP.br_if, 0);
  f.end();
  return assemble([['q4k', f]], Math.ceil(END / WASM_PAGE));
}

interface Q4kModule {
  memory: WasmMemory;
  q4k(blocks: number, src: number, dst: number): void;
}

let mod: Q4kModule | null | undefined;

/** The module, or null where WebAssembly SIMD is missing (the scalar twin then serves). */
function module(): Q4kModule | null {
  if (mod === undefined) {
    try {
      const m = instantiate<Q4kModule>(build());
      ensureMemory(m.memory, END);
      new Float32Array(m.memory.buffer, TABLE, 65536).set(F16_TO_F32);
      mod = m;
    } catch {
      mod = null;
    }
  }
  return mod;
}

/** Decodes `nb` Q4_K blocks; false (nothing written) where WebAssembly SIMD is missing. */
export function q4KSimd(src: Uint8Array, out: Float32Array, nb: number): boolean {
  const m = module();
  if (!m) return false;
  for (let b0 = 0; b0 < nb; b0 += BATCH) {
    const n = Math.min(BATCH, nb - b0);
    const mem = m.memory.buffer;
    new Uint8Array(mem, IN, n * 144).set(src.subarray(b0 * 144, (b0 + n) * 144));
    m.q4k(n, IN, OUT);
    out.set(new Float32Array(mem, OUT, n * 256), b0 * 256);
  }
  return true;
}
