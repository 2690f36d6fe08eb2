/**
 * The quantized tensors of a summary as columns (see ./columns for why columns): for each
 * tensor stored as a ggml block type or a quantized-safetensors scheme, its scheme, bits per
 * weight and group or block size, and the parts it is stored in. The host packs with
 * `packQuantTable`, the page unpacks with `quantEntries`.
 *
 * This module must stay free of Node, DOM and `vscode` imports: it is compiled for both.
 */
import { packStrings, unpackStrings, type StringColumn } from './columns';
import type { QuantizationDeclared } from '../pipelines/viewer/types';

/** One stored part of a quantized tensor (a scheme's weight, scale, zero point). */
export interface QuantPart {
  readonly role: string;
  /** Index into the summary's files. */
  readonly file: number;
  readonly byteOffset: number;
  readonly byteLength: number;
}

export interface QuantEntry {
  /** Index into the summary's tensor table. */
  readonly tensor: number;
  /** The scheme or block type (`fp8-block`, `gptq`, `Q4_K`). */
  readonly scheme: string;
  /** Bytes of every part × 8 over the logical values: what the weight costs, scales included. */
  readonly bitsPerWeight: number;
  /** `group 128`, `128×128 block`, `per channel`, `block 32` … */
  readonly group: string;
  /** A scheme's parts, data first; empty for a block type (one range, the tensor's own). */
  readonly parts: readonly QuantPart[];
}

export interface QuantTable {
  readonly tensor: Uint32Array;
  readonly scheme: StringColumn;
  readonly bitsPerWeight: Float64Array;
  readonly group: StringColumn;
  /** Parts of each entry; the parts themselves follow in entry order. */
  readonly partCount: Uint16Array;
  readonly partRole: StringColumn;
  readonly partFile: Uint32Array;
  readonly partOffset: Float64Array;
  readonly partLength: Float64Array;
}

export function packQuantTable(entries: readonly QuantEntry[]): QuantTable {
  const parts = entries.flatMap((e) => e.parts);
  return {
    tensor: Uint32Array.from(entries, (e) => e.tensor),
    scheme: packStrings(entries.map((e) => e.scheme)),
    bitsPerWeight: Float64Array.from(entries, (e) => e.bitsPerWeight),
    group: packStrings(entries.map((e) => e.group)),
    partCount: Uint16Array.from(entries, (e) => e.parts.length),
    partRole: packStrings(parts.map((p) => p.role)),
    partFile: Uint32Array.from(parts, (p) => p.file),
    partOffset: Float64Array.from(parts, (p) => p.byteOffset),
    partLength: Float64Array.from(parts, (p) => p.byteLength),
  };
}

export function quantEntries(t: QuantTable): QuantEntry[] {
  const schemes = unpackStrings(t.scheme);
  const groups = unpackStrings(t.group);
  const roles = unpackStrings(t.partRole);
  const out: QuantEntry[] = [];
  let p = 0;
  for (let i = 0; i < t.tensor.length; i++) {
    const parts: QuantPart[] = [];
    for (let k = 0; k < t.partCount[i]!; k++, p++) parts.push({ role: roles[p]!, file: t.partFile[p]!, byteOffset: t.partOffset[p]!, byteLength: t.partLength[p]! });
    out.push({ tensor: t.tensor[i]!, scheme: schemes[i]!, bitsPerWeight: t.bitsPerWeight[i]!, group: groups[i]!, parts });
  }
  return out;
}

/** What the header says about a quantized-safetensors model: config.json's declaration and where the tensors disagree. */
export interface QuantHeader extends QuantizationDeclared {
  /** The schemes found in the tensors, with how many tensors each. */
  readonly schemes: readonly { readonly scheme: string; readonly tensors: number }[];
  /** Where config.json and the tensors disagree; the tensors win. */
  readonly disagreements: readonly string[];
}
