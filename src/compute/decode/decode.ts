import { DTYPE_INFO, type DType } from '../../format/dtypes';
import { storageUnit, type StorageType } from '../../format/storage';
import type { KernelDef } from '../kernel';
import { decodeCpu } from './decode.cpu';
import { decodeGpu } from './decode.gpu';

export interface DecodeArgs {
  /** A float dtype: BF16, F16, the F8 variants, F6_E2M3, F6_E3M2, F4, F32 or F64. */
  readonly dtype: DType;
  /** Raw little-endian element bytes, starting on an element boundary. */
  readonly bytes: Uint8Array;
  /** Elements to decode; defaults to every whole element in `bytes`. */
  readonly count?: number;
  /**
   * The tensor's storage when it is not a plain dtype (a ggml block type, a scheme): `bytes`
   * then holds whole units (blocks) of its data part, `more` its other parts' matching bytes.
   */
  readonly storage?: StorageType;
  readonly more?: readonly Uint8Array[];
}

export function elementCount(a: DecodeArgs): number {
  if (a.storage && a.storage.kind !== 'dtype') {
    const u = storageUnit(a.storage);
    return a.count ?? Math.floor(a.bytes.length / u.bytes) * u.elements;
  }
  return a.count ?? Math.floor((a.bytes.length * 8) / DTYPE_INFO[a.dtype].bits);
}

/**
 * Decodes any float dtype, or a block or scheme storage that has a decoder (blocks.ts), to f32.
 * The GPU twin returns bit-identical results (F64 and the storages without a GPU decoder run on the CPU).
 */
export const decodeKernel: KernelDef<DecodeArgs, Float32Array> = {
  name: 'decode',
  cpu: decodeCpu,
  gpu: decodeGpu,
};
