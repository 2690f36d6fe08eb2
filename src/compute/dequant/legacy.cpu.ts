import { e8m0Half, f16At, ue4m3Half } from './half';
import { KVALUES_FP4, KVALUES_IQ4NL } from './iqGrids';

/**
 * The 32-element block types (and Q1_0, Q2_0, NVFP4), decoded as ggml's `dequantize_row_*` do.
 * Each function takes `nb` whole blocks from `src` (at byte 0) and writes `nb × block size`
 * floats to `out` (at 0). float32 semantics: a product of two float32 values followed by
 * another operation is rounded with Math.fround first; a single operation is rounded by the
 * Float32Array store. Both give the correctly rounded float32 result ggml computes.
 */

const f = Math.fround;

export function q4_0(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 18, o += 32) {
    const d = f16At(src, p);
    for (let j = 0; j < 16; j++) {
      const q = src[p + 2 + j];
      out[o + j] = ((q & 15) - 8) * d;
      out[o + j + 16] = ((q >> 4) - 8) * d;
    }
  }
}

export function q4_1(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 20, o += 32) {
    const d = f16At(src, p);
    const m = f16At(src, p + 2);
    for (let j = 0; j < 16; j++) {
      const q = src[p + 4 + j];
      out[o + j] = f((q & 15) * d) + m;
      out[o + j + 16] = f((q >> 4) * d) + m;
    }
  }
}

function u32At(src: Uint8Array, p: number): number {
  return (src[p] | (src[p + 1] << 8) | (src[p + 2] << 16) | (src[p + 3] << 24)) >>> 0;
}

export function q5_0(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 22, o += 32) {
    const d = f16At(src, p);
    const qh = u32At(src, p + 2);
    for (let j = 0; j < 16; j++) {
      const q = src[p + 6 + j];
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      out[o + j] = (((q & 15) | h0) - 16) * d;
      out[o + j + 16] = (((q >> 4) | h1) - 16) * d;
    }
  }
}

export function q5_1(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 24, o += 32) {
    const d = f16At(src, p);
    const m = f16At(src, p + 2);
    const qh = u32At(src, p + 4);
    for (let j = 0; j < 16; j++) {
      const q = src[p + 8 + j];
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      out[o + j] = f(((q & 15) | h0) * d) + m;
      out[o + j + 16] = f(((q >> 4) | h1) * d) + m;
    }
  }
}

/** Q8_0 and Q8_1 share the quants; Q8_1's second half (s = d × Σq) only serves dot products. */
function q8(src: Uint8Array, out: Float32Array, nb: number, size: number, qs: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += size, o += 32) {
    const d = f16At(src, p);
    for (let j = 0; j < 32; j++) out[o + j] = ((src[p + qs + j] << 24) >> 24) * d;
  }
}

export function q8_0(src: Uint8Array, out: Float32Array, nb: number): void {
  q8(src, out, nb, 34, 2);
}

export function q8_1(src: Uint8Array, out: Float32Array, nb: number): void {
  q8(src, out, nb, 36, 4);
}

export function mxfp4(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 17, o += 32) {
    const d = e8m0Half(src[p]);
    for (let j = 0; j < 16; j++) {
      const q = src[p + 1 + j];
      out[o + j] = KVALUES_FP4[q & 15] * d;
      out[o + j + 16] = KVALUES_FP4[q >> 4] * d;
    }
  }
}

export function nvfp4(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 36, o += 64) {
    for (let s = 0; s < 4; s++) {
      const d = ue4m3Half(src[p + s]);
      const qs = p + 4 + s * 8;
      const y = o + s * 16;
      for (let j = 0; j < 8; j++) {
        const q = src[qs + j];
        out[y + j] = KVALUES_FP4[q & 15] * d;
        out[y + j + 8] = KVALUES_FP4[q >> 4] * d;
      }
    }
  }
}

export function q1_0(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 18, o += 128) {
    const d = f16At(src, p);
    for (let j = 0; j < 128; j++) out[o + j] = (src[p + 2 + (j >> 3)] >> (j & 7)) & 1 ? d : -d;
  }
}

export function q2_0(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 18, o += 64) {
    const d = f16At(src, p);
    for (let j = 0; j < 64; j++) out[o + j] = (((src[p + 2 + (j >> 2)] >> (2 * (j & 3))) & 3) - 1) * d;
  }
}

export function iq4_nl(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 18, o += 32) {
    const d = f16At(src, p);
    for (let j = 0; j < 16; j++) {
      const q = src[p + 2 + j];
      out[o + j] = d * KVALUES_IQ4NL[q & 15];
      out[o + j + 16] = d * KVALUES_IQ4NL[q >> 4];
    }
  }
}
