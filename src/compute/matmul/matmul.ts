import type { KernelDef } from '../kernel';
import { matmulCpu } from './matmul.cpu';
import { matmulGpu } from './matmul.gpu';

/** The float dtypes a merge reads and writes (F64 is refused upstream: WGSL has no f64). */
export type MatmulDType = 'F32' | 'BF16' | 'F16';

/**
 * What the kernel writes: a rounded dtype, or `PAIR`, an unrounded (hi, lo)
 * pair of f32 per element whose sum carries about 48 significant bits. A merge
 * that must post-process the sum (DoRA's row norms) asks for PAIR.
 */
export type MatmulOut = MatmulDType | 'PAIR';

/**
 * One slice of stored rows of `W' = W + Σₖ b[o,k]·a[k,i]`, where `b` already
 * holds `weight·scale` per rank row (and the sign, for a subtraction), so that
 * several adapters on one tensor are a single product over their stacked ranks.
 *
 * The stored tensor is `[outFeatures, inFeatures]` (`transpose` false) or its
 * transpose `[inFeatures, outFeatures]` (`fan_in_fan_out` layers and embedding
 * LoRA, whose weight is `[vocab, hidden]` while Δ is `[hidden, vocab]`).
 */
export interface MatmulArgs {
  readonly outFeatures: number;
  readonly inFeatures: number;
  readonly rank: number;
  /** `[outFeatures × rank]`, row-major, already scaled; float64 so that the scale adds no rounding. */
  readonly b: Float64Array;
  /** `[rank × inFeatures]`, row-major; adapters' F32/BF16/F16 values are exact in f32. */
  readonly a: Float32Array;
  readonly transpose: boolean;
  /** First stored row of this slice, and how many rows it covers. */
  readonly rowStart: number;
  readonly rows: number;
  /** The base rows of this slice as little-endian bytes of `baseDtype`; absent for Δ alone. */
  readonly base?: Uint8Array;
  readonly baseDtype?: MatmulDType;
  readonly out: MatmulOut;
}

export interface MatmulResult {
  /** `rows × cols` elements of `out` (8 bytes each for PAIR: hi then lo). */
  readonly bytes: Uint8Array;
  /** Elements that came out NaN or ±Inf (after rounding), and the first one's index in the slice, or -1. */
  readonly nonFinite: number;
  readonly firstNonFinite: number;
}

export const OUT_BYTES: Record<MatmulOut, number> = { F32: 4, BF16: 2, F16: 2, PAIR: 8 };
export const IN_BYTES: Record<MatmulDType, number> = { F32: 4, BF16: 2, F16: 2 };

/** Stored columns: the width of one stored row. */
export function storedCols(a: Pick<MatmulArgs, 'transpose' | 'outFeatures' | 'inFeatures'>): number {
  return a.transpose ? a.outFeatures : a.inFeatures;
}

/** Stored rows of the whole tensor. */
export function storedRows(a: Pick<MatmulArgs, 'transpose' | 'outFeatures' | 'inFeatures'>): number {
  return a.transpose ? a.inFeatures : a.outFeatures;
}

/** Throws on inconsistent sizes, so that neither twin reads past an array. */
export function checkMatmulArgs(a: MatmulArgs): void {
  const cols = storedCols(a);
  const ok =
    a.b.length === a.outFeatures * a.rank &&
    a.a.length === a.rank * a.inFeatures &&
    Number.isInteger(a.rowStart) &&
    a.rowStart >= 0 &&
    a.rows >= 0 &&
    a.rowStart + a.rows <= storedRows(a) &&
    (a.base === undefined || (a.baseDtype !== undefined && a.base.length === a.rows * cols * IN_BYTES[a.baseDtype]));
  if (!ok) throw new RangeError(`matmul: inconsistent arguments (out ${a.outFeatures}, in ${a.inFeatures}, rank ${a.rank}, rows ${a.rowStart}+${a.rows})`);
}

/**
 * `W ± scale·(B @ A)` fused with the add and the final rounding. Both twins
 * return results within 1 ulp of the float64 value: the CPU twin sums in
 * float64, the GPU twin in double-f32 arithmetic with error-free products.
 */
export const matmulKernel: KernelDef<MatmulArgs, MatmulResult> = {
  name: 'matmul',
  cpu: matmulCpu,
  gpu: matmulGpu,
  // Only the base slice moves: `a` and `b` are shared by every slice of a tensor.
  transfer: (args) => (args.base && args.base.byteOffset === 0 && args.base.byteLength === args.base.buffer.byteLength && args.base.buffer instanceof ArrayBuffer ? [args.base.buffer] : []),
};
