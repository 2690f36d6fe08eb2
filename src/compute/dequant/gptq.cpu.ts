import type { StorageType } from '../../format/storage';
import { num, partFloats, partInt32, partInts, str } from './partValues';

type Scheme = Exclude<StorageType, { kind: 'dtype' }>;

/** Where AWQ puts column 8k + c of a packed word: its pack order 0 2 4 6 1 3 5 7, inverted. */
const AWQ_NIBBLE = [0, 4, 1, 5, 2, 6, 3, 7];

/**
 * GPTQ and AWQ linear weights, stored transposed ([in, out]) and decoded to the weight they
 * stand for, [out, in] row-major. With `per` = 32 / bits values per int32 word:
 *  - GPTQ: `qweight` [in/per, out] packs input rows, `qzeros` [groups, out/per] packs output
 *    columns, `scales` [groups, out], `g_idx` [in] the group of each input row; the stored
 *    zero is one less than the real one in the original format (`zeroOffset` 1), not in v2.
 *  - AWQ: `qweight` [in, out/8] and `qzeros` [groups, out/8] pack output columns in the
 *    order 0 2 4 6 1 3 5 7; group = input row ÷ group size.
 * value = (q − zero) × scale. The whole tensor is one unit: its layout is transposed.
 */
export function gptqCpu(parts: readonly Uint8Array[], out: Float32Array, s: Scheme): void {
  const p = s.kind === 'scheme' ? s.params : undefined;
  const awq = str(p, 'order') === 'awq';
  const bits = num(p, 'bits');
  const rows = num(p, 'rows');
  const cols = num(p, 'cols');
  const groupSize = num(p, 'groupSize');
  const zeroOffset = num(p, 'zeroOffset');
  const per = 32 / bits;
  const mask = (1 << bits) - 1;
  const qweight = partInt32(parts[0]);
  const qzeros = partInt32(parts[1]);
  const scales = partFloats(parts[2], str(p, 'scaleDtype'));
  const gIdx = parts.length > 3 ? partInts(parts[3], str(p, 'gIdxDtype')) : undefined;
  const zWords = Math.ceil(rows / per);
  for (let i = 0; i < cols; i++) {
    const g = gIdx ? gIdx[i] : Math.floor(i / groupSize);
    for (let o = 0; o < rows; o++) {
      let q: number;
      let z: number;
      if (awq) {
        const sh = AWQ_NIBBLE[o % 8] * 4;
        q = (qweight[i * zWords + (o >> 3)] >>> sh) & 15;
        z = (qzeros[g * zWords + (o >> 3)] >>> sh) & 15;
      } else {
        q = (qweight[Math.floor(i / per) * rows + o] >>> ((i % per) * bits)) & mask;
        z = (((qzeros[g * zWords + Math.floor(o / per)] >>> ((o % per) * bits)) & mask) + zeroOffset) & mask;
      }
      out[o * cols + i] = (q - z) * scales[g * rows + o];
    }
  }
}
