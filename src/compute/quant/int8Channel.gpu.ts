import type { GpuContext } from '../kernel';
import type { QuantizeArgs, QuantizeResult } from './common';
import { int8ChannelCpu } from './int8Channel.cpu';
import { rowScaledGpu } from './rowScaled.gpu';

/** The GPU twin of `int8ChannelCpu`: byte-identical (exact integer division in the shader). */
export function int8ChannelGpu(ctx: GpuContext, a: QuantizeArgs): Promise<QuantizeResult> {
  return rowScaledGpu(ctx, a, 0, int8ChannelCpu);
}
