import type { GpuContext } from '../kernel';
import type { QuantizeArgs, QuantizeResult } from './common';
import { fp8E4m3Cpu } from './fp8E4m3.cpu';
import { rowScaledGpu } from './rowScaled.gpu';

/** The GPU twin of `fp8E4m3Cpu`: byte-identical (exact integer division in the shader). */
export function fp8E4m3Gpu(ctx: GpuContext, a: QuantizeArgs): Promise<QuantizeResult> {
  return rowScaledGpu(ctx, a, 1, fp8E4m3Cpu);
}
