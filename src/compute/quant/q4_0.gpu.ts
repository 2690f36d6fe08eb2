import type { GpuContext } from '../kernel';
import type { QuantizeArgs, QuantizeResult } from './common';
import { ggmlBlocksGpu } from './ggmlBlocks.gpu';
import { q4_0Cpu, Q4_0_BYTES } from './q4_0.cpu';
import shader from './q4_0.wgsl';

/** The GPU twin of `q4_0Cpu`: byte-identical (see quantCommon.wgsl for how). */
export function q4_0Gpu(ctx: GpuContext, a: QuantizeArgs): Promise<QuantizeResult> {
  return ggmlBlocksGpu(ctx, a, { name: 'q4_0', shader, blockBytes: Q4_0_BYTES, blocksPerGroup: 2, cpu: q4_0Cpu });
}
