import type { KernelDef } from '../kernel';
import { giveSrc, handBack, type QuantizeArgs, type QuantizeResult } from './common';
import { int8ChannelCpu } from './int8Channel.cpu';
import { int8ChannelGpu } from './int8Channel.gpu';

export const int8ChannelKernel: KernelDef<QuantizeArgs, QuantizeResult> = {
  name: 'quant.int8-channel',
  cpu: handBack(int8ChannelCpu),
  gpu: int8ChannelGpu,
  transfer: giveSrc,
};
