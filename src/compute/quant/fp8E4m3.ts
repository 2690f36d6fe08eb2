import type { KernelDef } from '../kernel';
import { giveSrc, handBack, type QuantizeArgs, type QuantizeResult } from './common';
import { fp8E4m3Cpu } from './fp8E4m3.cpu';
import { fp8E4m3Gpu } from './fp8E4m3.gpu';

export const fp8E4m3Kernel: KernelDef<QuantizeArgs, QuantizeResult> = {
  name: 'quant.fp8-e4m3',
  cpu: handBack(fp8E4m3Cpu),
  gpu: fp8E4m3Gpu,
  transfer: giveSrc,
};
