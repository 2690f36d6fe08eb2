import type { KernelDef } from '../kernel';
import { giveSrc, handBack, type QuantizeArgs, type QuantizeResult } from './common';
import { q4_1Cpu } from './q4_1.cpu';
import { q4_1Gpu } from './q4_1.gpu';

export const q4_1Kernel: KernelDef<QuantizeArgs, QuantizeResult> = {
  name: 'quant.q4_1',
  cpu: handBack(q4_1Cpu),
  gpu: q4_1Gpu,
  transfer: giveSrc,
};
