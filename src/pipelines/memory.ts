/**
 * What a model's weights need in memory at common storage formats, from its
 * parameter count alone. Shared by `inspect` and the viewer's summary.
 * Estimates count every parameter at the format's rate (norms and embeddings
 * included), which is what a fully converted checkpoint would hold.
 */

export type MemoryFormat = 'FP32' | 'BF16' | 'FP8' | 'Q8_0' | 'Q4_0';

export interface MemoryEstimate {
  readonly format: MemoryFormat;
  readonly bitsPerWeight: number;
  readonly bytes: number;
}

export const MEMORY_FORMATS: readonly { readonly format: MemoryFormat; readonly bitsPerWeight: number }[] = [
  { format: 'FP32', bitsPerWeight: 32 },
  { format: 'BF16', bitsPerWeight: 16 },
  { format: 'FP8', bitsPerWeight: 8 },
  // ggml Q8_0: blocks of 32 int8 weights plus one f16 scale = 34 bytes per 32 weights.
  { format: 'Q8_0', bitsPerWeight: 8.5 },
  // ggml Q4_0: blocks of 32 4-bit weights (16 bytes) plus one f16 scale = 18 bytes per 32 weights.
  { format: 'Q4_0', bitsPerWeight: 4.5 },
];

export function estimateMemory(params: number): MemoryEstimate[] {
  return MEMORY_FORMATS.map((f) => ({ ...f, bytes: Math.ceil((params * f.bitsPerWeight) / 8) }));
}
