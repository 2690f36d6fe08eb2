import { Fn, OP, SIMD, T, WASM_PAGE, assemble, type WasmMemory } from '../cpu/wasmAsm';
import { emitF16, emitLane, emitScalesMins, instantiateWithF16Table, type ScaleLanes } from './q4kBlockAsm';

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

function build(): Uint8Array {
  // q4k(blocks, srcPtr, dstPtr)
  const f = new Fn([T.i32, T.i32, T.i32], []);
  const [n, src, dst] = [0, 1, 2];
  const d = f.local(T.f32), dmin = f.local(T.f32);
  const v = f.local(T.v128), lo = f.local(T.v128), hi = f.local(T.v128), t = f.local(T.v128), mask = f.local(T.v128);
  const ds = [f.local(T.v128), f.local(T.v128)];
  const ms = [f.local(T.v128), f.local(T.v128)];
  const lanes: ScaleLanes = { av: [f.local(T.v128), f.local(T.v128)], mv: [f.local(T.v128), f.local(T.v128)] };
  f.i32(15).simd(I8X16_SPLAT).set(mask);
  f.get(n).op(OP.i32_eqz).if_().op(OP.return).end();
  f.loop();
  emitF16(f, src, 0, TABLE);
  f.set(d);
  emitF16(f, src, 2, TABLE);
  f.set(dmin);
  emitScalesMins(f, src, d, dmin, t, lanes);
  for (let j = 0; j < 4; j++) {
    for (let k = 0; k < 2; k++) {
      emitLane(f, lanes.av, 2 * j + k);
      f.simd(SIMD.f32x4_splat).set(ds[k]);
      emitLane(f, lanes.mv, 2 * j + k);
      f.simd(SIMD.f32x4_splat).set(ms[k]);
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
  if (mod === undefined) mod = instantiateWithF16Table<Q4kModule>(build, END, TABLE);
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
