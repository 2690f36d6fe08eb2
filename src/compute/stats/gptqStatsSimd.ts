import { Fn, OP, SIMD, T, WASM_PAGE, assemble, ensureMemory, instantiate, type WasmMemory } from '../cpu/wasmAsm';

/**
 * The per-cell counts of GPTQ int4 weights (gptqStats.cpu.ts) in WebAssembly SIMD. One v128 holds
 * one packed row's words of 4 consecutive outputs (4 cells, 32 codes): the low and high nibbles
 * are split into byte lanes and, over the run's packed rows, give each cell
 *  - Σq and Σq² (byte sums and u8 × u8 products, widened every 16 rows before they overflow);
 *  - how many codes equal the cell's zero point z (i8x16.eq, counted);
 *  - the smallest and largest code, and the smallest |q − z| that is not 0 (u8 min and max).
 * `cells(in, rows, nk, z, out, n4)`: `in` holds nk packed rows of `rows` words each, `z` a word
 * per output with z in every byte, and `out` gets 64 bytes per 4 outputs: Σq, Σq², the zero
 * hits (i32x4 each), then qmin | qmax << 8 | dmin << 16 per output (dmin 255: no code but z).
 */

// Opcodes after the 0xfd prefix that the shared table does not list (WebAssembly SIMD spec).
const V = {
  v128_const: 0x0c, i8x16_splat: 0x0f, i8x16_eq: 0x23, i8x16_shr_u: 0x6d, i8x16_add: 0x6e, i8x16_sub: 0x71, i8x16_min_u: 0x77, i8x16_max_u: 0x79,
  i16x8_extadd_pairwise_i8x16_u: 0x7d, i32x4_extadd_pairwise_i16x8_u: 0x7f, i16x8_add: 0x8e, i16x8_extmul_low_i8x16_u: 0x9e, i16x8_extmul_high_i8x16_u: 0x9f,
} as const;

/** Packed rows summed in byte lanes before widening: 16 × (15 + 15) codes' worth stays under 256 and 16 × 2 × 225 under 65,536. */
const CHUNK = 16;

export interface GptqStatsModule {
  readonly memory: WasmMemory;
  cells(input: number, rows: number, nk: number, z: number, out: number, n4: number): void;
  /**
   * The same counts for a group whose input rows are anywhere (act-order): `list` holds its n
   * input rows (i32), each read from packed row i >> 3 at bits 4 (i & 7) of the whole weight at
   * `input`; `z` holds each output's z as an i32. Lane j of each vector is output 4·o4 + j.
   */
  gather(input: number, rows: number, list: number, n: number, z: number, out: number, n4: number): void;
}

function build(): Fn {
  const f = new Fn([T.i32, T.i32, T.i32, T.i32, T.i32, T.i32], []);
  const [IN, ROWS, NK, Z, OUT, N4] = [0, 1, 2, 3, 4, 5];
  const o4 = f.local(T.i32);
  const k = f.local(T.i32);
  const kEnd = f.local(T.i32);
  const p = f.local(T.i32);
  const stride = f.local(T.i32);
  const [v, lo, hi, zb, aLo, aHi, e8, s2a, s2b, S1, S2, E, mn, mx, dm, eqLo, eqHi, t] = Array.from({ length: 18 }, () => f.local(T.v128));
  const zero = (l: number): void => void f.i32(0).simd(SIMD.i32x4_splat).set(l);
  const bytes = (b: number): Fn => f.i32(b).simd(V.i8x16_splat);
  f.get(ROWS).i32(4).op(OP.i32_mul).set(stride);
  f.i32(0).set(o4);
  f.block().loop();
  f.get(o4).get(N4).op(OP.i32_ge_u).op(OP.br_if, 1);
  f.get(Z).get(o4).i32(16).op(OP.i32_mul).op(OP.i32_add).simdMem(SIMD.v128_load, 0, 0).set(zb);
  for (const l of [S1, S2, E, mx]) zero(l);
  bytes(255).set(mn);
  bytes(255).set(dm);
  f.i32(0).set(k);
  f.loop();
  // This chunk: rows [k, min(k + CHUNK, nk)).
  f.get(k).i32(CHUNK).op(OP.i32_add).tee(kEnd).get(NK).get(kEnd).get(NK).op(OP.i32_lt_u).op(OP.select).set(kEnd);
  for (const l of [aLo, aHi, e8, s2a, s2b]) zero(l);
  f.get(IN).get(k).get(stride).op(OP.i32_mul).op(OP.i32_add).get(o4).i32(16).op(OP.i32_mul).op(OP.i32_add).set(p);
  f.loop();
  emitRow(f, { p, v, lo, hi, zb, aLo, aHi, e8, s2a, s2b, mn, mx, dm, eqLo, eqHi, t });
  f.get(p).get(stride).op(OP.i32_add).set(p);
  f.get(k).i32(1).op(OP.i32_add).tee(k).get(kEnd).op(OP.i32_lt_u).op(OP.br_if, 0);
  f.end();
  emitFlush(f, { aLo, aHi, e8, s2a, s2b, S1, S2, E, t });
  f.get(k).get(NK).op(OP.i32_lt_u).op(OP.br_if, 0);
  f.end();
  emitStore(f, { OUT, o4, S1, S2, E, mn, mx, dm, t });
  f.get(o4).i32(1).op(OP.i32_add).set(o4);
  f.op(OP.br, 0);
  f.end().end();
  return f;
}

type L = Record<string, number>;

/** One packed row of 4 cells: split nibbles, add to the byte sums, products, zero hits and code bounds. */
function emitRow(f: Fn, l: L): void {
  f.get(l.p).simdMem(SIMD.v128_load, 0, 0).set(l.v);
  f.get(l.v).i32(15).simd(V.i8x16_splat).simd(SIMD.v128_and).set(l.lo);
  f.get(l.v).i32(4).simd(V.i8x16_shr_u).set(l.hi);
  f.get(l.aLo).get(l.lo).simd(V.i8x16_add).set(l.aLo);
  f.get(l.aHi).get(l.hi).simd(V.i8x16_add).set(l.aHi);
  f.get(l.s2a).get(l.lo).get(l.lo).simd(V.i16x8_extmul_low_i8x16_u).simd(V.i16x8_add).get(l.hi).get(l.hi).simd(V.i16x8_extmul_low_i8x16_u).simd(V.i16x8_add).set(l.s2a);
  f.get(l.s2b).get(l.lo).get(l.lo).simd(V.i16x8_extmul_high_i8x16_u).simd(V.i16x8_add).get(l.hi).get(l.hi).simd(V.i16x8_extmul_high_i8x16_u).simd(V.i16x8_add).set(l.s2b);
  f.get(l.lo).get(l.zb).simd(V.i8x16_eq).set(l.eqLo);
  f.get(l.hi).get(l.zb).simd(V.i8x16_eq).set(l.eqHi);
  // A hit is −1 in its lane: subtracting counts it.
  f.get(l.e8).get(l.eqLo).simd(V.i8x16_sub).get(l.eqHi).simd(V.i8x16_sub).set(l.e8);
  f.get(l.mn).get(l.lo).get(l.hi).simd(V.i8x16_min_u).simd(V.i8x16_min_u).set(l.mn);
  f.get(l.mx).get(l.lo).get(l.hi).simd(V.i8x16_max_u).simd(V.i8x16_max_u).set(l.mx);
  // |q − z| as max − min, made 255 where q = z, so that the minimum is the nearest other code.
  f.get(l.lo).get(l.zb).simd(V.i8x16_max_u).get(l.lo).get(l.zb).simd(V.i8x16_min_u).simd(V.i8x16_sub).get(l.eqLo).simd(SIMD.v128_or).set(l.t);
  f.get(l.dm).get(l.t).simd(V.i8x16_min_u).set(l.dm);
  f.get(l.hi).get(l.zb).simd(V.i8x16_max_u).get(l.hi).get(l.zb).simd(V.i8x16_min_u).simd(V.i8x16_sub).get(l.eqHi).simd(SIMD.v128_or).set(l.t);
  f.get(l.dm).get(l.t).simd(V.i8x16_min_u).set(l.dm);
}

/** Widens the chunk's byte and u16 lanes into the cells' i32 sums (lane j: output j of the 4). */
function emitFlush(f: Fn, l: L): void {
  const bytesToCells = (a: number, b: number): void => {
    f.get(a).simd(V.i16x8_extadd_pairwise_i8x16_u).get(b).simd(V.i16x8_extadd_pairwise_i8x16_u).simd(V.i16x8_add).simd(V.i32x4_extadd_pairwise_i16x8_u);
  };
  f.get(l.S1);
  bytesToCells(l.aLo, l.aHi);
  f.simd(SIMD.i32x4_add).set(l.S1);
  f.get(l.E);
  f.get(l.e8).simd(V.i16x8_extadd_pairwise_i8x16_u).simd(V.i32x4_extadd_pairwise_i16x8_u);
  f.simd(SIMD.i32x4_add).set(l.E);
  // s2a: outputs 0 and 1 as [0, 0, 1, 1] once widened; s2b: outputs 2 and 3. Their halves, shuffled into place, add up.
  f.get(l.s2a).simd(V.i32x4_extadd_pairwise_i16x8_u).set(l.t);
  f.get(l.s2b).simd(V.i32x4_extadd_pairwise_i16x8_u).set(l.s2b);
  f.get(l.t).get(l.s2b).shuffle([0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27]);
  f.get(l.t).get(l.s2b).shuffle([4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31]);
  f.simd(SIMD.i32x4_add).get(l.S2).simd(SIMD.i32x4_add).set(l.S2);
}

/** The bounds' 4 bytes per output folded into one (min or max of its lanes), then everything stored. */
function emitStore(f: Fn, l: L): void {
  const fold = (x: number, op: number): void => {
    f.get(x).get(x).i32(16).simd(SIMD.i32x4_shr_u).simd(op).tee(l.t).get(l.t).i32(8).simd(SIMD.i32x4_shr_u).simd(op);
    f.i32(255).simd(SIMD.i32x4_splat).simd(SIMD.v128_and);
  };
  const at = (): void => void f.get(l.OUT).get(l.o4).i32(64).op(OP.i32_mul).op(OP.i32_add);
  at();
  f.get(l.S1).simdMem(SIMD.v128_store, 0, 0);
  at();
  f.get(l.S2).simdMem(SIMD.v128_store, 16, 0);
  at();
  f.get(l.E).simdMem(SIMD.v128_store, 32, 0);
  at();
  fold(l.mn, V.i8x16_min_u);
  fold(l.mx, V.i8x16_max_u);
  f.i32(8).simd(SIMD.i32x4_shl).simd(SIMD.v128_or);
  fold(l.dm, V.i8x16_min_u);
  f.i32(16).simd(SIMD.i32x4_shl).simd(SIMD.v128_or);
  f.simdMem(SIMD.v128_store, 48, 0);
}

function buildGather(): Fn {
  const f = new Fn([T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32], []);
  const [IN, ROWS, LIST, N, Z, OUT, N4] = [0, 1, 2, 3, 4, 5, 6];
  const o4 = f.local(T.i32);
  const p = f.local(T.i32);
  const end = f.local(T.i32);
  const i = f.local(T.i32);
  const [z4, q, eq, S1, S2, E, mn, mx, dm] = Array.from({ length: 9 }, () => f.local(T.v128));
  const splat = (x: number): Fn => f.i32(x).simd(SIMD.i32x4_splat);
  const I32X4_MUL = 0xb5;
  const I32X4_EQ = SIMD.i32x4_eq;
  f.get(LIST).get(N).i32(4).op(OP.i32_mul).op(OP.i32_add).set(end);
  f.i32(0).set(o4);
  f.block().loop();
  f.get(o4).get(N4).op(OP.i32_ge_u).op(OP.br_if, 1);
  f.get(Z).get(o4).i32(16).op(OP.i32_mul).op(OP.i32_add).simdMem(SIMD.v128_load, 0, 0).set(z4);
  for (const l of [S1, S2, E, mx]) splat(0).set(l);
  splat(255).set(mn);
  splat(255).set(dm);
  f.get(LIST).set(p);
  f.loop();
  f.get(p).mem(OP.i32_load, 0, 2).set(i);
  // Packed row i >> 3, outputs 4·o4 …: the row's code is bits 4 (i & 7) of each word.
  f.get(IN).get(i).i32(3).op(OP.i32_shr_u).get(ROWS).op(OP.i32_mul).get(o4).i32(4).op(OP.i32_mul).op(OP.i32_add).i32(4).op(OP.i32_mul).op(OP.i32_add);
  f.simdMem(SIMD.v128_load, 0, 0).get(i).i32(7).op(OP.i32_and).i32(2).op(OP.i32_shl).simd(SIMD.i32x4_shr_u);
  splat(15).simd(SIMD.v128_and).set(q);
  f.get(S1).get(q).simd(SIMD.i32x4_add).set(S1);
  f.get(S2).get(q).get(q).simd(I32X4_MUL).simd(SIMD.i32x4_add).set(S2);
  f.get(q).get(z4).simd(I32X4_EQ).set(eq);
  f.get(E).get(eq).simd(SIMD.i32x4_sub).set(E);
  f.get(mn).get(q).simd(SIMD.i32x4_min_u).set(mn);
  f.get(mx).get(q).simd(SIMD.i32x4_max_u).set(mx);
  // |q − z|, all ones where q = z, so that the minimum is the nearest other code.
  f.get(dm).get(q).get(z4).simd(SIMD.i32x4_max_u).get(q).get(z4).simd(SIMD.i32x4_min_u).simd(SIMD.i32x4_sub).get(eq).simd(SIMD.v128_or).simd(SIMD.i32x4_min_u).set(dm);
  f.get(p).i32(4).op(OP.i32_add).tee(p).get(end).op(OP.i32_lt_u).op(OP.br_if, 0);
  f.end();
  const at = (): void => void f.get(OUT).get(o4).i32(64).op(OP.i32_mul).op(OP.i32_add);
  at();
  f.get(S1).simdMem(SIMD.v128_store, 0, 0);
  at();
  f.get(S2).simdMem(SIMD.v128_store, 16, 0);
  at();
  f.get(E).simdMem(SIMD.v128_store, 32, 0);
  at();
  f.get(mn).get(mx).i32(8).simd(SIMD.i32x4_shl).simd(SIMD.v128_or).get(dm);
  splat(255).simd(SIMD.i32x4_min_u).i32(16).simd(SIMD.i32x4_shl).simd(SIMD.v128_or);
  f.simdMem(SIMD.v128_store, 48, 0);
  f.get(o4).i32(1).op(OP.i32_add).set(o4);
  f.op(OP.br, 0);
  f.end().end();
  return f;
}

let mod: GptqStatsModule | null | undefined;

/** The module, or null where WebAssembly SIMD is missing (the scalar counts then run). */
export function gptqStatsModule(): GptqStatsModule | null {
  if (mod === undefined) {
    try {
      mod = instantiate<GptqStatsModule>(assemble([['cells', build()], ['gather', buildGather()]], 1));
    } catch {
      mod = null;
    }
  }
  return mod;
}

/** Grows the module's memory to `bytes`. */
export function gptqStatsMemory(m: GptqStatsModule, bytes: number): void {
  ensureMemory(m.memory, Math.ceil(bytes / WASM_PAGE) * WASM_PAGE);
}
