import { Fn, OP, T, WASM_PAGE, assemble, ensureMemory, instantiate, type WasmMemory } from '../cpu/wasmAsm';

/**
 * Byte counts in WebAssembly for the code-counting statistics (scaledStats.cpu.ts), the same
 * counts as their JavaScript loops without the bounds checks:
 *  - `count(at, rows, stride, words)`: an FP8 block, rows of `words` u32 words `stride` bytes
 *    apart from byte `at`, into four interleaved tables at COUNTS (byte j of each word into
 *    table j, so that runs of one byte do not wait on their own increments);
 *  - `pairs(blocks, scales, groups)`: MXFP4 groups, 16 block bytes each, counted in the row of
 *    their E8M0 scale byte of the 256 × 256 table at PAIRS.
 */
export const COUNTS = 0;
export const PAIRS = COUNTS + 4 * 256 * 4;
/** Where the caller puts the bytes to count. */
export const DATA = PAIRS + 256 * 256 * 4;

export interface ByteCountsModule {
  readonly memory: WasmMemory;
  count(at: number, rows: number, stride: number, words: number): void;
  pairs(blocks: number, scales: number, groups: number): void;
}

function buildPairs(): Fn {
  const f = new Fn([T.i32, T.i32, T.i32], []);
  const [BLOCKS, SCALES, GROUPS] = [0, 1, 2];
  const end = f.local(T.i32);
  const row = f.local(T.i32);
  const a = f.local(T.i32);
  const w = f.local(T.i32);
  f.get(GROUPS).op(OP.i32_eqz).if_().op(OP.return).end();
  f.get(SCALES).get(GROUPS).op(OP.i32_add).set(end);
  f.loop();
  // The scale's row: PAIRS + 1024 · scale.
  f.get(SCALES).mem(0x2d, 0, 0).i32(10).op(OP.i32_shl).set(row);
  for (let j = 0; j < 4; j++) {
    f.get(BLOCKS).mem(OP.i32_load, 4 * j, 0).set(w);
    for (let b = 0; b < 4; b++) {
      f.get(w);
      if (b) f.i32(8 * b).op(OP.i32_shr_u);
      if (b < 3) f.i32(255).op(OP.i32_and);
      f.i32(2).op(OP.i32_shl).get(row).op(OP.i32_add).tee(a).get(a).mem(OP.i32_load, PAIRS, 2).i32(1).op(OP.i32_add).mem(OP.i32_store, PAIRS, 2);
    }
  }
  f.get(BLOCKS).i32(16).op(OP.i32_add).set(BLOCKS);
  f.get(SCALES).i32(1).op(OP.i32_add).tee(SCALES).get(end).op(OP.i32_lt_u).op(OP.br_if, 0);
  f.end();
  return f;
}

function build(): Fn {
  const f = new Fn([T.i32, T.i32, T.i32, T.i32], []);
  const [AT, ROWS, STRIDE, WORDS] = [0, 1, 2, 3];
  const p = f.local(T.i32);
  const end = f.local(T.i32);
  const w = f.local(T.i32);
  const a = f.local(T.i32);
  f.get(ROWS).op(OP.i32_eqz).get(WORDS).op(OP.i32_eqz).op(OP.i32_or).if_().op(OP.return).end();
  f.loop();
  f.get(AT).set(p);
  f.get(AT).get(WORDS).i32(4).op(OP.i32_mul).op(OP.i32_add).set(end);
  f.loop();
  f.get(p).mem(OP.i32_load, 0, 0).set(w);
  // Table j, entry b: COUNTS + 1024 j + 4 b.
  const inc = (shift: number, table: number): void => {
    f.get(w);
    if (shift) f.i32(shift).op(OP.i32_shr_u);
    if (shift < 24) f.i32(255).op(OP.i32_and);
    f.i32(2).op(OP.i32_shl).tee(a).get(a).mem(OP.i32_load, COUNTS + 1024 * table, 2).i32(1).op(OP.i32_add).mem(OP.i32_store, COUNTS + 1024 * table, 2);
  };
  inc(0, 0);
  inc(8, 1);
  inc(16, 2);
  inc(24, 3);
  f.get(p).i32(4).op(OP.i32_add).tee(p).get(end).op(OP.i32_lt_u).op(OP.br_if, 0);
  f.end();
  f.get(AT).get(STRIDE).op(OP.i32_add).set(AT);
  f.get(ROWS).i32(1).op(OP.i32_sub).tee(ROWS).op(OP.br_if, 0);
  f.end();
  return f;
}

let mod: ByteCountsModule | null | undefined;

/** The module, or null where WebAssembly is missing (the JavaScript loop then counts). */
export function byteCountsModule(): ByteCountsModule | null {
  if (mod === undefined) {
    try {
      mod = instantiate<ByteCountsModule>(assemble([['count', build()], ['pairs', buildPairs()]], Math.ceil(DATA / WASM_PAGE)));
    } catch {
      mod = null;
    }
  }
  return mod;
}

/** Room for `bytes` of data after the tables. */
export function byteCountsRoom(m: ByteCountsModule, bytes: number): Uint8Array {
  ensureMemory(m.memory, Math.ceil((DATA + bytes) / WASM_PAGE) * WASM_PAGE);
  return new Uint8Array(m.memory.buffer, DATA, bytes);
}
