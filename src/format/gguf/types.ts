/**
 * ggml's tensor types as GGUF stores them (`enum ggml_type` in ggml.h): the id written in a
 * tensor info, the number of elements a block holds and the bytes one block takes. A tensor of
 * `n` elements (n a multiple of `blockSize` along ne[0]) takes `n / blockSize * typeSize` bytes.
 * Ids 4, 5 and 31–33, 36–38 were removed from ggml and are refused.
 */

export type GgmlTypeName =
  | 'F32' | 'F16' | 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'Q8_0' | 'Q8_1'
  | 'Q2_K' | 'Q3_K' | 'Q4_K' | 'Q5_K' | 'Q6_K' | 'Q8_K'
  | 'IQ2_XXS' | 'IQ2_XS' | 'IQ3_XXS' | 'IQ1_S' | 'IQ4_NL' | 'IQ3_S' | 'IQ2_S' | 'IQ4_XS'
  | 'I8' | 'I16' | 'I32' | 'I64' | 'F64' | 'IQ1_M' | 'BF16' | 'TQ1_0' | 'TQ2_0' | 'MXFP4' | 'NVFP4' | 'Q1_0' | 'Q2_0';

export interface GgmlTypeInfo {
  readonly name: GgmlTypeName;
  /** The `enum ggml_type` value stored in the file. */
  readonly id: number;
  /** Elements per block (1 for the plain number types). */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly typeSize: number;
}

/** QK_K: the super-block of the K-quants, IQ and TQ types. */
const QK_K = 256;

// [name, id, elements per block, bytes per block], as ggml-common.h lays the blocks out.
const TABLE: readonly (readonly [GgmlTypeName, number, number, number])[] = [
  ['F32', 0, 1, 4],
  ['F16', 1, 1, 2],
  ['Q4_0', 2, 32, 18], // f16 d, 16 bytes of nibbles
  ['Q4_1', 3, 32, 20], // f16 d, f16 m, 16 bytes of nibbles
  ['Q5_0', 6, 32, 22], // f16 d, u32 high bits, 16 bytes of nibbles
  ['Q5_1', 7, 32, 24], // f16 d, f16 m, u32 high bits, 16 bytes of nibbles
  ['Q8_0', 8, 32, 34], // f16 d, 32 × i8
  ['Q8_1', 9, 32, 36], // f16 d, f16 s (= d × Σq), 32 × i8
  ['Q2_K', 10, QK_K, 84], // 16 scale/min bytes, 64 bytes of 2-bit quants, f16 d, f16 dmin
  ['Q3_K', 11, QK_K, 110], // 32 bytes high bits, 64 bytes of 2-bit quants, 12 scale bytes, f16 d
  ['Q4_K', 12, QK_K, 144], // f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles
  ['Q5_K', 13, QK_K, 176], // as Q4_K plus 32 bytes of high bits
  ['Q6_K', 14, QK_K, 210], // 128 bytes low nibbles, 64 bytes high 2 bits, 16 × i8 scales, f16 d
  ['Q8_K', 15, QK_K, 292], // f32 d, 256 × i8, 16 × i16 block sums
  ['IQ2_XXS', 16, QK_K, 66], // f16 d, 32 × u16
  ['IQ2_XS', 17, QK_K, 74], // f16 d, 32 × u16, 8 scale bytes
  ['IQ3_XXS', 18, QK_K, 98], // f16 d, 96 bytes
  ['IQ1_S', 19, QK_K, 50], // f16 d, 32 bytes, 8 × u16
  ['IQ4_NL', 20, 32, 18], // f16 d, 16 bytes of nibbles
  ['IQ3_S', 21, QK_K, 110], // f16 d, 64 qs, 8 qh, 32 signs, 4 scales
  ['IQ2_S', 22, QK_K, 82], // f16 d, 64 qs (grid low bits + signs), 8 qh, 8 scales
  ['IQ4_XS', 23, QK_K, 136], // f16 d, u16 scales_h, 4 scales_l, 128 bytes of nibbles
  ['I8', 24, 1, 1],
  ['I16', 25, 1, 2],
  ['I32', 26, 1, 4],
  ['I64', 27, 1, 8],
  ['F64', 28, 1, 8],
  ['IQ1_M', 29, QK_K, 56], // 32 qs, 16 qh, 8 scale bytes (the f16 scale is spread over them)
  ['BF16', 30, 1, 2],
  ['TQ1_0', 34, QK_K, 54], // 48 bytes of base-3 quintets, 4 bytes of quartets, f16 d
  ['TQ2_0', 35, QK_K, 66], // 64 bytes of 2-bit codes, f16 d
  ['MXFP4', 39, 32, 17], // E8M0 exponent, 16 bytes of E2M1 nibbles
  ['NVFP4', 40, 64, 36], // 4 UE4M3 scales, 32 bytes of E2M1 nibbles
  ['Q1_0', 41, 128, 18], // f16 d, 128 sign bits
  ['Q2_0', 42, 64, 18], // f16 d, 64 two-bit codes
];

export const GGML_TYPES: ReadonlyMap<number, GgmlTypeInfo> = new Map(
  TABLE.map(([name, id, blockSize, typeSize]) => [id, { name, id, blockSize, typeSize }]),
);

export const GGML_TYPE_BY_NAME: ReadonlyMap<GgmlTypeName, GgmlTypeInfo> = new Map([...GGML_TYPES.values()].map((t) => [t.name, t]));

export function ggmlType(id: number): GgmlTypeInfo | undefined {
  return GGML_TYPES.get(id);
}

export function ggmlTypeByName(name: GgmlTypeName): GgmlTypeInfo {
  const t = GGML_TYPE_BY_NAME.get(name);
  if (!t) throw new Error(`unknown ggml type ${name}`);
  return t;
}
