import type { KernelDef } from '../kernel';
import { giveSrc, handBack, type QuantizeArgs, type QuantizeResult } from './common';
import { q4_0Cpu } from './q4_0.cpu';
import { q4_0Gpu } from './q4_0.gpu';

export const q4_0Kernel: KernelDef<QuantizeArgs, QuantizeResult> = {
  name: 'quant.q4_0',
  cpu: handBack(q4_0Cpu),
  gpu: q4_0Gpu,
  transfer: giveSrc,
};
