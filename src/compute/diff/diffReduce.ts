import type { KernelDef } from '../kernel';
import type { DiffDType } from './decodeChunk';
import { diffReduceCpu } from './diffReduce.cpu';
import { diffReduceGpu } from './diffReduce.gpu';

/** A Δ histogram request: `bins` equal bins over [lo, hi); values outside land in the end bins. */
export interface DeltaHistogramSpec {
  readonly bins: number;
  readonly lo: number;
  readonly hi: number;
}

/**
 * One chunk pair of two same-dtype tensors, at the same element offset in both.
 * Without `b` the chunk is compared with itself: it then contributes only to the
 * norms (the pipeline uses that for the identical prefix of a tensor that turned
 * out to differ further on).
 */
export interface DiffReduceArgs {
  readonly dtype: DiffDType;
  readonly a: Uint8Array;
  readonly b?: Uint8Array;
  readonly hist?: DeltaHistogramSpec;
}

/**
 * Fused reductions over one chunk pair, Δ = b − a. The CPU twin accumulates in
 * f64; the GPU twin returns f32 partials summed on the host in f64 (relative
 * error ≤ 1e-5 on the sums). `maxIndex`, `nDiff` and `hist` are exact and equal
 * between the twins: an element "differs" when its stored bits differ, and a
 * tie for the largest |Δ| goes to the lowest index.
 */
export interface DiffReduceResult {
  readonly n: number;
  readonly sumA2: number;
  readonly sumB2: number;
  readonly dot: number;
  readonly sumD2: number;
  readonly sumAbsD: number;
  /** Largest |Δ| as an f32, and its element index in the chunk (−1 when every Δ is 0). */
  readonly maxAbs: number;
  readonly maxIndex: number;
  readonly nDiff: number;
  /** Counts of the differing elements' Δ per bin, when `hist` was asked for. */
  readonly hist?: Uint32Array;
  /**
   * The input chunks, handed back: moved to a worker, they return with the result,
   * so the caller reads the next chunks into them instead of allocating.
   */
  readonly chunks: Uint8Array[];
}

export const diffReduceKernel: KernelDef<DiffReduceArgs, DiffReduceResult> = {
  name: 'diff.reduce',
  cpu: diffReduceCpu,
  gpu: diffReduceGpu,
  transfer: (args) => [args.a.buffer, ...(args.b && args.b.buffer !== args.a.buffer ? [args.b.buffer] : [])].filter((x): x is ArrayBuffer => x instanceof ArrayBuffer),
};

/** The f32 bin scale both twins use, so that bin edges fall identically. */
export function histScale(spec: DeltaHistogramSpec): number {
  return Math.fround(spec.bins / (spec.hi - spec.lo));
}
