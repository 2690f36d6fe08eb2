// Kept whole: buildKernel emits one WebAssembly function as a straight run of
// instructions whose locals, loop labels and stack depth are shared from the first op to the
// last; cut into pieces, each piece would need that state passed in and the reader would lose
// the one-to-one order with the scalar loop it reproduces.
import { Fn, OP, SIMD, T, assemble, emitF16x4, ensureMemory, instantiate, type WasmMemory } from '../cpu/wasmAsm';
import { OUT_BYTES, storedCols, type MatmulArgs } from './matmul';

/**
 * The CPU twin's fast path: the same float64 arithmetic as the scalar loop, two
 * lanes at a time in WebAssembly SIMD (IEEE binary64, round to nearest even, never
 * fused), about four times faster.
 *
 * Every stored row is `acc[c] = base[c] + Σₖ L[row, k]·R[k, c]`, with L and R chosen
 * by the layout (plain: L = b, R = a; transposed: L = aᵀ, R = bᵀ). R is packed in
 * blocks of eight columns, `[c / 8][k][8]`, so that one block's K rows are contiguous
 * and its eight sums stay in four registers for the whole rank loop. A row's last
 * block may run past the row: its extra lanes read the next row's base and write
 * into the next row's output, which that row then overwrites; the buffers carry 64
 * bytes of slack for the very last block.
 *
 * Narrowing happens in the same pass: F32 directly (one RNE rounding), BF16 through
 * f32 with the exact residual settling f32 ties, PAIR as (hi, lo). F16 outputs the
 * float64 sums, which the caller narrows (its subnormal rules do not vectorise
 * cheaply). Rows that may hold a non-finite value are flagged, and the caller
 * recounts them exactly, so the extra lanes never raise a false alarm.
 *
 * Memory: [0, 96) scratch for the tie fix-up, then R, L, the base rows, the output
 * and the row flags, each 16-byte aligned.
 */

const SCRATCH = 0;
const FIRST = 128;
// The slack after the base and output regions: a last block of eight lanes reads and writes at
// most 8 × 8 bytes past its row.
const SLACK = 64;
// Above this the slice goes to the scalar loop rather than growing a worker's memory further:
// merge slices are a few MiB, so only an unusual direct call gets here.
const MAX_MEMORY = 1 << 30;

/** Base encodings (the `baseMode` argument). */
const BASE_MODE = { F32: 0, BF16: 1, F16: 2, NONE: 3 } as const;
/** Output encodings (the `outMode` argument); F64 is the F16 route. */
const OUT_MODE = { F32: 0, BF16: 1, F64: 2, PAIR: 3 } as const;

const LOW_HALF_TO_LOW = [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7];
const JOIN_LOW_HALVES = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];
const INTERLEAVE_F32 = [0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23];

/**
 * `mm(R, L, base, out, flags, rows, cols, K, baseMode, outMode)`: see the module comment.
 * flags[r] (i32) is nonzero when row r may hold a non-finite result.
 */
function buildKernel(): Fn {
  const f = new Fn([T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32], []);
  const [R, L, base, out, flags, rows, cols, K, baseMode, outMode] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const r = f.local(T.i32), blk = f.local(T.i32), nb = f.local(T.i32), k = f.local(T.i32), rp = f.local(T.i32), lp = f.local(T.i32), e = f.local(T.i32), j = f.local(T.i32), u = f.local(T.i32);
  const acc = [f.local(T.v128), f.local(T.v128), f.local(T.v128), f.local(T.v128)];
  const lv = f.local(T.v128), fa = f.local(T.v128), fb = f.local(T.v128), ha = f.local(T.v128), hb = f.local(T.v128), bad = f.local(T.v128), t1 = f.local(T.v128), t2 = f.local(T.v128);
  const v = f.local(T.f64), w = f.local(T.f64);

  const splat = (x: number) => f.i32(x).simd(SIMD.i32x4_splat);
  /** `dst = RNE bf16 bits of the f32 lanes of src` in the low 16 bits of each u32 lane (NaN becomes inf: it is flagged either way). */
  const toBf16 = (src: number, dst: number) => {
    // On the magnitude, capped just above inf so that no NaN pattern carries into the sign; the
    // sign goes back on afterwards.
    f.get(src).i32(0x7fffffff).simd(SIMD.i32x4_splat).simd(SIMD.v128_and).i32(0x7f800001).simd(SIMD.i32x4_splat).simd(SIMD.i32x4_min_u).set(t1);
    f.get(t1).i32(0x7fff).simd(SIMD.i32x4_splat).simd(SIMD.i32x4_add);
    f.get(t1).i32(16).simd(SIMD.i32x4_shr_u).i32(1).simd(SIMD.i32x4_splat).simd(SIMD.v128_and).simd(SIMD.i32x4_add);
    f.i32(16).simd(SIMD.i32x4_shr_u);
    f.get(src).i32(16).simd(SIMD.i32x4_shr_u).i32(0x8000).simd(SIMD.i32x4_splat).simd(SIMD.v128_and).simd(SIMD.v128_or).set(dst);
  };
  /** Two f64x2 sums → one f32x4 of their RNE roundings. */
  const demote4 = (x: number, y: number, dst: number) => {
    f.get(acc[x]).simd(SIMD.f32x4_demote_f64x2_zero).get(acc[y]).simd(SIMD.f32x4_demote_f64x2_zero).shuffle(JOIN_LOW_HALVES).set(dst);
  };
  /** bad |= lanes of `src` whose bits under `mask` are all ones. */
  const flagAllOnes = (src: number, mask: number) => {
    f.get(bad).get(src).i32(mask).simd(SIMD.i32x4_splat).simd(SIMD.v128_and).i32(mask).simd(SIMD.i32x4_splat).simd(SIMD.i32x4_eq).simd(SIMD.v128_or).set(bad);
  };

  f.get(cols).i32(7).op(OP.i32_add).i32(3).op(OP.i32_shr_u).set(nb);
  f.i32(0).set(r);
  f.block().loop();
  f.get(r).get(rows).op(OP.i32_ge_u).op(OP.br_if, 1);
  splat(0).set(bad);
  f.i32(0).set(blk);
  f.block().loop();
  f.get(blk).get(nb).op(OP.i32_ge_u).op(OP.br_if, 1);
  f.get(r).get(cols).op(OP.i32_mul).get(blk).i32(3).op(OP.i32_shl).op(OP.i32_add).set(e);

  // Seed: the eight base values as f32 (exact for every base dtype) in fa, fb.
  f.get(baseMode).i32(BASE_MODE.BF16).op(OP.i32_eq).if_();
  f.get(base).get(e).i32(1).op(OP.i32_shl).op(OP.i32_add).simdMem(SIMD.v128_load, 0, 0).set(t1);
  f.get(t1).simd(SIMD.i32x4_extend_low_i16x8_u).i32(16).simd(SIMD.i32x4_shl).set(fa);
  f.get(t1).simd(SIMD.i32x4_extend_high_i16x8_u).i32(16).simd(SIMD.i32x4_shl).set(fb);
  f.op(OP.else);
  f.get(baseMode).i32(BASE_MODE.F32).op(OP.i32_eq).if_();
  f.get(base).get(e).i32(2).op(OP.i32_shl).op(OP.i32_add).simdMem(SIMD.v128_load, 0, 0).set(fa);
  f.get(base).get(e).i32(2).op(OP.i32_shl).op(OP.i32_add).simdMem(SIMD.v128_load, 16, 0).set(fb);
  f.op(OP.else);
  f.get(baseMode).i32(BASE_MODE.F16).op(OP.i32_eq).if_();
  f.get(base).get(e).i32(1).op(OP.i32_shl).op(OP.i32_add).simdMem(SIMD.v128_load16x4_u, 0, 0).set(ha);
  emitF16x4(f, ha, fa, t1, t2);
  f.get(base).get(e).i32(1).op(OP.i32_shl).op(OP.i32_add).simdMem(SIMD.v128_load16x4_u, 8, 0).set(ha);
  emitF16x4(f, ha, fb, t1, t2);
  f.op(OP.else);
  splat(0).set(fa);
  splat(0).set(fb);
  f.end().end().end();
  f.get(fa).simd(SIMD.f64x2_promote_low_f32x4).set(acc[0]);
  f.get(fa).get(fa).shuffle(LOW_HALF_TO_LOW).simd(SIMD.f64x2_promote_low_f32x4).set(acc[1]);
  f.get(fb).simd(SIMD.f64x2_promote_low_f32x4).set(acc[2]);
  f.get(fb).get(fb).shuffle(LOW_HALF_TO_LOW).simd(SIMD.f64x2_promote_low_f32x4).set(acc[3]);

  // The rank loop: acc += L[r, k] · R[block, k, 0..8).
  f.get(R).get(blk).get(K).op(OP.i32_mul).i32(6).op(OP.i32_shl).op(OP.i32_add).set(rp);
  f.get(L).get(r).get(K).op(OP.i32_mul).i32(3).op(OP.i32_shl).op(OP.i32_add).set(lp);
  f.get(K).set(k);
  f.block().loop();
  f.get(k).op(OP.i32_eqz).op(OP.br_if, 1);
  f.get(lp).simdMem(SIMD.v128_load64_splat, 0, 3).set(lv);
  for (let q = 0; q < 4; q++) {
    f.get(acc[q]).get(lv).get(rp).simdMem(SIMD.v128_load, 16 * q, 4).simd(SIMD.f64x2_mul).simd(SIMD.f64x2_add).set(acc[q]);
  }
  f.get(rp).i32(64).op(OP.i32_add).set(rp);
  f.get(lp).i32(8).op(OP.i32_add).set(lp);
  f.get(k).i32(1).op(OP.i32_sub).set(k);
  f.op(OP.br, 0).end().end();

  // Output.
  f.get(outMode).i32(OUT_MODE.BF16).op(OP.i32_eq).if_();
  demote4(0, 1, fa);
  demote4(2, 3, fb);
  toBf16(fa, ha);
  toBf16(fb, hb);
  f.get(out).get(e).i32(1).op(OP.i32_shl).op(OP.i32_add);
  f.get(ha).get(hb).simd(SIMD.i16x8_narrow_i32x4_u).simdMem(SIMD.v128_store, 0, 0);
  flagAllOnes(ha, 0x7f80);
  flagAllOnes(hb, 0x7f80);
  // An f32 that sits exactly on a BF16 tie: the float64 sum decides (rare: about one lane in 65,536).
  f.get(fa).i32(0xffff).simd(SIMD.i32x4_splat).simd(SIMD.v128_and).i32(0x8000).simd(SIMD.i32x4_splat).simd(SIMD.i32x4_eq);
  f.get(fb).i32(0xffff).simd(SIMD.i32x4_splat).simd(SIMD.v128_and).i32(0x8000).simd(SIMD.i32x4_splat).simd(SIMD.i32x4_eq);
  f.simd(SIMD.v128_or).simd(SIMD.v128_any_true).if_();
  for (let q = 0; q < 4; q++) f.i32(SCRATCH + 16 * q).get(acc[q]).simdMem(SIMD.v128_store, 0, 4);
  f.i32(SCRATCH + 64).get(fa).simdMem(SIMD.v128_store, 0, 4);
  f.i32(SCRATCH + 80).get(fb).simdMem(SIMD.v128_store, 0, 4);
  f.i32(0).set(j);
  f.block().loop();
  f.get(j).i32(8).op(OP.i32_ge_u).op(OP.br_if, 1);
  f.get(j).i32(2).op(OP.i32_shl).mem(OP.i32_load, SCRATCH + 64, 2).set(u);
  f.get(u).i32(0xffff).op(OP.i32_and).i32(0x8000).op(OP.i32_eq).if_();
  f.get(j).i32(3).op(OP.i32_shl).mem(OP.f64_load, SCRATCH, 3).set(v);
  f.get(u).op(OP.f32_reinterpret_i32, OP.f64_promote_f32).set(w);
  f.get(v).get(w).op(OP.f64_ne).if_();
  // Not an exact tie: away from zero when |v| > |f|, else toward it.
  f.get(out).get(e).get(j).op(OP.i32_add).i32(1).op(OP.i32_shl).op(OP.i32_add);
  f.get(u).i32(16).op(OP.i32_shr_u).get(v).op(OP.f64_abs).get(w).op(OP.f64_abs).op(OP.f64_gt).op(OP.i32_add);
  f.mem(OP.i32_store16, 0, 1);
  f.end().end();
  f.get(j).i32(1).op(OP.i32_add).set(j);
  f.op(OP.br, 0).end().end();
  f.end();
  f.op(OP.else);

  f.get(outMode).i32(OUT_MODE.F32).op(OP.i32_eq).if_();
  demote4(0, 1, fa);
  demote4(2, 3, fb);
  f.get(out).get(e).i32(2).op(OP.i32_shl).op(OP.i32_add).get(fa).simdMem(SIMD.v128_store, 0, 0);
  f.get(out).get(e).i32(2).op(OP.i32_shl).op(OP.i32_add).get(fb).simdMem(SIMD.v128_store, 16, 0);
  flagAllOnes(fa, 0x7f800000);
  flagAllOnes(fb, 0x7f800000);
  f.op(OP.else);

  f.get(outMode).i32(OUT_MODE.F64).op(OP.i32_eq).if_();
  for (let q = 0; q < 4; q++) f.get(out).get(e).i32(3).op(OP.i32_shl).op(OP.i32_add).get(acc[q]).simdMem(SIMD.v128_store, 16 * q, 0);
  f.op(OP.else);

  // PAIR: hi = f32(v), lo = f32(v − hi), interleaved.
  for (let q = 0; q < 4; q++) {
    f.get(acc[q]).simd(SIMD.f32x4_demote_f64x2_zero).set(fa);
    f.get(acc[q]).get(fa).simd(SIMD.f64x2_promote_low_f32x4).simd(SIMD.f64x2_sub).simd(SIMD.f32x4_demote_f64x2_zero).set(fb);
    f.get(out).get(e).i32(3).op(OP.i32_shl).op(OP.i32_add).get(fa).get(fb).shuffle(INTERLEAVE_F32).simdMem(SIMD.v128_store, 16 * q, 0);
    flagAllOnes(fa, 0x7f800000);
  }
  f.end().end().end();

  f.get(blk).i32(1).op(OP.i32_add).set(blk);
  f.op(OP.br, 0).end().end();
  f.get(flags).get(r).i32(2).op(OP.i32_shl).op(OP.i32_add).get(bad).simd(SIMD.v128_any_true).mem(OP.i32_store, 0, 2);
  f.get(r).i32(1).op(OP.i32_add).set(r);
  f.op(OP.br, 0).end().end();
  return f;
}

interface MatmulModule {
  readonly memory: WasmMemory;
  readonly mm: (R: number, L: number, base: number, out: number, flags: number, rows: number, cols: number, K: number, baseMode: number, outMode: number) => void;
}

let instance: MatmulModule | null | undefined;

function matmulModule(): MatmulModule | null {
  if (instance !== undefined) return instance;
  try {
    instance = instantiate<MatmulModule>(assemble([['mm', buildKernel()]], 1));
  } catch {
    instance = null;
  }
  return instance;
}

const align16 = (n: number) => Math.ceil(n / 16) * 16;

/** What the SIMD pass leaves for the caller: the output bytes (F64 sums for F16) and the rows to recount. */
export interface SimdPass {
  readonly bytes: Uint8Array;
  readonly flagged: readonly number[];
}

/**
 * Runs one slice in WebAssembly SIMD. Returns undefined where WebAssembly SIMD
 * is missing or the slice would not fit, so that the scalar loop takes it.
 * For `out: 'F16'` the bytes are the float64 sums, 8 per element.
 */
export function matmulSimdPass(args: MatmulArgs): SimdPass | undefined {
  const mod = matmulModule();
  if (!mod) return undefined;
  const { inFeatures: n, rank: K, a, b, transpose, rowStart, rows, base, baseDtype, out } = args;
  const cols = storedCols(args);
  const nb = Math.ceil(cols / 8);
  const eb = base && baseDtype ? (baseDtype === 'F32' ? 4 : 2) : 0;
  const ob = out === 'F16' ? 8 : OUT_BYTES[out];
  const count = rows * cols;
  const rP = FIRST;
  const lP = align16(rP + nb * K * 64);
  const baseP = align16(lP + rows * K * 8);
  const outP = align16(baseP + count * eb + SLACK);
  const flagsP = align16(outP + count * ob + SLACK);
  const need = flagsP + rows * 4;
  if (need > MAX_MEMORY) return undefined;
  ensureMemory(mod.memory, need);
  const mem = mod.memory.buffer;

  const rv = new Float64Array(mem, rP, nb * K * 8);
  for (let blk = 0; blk < nb; blk++) {
    for (let k = 0; k < K; k++) {
      const o = (blk * K + k) * 8;
      for (let jj = 0; jj < 8; jj++) {
        const c = blk * 8 + jj;
        rv[o + jj] = c >= cols ? 0 : transpose ? b[c * K + k] : a[k * n + c];
      }
    }
  }
  const lv = new Float64Array(mem, lP, rows * K);
  if (transpose) for (let rr = 0; rr < rows; rr++) for (let k = 0; k < K; k++) lv[rr * K + k] = a[k * n + rowStart + rr];
  else lv.set(b.subarray(rowStart * K, (rowStart + rows) * K));
  if (eb > 0) {
    new Uint8Array(mem, baseP, count * eb).set(base!);
    new Uint8Array(mem, baseP + count * eb, SLACK).fill(0);
  }
  const baseMode = eb === 0 ? BASE_MODE.NONE : BASE_MODE[baseDtype!];
  const outMode = out === 'F16' ? OUT_MODE.F64 : OUT_MODE[out];
  mod.mm(rP, lP, baseP, outP, flagsP, rows, cols, K, baseMode, outMode);

  const bytes = new Uint8Array(mem, outP, count * ob).slice();
  const flags = new Int32Array(mem, flagsP, rows);
  const flagged: number[] = [];
  for (let rr = 0; rr < rows; rr++) if (flags[rr] !== 0) flagged.push(rr);
  return { bytes, flagged };
}

/** Exported for the tests: whether the SIMD path is available here. */
export function matmulSimdAvailable(): boolean {
  return matmulModule() !== null;
}

