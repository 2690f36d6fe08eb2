/**
 * The small-float decodings the block types share. Every one is exact (no rounding), so a
 * lookup table or a bit pattern gives the same float32 as ggml's arithmetic.
 */
import { f16Table } from '../decode/f16';

/** float16 → float32 for all 65,536 patterns: the CPU twins' one table (compute/decode/f16.ts). */
export const F16_TO_F32: Float32Array = f16Table();

/** Reads the little-endian float16 at `p` as a float32 value. */
export function f16At(src: Uint8Array, p: number): number {
  return F16_TO_F32[src[p] | (src[p + 1] << 8)];
}

const e8m0Bits = new Uint32Array(1);
const e8m0Float = new Float32Array(e8m0Bits.buffer);

/**
 * MXFP4's E8M0 block exponent, halved (2^(x-128)) because ggml's FP4 values are stored doubled.
 * 0 and 1 give the float32 subnormals 2^-128 and 2^-127; 255 is finite (2^127), as in ggml.
 */
export function e8m0Half(x: number): number {
  e8m0Bits[0] = x < 2 ? 0x00200000 << x : (x - 1) << 23;
  return e8m0Float[0];
}

/** NVFP4's unsigned E4M3 sub-block scale, halved like `e8m0Half`; 0 and 0x7f decode to 0. */
export function ue4m3Half(x: number): number {
  if (x === 0 || x === 0x7f) return 0;
  const exp = (x >> 3) & 15;
  const man = x & 7;
  const raw = exp === 0 ? man * 2 ** -9 : (1 + man / 8) * 2 ** (exp - 7);
  return Math.fround(raw * 0.5);
}
