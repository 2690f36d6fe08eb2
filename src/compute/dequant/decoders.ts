import type { StorageDecoder } from '../decode/blocks';
import { gptqCpu } from './gptq.cpu';
import { mxfp4Cpu } from './mxfp4.cpu';
import { nvfp4Cpu } from './nvfp4.cpu';
import { packedCpu } from './packed.cpu';
import { scaledCpu } from './scaled.cpu';

/**
 * The decoders of the quantized safetensors schemes (src/format/quantized), by scheme name.
 * CPU only: dequantizing is a table lookup and a multiply per value, bound by reading.
 */
export const QUANT_DECODERS: Readonly<Record<string, StorageDecoder>> = {
  'fp8-tensor': { cpu: scaledCpu },
  'fp8-channel': { cpu: scaledCpu },
  'fp8-group': { cpu: scaledCpu },
  'fp8-block': { cpu: scaledCpu },
  'int8-scaled': { cpu: scaledCpu },
  mxfp4: { cpu: mxfp4Cpu },
  nvfp4: { cpu: nvfp4Cpu },
  'int-packed': { cpu: packedCpu },
  gptq: { cpu: gptqCpu },
  awq: { cpu: gptqCpu },
};
