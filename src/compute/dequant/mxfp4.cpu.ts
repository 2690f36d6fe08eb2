import { E2M1 } from './partValues';

/**
 * MXFP4 (OCP Microscaling, as gpt-oss stores its experts): 32 E2M1 values in 16 bytes, the
 * element 2j in the low nibble of byte j and 2j+1 in the high one, times one E8M0 scale
 * byte per 32 values: 2^(byte − 127), and NaN for 0xFF as the MX spec says.
 * Parts: blocks (16 bytes per unit), scales (1 byte per unit).
 */
export function mxfp4Cpu(parts: readonly Uint8Array[], out: Float32Array): void {
  const [blocks, scales] = parts;
  const units = out.length / 32;
  for (let u = 0; u < units; u++) {
    const e = scales[u];
    const m = e === 0xff ? NaN : 2 ** (e - 127);
    const at = u * 16;
    const o = u * 32;
    for (let j = 0; j < 16; j++) {
      const b = blocks[at + j];
      out[o + 2 * j] = E2M1[b & 15] * m;
      out[o + 2 * j + 1] = E2M1[b >> 4] * m;
    }
  }
}
