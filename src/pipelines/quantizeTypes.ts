import type { ErrorReport, ErrorSums } from '../compute/quant/common';
import type { Scheme, SchemeName } from '../compute/quant/schemes';
import type { Backend } from '../compute/kernel';
import type { Model } from '../format/model';
import type { DType } from '../format/dtypes';

export type QuantFormat = 'safetensors' | 'gguf';

export interface QuantizeJobArgs {
  /** A .safetensors file, an index.json or a folder. */
  readonly input: string;
  /**
   * safetensors: a `.safetensors` file, or a folder (created when missing) that gets
   * `model.safetensors` (or one shard per input shard plus an index) and config.json.
   * gguf: a `.gguf` file, or an existing folder that gets `model-<scheme>.gguf`.
   */
  readonly output: string;
  readonly scheme: SchemeName;
  /** Default: gguf for the ggml schemes (unless OUT ends in .safetensors), safetensors for int8/fp8. */
  readonly format?: QuantFormat;
  /** Tensors matching any of these globs are kept as they are. */
  readonly keep?: readonly string[];
  /** When given, only tensors matching one of these globs are quantized. */
  readonly only?: readonly string[];
  /** GGUF tensor names: `hf` (as in the input, default) or `llama` (llama.cpp's `blk.N.attn_q.weight` …). */
  readonly ggufNames?: 'hf' | 'llama';
  /**
   * Quantize tensors that hold NaN or ±Inf too. By default they are kept in their dtype: a
   * block's scale comes from its largest |x|, so one NaN or Inf there turns the whole block
   * into NaN (or zeros) and the error report into -inf dB. Forcing writes those blocks as the
   * scheme computes them; the rest of the tensor is quantized as usual.
   */
  readonly allowNonfinite?: boolean;
  /**
   * Quantize tensors already stored in a quantized GGUF type (Q8_0 …) again, through their
   * decoded values; refused by default, as llama-quantize refuses without --allow-requantize.
   */
  readonly allowRequantize?: boolean;
}

export interface TensorPlan {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly action: 'quantize' | 'keep';
  /** Why a tensor is kept. */
  readonly reason?: string;
  /** NaN and ±Inf values found in a tensor kept for holding them. */
  readonly nonFinite?: number;
  readonly rows: number;
  readonly cols: number;
  /**
   * A mixture-of-experts weight [experts, in, out] (gpt-oss's `experts.gate_up_proj`), quantized
   * as gpt-oss stores it: each expert transposed to [out, in], so `rows` = experts × out, `cols` = in.
   */
  readonly experts?: number;
}

export interface TensorReport extends Partial<ErrorReport> {
  readonly name: string;
  /** The name in the output (differs with `--gguf-names llama`); absent when the tensor is left out. */
  readonly outputName?: string;
  readonly dtype: DType;
  /** The stored type of a quantized input tensor (`fp8-block`, `Q8_0`), read as its decoded F32 values. */
  readonly from?: string;
  readonly shape: readonly number[];
  readonly action: 'quantized' | 'kept' | 'omitted';
  readonly scheme?: SchemeName;
  readonly reason?: string;
  /** NaN and ±Inf values found in a tensor kept for holding them (see `allowNonfinite`). */
  readonly nonFinite?: number;
  readonly bytesBefore: number;
  readonly bytesAfter: number;
}

export interface QuantReport {
  readonly input: string;
  readonly outputs: readonly string[];
  readonly scheme: SchemeName;
  /** A llama.cpp file type (`Q4_K_M`) or `--target-bpw` plan: each tensor's `scheme` is then its own type. */
  readonly fileType?: string;
  readonly format: QuantFormat;
  readonly backend: string;
  readonly tensors: readonly TensorReport[];
  readonly totals: {
    readonly bytesBefore: number;
    readonly bytesAfter: number;
    readonly params: number;
    readonly quantizedParams: number;
    /** Bits per weight over every tensor written (kept ones included). */
    readonly bitsPerWeight: number;
    /** Bits per weight over the quantized tensors only (scales included). */
    readonly quantizedBitsPerWeight: number;
  } & Partial<ErrorReport>;
  /** What the output lacks (GGUF: tokenizer, hyperparameters without a config.json). */
  readonly missing: readonly string[];
  readonly seconds: number;
}

/** What the writers fill in per tensor while its chunks pass, for the report. */
export interface TensorState {
  readonly plan: TensorPlan;
  sums: ErrorSums;
  bytesAfter: number;
  outputName?: string;
  omitted?: string;
}

export interface PreviewArgs {
  readonly input: string;
  /** Default: every scheme. */
  readonly schemes?: readonly SchemeName[];
  readonly keep?: readonly string[];
  readonly only?: readonly string[];
  /** Also return each sampled tensor's error sums per scheme (the file-type estimate combines them). */
  readonly tensorSums?: boolean;
}

export interface PreviewRow extends Partial<ErrorReport> {
  readonly scheme: SchemeName;
  readonly description: string;
  /** Exact: sizes follow from the shapes. */
  readonly bytesAfter: number;
  readonly bitsPerWeight: number;
  readonly quantizedTensors: number;
  readonly keptTensors: number;
  /** Values the error estimate is based on. */
  readonly sampledValues: number;
}

export interface PreviewResult {
  readonly input: string;
  readonly bytesBefore: number;
  readonly params: number;
  readonly rows: readonly PreviewRow[];
  /** At most this fraction of each tensor was read. */
  readonly sampleFraction: number;
  readonly seconds: number;
  /** With `tensorSums`: per row (same order), tensor name → its sample's error sums weighted to the tensor's size. */
  readonly tensorSums?: ReadonlyArray<ReadonlyMap<string, ErrorSums>>;
}

/** One quantization run, as its writers see it. */
export interface QuantJob {
  readonly args: QuantizeJobArgs;
  readonly model: Model;
  readonly config: Record<string, unknown> | undefined;
  readonly scheme: Scheme;
  readonly plans: readonly TensorPlan[];
  readonly states: Map<string, TensorState>;
  readonly backend: Backend;
  readonly signal: AbortSignal | undefined;
  /** Counts input bytes done, for progress. */
  readonly advance: (n: number, name: string) => void;
  /** What the output lacks, for the report. */
  readonly missing: string[];
}
