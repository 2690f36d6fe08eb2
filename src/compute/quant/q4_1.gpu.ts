import type { GpuContext } from '../kernel';
import type { QuantizeArgs, QuantizeResult } from './common';
import { ggmlBlocksGpu } from './ggmlBlocks.gpu';
import { q4_1Cpu, Q4_1_BYTES } from './q4_1.cpu';
import shader from './q4_1.wgsl';

/** The GPU twin of `q4_1Cpu`: byte-identical (see quantCommon.wgsl for how). */
export function q4_1Gpu(ctx: GpuContext, a: QuantizeArgs): Promise<QuantizeResult> {
  return ggmlBlocksGpu(ctx, a, { name: 'q4_1', shader, blockBytes: Q4_1_BYTES, blocksPerGroup: 1, cpu: q4_1Cpu });
}
