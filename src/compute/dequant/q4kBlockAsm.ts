// What both Q4_K WebAssembly modules (the decoder, q4kSimd.ts, and the statistics,
// stats/q4kStatsSimd.ts) read of a block the same way: d and dmin through ggml's float16 table,
// and the 8 sub-block scales and mins, so that the two cannot drift apart.
import { Fn, OP, SIMD, ensureMemory, instantiate, type WasmMemory } from '../cpu/wasmAsm';
import { F16_TO_F32 } from './half';

// Opcodes the shared tables do not list (numbers from the WebAssembly SIMD spec).
const I8X16_SHR_U = 0x6d;
const I16X8_EXTEND_LOW_I8X16_U = 0x89;
const I16X8_EXTEND_HIGH_I8X16_U = 0x8a;

/** Pushes the float32 value of the float16 at src + off, from the table at `table`. */
export function emitF16(f: Fn, src: number, off: number, table: number): void {
  f.get(src).mem(OP.i32_load16_u, off, 0).i32(2).op(OP.i32_shl).mem(OP.f32_load, table, 2);
}

/** The v128 locals that `emitScalesMins` fills: a = f32(d·sc) and mm = f32(dmin·m) of sub-blocks 0–3 and 4–7. */
export interface ScaleLanes {
  readonly av: readonly [number, number];
  readonly mv: readonly [number, number];
}

/**
 * Unpacks the block's 8 scales and 8 mins (the 12 bytes from byte 4 of the block at local
 * `src`) as ggml's get_scale_min_k4 does, in one vector (u8 lanes 0–7 the scales, 8–15 the
 * mins), then times the f32 locals `d` and `dmin` in float32, as the scalar f32(d·sc) and
 * f32(dmin·m) round them. `t` is a v128 scratch local.
 */
export function emitScalesMins(f: Fn, src: number, d: number, dmin: number, t: number, out: ScaleLanes): void {
  const z = 16; // a lane of the zero operand
  const part = (lanes: number[], shl: number, shr: number, shlAfter: number): void => {
    f.get(src).simdMem(SIMD.v128_load, 4, 0).i32(0).simd(SIMD.i32x4_splat).shuffle(lanes);
    if (shl) f.i32(shl).simd(SIMD.i8x16_shl);
    f.i32(shr).simd(I8X16_SHR_U);
    if (shlAfter) f.i32(shlAfter).simd(SIMD.i8x16_shl);
  };
  // Low 6 bits: scales 0–3 (bytes 0–3), mins 0–3 (bytes 4–7).
  part([0, 1, 2, 3, z, z, z, z, 4, 5, 6, 7, z, z, z, z], 2, 2, 0);
  // Low 4 bits of scales 4–7 (bytes 8–11), high 4 bits of mins 4–7 (bytes 8–11).
  part([z, z, z, z, 8, 9, 10, 11, z, z, z, z, z, z, z, z], 4, 4, 0);
  f.simd(SIMD.v128_or);
  part([z, z, z, z, z, z, z, z, z, z, z, z, 8, 9, 10, 11], 0, 4, 0);
  f.simd(SIMD.v128_or);
  // Bits 4–5 of scales 4–7 and mins 4–7: the top 2 bits of bytes 0–3 and 4–7.
  part([z, z, z, z, 0, 1, 2, 3, z, z, z, z, 4, 5, 6, 7], 0, 6, 4);
  f.simd(SIMD.v128_or).set(t);
  for (const [half, scale, lanes] of [[I16X8_EXTEND_LOW_I8X16_U, d, out.av], [I16X8_EXTEND_HIGH_I8X16_U, dmin, out.mv]] as const) {
    for (const [g, ext] of [[0, SIMD.i32x4_extend_low_i16x8_u], [1, SIMD.i32x4_extend_high_i16x8_u]] as const) {
      f.get(t).simd(half).simd(ext).simd(SIMD.f32x4_convert_i32x4_s).get(scale).simd(SIMD.f32x4_splat).simd(SIMD.f32x4_mul).set(lanes[g]);
    }
  }
}

/** Pushes lane s & 3 of `lanes[s >> 2]`: sub-block s's a (from av) or mm (from mv). */
export function emitLane(f: Fn, lanes: readonly [number, number], s: number): void {
  f.get(lanes[s >> 2]).lane(SIMD.f32x4_extract_lane, s & 3);
}

/**
 * Instantiates the module that `build` assembles, with at least `end` bytes of memory and
 * ggml's float16 → float32 table at `table`; null where that fails (no WebAssembly SIMD).
 */
export function instantiateWithF16Table<M extends { memory: WasmMemory }>(build: () => Uint8Array, end: number, table: number): M | null {
  try {
    const m = instantiate<M>(build());
    ensureMemory(m.memory, end);
    new Float32Array(m.memory.buffer, table, 65536).set(F16_TO_F32);
    return m;
  } catch {
    return null;
  }
}
