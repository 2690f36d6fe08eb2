import type { KernelDef } from '../kernel';
import { giveSrc, handBack, type QuantizeArgs, type QuantizeResult } from './common';
import { q8_0Cpu } from './q8_0.cpu';
import { q8_0Gpu } from './q8_0.gpu';

export const q8_0Kernel: KernelDef<QuantizeArgs, QuantizeResult> = {
  name: 'quant.q8_0',
  cpu: handBack(q8_0Cpu),
  gpu: q8_0Gpu,
  transfer: giveSrc,
};
