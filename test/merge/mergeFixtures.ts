/**
 * Small generated bases and adapters for the merge tests, plus an independent
 * reader for the merged output (8-byte length, JSON header, raw data) and a
 * float64 reference merge written from the formulas, not from the code under test.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors } from '../../src/format/writer';
import { decode, encodeExact, normal, quantize, rng, type FloatDType } from './oracle';

export interface T {
  readonly name: string;
  readonly dtype: FloatDType;
  readonly shape: readonly number[];
  readonly values: Float64Array;
}

export const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** A tensor of N(0, std) values made exact in `dtype`. */
export function gen(name: string, dtype: FloatDType, shape: readonly number[], seed: number, std = 0.5): T {
  const r = rng(seed);
  const values = new Float64Array(numel(shape));
  for (let i = 0; i < values.length; i++) values[i] = quantize(dtype, normal(r) * std);
  return { name, dtype, shape, values };
}

export async function writeTensors(path: string, tensors: readonly T[], metadata?: Record<string, string>): Promise<void> {
  await writeSafetensors(
    path,
    tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: encodeExact(t.dtype, t.values) })),
    { metadata },
  );
}

export interface PeftAdapterSpec {
  readonly config: Record<string, unknown>;
  readonly tensors: readonly T[];
}

export async function writePeft(dir: string, spec: PeftAdapterSpec): Promise<string> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', ...spec.config }));
  await writeTensors(join(dir, 'adapter_model.safetensors'), spec.tensors);
  return dir;
}

/** Reads a .safetensors file with a header parser of its own: name → {dtype, shape, bytes}. */
export function readOut(path: string): { metadata: Record<string, string>; tensors: Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }> } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const tensors = new Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }>();
  let metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(header)) {
    if (k === '__metadata__') {
      metadata = v as unknown as Record<string, string>;
      continue;
    }
    const bytes = new Uint8Array(buf.subarray(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1]));
    tensors.set(k, { dtype: v.dtype, shape: v.shape, bytes });
  }
  return { metadata, tensors };
}

export function valuesOf(t: { dtype: string; bytes: Uint8Array }): Float64Array {
  return decode(t.dtype as FloatDType, t.bytes);
}

/** Δ[o, i] = Σₖ B[o,k]·A[k,i] in float64, for B [out, r(, 1, 1)] and A [r, in…]. */
export function product(B: T, A: T): { out: number; in: number; values: Float64Array } {
  const out = B.shape[0];
  const r = A.shape[0];
  const inF = numel(A.shape) / r;
  const v = new Float64Array(out * inF);
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inF; i++) {
      let s = 0;
      for (let k = 0; k < r; k++) s += B.values[o * r + k] * A.values[k * inF + i];
      v[o * inF + i] = s;
    }
  return { out, in: inF, values: v };
}

/** Adds c·Δ to W (float64), with Δ transposed when the weight is stored [in, out]. */
export function addDelta(W: Float64Array, d: { out: number; in: number; values: Float64Array }, c: number, transpose: boolean): void {
  for (let o = 0; o < d.out; o++)
    for (let i = 0; i < d.in; i++) {
      const at = transpose ? i * d.out + o : o * d.in + i;
      W[at] += c * d.values[o * d.in + i];
    }
}
