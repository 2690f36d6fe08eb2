/**
 * A tensor's statistics as the viewer shows them: the page's form of `stats`'
 * result, the health badges, and one row of the whole-model scan.
 */
import type { TensorStats } from '../stats';
import type { HealthBadge, ScanRow, TensorStatsData } from './types';

const num = (v: number | null): number => (v === null ? NaN : v);

export function statsData(s: TensorStats): TensorStatsData {
  return {
    name: s.name,
    count: s.count,
    finite: s.finite,
    nan: s.nan,
    posInf: s.posInf,
    negInf: s.negInf,
    zeros: s.zeros,
    nearZero: s.nearZero,
    min: num(s.min),
    max: num(s.max),
    absMax: num(s.absMax),
    mean: num(s.mean),
    std: num(s.std),
    outliers: s.outliers,
    histogram: { min: num(s.histogram.min), max: num(s.histogram.max), counts: Float64Array.from(s.histogram.counts) },
    logHistogram: { min: num(s.logHistogram.min), max: num(s.logHistogram.max), counts: Float64Array.from(s.logHistogram.counts) },
    topK: s.topK.map((k) => ({ index: k.index, value: k.value })),
  };
}

/** F16's largest finite value: a tensor above it would overflow if cast to F16. */
export const F16_MAX = 65504;

export function healthBadges(s: { nan: number; posInf: number; negInf: number; zeros: number; count: number; absMax: number | null; dtype: string }): HealthBadge[] {
  const b: HealthBadge[] = [];
  if (s.nan + s.posInf + s.negInf > 0) b.push('non-finite');
  if (s.count > 0 && s.zeros === s.count) b.push('all-zero');
  if (s.dtype !== 'F16' && s.absMax !== null && s.absMax > F16_MAX) b.push('f16-overflow');
  return b;
}

export function scanRow(s: TensorStats): ScanRow {
  if (s.note) return { name: s.name, dtype: s.dtype, count: s.count, std: NaN, absMax: NaN, sparsity: NaN, outliers: 0, nonFinite: 0, badges: [], error: { code: 'unsupported', message: s.note, tensor: s.name } };
  return {
    name: s.name,
    dtype: s.dtype,
    count: s.count,
    std: num(s.std),
    absMax: num(s.absMax),
    sparsity: s.count ? s.zeros / s.count : 0,
    outliers: s.outliers,
    nonFinite: s.nan + s.posInf + s.negInf,
    badges: healthBadges(s),
  };
}

