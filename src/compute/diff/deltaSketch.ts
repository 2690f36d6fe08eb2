import type { KernelDef } from '../kernel';
import type { DiffDType } from './decodeChunk';
import { deltaSketchCpu } from './deltaSketch.cpu';
import { deltaSketchGpu } from './deltaSketch.gpu';

/**
 * The products a randomized SVD of Δ = B − A needs, over one block of rows of
 * both tensors (row-major, `rows × cols`), with Δ formed on the fly:
 *   y = Δ_blk · x        (rows × k)
 *   z = Δ_blkᵀ · y       (cols × k), when `back` is set.
 * Summing z over the blocks gives ΔᵀΔ·x in one pass over the tensors.
 */
export interface DeltaSketchArgs {
  readonly dtype: DiffDType;
  readonly rows: number;
  readonly cols: number;
  readonly a: Uint8Array;
  readonly b: Uint8Array;
  readonly k: number;
  /** `cols × k`, row-major. */
  readonly x: Float32Array;
  readonly back: boolean;
  /**
   * Buffers for y (rows × k) and z (cols × k) to fill, when the caller recycles them:
   * results and inputs then circulate between the caller and the worker instead of
   * being allocated per block (which fragments the per-thread heaps).
   */
  readonly yOut?: Float32Array;
  readonly zOut?: Float32Array;
}

export interface DeltaSketchResult {
  readonly y: Float32Array;
  readonly z?: Float32Array;
  /** The input blocks, handed back so the caller can read the next blocks into them. */
  readonly chunks: Uint8Array[];
  /** `x`, handed back for the next block. */
  readonly x: Float32Array;
}

export const deltaSketchKernel: KernelDef<DeltaSketchArgs, DeltaSketchResult> = {
  name: 'diff.sketch',
  cpu: deltaSketchCpu,
  gpu: deltaSketchGpu,
  transfer: (args) =>
    [args.a.buffer, args.b.buffer, args.x.buffer, args.yOut?.buffer, args.zOut?.buffer].filter((x, i, all): x is ArrayBuffer => x instanceof ArrayBuffer && all.indexOf(x) === i),
};
