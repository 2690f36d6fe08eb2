/**
 * Shared helpers of the diff tests: seeded values, encoding through the format
 * core's RNE casts (not the kernels' decoders), float64 reference decoding, and
 * small checkpoints written with the project's writer.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bf16FromF64, f16FromF64, f64FromBf16, f64FromF16 } from '../../src/format/cast';
import type { Model } from '../../src/format/model';
import { readFileHeader, SourceModel } from '../../src/format/reader';
import { NodeFileSource } from '../../src/format/source';
import { writeSafetensors } from '../../src/format/writer';

export type FloatDType = 'F32' | 'F16' | 'BF16';

/** A seeded uniform generator in [0, 1) (LCG: enough for test data, and reproducible). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

export function normals(n: number, r: () => number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return out;
}

export function encode(dtype: FloatDType, v: ArrayLike<number>): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(Float32Array.from(v).buffer);
  const h = new Uint16Array(v.length);
  for (let i = 0; i < v.length; i++) h[i] = dtype === 'BF16' ? bf16FromF64(v[i]) : f16FromF64(v[i]);
  return new Uint8Array(h.buffer);
}

/** The stored values as float64 (an oracle's view of the bytes). */
export function decodeRef(dtype: FloatDType, bytes: Uint8Array): Float64Array {
  if (dtype === 'F32') return Float64Array.from(new Float32Array(bytes.slice().buffer));
  const h = new Uint16Array(bytes.slice().buffer);
  return Float64Array.from(h, (x) => (dtype === 'BF16' ? f64FromBf16(x) : f64FromF16(x)));
}

/** Element i's stored bits, for counting differing elements independently of any decoder. */
export function elementBits(dtype: FloatDType, bytes: Uint8Array, i: number): number {
  const eb = dtype === 'F32' ? 4 : 2;
  let x = 0;
  for (let j = eb - 1; j >= 0; j--) x = x * 256 + bytes[i * eb + j];
  return x;
}

export interface TestTensor {
  readonly name: string;
  readonly dtype: FloatDType;
  readonly shape: readonly number[];
  readonly values: ArrayLike<number>;
}

export class TempDir {
  readonly path = mkdtempSync(join(tmpdir(), 'tw-diff-'));
  file(name: string): string {
    return join(this.path, name);
  }
  dispose(): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}

export async function writeModel(path: string, tensors: readonly TestTensor[]): Promise<string> {
  await writeSafetensors(
    path,
    tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: encode(t.dtype, t.values) })),
  );
  return path;
}

/** Opens one .safetensors file as a Model. */
export async function openFile(path: string): Promise<Model> {
  const src = await NodeFileSource.open(path);
  const f = await readFileHeader(src);
  return new SourceModel(path, [f.file], f.tensors, [src]);
}
