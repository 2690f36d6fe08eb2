import { checkArgs, E4M3_MAX, e4m3ToF32, f32ToE4M3, inputViews, scratch, decodeInto, type QuantizeArgs, type QuantizeResult } from './common';
import { ErrorAcc } from './scalarDrivers';

const fround = Math.fround;

/** Rows and columns of one scale block: DeepSeek-V3's layout, which vLLM and Transformers load. */
export const FP8_BLOCK = 128;

let table: Float32Array | undefined;
function e4m3Table(): Float32Array {
  if (!table) {
    table = new Float32Array(256);
    for (let c = 0; c < 256; c++) table[c] = e4m3ToF32(c);
  }
  return table;
}

/**
 * FP8 E4M3 with one f32 scale per 128×128 block (edge blocks ragged), as Transformers'
 * FineGrainedFP8 quantizer computes it: per block `scale = 448 / absMax` in f32, codes
 * `E4M3(x × scale)` (round to nearest even, saturating at ±448), and the stored
 * `weight_scale_inv = 1 / scale` in f32, which multiplies the codes back. A block of
 * zeros gets scale 1. `rows` must start on a block row: chunks are whole 128-row bands.
 * `scales` holds ⌈rows/128⌉ × ⌈cols/128⌉ values, row-major.
 */
export function fp8BlockCpu(a: QuantizeArgs): QuantizeResult {
  checkArgs('fp8-block', a, 1);
  const { rows, cols } = a;
  const bandsR = Math.ceil(rows / FP8_BLOCK);
  const bandsC = Math.ceil(cols / FP8_BLOCK);
  const data = a.out && a.out.length === rows * cols ? a.out : new Uint8Array(rows * cols);
  const scales = new Float32Array(bandsR * bandsC);
  const v = inputViews(a.src, a.dtype);
  const dec = e4m3Table();
  const acc = new ErrorAcc(a.stats !== false);
  const { f: row, u: rowBits } = scratch(cols);
  // One band of up to 128 rows, decoded once: the absMax pass and the coding pass both read it.
  const band = new Float32Array(FP8_BLOCK * cols);
  for (let br = 0; br < bandsR; br++) {
    const r0 = br * FP8_BLOCK;
    const nr = Math.min(FP8_BLOCK, rows - r0);
    for (let r = 0; r < nr; r++) {
      decodeInto(v, (r0 + r) * cols, cols, row, rowBits);
      band.set(row.subarray(0, cols), r * cols);
    }
    for (let bc = 0; bc < bandsC; bc++) {
      const c0 = bc * FP8_BLOCK;
      const c1 = Math.min(cols, c0 + FP8_BLOCK);
      let amax = 0;
      for (let r = 0; r < nr; r++) {
        for (let c = c0; c < c1; c++) {
          const x = Math.abs(band[r * cols + c]);
          if (x > amax) amax = x;
        }
      }
      // PyTorch evaluates Transformers' `448 / absMax` as `reciprocal(absMax) × 448`: two roundings, kept here.
      const scale = amax > 0 ? fround(fround(1 / amax) * E4M3_MAX) : 1;
      const inv = fround(1 / scale);
      scales[br * bandsC + bc] = inv;
      for (let r = 0; r < nr; r++) {
        const o = (r0 + r) * cols;
        for (let c = c0; c < c1; c++) {
          const x = band[r * cols + c];
          const q = f32ToE4M3(fround(x * scale));
          data[o + c] = q;
          if (acc.enabled) acc.add(x, fround(dec[q] * inv));
        }
      }
    }
  }
  return { data, scales, stats: acc.sums(rows * cols) };
}
