/**
 * The safetensors dtypes, in the order of the reference implementation's enum.
 * That order is the "alignment" order the reference writer sorts by (descending).
 */
export const DTYPES = [
  'BOOL',
  'F4',
  'F6_E2M3',
  'F6_E3M2',
  'U8',
  'I8',
  'F8_E5M2',
  'F8_E4M3',
  'F8_E8M0',
  'F8_E4M3FNUZ',
  'F8_E5M2FNUZ',
  'I16',
  'U16',
  'F16',
  'BF16',
  'I32',
  'U32',
  'F32',
  'C64',
  'F64',
  'I64',
  'U64',
] as const;

export type DType = (typeof DTYPES)[number];

export type DTypeKind = 'bool' | 'uint' | 'int' | 'float' | 'complex';

export interface DTypeInfo {
  readonly name: DType;
  /** Bits per element; sub-byte dtypes (F4, F6_*) pack elements LSB-first. */
  readonly bits: number;
  readonly kind: DTypeKind;
  /** Position in the reference enum; the writer sorts by it, descending. */
  readonly order: number;
}

const BITS: Record<DType, number> = {
  BOOL: 8, F4: 4, F6_E2M3: 6, F6_E3M2: 6, U8: 8, I8: 8,
  F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8, F8_E4M3FNUZ: 8, F8_E5M2FNUZ: 8,
  I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32, F32: 32, C64: 64, F64: 64, I64: 64, U64: 64,
};

function kindOf(d: DType): DTypeKind {
  if (d === 'BOOL') return 'bool';
  if (d === 'C64') return 'complex';
  if (d.startsWith('U')) return 'uint';
  if (d.startsWith('I')) return 'int';
  return 'float';
}

export const DTYPE_INFO: Readonly<Record<DType, DTypeInfo>> = Object.freeze(
  Object.fromEntries(DTYPES.map((name, order) => [name, Object.freeze({ name, bits: BITS[name], kind: kindOf(name), order })])) as Record<
    DType,
    DTypeInfo
  >,
);

const DTYPE_SET: ReadonlySet<string> = new Set(DTYPES);

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && DTYPE_SET.has(s);
}

export function isFloatDType(d: DType): boolean {
  return DTYPE_INFO[d].kind === 'float';
}
