import { f16At } from './half';

/**
 * The 256-element super-block types (K-quants and the ternary TQ types), decoded as ggml's
 * `dequantize_row_*` do; same conventions as legacy.cpu.ts (Math.fround on every float32
 * intermediate, the Float32Array store rounds the last operation).
 */

const f = Math.fround;

export function q2_K(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 84) {
    const d = f16At(src, p + 80);
    const min = f16At(src, p + 82);
    let is = 0;
    for (let n = 0; n < 2; n++) {
      const q = p + 16 + n * 32;
      for (let shift = 0; shift < 8; shift += 2) {
        for (let half = 0; half < 32; half += 16) {
          const sc = src[p + is++];
          const dl = f(d * (sc & 15));
          const ml = f(min * (sc >> 4));
          for (let l = 0; l < 16; l++) out[o++] = f(dl * ((src[q + half + l] >> shift) & 3)) - ml;
        }
      }
    }
  }
}

/** Q3_K's sixteen 6-bit scales, unpacked from 12 bytes the way ggml's kmask shuffle does. */
export function q3kScales(src: Uint8Array, p: number, scales: Int32Array): void {
  for (let j = 0; j < 16; j++) {
    const low = j < 8 ? src[p + j] & 15 : src[p + j - 8] >> 4;
    const high = (src[p + 8 + (j & 3)] >> (2 * (j >> 2))) & 3;
    scales[j] = (low | (high << 4)) - 32;
  }
}

export function q3_K(src: Uint8Array, out: Float32Array, nb: number): void {
  const scales = new Int32Array(16);
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 110) {
    const dAll = f16At(src, p + 108);
    q3kScales(src, p + 96, scales);
    let is = 0;
    let m = 1;
    for (let n = 0; n < 2; n++) {
      const q = p + 32 + n * 32;
      for (let shift = 0; shift < 8; shift += 2, m <<= 1) {
        for (let half = 0; half < 32; half += 16) {
          const dl = f(dAll * scales[is++]);
          for (let l = 0; l < 16; l++) {
            const hm = src[p + half + l] & m ? 0 : 4;
            out[o++] = dl * (((src[q + half + l] >> shift) & 3) - hm);
          }
        }
      }
    }
  }
}

/** Q4_K/Q5_K's 6-bit scale and min of sub-block j, from the 12 packed bytes at `p`. */
export function scaleK4(src: Uint8Array, p: number, j: number): number {
  return j < 4 ? src[p + j] & 63 : (src[p + j + 4] & 15) | ((src[p + j - 4] >> 6) << 4);
}
export function minK4(src: Uint8Array, p: number, j: number): number {
  return j < 4 ? src[p + j + 4] & 63 : (src[p + j + 4] >> 4) | ((src[p + j] >> 6) << 4);
}
/** Sub-block j's f32 scale (d times its 6 bits) and minimum (min times its 6 bits) in the Q4_K/Q5_K block at p. */
function subScaleK4(src: Uint8Array, p: number, j: number, d: number): number {
  return f(d * scaleK4(src, p + 4, j));
}
function subMinK4(src: Uint8Array, p: number, j: number, min: number): number {
  return f(min * minK4(src, p + 4, j));
}

export function q4_K(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 144) {
    const d = f16At(src, p);
    const min = f16At(src, p + 2);
    for (let j = 0, q = p + 16; j < 8; j += 2, q += 32) {
      const d1 = subScaleK4(src, p, j, d), m1 = subMinK4(src, p, j, min);
      const d2 = subScaleK4(src, p, j + 1, d), m2 = subMinK4(src, p, j + 1, min);
      for (let l = 0; l < 32; l++) {
        const b = src[q + l];
        out[o + l] = f(d1 * (b & 15)) - m1;
        out[o + l + 32] = f(d2 * (b >> 4)) - m2;
      }
      o += 64;
    }
  }
}

export function q5_K(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 176) {
    const d = f16At(src, p);
    const min = f16At(src, p + 2);
    for (let j = 0, q = p + 48, u1 = 1, u2 = 2; j < 8; j += 2, q += 32, u1 <<= 2, u2 <<= 2) {
      const d1 = subScaleK4(src, p, j, d), m1 = subMinK4(src, p, j, min);
      const d2 = subScaleK4(src, p, j + 1, d), m2 = subMinK4(src, p, j + 1, min);
      for (let l = 0; l < 32; l++) {
        const b = src[q + l];
        const h = src[p + 16 + l];
        out[o + l] = f(d1 * ((b & 15) + (h & u1 ? 16 : 0))) - m1;
        out[o + l + 32] = f(d2 * ((b >> 4) + (h & u2 ? 16 : 0))) - m2;
      }
      o += 64;
    }
  }
}

export function q6_K(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 210) {
    const d = f16At(src, p + 208);
    for (let n = 0; n < 2; n++) {
      const ql = p + n * 64;
      const qh = p + 128 + n * 32;
      const sc = p + 192 + n * 8;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = src[qh + l];
        const q1 = ((src[ql + l] & 15) | ((h & 3) << 4)) - 32;
        const q2 = ((src[ql + l + 32] & 15) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((src[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((src[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
        out[o + l] = f(d * ((src[sc + is] << 24) >> 24)) * q1;
        out[o + l + 32] = f(d * ((src[sc + is + 2] << 24) >> 24)) * q2;
        out[o + l + 64] = f(d * ((src[sc + is + 4] << 24) >> 24)) * q3;
        out[o + l + 96] = f(d * ((src[sc + is + 6] << 24) >> 24)) * q4;
      }
      o += 128;
    }
  }
}

export function q8_K(src: Uint8Array, out: Float32Array, nb: number): void {
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 292) {
    const d = view.getFloat32(p, true);
    for (let j = 0; j < 256; j++) out[o++] = d * ((src[p + 4 + j] << 24) >> 24);
  }
}

/** One base-3 digit: ggml keeps trits as fixed-point fractions of 256 (q × 3^n, times 3, top byte). */
function trit(byte: number, pow3: number): number {
  return (((byte * pow3) & 255) * 3) >> 8;
}
const POW3 = [1, 3, 9, 27, 81, 243];

export function tq1_0(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 54) {
    const d = f16At(src, p + 52);
    // 48 quintet bytes: one run of 32 bytes, then one of 16; each byte holds 5 trits.
    for (const [start, len] of [[0, 32], [32, 16]]) {
      for (let n = 0; n < 5; n++) {
        for (let m = 0; m < len; m++) out[o++] = (trit(src[p + start + m], POW3[n]) - 1) * d;
      }
    }
    // 4 quartet bytes, 4 trits each.
    for (let n = 0; n < 4; n++) {
      for (let j = 0; j < 4; j++) out[o++] = (trit(src[p + 48 + j], POW3[n]) - 1) * d;
    }
  }
}

export function tq2_0(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 66) {
    const d = f16At(src, p + 64);
    for (let j = 0; j < 64; j += 32) {
      for (let l = 0; l < 8; l += 2) {
        for (let m = 0; m < 32; m++) out[o++] = (((src[p + j + m] >> l) & 3) - 1) * d;
      }
    }
  }
}
