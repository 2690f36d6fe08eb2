import type { StorageType } from '../../format/storage';
import { E2M1 } from './partValues';

type Scheme = Exclude<StorageType, { kind: 'dtype' }>;

/**
 * MXFP4 (OCP Microscaling, as gpt-oss stores its experts): 32 E2M1 values in 16 bytes, the
 * element 2j in the low nibble of byte j and 2j+1 in the high one, times one E8M0 scale
 * byte per 32 values: 2^(byte − 127), and NaN for 0xFF as the MX spec says.
 * Parts: blocks (16 bytes per 32 values), scales (1 byte per 32 values).
 * With `rows` set, each unit is one expert's [rows, G, 16] blocks, decoded transposed to
 * [G × 32, rows] as Transformers lays out gpt-oss's expert weights; else stored order.
 */
export function mxfp4Cpu(parts: readonly Uint8Array[], out: Float32Array, s: Scheme): void {
  const [blocks, scales] = parts;
  const rows = s.kind === 'scheme' && typeof s.params?.rows === 'number' ? s.params.rows : 0;
  const blockCount = out.length / 32;
  // Stored order: value v of block u goes to 32u + v. Transposed: block u = (expert e, row r, group g).
  const groups = rows > 0 ? (s.kind === 'scheme' && typeof s.params?.groups === 'number' ? s.params.groups : 0) : 0;
  for (let u = 0; u < blockCount; u++) {
    const e = scales[u];
    const m = e === 0xff ? NaN : 2 ** (e - 127);
    const at = u * 16;
    let o: number;
    let step: number;
    if (rows > 0) {
      const ex = Math.floor(u / (rows * groups));
      const r = Math.floor(u / groups) % rows;
      const g = u % groups;
      o = ex * rows * groups * 32 + g * 32 * rows + r;
      step = rows;
    } else {
      o = u * 32;
      step = 1;
    }
    for (let j = 0; j < 16; j++) {
      const b = blocks[at + j];
      out[o + 2 * j * step] = E2M1[b & 15] * m;
      out[o + (2 * j + 1) * step] = E2M1[b >> 4] * m;
    }
  }
}
