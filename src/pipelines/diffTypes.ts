import type { JobContext } from '../core/job';
import type { PrefixMapping } from './diffMatch';

/** How the effective rank of each changed 2-D tensor is estimated. */
export interface RankOptions {
  /** Columns of the random sketch: 64 to read energy at rank 64, plus oversampling. */
  readonly sketch?: number;
  /** Passes of ΔᵀΔ over the sketch before the final one; each reads both tensors once more. */
  readonly powerIterations?: number;
  readonly seed?: number;
}

export interface DiffOptions extends JobContext {
  /** Prefix correspondence between A's and B's names; detected when absent. */
  readonly mapping?: PrefixMapping;
  /** Estimate the singular-value energy of each changed 2-D Δ (extra passes over those tensors). */
  readonly rank?: boolean | RankOptions;
  /** Upper bound on one chunk read from each file. */
  readonly chunkBytes?: number;
}

/** The ranks at which the captured fraction of ‖Δ‖²_F is reported. */
export const RANK_POINTS = [1, 4, 16, 64] as const;

export interface TensorDiff {
  /** A's name. */
  readonly name: string;
  /** B's name, when a prefix mapping made it differ. */
  readonly nameB?: string;
  /** A's stored type: a dtype, or a block type such as `Q8_0`. */
  readonly dtype: string;
  /** B's stored type, when it differs from A's (the pair was then compared by value). */
  readonly dtypeB?: string;
  /** Compared on values decoded to float32 (types differ, or one side's rows were reordered), not on stored bytes. */
  readonly decoded?: boolean;
  readonly shape: readonly number[];
  readonly numel: number;
  /** Equal value for value (byte for byte when both are stored alike). */
  readonly identical: boolean;
  /** ‖b − a‖ / ‖a‖; null when ‖a‖ = 0 (then see `absL2` and `note`). */
  readonly relL2: number | null;
  /** ‖b − a‖. */
  readonly absL2: number;
  readonly normA?: number;
  readonly normB?: number;
  /** Signal to noise of B against A in dB, 20·log10(‖a‖ / ‖b − a‖); null when identical or ‖a‖ = 0. */
  readonly snrDb?: number | null;
  /** ⟨a, b⟩ / (‖a‖·‖b‖); null when either norm is 0. */
  readonly cosine: number | null;
  readonly maxAbsDiff: number;
  /** Where |b − a| is largest (first such element), as an index per dimension. */
  readonly maxAbsIndex: number[] | null;
  readonly meanAbsDiff: number;
  /** Elements whose stored bits differ, over all elements. */
  readonly changedFraction: number;
  readonly changedElements: number;
  /** Fraction of ‖Δ‖²_F captured by the top-r singular values, at r = 1, 4, 16, 64. */
  readonly rankEnergy?: Record<`${(typeof RANK_POINTS)[number]}`, number>;
  /** Estimated leading singular values of Δ, largest first. */
  readonly singularValues?: number[];
  readonly note?: string;
}

export interface ShapeChange {
  readonly name: string;
  readonly nameB?: string;
  readonly shapeA: readonly number[];
  readonly shapeB: readonly number[];
  readonly dtypeA: string;
  readonly dtypeB: string;
}

/** Tensors aggregated by block (`layers.N`) or by module kind (`q_proj`, `norm`, …). */
export interface GroupDiff {
  readonly group: string;
  readonly tensors: number;
  readonly changedTensors: number;
  readonly elements: number;
  readonly changedElements: number;
  readonly changedFraction: number;
  /** Σ‖Δ‖² over the group's tensors. */
  readonly sumSqDiff: number;
  /** relL2 averaged with each tensor weighted by its element count. */
  readonly meanRelL2: number;
  readonly maxRelL2: number;
}

export interface DiffReport {
  readonly a: string;
  readonly b: string;
  readonly mapping?: PrefixMapping & { readonly auto: boolean };
  readonly added: string[];
  readonly removed: string[];
  readonly changed: ShapeChange[];
  readonly tensors: TensorDiff[];
  readonly layers: GroupDiff[];
  readonly modules: GroupDiff[];
  readonly summary: {
    readonly compared: number;
    readonly identical: number;
    readonly different: number;
    readonly elements: number;
    readonly changedElements: number;
    /** Bits of stored data per value over the compared tensors, A's and B's (32 for F32, 8.5 for Q8_0). */
    readonly bitsPerWeightA: number;
    readonly bitsPerWeightB: number;
    /** Over the values of the tensors that differ, together: ‖b − a‖ / ‖a‖ (0 when none differs), and −20·log10 of it (null when 0). */
    readonly relL2: number | null;
    readonly snrDb: number | null;
  };
  /** Set when names were mapped between conventions (llama.cpp's and HF's). */
  readonly naming?: string;
  readonly backend: string;
  /** Wall time of the whole diff, rank estimate included. */
  readonly seconds: number;
  /** Bytes read from both models, rank passes included. */
  readonly bytesRead: number;
  /** Share of `seconds` and `bytesRead` spent on the rank estimate. */
  readonly rankSeconds?: number;
  readonly rankBytesRead?: number;
}
