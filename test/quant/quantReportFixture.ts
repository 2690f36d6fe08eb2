import type { QuantReport } from '../../src/pipelines/quantize';

/** A small finished report: one quantized tensor, one kept with its reason. */
export function sampleReport(over: Partial<QuantReport> = {}): QuantReport {
  return {
    input: '/models/llama/model.safetensors',
    outputs: ['/models/llama-q8_0/model.safetensors'],
    scheme: 'q8_0',
    format: 'safetensors',
    backend: 'cpu',
    seconds: 1.25,
    missing: [],
    totals: { bytesBefore: 3 * 2 ** 20, bytesAfter: 1.6 * 2 ** 20, params: 1 << 20, quantizedParams: 1 << 20, bitsPerWeight: 8.53, quantizedBitsPerWeight: 8.5, rmse: 0.00123, maxAbsErr: 0.0071, snrDb: 41.27, cosine: 0.999961 },
    tensors: [
      { name: 'model.layers.0.self_attn.q_proj.weight', dtype: 'BF16', shape: [64, 128], action: 'quantized', scheme: 'q8_0', bytesBefore: 16384, bytesAfter: 8704, rmse: 0.0012, maxAbsErr: 0.0069, snrDb: 41.3, cosine: 0.99996 },
      { name: 'model.norm.weight', dtype: 'BF16', shape: [128], action: 'kept', reason: 'norm or bias', bytesBefore: 256, bytesAfter: 256 },
    ],
    ...over,
  };
}
