/**
 * What the viewer's pipelines compute for the page: the summary of a model, one
 * tensor's statistics, a heatmap, the rows of a whole-model scan and the
 * quantization preview. Defined here once; the protocol names them as its replies
 * and the page imports them type-only. Every field is structured-clone friendly:
 * numbers (NaN where a statistic has no value), strings and typed arrays.
 */
import type { AdapterDescription } from '../lora';
import type { MemoryEstimate } from '../memory';
import type { PreviewResult, PreviewRow } from '../quantize';
import type { TensorStats } from '../stats';
import type { TensorTable, TreeTable } from '../../shared/columns';
import type { ErrorInfo } from '../../shared/protocol';
import type { QuantHeader, QuantTable } from '../../shared/quantizedColumns';
import type { ScaleStatsReport } from '../scaleStats';

/** config.json's declaration as the header shows it (the model layer's own type). */
export type { QuantizationDeclared } from '../../format/quantized/configInfo';

/** An adapter file's description (lora.ts) as the page shows it: counts where the pipeline lists. */
export interface AdapterInfo extends Pick<AdapterDescription, 'targets' | 'ranks' | 'alphas' | 'scales' | 'useRslora'> {
  readonly format: string;
  readonly modules: number;
  readonly dora: boolean;
}

export interface DTypeTotal {
  readonly dtype: string;
  readonly tensors: number;
  readonly params: number;
  readonly bytes: number;
}

export type MemoryRow = Pick<MemoryEstimate, 'format' | 'bytes'>;

export interface HistogramData {
  readonly min: number;
  readonly max: number;
  readonly counts: Float64Array;
}

/**
 * Statistics of one tensor as `stats` defines them (TensorStats), as the page
 * receives them: NaN where TensorStats has null, histogram counts as typed arrays.
 */
export type TensorStatsData = Pick<TensorStats, 'name' | 'count' | 'finite' | 'nan' | 'posInf' | 'negInf' | 'zeros' | 'nearZero' | 'outliers'> & {
  readonly min: number;
  readonly max: number;
  readonly absMax: number;
  readonly mean: number;
  readonly std: number;
  readonly histogram: HistogramData;
  readonly logHistogram: HistogramData;
  /** Flat element indices and values, largest |x| first. */
  readonly topK: readonly { readonly index: number; readonly value: number }[];
};

/** One row of the whole-model scan: the numbers the table sorts by, no histograms. */
export interface ScanRow {
  readonly name: string;
  readonly dtype: string;
  readonly count: number;
  readonly std: number;
  readonly absMax: number;
  /** zeros / count (0 for an empty tensor). */
  readonly sparsity: number;
  readonly outliers: number;
  /** nan + posInf + negInf. */
  readonly nonFinite: number;
  readonly badges: readonly HealthBadge[];
  /** Set instead of the numbers when this tensor could not be scanned (undecodable dtype). */
  readonly error?: ErrorInfo;
}

export type HealthBadge = 'non-finite' | 'all-zero' | 'f16-overflow';

/** A model's summary, or its outline (see `outline`). */
export interface ModelSummary {
  readonly type: 'summary';
  /**
   * An outline: totals, metadata and the tree down to the members of folded runs
   * (not their contents), with only the tensors that outline shows in `tensors`.
   */
  readonly outline?: boolean;
  /** What was opened (file, index.json); shown in the header. */
  readonly path: string;
  readonly files: readonly { readonly path: string; readonly bytes: number; readonly headerBytes: number }[];
  readonly tensors: TensorTable;
  readonly totals: { readonly tensors: number; readonly params: number; readonly bytes: number; readonly byDtype: readonly DTypeTotal[] };
  readonly memory: readonly MemoryRow[];
  readonly metadata: readonly (readonly [string, string])[];
  readonly tree: TreeTable;
  /** Present when the file is a LoRA adapter. */
  readonly adapter?: AdapterInfo;
  /**
   * For formats that can carry code (PyTorch pickles): the verdict, shown as a banner above
   * everything else, and what the reader noted (shared storages kept once, other entries).
   */
  readonly safety?: { readonly clean: boolean; readonly text: string; readonly findings?: readonly string[] };
  readonly notes?: readonly string[];
  /** Present when the file is a GGUF: its architecture, tokenizer, other keys and type mix. */
  readonly gguf?: GgufSummary;
  /** The tensors stored as a block type or scheme (indices into `tensors`): scheme, bits per weight, group, parts. */
  readonly quantized?: QuantTable;
  /** A quantized-safetensors model's schemes, config.json's declaration and ignore list, and where they disagree. */
  readonly quantHeader?: QuantHeader;
}

/** One metadata key of a GGUF file as the page shows it. */
export interface GgufKeyRow {
  readonly key: string;
  /** The stored value type: `u32`, `string`, or `[i32]` for an array of i32. */
  readonly type: string;
  /** The value as text: a scalar, or a short array's items; a long array is described, never listed. */
  readonly text: string;
  /** For an array too long to list: its length; the page pages through it with `ggufArray` requests. */
  readonly length?: number;
}

/** A special token: its role (BOS, EOS…), its id and its text from the vocabulary (absent when the id is not in it). */
export interface GgufSpecialToken {
  readonly label: string;
  readonly key: string;
  readonly id: number;
  readonly text?: string;
}

export interface GgufTokenizerSummary {
  /** `tokenizer.ggml.model`: llama, gpt2, bert… */
  readonly model?: string;
  /** `tokenizer.ggml.pre`: the pre-tokenizer llama.cpp applies. */
  readonly pre?: string;
  /** Entries of `tokenizer.ggml.tokens`. */
  readonly vocabSize?: number;
  /** Entries of `tokenizer.ggml.merges`; absent when the file has none. */
  readonly merges?: number;
  readonly special: readonly GgufSpecialToken[];
  /** `tokenizer.chat_template`, the Jinja text (cut at GGUF_TEMPLATE_MAX_CHARS, see `templateChars`). */
  readonly chatTemplate?: string;
  /** The template's whole length, when it was cut. */
  readonly templateChars?: number;
}

export interface GgufTypeShare {
  /** A ggml type name (Q4_K, F32). */
  readonly type: string;
  readonly tensors: number;
  readonly params: number;
  /** params / all params of the model, 0…1. */
  readonly share: number;
}

export interface GgufSummary {
  readonly version: number;
  readonly architecture?: string;
  /** The architecture's own keys (`llama.*`), known ones first with a readable label. */
  readonly hparams: readonly (GgufKeyRow & { readonly label: string })[];
  readonly tokenizer?: GgufTokenizerSummary;
  /** Every other key, in file order. */
  readonly keys: readonly GgufKeyRow[];
  /** Stored bits per parameter over the whole file's tensors. */
  readonly bitsPerWeight: number;
  /** Parameters by ggml type, largest share first. */
  readonly typeMix: readonly GgufTypeShare[];
}

/** A page of a long metadata array's items, as text. */
export interface GgufArrayResult {
  readonly type: 'ggufArray';
  readonly key: string;
  readonly start: number;
  /** The array's length. */
  readonly total: number;
  readonly items: readonly string[];
}

/** The scales of one quantized tensor (see ScaleStatsReport). */
export interface ScaleStatsResult {
  readonly type: 'scaleStats';
  readonly report: ScaleStatsReport;
}

export interface TensorStatsResult {
  readonly type: 'tensorStats';
  readonly stats: TensorStatsData;
  readonly backend: string;
  readonly seconds: number;
}

/** A heatmap of |x|: the matrix downsampled to at most 512×512 cells, each the max |x| of its block. */
export interface HeatmapResult {
  readonly type: 'heatmap';
  readonly name: string;
  /** Image size in cells; each cell covers a block of the matrix. */
  readonly width: number;
  readonly height: number;
  /** The matrix the image covers: rank-1 tensors are one row, rank > 2 folds leading dims into rows. */
  readonly rows: number;
  readonly cols: number;
  /** max |x| of each cell, scaled so 255 is `scale`; row-major, width × height bytes. */
  readonly pixels: Uint8Array;
  /** The largest finite |x| of the whole tensor (the value of pixel 255). */
  readonly scale: number;
  /** Cells holding a NaN or ±Inf, marked separately (1) so they can be drawn in a warning colour. */
  readonly nonFinite: Uint8Array;
}

export interface ScanResult {
  readonly type: 'scan';
  readonly tensors: number;
  readonly seconds: number;
  readonly backend: string;
}

/** One scheme's row of the quantization preview. */
export type QuantPreviewRow = Omit<PreviewRow, 'sampledValues' | 'maxAbsErr'>;

export type QuantPreviewResult = { readonly type: 'quantPreview'; readonly rows: readonly QuantPreviewRow[] } & Pick<PreviewResult, 'bytesBefore' | 'params' | 'sampleFraction' | 'seconds'>;
