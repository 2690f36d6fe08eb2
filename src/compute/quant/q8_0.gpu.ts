import type { GpuContext } from '../kernel';
import type { QuantizeArgs, QuantizeResult } from './common';
import { ggmlBlocksGpu } from './ggmlBlocks.gpu';
import { q8_0Cpu, Q8_0_BYTES } from './q8_0.cpu';
import shader from './q8_0.wgsl';

/** The GPU twin of `q8_0Cpu`: byte-identical (see quantCommon.wgsl for how). */
export function q8_0Gpu(ctx: GpuContext, a: QuantizeArgs): Promise<QuantizeResult> {
  return ggmlBlocksGpu(ctx, a, { name: 'q8_0', shader, blockBytes: Q8_0_BYTES, blocksPerGroup: 2, cpu: q8_0Cpu });
}
