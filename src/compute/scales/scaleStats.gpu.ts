import { GpuUnsupportedError, type GpuContext } from '../kernel';
import type { ScaleStatsArgs, ScaleStatsResult } from './scaleStats';

/**
 * The GPU side runs the CPU twin: a tensor's scales are a few bytes per block, spread through
 * the blocks, so a dispatch would cost more than the count (see scaleStatsKernel).
 */
export function scaleStatsGpu(_ctx: GpuContext, _args: ScaleStatsArgs): Promise<ScaleStatsResult> {
  return Promise.reject(new GpuUnsupportedError('scales: counted on the CPU'));
}
