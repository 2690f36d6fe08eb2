/**
 * What config.json's `quantization_config` declares about a whole model, for the viewer's
 * header: the method, its format and bits, and the modules it leaves unquantized. Declared,
 * not trusted: the tensors say what is stored, and the viewer notes where the two disagree.
 */
import { firstGroupWeights, int, quantizationConfigOf, text } from './config';

export interface QuantizationDeclared {
  /** `quant_method` (`fp8`, `compressed-tensors`, `gptq`, `awq`, `mxfp4`, `modelopt` …). */
  readonly method?: string;
  /** compressed-tensors' `format`, ModelOpt's `quant_algo`, or Transformers' `fmt`. */
  readonly format?: string;
  /** `bits`, or the first config group's `num_bits`. */
  readonly bits?: number;
  /** `group_size`, the first config group's `group_size`, or `weight_block_size` as `R×C`. */
  readonly group?: string;
  /** Modules the config leaves unquantized, as written (`re:` entries are patterns, shown, never run). */
  readonly ignore: readonly string[];
  /** The key the list came from (`ignore`, `modules_to_not_convert` …). */
  readonly ignoreKey?: string;
}

// The keys libraries use for modules they leave unquantized: compressed-tensors, Transformers
// (FP8, MXFP4, AWQ, bitsandbytes), ModelOpt, and vLLM-style FP8 configs.
const IGNORE_KEYS = ['ignore', 'modules_to_not_convert', 'exclude_modules', 'ignored_layers', 'llm_int8_skip_modules'];
// A config can name every layer; more than this is shown truncated by the page, and held here only up to it.
const MAX_IGNORE = 10_000;

/** The declared quantization of a config.json's text; undefined without a readable `quantization_config`. */
export function declaredQuantization(configText: string | undefined): QuantizationDeclared | undefined {
  const q = quantizationConfigOf(configText);
  if (!q) return undefined;
  const w = firstGroupWeights(q);
  const block = q.weight_block_size;
  const blockText = Array.isArray(block) && block.length === 2 && block.every((x) => int(x) !== undefined) ? `${block[0]}×${block[1]}` : undefined;
  const groupSize = int(q.group_size) ?? int(w?.group_size);
  let ignore: string[] = [];
  let ignoreKey: string | undefined;
  for (const k of IGNORE_KEYS) {
    const list = q[k];
    if (Array.isArray(list) && list.length > 0) {
      ignore = list.filter((x): x is string => typeof x === 'string').slice(0, MAX_IGNORE);
      ignoreKey = k;
      break;
    }
  }
  return {
    method: text(q.quant_method),
    format: text(q.format) ?? text(q.quant_algo) ?? text(q.fmt),
    bits: int(q.bits) ?? int(w?.num_bits),
    group: blockText ?? (groupSize !== undefined ? (groupSize < 0 ? 'per channel' : String(groupSize)) : undefined),
    ignore,
    ...(ignoreKey ? { ignoreKey } : {}),
  };
}
