import type { StorageType } from '../../format/storage';
import { num, partFloats, partInt32, str } from './partValues';

type Scheme = Exclude<StorageType, { kind: 'dtype' }>;

/**
 * compressed-tensors `pack-quantized`: signed `bits`-bit integers stored offset by
 * 2^(bits−1) and packed little end first into int32 words along each row (`weight_packed`);
 * a scale per row or per `groupSize` columns (`weight_scale`); for asymmetric schemes a zero
 * point per scale, packed the same way along the rows (`weight_zero_point`, ⌈rows / per⌉ × groups).
 * value = (q − zero) × scale. A chunk starts on a unit of `per` rows (or one row when symmetric).
 */
export function packedCpu(parts: readonly Uint8Array[], out: Float32Array, s: Scheme): void {
  const p = s.kind === 'scheme' ? s.params : undefined;
  const bits = num(p, 'bits');
  const cols = num(p, 'cols');
  const groupSize = num(p, 'groupSize');
  const per = 32 / bits;
  const mask = (1 << bits) - 1;
  const offset = 1 << (bits - 1);
  const words = Math.ceil(cols / per);
  const groups = Math.ceil(cols / groupSize);
  const packed = partInt32(parts[0]);
  const scale = partFloats(parts[1], str(p, 'scaleDtype'));
  const zeros = parts.length > 2 ? partInt32(parts[2]) : undefined;
  const rows = out.length / cols;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const q = ((packed[r * words + Math.floor(c / per)] >>> ((c % per) * bits)) & mask) - offset;
      const g = Math.floor(c / groupSize);
      const k = r * groups + g;
      let z = 0;
      if (zeros) z = ((zeros[Math.floor(r / per) * groups + g] >>> ((r % per) * bits)) & mask) - offset;
      out[r * cols + c] = (q - z) * scale[k];
    }
  }
}
