// Kept whole: each build function emits one WebAssembly function as a straight run of
// instructions whose locals and loop labels are shared from the first op to the last.
import { Fn, OP, SIMD, T, assemble, ensureMemory, instantiate, type WasmMemory } from '../cpu/wasmAsm';

/**
 * The CPU twin's fast path for the sketch products, in WebAssembly SIMD (f32x4,
 * IEEE binary32, never fused), the precision the GPU twin computes in:
 *   fwd:  Y = D·X     (D: rows × cols, X: cols × kp, Y: rows × kp)
 *   back: Z += Dᵀ·Y   (Z: cols × kp)
 * Both vectorise along the sketch columns: four rows of D and eight sketch columns
 * make eight f32x4 accumulators that stay in registers for a whole sweep of the
 * columns of D, so each element of D, splat once, feeds eight lanes of work and each
 * vector of X (or Z) four rows. Rows are padded to a multiple of four with zeros and
 * the sketch width to a multiple of eight (`kp`).
 */

/** v128.load32_splat (after the 0xfd prefix): one f32 into all four lanes. */
const LOAD32_SPLAT = 0x09;
/** Rows of D per group, and sketch columns per tile (two f32x4). */
export const SIMD_ROWS = 4;
export const SIMD_COLS = 8;
// Above this a block goes to the scalar loop rather than growing a worker's memory further:
// sketch blocks are a few MiB, so only an unusual direct call gets here.
const MAX_MEMORY = 1 << 30;

/**
 * `fwd(D, X, Y, rows, cols, kp)` when `back` is false; `back(D, Y, Z, rows, cols, kp)`
 * otherwise. `rows` is a multiple of 4 and `kp` of 8; pointers are byte offsets.
 */
function build(back: boolean): Fn {
  const f = new Fn([T.i32, T.i32, T.i32, T.i32, T.i32, T.i32], []);
  const [D, P, Q, rows, cols, kp] = [0, 1, 2, 3, 4, 5];
  const r = f.local(T.i32), jt = f.local(T.i32), c = f.local(T.i32), px = f.local(T.i32), rowBytes = f.local(T.i32), stride = f.local(T.i32);
  const pd = [f.local(T.i32), f.local(T.i32), f.local(T.i32), f.local(T.i32)];
  const acc = Array.from({ length: 8 }, () => f.local(T.v128));
  const v0 = f.local(T.v128), v1 = f.local(T.v128), dv = f.local(T.v128);
  f.get(cols).i32(2).op(OP.i32_shl).set(rowBytes);
  f.get(kp).i32(2).op(OP.i32_shl).set(stride);
  f.i32(0).set(r);
  f.block().loop();
  f.get(r).get(rows).op(OP.i32_ge_u).op(OP.br_if, 1);
  f.i32(0).set(jt);
  f.block().loop();
  f.get(jt).get(kp).op(OP.i32_ge_u).op(OP.br_if, 1);
  for (let q = 0; q < 4; q++) f.get(D).get(r).i32(q).op(OP.i32_add).get(rowBytes).op(OP.i32_mul).op(OP.i32_add).set(pd[q]);
  if (back) {
    // The four rows' y values of this tile, held for the sweep: Y[(r + q)·kp + jt …].
    for (let q = 0; q < 4; q++) {
      f.get(P).get(r).i32(q).op(OP.i32_add).get(kp).op(OP.i32_mul).get(jt).op(OP.i32_add).i32(2).op(OP.i32_shl).op(OP.i32_add).set(px);
      f.get(px).simdMem(SIMD.v128_load, 0, 2).set(acc[2 * q]);
      f.get(px).simdMem(SIMD.v128_load, 16, 2).set(acc[2 * q + 1]);
    }
    f.get(Q).get(jt).i32(2).op(OP.i32_shl).op(OP.i32_add).set(px);
  } else {
    for (let q = 0; q < 8; q++) f.f32(0).simd(SIMD.f32x4_splat).set(acc[q]);
    f.get(P).get(jt).i32(2).op(OP.i32_shl).op(OP.i32_add).set(px);
  }
  f.get(cols).set(c);
  f.block().loop();
  f.get(c).op(OP.i32_eqz).op(OP.br_if, 1);
  f.get(px).simdMem(SIMD.v128_load, 0, 2).set(v0);
  f.get(px).simdMem(SIMD.v128_load, 16, 2).set(v1);
  for (let q = 0; q < 4; q++) {
    f.get(pd[q]).simdMem(LOAD32_SPLAT, 0, 2).set(dv);
    if (back) {
      f.get(v0).get(dv).get(acc[2 * q]).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(v0);
      f.get(v1).get(dv).get(acc[2 * q + 1]).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(v1);
    } else {
      f.get(acc[2 * q]).get(dv).get(v0).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(acc[2 * q]);
      f.get(acc[2 * q + 1]).get(dv).get(v1).simd(SIMD.f32x4_mul).simd(SIMD.f32x4_add).set(acc[2 * q + 1]);
    }
    f.get(pd[q]).i32(4).op(OP.i32_add).set(pd[q]);
  }
  if (back) {
    f.get(px).get(v0).simdMem(SIMD.v128_store, 0, 2);
    f.get(px).get(v1).simdMem(SIMD.v128_store, 16, 2);
  }
  f.get(px).get(stride).op(OP.i32_add).set(px);
  f.get(c).i32(1).op(OP.i32_sub).set(c);
  f.op(OP.br, 0).end().end();
  if (!back) {
    for (let q = 0; q < 4; q++) {
      f.get(Q).get(r).i32(q).op(OP.i32_add).get(kp).op(OP.i32_mul).get(jt).op(OP.i32_add).i32(2).op(OP.i32_shl).op(OP.i32_add).set(px);
      f.get(px).get(acc[2 * q]).simdMem(SIMD.v128_store, 0, 2);
      f.get(px).get(acc[2 * q + 1]).simdMem(SIMD.v128_store, 16, 2);
    }
  }
  f.get(jt).i32(SIMD_COLS).op(OP.i32_add).set(jt);
  f.op(OP.br, 0).end().end();
  f.get(r).i32(SIMD_ROWS).op(OP.i32_add).set(r);
  f.op(OP.br, 0).end().end();
  return f;
}

interface SketchModule {
  readonly memory: WasmMemory;
  readonly fwd: (d: number, x: number, y: number, rows: number, cols: number, kp: number) => void;
  readonly back: (d: number, y: number, z: number, rows: number, cols: number, kp: number) => void;
}

let instance: SketchModule | null | undefined;

function sketchModule(): SketchModule | null {
  if (instance !== undefined) return instance;
  try {
    instance = instantiate<SketchModule>(assemble([['fwd', build(false)], ['back', build(true)]], 1));
  } catch {
    instance = null;
  }
  return instance;
}

const align16 = (n: number) => Math.ceil(n / 16) * 16;

/** Views into the module's memory for one block: fill `d` (Δ, rows × cols, padded rows zero) and `x` (cols × kp). */
export interface SketchBuffers {
  readonly d: Float32Array;
  readonly x: Float32Array;
  readonly y: Float32Array;
  readonly z: Float32Array;
  readonly kp: number;
  readonly rowsPadded: number;
  /** Runs y = D·x, and z = Dᵀ·y (from zero) when `back`. */
  run(back: boolean): void;
}

/** The block's buffers in WebAssembly memory, or undefined where SIMD is missing or the block too large. */
export function sketchBuffers(rows: number, cols: number, k: number): SketchBuffers | undefined {
  const mod = sketchModule();
  if (!mod) return undefined;
  const kp = Math.ceil(k / SIMD_COLS) * SIMD_COLS;
  const rp = Math.ceil(rows / SIMD_ROWS) * SIMD_ROWS;
  const dP = 0;
  const xP = align16(dP + rp * cols * 4);
  const yP = align16(xP + cols * kp * 4);
  const zP = align16(yP + rp * kp * 4);
  const need = zP + cols * kp * 4;
  if (need > MAX_MEMORY) return undefined;
  ensureMemory(mod.memory, need);
  const mem = mod.memory.buffer;
  const d = new Float32Array(mem, dP, rp * cols);
  d.fill(0, rows * cols);
  const z = new Float32Array(mem, zP, cols * kp);
  return {
    d,
    x: new Float32Array(mem, xP, cols * kp),
    y: new Float32Array(mem, yP, rp * kp),
    z,
    kp,
    rowsPadded: rp,
    run(back) {
      mod.fwd(dP, xP, yP, rp, cols, kp);
      if (!back) return;
      z.fill(0);
      mod.back(dP, yP, zP, rp, cols, kp);
    },
  };
}
