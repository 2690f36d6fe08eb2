import { DTYPE_INFO, DTYPES, type DType } from './dtypes';

/**
 * How a logical tensor's values are stored, whatever the file format:
 *  - `dtype`: one element after another in a plain element type (safetensors' 22 dtypes);
 *  - `blocks`: fixed-size blocks of `blockElements` values in `blockBytes` bytes each, such as
 *    ggml's Q4_0 (32 values in 18 bytes: an f16 scale, then 16 bytes of nibbles);
 *  - `scheme`: values spread over several parts that decode together, such as an FP8 weight
 *    and its per-block scale; `parts` names the roles of `TensorInfo.parts`, data first.
 * Pipelines ask a tensor its storage, never its file format; decoding a storage to float32
 * is the decode kernel's job (src/compute/decode), chunk by chunk on whole units.
 */
export type StorageType =
  | { readonly kind: 'dtype'; readonly dtype: DType }
  | { readonly kind: 'blocks'; readonly type: string; readonly blockElements: number; readonly blockBytes: number }
  | {
      readonly kind: 'scheme';
      readonly scheme: string;
      readonly parts: readonly string[];
      readonly unit: StorageUnit;
      /** What the scheme's decoder needs besides the bytes (columns, group sizes, part dtypes). */
      readonly params?: SchemeParams;
      /**
       * Bytes of each part (data first) that one unit of the data part matches: a chunk of
       * whole units reads the same units of every part; 0 means the decoder takes the whole part.
       */
      readonly partUnitBytes?: readonly number[];
    };

export type SchemeParams = Readonly<Record<string, number | string>>;

/** The smallest whole piece of a storage: a chunk of a tensor starts and ends on these. */
export interface StorageUnit {
  readonly elements: number;
  readonly bytes: number;
}

/** Where one part of a tensor's bytes lies: a byte range of one file of the model. */
export interface TensorPart {
  /** `data` for a plain tensor; a scheme's role (`weight`, `scale`) otherwise. */
  readonly role: string;
  /** Index into `Model.files`. */
  readonly file: number;
  readonly byteOffset: number;
  readonly byteLength: number;
}

// One shared object per dtype: a 50,000-tensor header allocates no storage of its own.
const PLAIN = new Map<DType, StorageType>(DTYPES.map((d) => [d, Object.freeze({ kind: 'dtype', dtype: d })]));

/** The storage of a plain tensor of `dtype`. */
export function plainStorage(dtype: DType): StorageType {
  return PLAIN.get(dtype)!;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** The smallest run of whole elements that also ends on a whole byte (F4: 2 in 1 byte, F6: 4 in 3). */
export function storageUnit(s: StorageType): StorageUnit {
  if (s.kind === 'blocks') return { elements: s.blockElements, bytes: s.blockBytes };
  if (s.kind === 'scheme') return s.unit;
  const bits = DTYPE_INFO[s.dtype].bits;
  const elements = 8 / gcd(bits, 8);
  return { elements, bytes: (elements * bits) / 8 };
}

/** Elements per chunk of at most `chunkBytes` (at least one unit), a whole number of units. */
export function chunkElementsOf(s: StorageType, chunkBytes: number): number {
  const u = storageUnit(s);
  return Math.max(1, Math.floor(chunkBytes / u.bytes)) * u.elements;
}

/** Bytes that `elements` values take (a whole number of units). */
export function storedBytes(s: StorageType, elements: number): number {
  const u = storageUnit(s);
  if (elements % u.elements !== 0) throw new RangeError(`${elements} values are not a whole number of ${u.elements}-value units`);
  return (elements / u.elements) * u.bytes;
}

/** The storage's name as users read it: the dtype, the block type (`Q4_K`) or the scheme. */
export function storageName(s: StorageType): string {
  return s.kind === 'dtype' ? s.dtype : s.kind === 'blocks' ? s.type : s.scheme;
}
