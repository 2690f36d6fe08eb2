import type { KernelDef } from '../kernel';
import type { QuantizeArgs, QuantizeResult } from './common';
import { fp8BlockKernel, mxfp4QuantKernel } from './blockScaled';
import { fp8E4m3Kernel } from './fp8E4m3';
import { int8ChannelKernel } from './int8Channel';
import { iq4_nlKernel, iq4_xsKernel, q2_kKernel, q3_kKernel, q4_kKernel, q5_0Kernel, q5_1Kernel, q5_kKernel, q6_kKernel } from './kquant';
import { q4_0Kernel } from './q4_0';
import { q4_1Kernel } from './q4_1';
import { q8_0Kernel } from './q8_0';

export type SchemeName = 'q8_0' | 'q4_0' | 'q4_1' | 'int8-channel' | 'fp8-e4m3' | 'fp8-block' | 'mxfp4' | KQuantSchemeName;

export type KQuantSchemeName = 'q2_k' | 'q3_k' | 'q4_k' | 'q5_k' | 'q6_k' | 'q5_0' | 'q5_1' | 'iq4_nl' | 'iq4_xs';

export interface Scheme {
  readonly name: SchemeName;
  /**
   * `ggml`: blocks of 32 (or 256 for the K-quants and IQ4_XS) values with f16 scales; `channel`: 8-bit codes plus one
   * f32 scale per row; `block`: safetensors codes with a scale per 2-D block (fp8-block) or per 32 values of a row (mxfp4).
   */
  readonly kind: 'ggml' | 'channel' | 'block';
  /** Values per block (ggml) — row lengths must be a multiple; 1 for per-channel schemes. */
  readonly blockSize: number;
  /** Bytes per block (ggml) or per value (channel). */
  readonly blockBytes: number;
  /** ggml's `enum ggml_type` value, for GGUF tensor infos. */
  readonly ggmlType?: number;
  /** ggml's `enum llama_ftype` value for `general.file_type` when every big tensor uses this scheme. */
  readonly fileType?: number;
  readonly kernel: KernelDef<QuantizeArgs, QuantizeResult>;
  readonly description: string;
  /** Rows that share a scale (fp8-block's 128): a chunk of rows is a whole number of these. */
  readonly bandRows?: number;
}

export const SCHEMES: Readonly<Record<SchemeName, Scheme>> = {
  q8_0: { name: 'q8_0', kind: 'ggml', blockSize: 32, blockBytes: 34, ggmlType: 8, fileType: 7, kernel: q8_0Kernel, description: 'ggml Q8_0: 8-bit, one f16 scale per 32 values (8.5 bits/weight)' },
  q4_0: { name: 'q4_0', kind: 'ggml', blockSize: 32, blockBytes: 18, ggmlType: 2, fileType: 2, kernel: q4_0Kernel, description: 'ggml Q4_0: 4-bit, one f16 scale per 32 values (4.5 bits/weight)' },
  q4_1: { name: 'q4_1', kind: 'ggml', blockSize: 32, blockBytes: 20, ggmlType: 3, fileType: 3, kernel: q4_1Kernel, description: 'ggml Q4_1: 4-bit, f16 scale and minimum per 32 values (5 bits/weight)' },
  // fileType: llama.cpp's ftype for a file of this type throughout (the "_S" mix where a K-quant has several).
  q2_k: { name: 'q2_k', kind: 'ggml', blockSize: 256, blockBytes: 84, ggmlType: 10, fileType: 10, kernel: q2_kKernel, description: 'ggml Q2_K: 2-bit, 4-bit scales and minimums per 16 values (2.625 bits/weight)' },
  q3_k: { name: 'q3_k', kind: 'ggml', blockSize: 256, blockBytes: 110, ggmlType: 11, fileType: 11, kernel: q3_kKernel, description: 'ggml Q3_K: 3-bit, 6-bit scales per 16 values (3.4375 bits/weight)' },
  q4_k: { name: 'q4_k', kind: 'ggml', blockSize: 256, blockBytes: 144, ggmlType: 12, fileType: 14, kernel: q4_kKernel, description: 'ggml Q4_K: 4-bit, 6-bit scales and minimums per 32 values (4.5 bits/weight)' },
  q5_k: { name: 'q5_k', kind: 'ggml', blockSize: 256, blockBytes: 176, ggmlType: 13, fileType: 16, kernel: q5_kKernel, description: 'ggml Q5_K: 5-bit, 6-bit scales and minimums per 32 values (5.5 bits/weight)' },
  q6_k: { name: 'q6_k', kind: 'ggml', blockSize: 256, blockBytes: 210, ggmlType: 14, fileType: 18, kernel: q6_kKernel, description: 'ggml Q6_K: 6-bit, 8-bit scales per 16 values (6.5625 bits/weight)' },
  q5_0: { name: 'q5_0', kind: 'ggml', blockSize: 32, blockBytes: 22, ggmlType: 6, fileType: 8, kernel: q5_0Kernel, description: 'ggml Q5_0: 5-bit, one f16 scale per 32 values (5.5 bits/weight)' },
  q5_1: { name: 'q5_1', kind: 'ggml', blockSize: 32, blockBytes: 24, ggmlType: 7, fileType: 9, kernel: q5_1Kernel, description: 'ggml Q5_1: 5-bit, f16 scale and minimum per 32 values (6 bits/weight)' },
  iq4_nl: { name: 'iq4_nl', kind: 'ggml', blockSize: 32, blockBytes: 18, ggmlType: 20, fileType: 25, kernel: iq4_nlKernel, description: 'ggml IQ4_NL: 4-bit non-linear grid, one f16 scale per 32 values (4.5 bits/weight)' },
  iq4_xs: { name: 'iq4_xs', kind: 'ggml', blockSize: 256, blockBytes: 136, ggmlType: 23, fileType: 30, kernel: iq4_xsKernel, description: 'ggml IQ4_XS: 4-bit non-linear grid, 6-bit scales per 32 values (4.25 bits/weight)' },
  'int8-channel': { name: 'int8-channel', kind: 'channel', blockSize: 1, blockBytes: 1, kernel: int8ChannelKernel, description: 'int8, one f32 scale per output row (compressed-tensors naive-quantized)' },
  'fp8-e4m3': { name: 'fp8-e4m3', kind: 'channel', blockSize: 1, blockBytes: 1, kernel: fp8E4m3Kernel, description: 'FP8 E4M3, one f32 scale per output row (compressed-tensors float-quantized)' },
  // 128: DeepSeek-V3's weight_block_size, the layout vLLM and Transformers load as "fp8".
  'fp8-block': { name: 'fp8-block', kind: 'block', blockSize: 1, blockBytes: 1, bandRows: 128, kernel: fp8BlockKernel, description: 'FP8 E4M3, one f32 weight_scale_inv per 128×128 block (DeepSeek / Transformers "fp8")' },
  // 17 bytes per 32 values: 16 of nibbles, one E8M0 scale.
  mxfp4: { name: 'mxfp4', kind: 'block', blockSize: 32, blockBytes: 17, kernel: mxfp4QuantKernel, description: 'MXFP4: E2M1 values, one E8M0 scale per 32 (gpt-oss _blocks/_scales, 4.25 bits/weight)' },
};

export const SCHEME_NAMES = Object.keys(SCHEMES) as SchemeName[];

export function isSchemeName(s: string): s is SchemeName {
  return Object.prototype.hasOwnProperty.call(SCHEMES, s);
}

/** Quantized bytes of a [rows, cols] tensor, scales included. */
export function quantizedBytes(s: Scheme, rows: number, cols: number): number {
  if (s.bandRows) return rows * cols + Math.ceil(rows / s.bandRows) * Math.ceil(cols / s.bandRows) * 4;
  return s.kind === 'channel' ? rows * cols + rows * 4 : (rows * cols * s.blockBytes) / s.blockSize;
}
