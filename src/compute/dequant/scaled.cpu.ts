import type { StorageType } from '../../format/storage';
import { patternTable, type PatternDType } from '../decode/patterns';
import { num, partFloats, partInts, str } from './partValues';

type Scheme = Exclude<StorageType, { kind: 'dtype' }>;

/**
 * Values stored as FP8 (E4M3, E5M2) or int8, times a scale per tensor, row, group or
 * 2-D block, minus an optional zero point: value = (q − zero) × scale, in float32.
 * Covers DeepSeek/Qwen `weight_scale_inv` (its 128×128 blocks: the stored number is what
 * multiplies), compressed-tensors `float-quantized` and `naive-quantized` (`weight_scale`).
 * Parts: data [rows × cols], scale [scaleRows × scaleCols] (one value: per tensor), zero (same grid).
 * A chunk starts on a unit of `blockRows` rows, so local rows index local scale rows.
 */
export function scaledCpu(parts: readonly Uint8Array[], out: Float32Array, s: Scheme): void {
  const p = s.kind === 'scheme' ? s.params : undefined;
  const cols = num(p, 'cols');
  const bh = num(p, 'blockRows');
  const bw = num(p, 'blockCols');
  const scaleCols = num(p, 'scaleCols');
  const dataType = str(p, 'data');
  const scale = partFloats(parts[1], str(p, 'scaleDtype'));
  const zero = parts.length > 2 ? partInts(parts[2], str(p, 'zeroDtype')) : undefined;
  const data = parts[0];
  const q = dataType === 'I8' ? undefined : patternTable(dataType as PatternDType);
  const whole = scale.length === 1;
  const rows = out.length / cols;
  for (let r = 0; r < rows; r++) {
    const srow = whole ? 0 : Math.floor(r / bh) * scaleCols;
    const base = r * cols;
    // Column by column block: one scale (and zero) per run, no division per value.
    for (let c0 = 0; c0 < cols; c0 += whole ? cols : bw) {
      const c1 = whole ? cols : Math.min(cols, c0 + bw);
      const k = whole ? 0 : srow + c0 / bw;
      const sc = scale[k];
      if (zero) {
        const z = zero[k];
        for (let c = c0; c < c1; c++) {
          const byte = data[base + c];
          out[base + c] = ((q ? q[byte] : (byte << 24) >> 24) - z) * sc;
        }
      } else if (q) {
        for (let c = c0; c < c1; c++) out[base + c] = q[data[base + c]] * sc;
      } else {
        for (let c = c0; c < c1; c++) out[base + c] = ((data[base + c] << 24) >> 24) * sc;
      }
    }
  }
}
