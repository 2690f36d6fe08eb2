import { F16_TO_F32, f16At, ue4m3Half } from '../dequant/half';
import { minK4, q3kScales, scaleK4 } from '../dequant/kquants.cpu';

/**
 * Where each ggml block type keeps its scales, as ggml-common.h lays the blocks out: the
 * block's `d` (and `m` / `dmin` where the type has one), and for the K-quants and IQ4_XS the
 * effective scale of each sub-block (d × its 6-, 4- or 8-bit scale), which is what multiplies
 * the quants. Values are float32, computed as ggml's dequantizers compute them.
 */

/** Which stored code marks a scale at its limit: E8M0's exponents 0 and 254/255, E4M3's largest finite 448. */
export type Saturation = 'e8m0' | 'e4m3';

export interface SeriesSpec {
  readonly name: string;
  /** `scale`: a multiplier (log₂ histogram); `zero`: an integer zero point (linear histogram). */
  readonly kind: 'scale' | 'zero';
  readonly saturation?: Saturation;
}

/** Receives one value of series `k`; `raw` is its stored code when the series has a saturation rule. */
export type Emit = (k: number, v: number, raw?: number) => void;

export interface BlockScaleLayout {
  readonly series: readonly SeriesSpec[];
  /** Emits every scale of the block starting at byte `p`. */
  each(src: Uint8Array, p: number, emit: Emit): void;
}

const f = Math.fround;
const D: SeriesSpec = { name: 'd', kind: 'scale' };
const DMIN: SeriesSpec = { name: 'dmin', kind: 'scale' };
const SUB: SeriesSpec = { name: 'd×sc (sub-block)', kind: 'scale' };
const SUB_MIN: SeriesSpec = { name: 'dmin×m (sub-block)', kind: 'scale' };

/** A type whose only scale is an f16 `d` at byte `at` of the block. */
function dAt(at: number): BlockScaleLayout {
  return { series: [D], each: (src, p, emit) => emit(0, f16At(src, p + at)) };
}

/** Q4_1 / Q5_1: f16 d, then f16 m (the block's minimum, added to every value). */
const D_AND_M: BlockScaleLayout = {
  series: [D, { name: 'm', kind: 'scale' }],
  each: (src, p, emit) => {
    emit(0, f16At(src, p));
    emit(1, f16At(src, p + 2));
  },
};

const Q2_K: BlockScaleLayout = {
  series: [D, DMIN, SUB, SUB_MIN],
  each: (src, p, emit) => {
    const d = f16At(src, p + 80);
    const dmin = f16At(src, p + 82);
    emit(0, d);
    emit(1, dmin);
    for (let j = 0; j < 16; j++) {
      const sc = src[p + j];
      emit(2, f(d * (sc & 15)));
      emit(3, f(dmin * (sc >> 4)));
    }
  },
};

const Q3_SCALES = new Int32Array(16);
const Q3_K: BlockScaleLayout = {
  series: [D, SUB],
  each: (src, p, emit) => {
    const d = f16At(src, p + 108);
    emit(0, d);
    q3kScales(src, p + 96, Q3_SCALES);
    for (let j = 0; j < 16; j++) emit(1, f(d * Q3_SCALES[j]));
  },
};

/** Q4_K and Q5_K: f16 d, f16 dmin, then twelve bytes of 6-bit scales and mins for 8 sub-blocks. */
const Q45_K: BlockScaleLayout = {
  series: [D, DMIN, SUB, SUB_MIN],
  each: (src, p, emit) => {
    const d = f16At(src, p);
    const dmin = f16At(src, p + 2);
    emit(0, d);
    emit(1, dmin);
    for (let j = 0; j < 8; j++) {
      emit(2, f(d * scaleK4(src, p + 4, j)));
      emit(3, f(dmin * minK4(src, p + 4, j)));
    }
  },
};

const Q6_K: BlockScaleLayout = {
  series: [D, SUB],
  each: (src, p, emit) => {
    const d = f16At(src, p + 208);
    emit(0, d);
    for (let j = 0; j < 16; j++) emit(1, f(d * ((src[p + 192 + j] << 24) >> 24)));
  },
};

const Q8_K_D = new DataView(new ArrayBuffer(4));
const Q8_K: BlockScaleLayout = {
  series: [D],
  each: (src, p, emit) => {
    for (let k = 0; k < 4; k++) Q8_K_D.setUint8(k, src[p + k]);
    emit(0, Q8_K_D.getFloat32(0, true));
  },
};

const IQ4_XS: BlockScaleLayout = {
  series: [D, SUB],
  each: (src, p, emit) => {
    const d = f16At(src, p);
    emit(0, d);
    const high = src[p + 2] | (src[p + 3] << 8);
    for (let ib = 0; ib < 8; ib++) {
      const ls = ((src[p + 4 + (ib >> 1)] >> (4 * (ib & 1))) & 15) | (((high >> (2 * ib)) & 3) << 4);
      emit(1, f(d * (ls - 32)));
    }
  },
};

/** IQ1_M keeps its f16 scale in the top nibbles of its four scale words (bytes 48–55). */
const IQ1_M: BlockScaleLayout = {
  series: [D],
  each: (src, p, emit) => {
    const w = (k: number) => src[p + 48 + 2 * k] | (src[p + 49 + 2 * k] << 8);
    emit(0, F16_TO_F32[(w(0) >> 12) | ((w(1) >> 8) & 0x00f0) | ((w(2) >> 4) & 0x0f00) | (w(3) & 0xf000)]);
  },
};

/** ggml's MXFP4: one E8M0 exponent per 32 values, 2^(e − 127); 255 is NaN in the OCP MX spec. */
const MXFP4: BlockScaleLayout = {
  series: [{ name: 'E8M0 scale', kind: 'scale', saturation: 'e8m0' }],
  each: (src, p, emit) => {
    const e = src[p];
    emit(0, e === 255 ? NaN : 2 ** (e - 127), e);
  },
};

/** ggml's NVFP4: four UE4M3 scales per 64 values, one per 16; ggml reads 0x7f as 0. */
const NVFP4: BlockScaleLayout = {
  series: [{ name: 'UE4M3 scale', kind: 'scale', saturation: 'e4m3' }],
  each: (src, p, emit) => {
    for (let s = 0; s < 4; s++) emit(0, ue4m3Half(src[p + s]) * 2, src[p + s]);
  },
};

/** Scale layouts by ggml type name; the plain number types (F32, I8 …) have no scales. */
export const BLOCK_SCALES: Readonly<Record<string, BlockScaleLayout>> = {
  Q4_0: dAt(0),
  Q4_1: D_AND_M,
  Q5_0: dAt(0),
  Q5_1: D_AND_M,
  Q8_0: dAt(0),
  Q8_1: dAt(0),
  Q2_K,
  Q3_K,
  Q4_K: Q45_K,
  Q5_K: Q45_K,
  Q6_K,
  Q8_K,
  IQ2_XXS: dAt(0),
  IQ2_XS: dAt(0),
  IQ3_XXS: dAt(0),
  IQ1_S: dAt(0),
  IQ4_NL: dAt(0),
  IQ3_S: dAt(0),
  IQ2_S: dAt(0),
  IQ4_XS,
  IQ1_M,
  TQ1_0: dAt(52),
  TQ2_0: dAt(64),
  MXFP4,
  NVFP4,
  Q1_0: dAt(0),
  Q2_0: dAt(0),
};
