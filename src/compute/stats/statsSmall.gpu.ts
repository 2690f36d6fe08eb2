import { GpuUnsupportedError, type GpuContext } from '../kernel';
import type { StatsSmallArgs, StatsSmallResult } from './statsSmall';

/**
 * Tensors of a few kilobytes each: an upload, two dispatches and two readbacks per tensor
 * cost far more than scanning its bytes, so the backend runs the CPU twin for them.
 */
export async function statsSmallGpu(_ctx: GpuContext, _args: StatsSmallArgs): Promise<StatsSmallResult> {
  throw new GpuUnsupportedError('small tensors are scanned by the CPU twin');
}
