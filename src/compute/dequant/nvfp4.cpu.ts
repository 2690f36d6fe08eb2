import type { StorageType } from '../../format/storage';
import { patternTable } from '../decode/patterns';
import { E2M1, num, partFloats, str } from './partValues';

type Scheme = Exclude<StorageType, { kind: 'dtype' }>;

/**
 * NVFP4: E2M1 values packed two a byte (low nibble first), an FP8 E4M3 scale per 16
 * values and one float32 global scale, in the two conventions found on the Hub:
 *  - compressed-tensors `nvfp4-pack-quantized` stores the global scale as its reciprocal
 *    (`weight_global_scale`): value = e2m1 × (scale ÷ global);
 *  - NVIDIA ModelOpt stores it as is (`weight_scale_2`): value = e2m1 × (scale × scale_2).
 * The block scale is rounded to float32 before it multiplies, as both libraries do.
 * Parts: packed [rows × cols/2], scale [rows × cols/16] E4M3, global [1].
 */
export function nvfp4Cpu(parts: readonly Uint8Array[], out: Float32Array, s: Scheme): void {
  const p = s.kind === 'scheme' ? s.params : undefined;
  const reciprocal = str(p, 'global') === 'reciprocal';
  const groupSize = num(p, 'groupSize');
  const [packed, scales] = parts;
  const g = partFloats(parts[2], str(p, 'globalDtype'))[0];
  const e4m3 = patternTable('F8_E4M3');
  const block = new Float32Array(1);
  const groups = out.length / groupSize;
  for (let k = 0; k < groups; k++) {
    block[0] = reciprocal ? e4m3[scales[k]] / g : e4m3[scales[k]] * g;
    const m = block[0];
    const o = k * groupSize;
    for (let j = 0; j < groupSize; j += 2) {
      const b = packed[(o + j) >> 1];
      out[o + j] = E2M1[b & 15] * m;
      out[o + j + 1] = E2M1[b >> 4] * m;
    }
  }
}
