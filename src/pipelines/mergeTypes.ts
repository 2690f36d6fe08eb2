import type { MatmulDType } from '../compute/matmul/matmul';
import type { DecodedModel } from './decodedModel';
import type { AdapterMapping, MappedModule, ParsedAdapter, UnmatchedKey } from './lora';

export interface MergeAdapterArg {
  readonly path: string;
  /** Coefficient of this adapter's Δ in the linear combination (default 1). */
  readonly weight?: number;
}

export interface MergeArgs {
  /** A .safetensors file, an index.json or a folder. */
  readonly base: string;
  readonly adapters: readonly MergeAdapterArg[];
  /** A `.safetensors` file, or a folder (created if needed) that gets shards, index and config files. */
  readonly output: string;
  /** Output dtype for float tensors; default: each tensor keeps its own. */
  readonly dtype?: MatmulDType;
  /** W − ΔW: takes a merged adapter back out. */
  readonly subtract?: boolean;
  readonly allowUnmatched?: boolean;
  /** Bytes per output shard; default: as many shards as the base has. */
  readonly maxShardSize?: number;
}

/** What one adapter contributes, for previews and the summary. */
export interface AdapterSummary {
  readonly path: string;
  readonly format: 'peft' | 'kohya';
  readonly weight: number;
  readonly modules: readonly { name: string; target: string; rank: number; alpha: number; scale: number; dora: boolean }[];
  readonly replacements: readonly string[];
}

export interface MergePlan {
  /** The base, its quantized tensors read as their decoded F32 values. */
  readonly base: DecodedModel;
  readonly adapters: readonly ParsedAdapter[];
  readonly mapping: AdapterMapping;
  readonly summaries: readonly AdapterSummary[];
  /** Target tensor → its contributions, in adapter order. */
  readonly targets: ReadonlyMap<string, readonly MappedModule[]>;
  readonly unmatched: readonly UnmatchedKey[];
  close(): Promise<void>;
}

export interface MergeResult {
  readonly files: readonly string[];
  readonly index?: string;
  readonly merged: number;
  readonly replaced: number;
  readonly copied: number;
  /** Base tensors stored quantized (FP8, GPTQ, GGUF blocks …), written dequantized in `dtype` (BF16 unless --dtype). */
  readonly dequantized: ReadonlyArray<{ readonly name: string; readonly from: string; readonly dtype: string }>;
  readonly unmatched: readonly UnmatchedKey[];
  readonly adapters: readonly AdapterSummary[];
  readonly backend: string;
  readonly bytes: number;
}
