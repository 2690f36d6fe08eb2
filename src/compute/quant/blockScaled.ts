import { GpuUnsupportedError, type KernelDef } from '../kernel';
import { giveSrc, handBack, type QuantizeArgs, type QuantizeResult } from './common';
import { fp8BlockCpu } from './fp8Block.cpu';
import { mxfp4QuantCpu } from './mxfp4Quant.cpu';

/*
 * The block-scaled safetensors quantizers (FP8 with 128×128 block scales, MXFP4) run on the
 * CPU twin only: a block's scale needs its whole absMax before any value is coded, which on
 * the GPU is a second pass over data the CPU reads once at disk speed. The GPU side says so,
 * and the backend runs the CPU twin (GpuUnsupportedError is not a device failure).
 */
function cpuOnly(name: string): KernelDef<QuantizeArgs, QuantizeResult>['gpu'] {
  return async () => {
    throw new GpuUnsupportedError(`${name}: no GPU twin`);
  };
}

export const fp8BlockKernel: KernelDef<QuantizeArgs, QuantizeResult> = {
  name: 'quant.fp8-block',
  cpu: handBack(fp8BlockCpu),
  gpu: cpuOnly('fp8-block'),
  transfer: giveSrc,
};

export const mxfp4QuantKernel: KernelDef<QuantizeArgs, QuantizeResult> = {
  name: 'quant.mxfp4',
  cpu: handBack(mxfp4QuantCpu),
  gpu: cpuOnly('mxfp4'),
  transfer: giveSrc,
};
