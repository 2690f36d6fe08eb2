import type { KernelDef } from '../kernel';
import type { SeriesSpec } from './blockScales';
import { scaleStatsCpu } from './scaleStats.cpu';

export type { SeriesSpec } from './blockScales';

/**
 * What one run reads its scales from:
 *  - `blocks`: whole blocks of a ggml type, whose scales sit inside each block (blockScales.ts);
 *  - `floats`: a scheme's scale part, whole elements of `dtype` (F32, F16, BF16, F8_E4M3, F8_E8M0 …),
 *    each multiplied by `multiply` or divided by `divide` (NVFP4's global scale) before it counts;
 *  - `ints`: a zero-point part of plain integers;
 *  - `packed`: zero points packed `32 / bits` to an int32 word, each `(field + add) & mask − sub`;
 *    with `rows`, words are laid out [⌈rows / per⌉, groups] along the rows and the fields past
 *    `rows` in the last word row are padding, not zero points.
 */
export type ScaleSource =
  | { readonly kind: 'blocks'; readonly type: string; readonly blockBytes: number }
  | { readonly kind: 'floats'; readonly dtype: string; readonly series: SeriesSpec; readonly multiply?: number; readonly divide?: number }
  | { readonly kind: 'ints'; readonly dtype: string; readonly series: SeriesSpec }
  | { readonly kind: 'packed'; readonly bits: number; readonly add: number; readonly sub: number; readonly series: SeriesSpec; readonly rows?: { readonly rows: number; readonly groups: number } };

export interface ScaleStatsArgs {
  readonly source: ScaleSource;
  /** Whole blocks, or whole elements (words for `packed`) of the part. */
  readonly bytes: Uint8Array;
  /** The index of the first element (word) of `bytes` within its part: where a packed layout starts. */
  readonly first?: number;
}

/** Log₂ histogram of |scale|: 4 bins per octave over [2^-160, 2^128), every finite nonzero float32. */
export const LOG2_BINS_PER_OCTAVE = 4;
export const LOG2_LO = -160;
export const LOG2_BINS = (128 - LOG2_LO) * LOG2_BINS_PER_OCTAVE;
/** Zero points: one bin per integer over [-1024, 1024); 8-bit zero points span 256 of them, and ints beyond clamp to the ends. */
export const ZERO_LO = -1024;
export const ZERO_BINS = 2048;

/** One series' counts over a run of scales: sums and bins, so runs fold by adding. */
export interface SeriesPartial {
  readonly spec: SeriesSpec;
  count: number;
  zeros: number;
  nonFinite: number;
  negative: number;
  /** Stored codes at the low / high end of their format (only for a series with a saturation rule). */
  saturatedLow: number;
  saturatedHigh: number;
  /** Over the finite values. */
  min: number;
  max: number;
  sum: number;
  /** Smallest and largest finite nonzero |value|. */
  absMin: number;
  absMax: number;
  /** LOG2_BINS bins of log₂|v| (scales) or ZERO_BINS of v (zero points). */
  readonly hist: Float64Array;
}

export interface ScaleStatsResult {
  readonly series: SeriesPartial[];
}

/**
 * The scales of a quantized tensor, counted: per series (a ggml block's `d`, `dmin`, the
 * sub-block scales; a scheme's scale and zero-point parts) how many, their range and mean,
 * zeros, non-finite and saturated codes, and a histogram. A CPU-only kernel: the scales are
 * 1/16 to 1/256 of a tensor's bytes, spread through its blocks, and the run is bound by reading
 * them, so a dispatch would cost more than the count.
 */
export const scaleStatsKernel: KernelDef<ScaleStatsArgs, ScaleStatsResult> = {
  name: 'scales',
  cpu: scaleStatsCpu,
};
