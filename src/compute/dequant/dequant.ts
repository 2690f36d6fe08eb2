import type { KernelDef } from '../kernel';
import { ggmlTypeByName, type GgmlTypeName } from '../../format/gguf/types';
import { dequantize } from './dequant.cpu';
import { dequantGpu } from './dequant.gpu';

export interface DequantArgs {
  readonly type: GgmlTypeName;
  /** Whole blocks of that type. */
  readonly src: Uint8Array;
}

export interface DequantResult {
  readonly values: Float32Array;
}

/** The CPU twin in the kernel shape: `dequantize` into a new array. */
export function dequantCpu(a: DequantArgs): DequantResult {
  const info = ggmlTypeByName(a.type);
  const values = new Float32Array(Math.floor(a.src.length / info.typeSize) * info.blockSize);
  dequantize(a.type, a.src, values);
  return { values };
}

export const dequantKernel: KernelDef<DequantArgs, DequantResult> = {
  name: 'dequant',
  cpu: dequantCpu,
  gpu: dequantGpu,
};
