/** What `config.json`'s `quantization_config` says, as far as recognition uses it. */
export interface QuantConfig {
  /** `fp8`, `compressed-tensors`, `gptq`, `awq`, `mxfp4`, `modelopt` … */
  readonly method?: string;
  /** FP8 block scales: [rows, cols] of one block (DeepSeek's 128 × 128). */
  readonly blockSize?: readonly [number, number];
  readonly bits?: number;
  readonly groupSize?: number;
  /** GPTQ's `checkpoint_format`: `gptq` stores zero − 1, `gptq_v2` the zero itself. */
  readonly checkpointFormat?: string;
  /** compressed-tensors' format (`pack-quantized`, `float-quantized`, `nvfp4-pack-quantized` …). */
  readonly format?: string;
}

export function int(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) ? v : undefined;
}

export function text(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** The first weights entry of compressed-tensors' `config_groups`, where bits and group size live. */
export function firstGroupWeights(q: Record<string, unknown>): Record<string, unknown> | undefined {
  const groups = q.config_groups;
  if (!groups || typeof groups !== 'object') return undefined;
  for (const g of Object.values(groups as Record<string, unknown>)) {
    const w = g && typeof g === 'object' ? (g as Record<string, unknown>).weights : undefined;
    if (w && typeof w === 'object') return w as Record<string, unknown>;
  }
  return undefined;
}

/** The `quantization_config` object of a config.json's text; undefined when absent or unreadable. */
export function quantizationConfigOf(configText: string | undefined): Record<string, unknown> | undefined {
  if (!configText) return undefined;
  let c: unknown;
  try {
    c = JSON.parse(configText);
  } catch {
    return undefined;
  }
  const q = c && typeof c === 'object' ? (c as Record<string, unknown>).quantization_config : undefined;
  return q && typeof q === 'object' && !Array.isArray(q) ? (q as Record<string, unknown>) : undefined;
}

/** Reads `quantization_config` from a config.json's text; undefined when absent or unreadable. */
export function parseQuantConfig(configText: string | undefined): QuantConfig | undefined {
  const q = quantizationConfigOf(configText);
  if (!q) return undefined;
  const o = q as Record<string, unknown>;
  const w = firstGroupWeights(o);
  const b = o.weight_block_size;
  const block = Array.isArray(b) && b.length === 2 && b.every((x) => int(x) !== undefined && x > 0) ? ([b[0], b[1]] as [number, number]) : undefined;
  return {
    method: text(o.quant_method),
    blockSize: block,
    bits: int(o.bits) ?? int(w?.num_bits),
    groupSize: int(o.group_size) ?? int(w?.group_size),
    checkpointFormat: text(o.checkpoint_format),
    format: text(o.format),
  };
}
