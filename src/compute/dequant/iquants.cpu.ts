import { F16_TO_F32, f16At } from './half';
import { IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS_IQ2XS, KVALUES_IQ4NL } from './iqGrids';

/**
 * The IQ ("importance") super-block types, decoded as ggml's `dequantize_row_iq*` do: each
 * group of 8 (or 4) values is a row of a fixed grid, chosen by an index, with signs and a
 * scale. Same float32 conventions as legacy.cpu.ts. Sign flips are exact, so `-x` stands for
 * ggml's `x * -1.f`.
 */

const f = Math.fround;
const IQ1S_SIGNED = new Int8Array(IQ1S_GRID.buffer, IQ1S_GRID.byteOffset, IQ1S_GRID.length);
/** IQ1S_DELTA in ggml-common.h. */
const IQ1_DELTA = 0.125;

/** Writes 8 grid bytes × dl, negating where `signs` has a bit. */
function put8(out: Float32Array, o: number, grid: Uint8Array, g: number, dl: number, signs: number): void {
  for (let j = 0; j < 8; j++) {
    const v = f(dl * grid[g + j]);
    out[o + j] = signs & (1 << j) ? -v : v;
  }
}

export function iq2_xxs(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 66) {
    const d = f16At(src, p);
    for (let ib = 0; ib < 8; ib++) {
      const q = p + 2 + 8 * ib;
      const aux = (src[q + 4] | (src[q + 5] << 8) | (src[q + 6] << 16) | (src[q + 7] << 24)) >>> 0;
      const db = f(f(d * (0.5 + (aux >>> 28))) * 0.25);
      for (let l = 0; l < 4; l++, o += 8) put8(out, o, IQ2XXS_GRID, src[q + l] * 8, db, KSIGNS_IQ2XS[(aux >>> (7 * l)) & 127]);
    }
  }
}

export function iq2_xs(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 74) {
    const d = f16At(src, p);
    for (let ib = 0; ib < 8; ib++) {
      const sc = src[p + 66 + ib];
      const db0 = f(f(d * (0.5 + (sc & 15))) * 0.25);
      const db1 = f(f(d * (0.5 + (sc >> 4))) * 0.25);
      for (let l = 0; l < 4; l++, o += 8) {
        const q = src[p + 2 + 8 * ib + 2 * l] | (src[p + 3 + 8 * ib + 2 * l] << 8);
        put8(out, o, IQ2XS_GRID, (q & 511) * 8, l < 2 ? db0 : db1, KSIGNS_IQ2XS[q >> 9]);
      }
    }
  }
}

export function iq2_s(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 82) {
    const d = f16At(src, p);
    for (let ib = 0; ib < 8; ib++) {
      const sc = src[p + 74 + ib];
      const qh = src[p + 66 + ib];
      const db0 = f(f(d * (0.5 + (sc & 15))) * 0.25);
      const db1 = f(f(d * (0.5 + (sc >> 4))) * 0.25);
      for (let l = 0; l < 4; l++, o += 8) {
        const idx = src[p + 2 + 4 * ib + l] | ((qh << (8 - 2 * l)) & 0x300);
        put8(out, o, IQ2S_GRID, idx * 8, l < 2 ? db0 : db1, src[p + 34 + 4 * ib + l]);
      }
    }
  }
}

/** Writes two 4-byte grid rows × db (the first takes sign bits 0–3, the second 4–7). */
function put4x2(out: Float32Array, o: number, g1: number, g2: number, db: number, signs: number, grid: Uint8Array): void {
  for (let j = 0; j < 4; j++) {
    const a = f(db * grid[g1 + j]);
    const b = f(db * grid[g2 + j]);
    out[o + j] = signs & (1 << j) ? -a : a;
    out[o + j + 4] = signs & (16 << j) ? -b : b;
  }
}

export function iq3_xxs(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 98) {
    const d = f16At(src, p);
    for (let ib = 0; ib < 8; ib++) {
      const s = p + 66 + 4 * ib;
      const aux = (src[s] | (src[s + 1] << 8) | (src[s + 2] << 16) | (src[s + 3] << 24)) >>> 0;
      const db = f(f(d * (0.5 + (aux >>> 28))) * 0.5);
      const qs = p + 2 + 8 * ib;
      for (let l = 0; l < 4; l++, o += 8) {
        put4x2(out, o, src[qs + 2 * l] * 4, src[qs + 2 * l + 1] * 4, db, KSIGNS_IQ2XS[(aux >>> (7 * l)) & 127], IQ3XXS_GRID);
      }
    }
  }
}

export function iq3_s(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 110) {
    const d = f16At(src, p);
    for (let ib = 0; ib < 8; ib++) {
      const sc = src[p + 106 + (ib >> 1)];
      const db = f(d * (1 + 2 * (ib & 1 ? sc >> 4 : sc & 15)));
      const qh = src[p + 66 + ib];
      const qs = p + 2 + 8 * ib;
      for (let l = 0; l < 4; l++, o += 8) {
        const g1 = src[qs + 2 * l] | ((qh << (8 - 2 * l)) & 256);
        const g2 = src[qs + 2 * l + 1] | ((qh << (7 - 2 * l)) & 256);
        put4x2(out, o, g1 * 4, g2 * 4, db, src[p + 74 + 4 * ib + l], IQ3S_GRID);
      }
    }
  }
}

/** Writes 8 signed grid values, each plus delta, × dl. */
function put1(out: Float32Array, o: number, idx: number, dl: number, delta: number): void {
  for (let j = 0; j < 8; j++) out[o + j] = dl * (IQ1S_SIGNED[idx * 8 + j] + delta);
}

export function iq1_s(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 50) {
    const d = f16At(src, p);
    for (let ib = 0; ib < 8; ib++) {
      const qh = src[p + 34 + 2 * ib] | (src[p + 35 + 2 * ib] << 8);
      const dl = f(d * (2 * ((qh >> 12) & 7) + 1));
      const delta = qh & 0x8000 ? -IQ1_DELTA : IQ1_DELTA;
      for (let l = 0; l < 4; l++, o += 8) put1(out, o, src[p + 2 + 4 * ib + l] | (((qh >> (3 * l)) & 7) << 8), dl, delta);
    }
  }
}

export function iq1_m(src: Uint8Array, out: Float32Array, nb: number): void {
  const sc = new Uint16Array(4);
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 56) {
    for (let k = 0; k < 4; k++) sc[k] = src[p + 48 + 2 * k] | (src[p + 49 + 2 * k] << 8);
    // The block's f16 scale is spread over the top nibbles of the four scale words.
    const d = F16_TO_F32[(sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000)];
    for (let ib = 0; ib < 8; ib++) {
      const s = sc[ib >> 1] >> (6 * (ib & 1));
      const dl1 = f(d * (2 * (s & 7) + 1));
      const dl2 = f(d * (2 * ((s >> 3) & 7) + 1));
      const qs = p + 4 * ib;
      const qh0 = src[p + 32 + 2 * ib];
      const qh1 = src[p + 33 + 2 * ib];
      put1(out, o, src[qs] | ((qh0 << 8) & 0x700), dl1, qh0 & 0x08 ? -IQ1_DELTA : IQ1_DELTA);
      put1(out, o + 8, src[qs + 1] | ((qh0 << 4) & 0x700), dl1, qh0 & 0x80 ? -IQ1_DELTA : IQ1_DELTA);
      put1(out, o + 16, src[qs + 2] | ((qh1 << 8) & 0x700), dl2, qh1 & 0x08 ? -IQ1_DELTA : IQ1_DELTA);
      put1(out, o + 24, src[qs + 3] | ((qh1 << 4) & 0x700), dl2, qh1 & 0x80 ? -IQ1_DELTA : IQ1_DELTA);
      o += 32;
    }
  }
}

export function iq4_xs(src: Uint8Array, out: Float32Array, nb: number): void {
  for (let i = 0, p = 0, o = 0; i < nb; i++, p += 136) {
    const d = f16At(src, p);
    const scalesH = src[p + 2] | (src[p + 3] << 8);
    for (let ib = 0; ib < 8; ib++, o += 32) {
      const ls = ((src[p + 4 + (ib >> 1)] >> (4 * (ib & 1))) & 15) | (((scalesH >> (2 * ib)) & 3) << 4);
      const dl = f(d * (ls - 32));
      const qs = p + 8 + 16 * ib;
      for (let j = 0; j < 16; j++) {
        out[o + j] = dl * KVALUES_IQ4NL[src[qs + j] & 15];
        out[o + j + 16] = dl * KVALUES_IQ4NL[src[qs + j] >> 4];
      }
    }
  }
}
