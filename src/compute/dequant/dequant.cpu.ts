import { ggmlTypeByName, type GgmlTypeName } from '../../format/gguf/types';
import { iq1_m, iq1_s, iq2_s, iq2_xs, iq2_xxs, iq3_s, iq3_xxs, iq4_xs } from './iquants.cpu';
import { q2_K, q3_K, q4_K, q5_K, q6_K, q8_K, tq1_0, tq2_0 } from './kquants.cpu';
import { iq4_nl, mxfp4, nvfp4, q1_0, q2_0, q4_0, q4_1, q5_0, q5_1, q8_0, q8_1 } from './legacy.cpu';
import { bf16, f16, f32, f64, i16, i32, i64, i8 } from './plain.cpu';
import { q4KSimd } from './q4kSimd';

/** Decodes `count` whole blocks (elements, for the plain types) from byte 0 of src. */
type BlockDecoder = (src: Uint8Array, out: Float32Array, count: number) => void;

const DECODERS: Record<GgmlTypeName, BlockDecoder> = {
  F32: f32, F16: f16, BF16: bf16, F64: f64, I8: i8, I16: i16, I32: i32, I64: i64,
  Q4_0: q4_0, Q4_1: q4_1, Q5_0: q5_0, Q5_1: q5_1, Q8_0: q8_0, Q8_1: q8_1,
  Q2_K: q2_K, Q3_K: q3_K, Q4_K: (s, o, n) => q4KSimd(s, o, n) || q4_K(s, o, n), Q5_K: q5_K, Q6_K: q6_K, Q8_K: q8_K, TQ1_0: tq1_0, TQ2_0: tq2_0,
  IQ1_S: iq1_s, IQ1_M: iq1_m, IQ2_XXS: iq2_xxs, IQ2_XS: iq2_xs, IQ2_S: iq2_s, IQ3_XXS: iq3_xxs, IQ3_S: iq3_s,
  IQ4_NL: iq4_nl, IQ4_XS: iq4_xs, MXFP4: mxfp4, NVFP4: nvfp4, Q1_0: q1_0, Q2_0: q2_0,
};

/**
 * Decodes ggml-typed bytes to float32, bit for bit as ggml's `to_float` (`dequantize_row_*`,
 * `ggml_fp16_to_fp32_row`, …). `src` must hold whole blocks; `out` receives
 * `src.length / typeSize × blockSize` values and may be longer. Returns that element count.
 */
export function dequantize(type: GgmlTypeName, src: Uint8Array, out: Float32Array): number {
  const info = ggmlTypeByName(type);
  if (src.length % info.typeSize !== 0) {
    throw new RangeError(`${type}: ${src.length} bytes is not a whole number of ${info.typeSize}-byte blocks`);
  }
  const blocks = src.length / info.typeSize;
  const n = blocks * info.blockSize;
  if (out.length < n) throw new RangeError(`${type}: output holds ${out.length} values, ${n} needed`);
  DECODERS[type](src, out, blocks);
  return n;
}
