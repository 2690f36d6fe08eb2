import { DTYPE_INFO, type DType } from '../../format/dtypes';
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
}

export function elementCount(a: DecodeArgs): number {
  return a.count ?? Math.floor((a.bytes.length * 8) / DTYPE_INFO[a.dtype].bits);
}

/** Decodes any float dtype to f32. The GPU twin returns bit-identical results (F64 runs on the CPU). */
export const decodeKernel: KernelDef<DecodeArgs, Float32Array> = {
  name: 'decode',
  cpu: decodeCpu,
  gpu: decodeGpu,
};
