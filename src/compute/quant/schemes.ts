import type { KernelDef } from '../kernel';
import type { QuantizeArgs, QuantizeResult } from './common';
import { fp8E4m3Kernel } from './fp8E4m3';
import { int8ChannelKernel } from './int8Channel';
import { q4_0Kernel } from './q4_0';
import { q4_1Kernel } from './q4_1';
import { q8_0Kernel } from './q8_0';

export type SchemeName = 'q8_0' | 'q4_0' | 'q4_1' | 'int8-channel' | 'fp8-e4m3';

export interface Scheme {
  readonly name: SchemeName;
  /** `ggml`: 32-value blocks with f16 scales; `channel`: 8-bit codes plus one f32 scale per row. */
  readonly kind: 'ggml' | 'channel';
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
}

export const SCHEMES: Readonly<Record<SchemeName, Scheme>> = {
  q8_0: { name: 'q8_0', kind: 'ggml', blockSize: 32, blockBytes: 34, ggmlType: 8, fileType: 7, kernel: q8_0Kernel, description: 'ggml Q8_0: 8-bit, one f16 scale per 32 values (8.5 bits/weight)' },
  q4_0: { name: 'q4_0', kind: 'ggml', blockSize: 32, blockBytes: 18, ggmlType: 2, fileType: 2, kernel: q4_0Kernel, description: 'ggml Q4_0: 4-bit, one f16 scale per 32 values (4.5 bits/weight)' },
  q4_1: { name: 'q4_1', kind: 'ggml', blockSize: 32, blockBytes: 20, ggmlType: 3, fileType: 3, kernel: q4_1Kernel, description: 'ggml Q4_1: 4-bit, f16 scale and minimum per 32 values (5 bits/weight)' },
  'int8-channel': { name: 'int8-channel', kind: 'channel', blockSize: 1, blockBytes: 1, kernel: int8ChannelKernel, description: 'int8, one f32 scale per output row (compressed-tensors naive-quantized)' },
  'fp8-e4m3': { name: 'fp8-e4m3', kind: 'channel', blockSize: 1, blockBytes: 1, kernel: fp8E4m3Kernel, description: 'FP8 E4M3, one f32 scale per output row (compressed-tensors float-quantized)' },
};

export const SCHEME_NAMES = Object.keys(SCHEMES) as SchemeName[];

export function isSchemeName(s: string): s is SchemeName {
  return Object.prototype.hasOwnProperty.call(SCHEMES, s);
}

/** Quantized bytes of a [rows, cols] tensor, scales included. */
export function quantizedBytes(s: Scheme, rows: number, cols: number): number {
  return s.kind === 'ggml' ? (rows * cols * s.blockBytes) / s.blockSize : rows * cols + rows * 4;
}
