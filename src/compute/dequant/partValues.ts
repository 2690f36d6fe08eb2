import type { DType } from '../../format/dtypes';
import { isPatternDType, patternTable } from '../decode/patterns';

/** A part's elements as float32: scales and global scales stored as F32, F16, BF16 or an FP8 variant. */
export function partFloats(bytes: Uint8Array, dtype: string): Float32Array {
  const d = dtype as DType;
  if (d === 'F32') return view(Float32Array, bytes, 4);
  if (d === 'F64') return Float32Array.from(view(Float64Array, bytes, 8));
  if (!isPatternDType(d)) throw new Error(`dequant: a part stored as ${dtype} is not a float`);
  const table = patternTable(d);
  if (d === 'BF16' || d === 'F16' || d === 'U16' || d === 'I16') {
    const u16 = view(Uint16Array, bytes, 2);
    const out = new Float32Array(u16.length);
    for (let i = 0; i < u16.length; i++) out[i] = table[u16[i]];
    return out;
  }
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = table[bytes[i]];
  return out;
}

/** A part's elements as int32 words (packed integers, group indices). */
export function partInt32(bytes: Uint8Array): Int32Array {
  return view(Int32Array, bytes, 4);
}

/** A part of integers stored as I8, I16, I32 or I64 (zero points, g_idx), as int32. */
export function partInts(bytes: Uint8Array, dtype: string): Int32Array {
  if (dtype === 'I32' || dtype === 'U32') return partInt32(bytes);
  if (dtype === 'I8') return Int32Array.from(new Int8Array(bytes.buffer, bytes.byteOffset, bytes.length));
  if (dtype === 'U8') return Int32Array.from(bytes);
  if (dtype === 'I16') return Int32Array.from(view(Int16Array, bytes, 2));
  if (dtype === 'I64') {
    const v = view(BigInt64Array, bytes, 8);
    return Int32Array.from(v, (x) => Number(x));
  }
  throw new Error(`dequant: a part stored as ${dtype} is not an integer`);
}

type View<T> = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => T;

/** `bytes` as elements of `size` bytes: a view when aligned, else a view of a copy. */
function view<T>(Ctor: View<T>, bytes: Uint8Array, size: number): T {
  const n = Math.floor(bytes.length / size);
  if (bytes.byteOffset % size === 0) return new Ctor(bytes.buffer, bytes.byteOffset, n);
  return new Ctor(bytes.slice(0, n * size).buffer, 0, n);
}

/** E2M1 (FP4) values by their 4-bit code: sign, 2 exponent bits, 1 mantissa bit (OCP MX spec). */
export const E2M1 = Float32Array.of(0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6);

export function num(p: Readonly<Record<string, number | string>> | undefined, key: string): number {
  const v = p?.[key];
  if (typeof v !== 'number') throw new Error(`dequant: the scheme has no parameter ${key}`);
  return v;
}

export function str(p: Readonly<Record<string, number | string>> | undefined, key: string): string {
  const v = p?.[key];
  if (typeof v !== 'string') throw new Error(`dequant: the scheme has no parameter ${key}`);
  return v;
}
