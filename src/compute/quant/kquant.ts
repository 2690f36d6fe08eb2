import type { KernelDef } from '../kernel';
import { GpuUnsupportedError } from '../kernel';
import { giveSrc, handBack, type QuantizeArgs, type QuantizeResult } from './common';
import { kquantCpu, type KQuantType } from './kquant.cpu';

/**
 * Quantizer kernels for the K-quants, Q5_0/Q5_1 and IQ4_NL/IQ4_XS. There is no WGSL twin
 * yet: the GPU entry declines, so the backend runs the CPU twin in its worker pool.
 */
function kquantKernel(type: KQuantType): KernelDef<QuantizeArgs, QuantizeResult> {
  return {
    name: `quant.${type.toLowerCase()}`,
    cpu: handBack((a) => kquantCpu(type, a, a.imatrix)),
    gpu: () => Promise.reject(new GpuUnsupportedError(`${type}: no GPU quantizer yet`)),
    // The imatrix is small (one f32 per column) and shared by every chunk of a tensor: copied, not moved.
    transfer: giveSrc,
  };
}

export const q2_kKernel = kquantKernel('Q2_K');
export const q3_kKernel = kquantKernel('Q3_K');
export const q4_kKernel = kquantKernel('Q4_K');
export const q5_kKernel = kquantKernel('Q5_K');
export const q6_kKernel = kquantKernel('Q6_K');
export const q5_0Kernel = kquantKernel('Q5_0');
export const q5_1Kernel = kquantKernel('Q5_1');
export const iq4_nlKernel = kquantKernel('IQ4_NL');
export const iq4_xsKernel = kquantKernel('IQ4_XS');

/** Every kernel above by its name, for the worker's registry. */
export const KQUANT_KERNELS: Record<string, KernelDef<QuantizeArgs, QuantizeResult>> = Object.fromEntries(
  [q2_kKernel, q3_kKernel, q4_kKernel, q5_kKernel, q6_kKernel, q5_0Kernel, q5_1Kernel, iq4_nlKernel, iq4_xsKernel].map((k) => [k.name, k]),
);
