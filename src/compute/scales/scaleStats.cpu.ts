import { partFloats, partInt32, partInts } from '../dequant/partValues';
import { BLOCK_SCALES, type Saturation, type SeriesSpec } from './blockScales';
import { LOG2_BINS, LOG2_BINS_PER_OCTAVE, LOG2_LO, ZERO_BINS, ZERO_LO, type ScaleStatsArgs, type ScaleStatsResult, type SeriesPartial } from './scaleStats';

export function emptySeries(spec: SeriesSpec): SeriesPartial {
  return {
    spec,
    count: 0,
    zeros: 0,
    nonFinite: 0,
    negative: 0,
    saturatedLow: 0,
    saturatedHigh: 0,
    min: Infinity,
    max: -Infinity,
    sum: 0,
    absMin: Infinity,
    absMax: 0,
    hist: new Float64Array(spec.kind === 'zero' ? ZERO_BINS : LOG2_BINS),
  };
}

// 2^(1/4), 2^(1/2), 2^(3/4): the quarter-octave edges within [1, 2).
const QUARTERS = [2 ** 0.25, 2 ** 0.5, 2 ** 0.75];

/**
 * The log₂ bin of a finite nonzero |v|: the exponent found exactly (Math.log2 corrected by
 * powers of two, which are exact), then the quarter of the octave by comparing the mantissa.
 */
export function log2Bin(a: number): number {
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  const m = a / 2 ** e;
  const q = m >= QUARTERS[2] ? 3 : m >= QUARTERS[1] ? 2 : m >= QUARTERS[0] ? 1 : 0;
  return Math.min(LOG2_BINS - 1, Math.max(0, (e - LOG2_LO) * LOG2_BINS_PER_OCTAVE + q));
}

function saturated(s: SeriesPartial, rule: Saturation, raw: number): void {
  if (rule === 'e8m0') {
    if (raw === 0) s.saturatedLow++;
    else if (raw >= 254) s.saturatedHigh++;
  } else if ((raw & 0x7f) === 0x7e) s.saturatedHigh++;
}

/** Counts one value into its series. */
export function add(s: SeriesPartial, v: number, raw?: number): void {
  s.count++;
  if (s.spec.saturation && raw !== undefined) saturated(s, s.spec.saturation, raw);
  if (!Number.isFinite(v)) {
    s.nonFinite++;
    return;
  }
  if (v < s.min) s.min = v;
  if (v > s.max) s.max = v;
  s.sum += v;
  if (v < 0) s.negative++;
  if (s.spec.kind === 'zero') {
    s.hist[Math.min(ZERO_BINS - 1, Math.max(0, v - ZERO_LO))]++;
    if (v === 0) s.zeros++;
    return;
  }
  if (v === 0) {
    s.zeros++;
    return;
  }
  const a = Math.abs(v);
  if (a < s.absMin) s.absMin = a;
  if (a > s.absMax) s.absMax = a;
  s.hist[log2Bin(a)]++;
}

/** The stored code of each element of an 8-bit part, for the saturation rules. */
function codes(bytes: Uint8Array, dtype: string): Uint8Array | undefined {
  return dtype === 'F8_E8M0' || dtype === 'F8_E4M3' ? bytes : undefined;
}

/** The CPU twin: the source's scales in `bytes`, counted per series. */
export function scaleStatsCpu(a: ScaleStatsArgs): ScaleStatsResult {
  const src = a.source;
  if (src.kind === 'blocks') {
    const layout = BLOCK_SCALES[src.type];
    if (!layout) throw new Error(`scales: the block type ${src.type} has no scales`);
    const series = layout.series.map(emptySeries);
    const emit = (k: number, v: number, raw?: number) => add(series[k], v, raw);
    const nb = Math.floor(a.bytes.length / src.blockBytes);
    for (let i = 0; i < nb; i++) layout.each(a.bytes, i * src.blockBytes, emit);
    return { series };
  }
  if (src.kind === 'floats') {
    const s = emptySeries(src.series);
    const values = partFloats(a.bytes, src.dtype);
    const raw = codes(a.bytes, src.dtype);
    for (let i = 0; i < values.length; i++) {
      let v = values[i];
      // One float32 rounding, as the decoders round a block scale times (or over) the global scale.
      if (src.multiply !== undefined) v = Math.fround(v * src.multiply);
      else if (src.divide !== undefined) v = Math.fround(v / src.divide);
      add(s, v, raw?.[i]);
    }
    return { series: [s] };
  }
  const s = emptySeries(src.series);
  if (src.kind === 'ints') {
    for (const v of partInts(a.bytes, src.dtype)) add(s, v);
    return { series: [s] };
  }
  const words = partInt32(a.bytes);
  const per = 32 / src.bits;
  const mask = (1 << src.bits) - 1;
  const first = a.first ?? 0;
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    // Packed along the rows: word row r holds rows r × per … r × per + per − 1, the last one padded.
    const valid = src.rows ? Math.min(per, src.rows.rows - Math.floor((first + i) / src.rows.groups) * per) : per;
    for (let k = 0; k < valid; k++) add(s, ((((w >>> (k * src.bits)) & mask) + src.add) & mask) - src.sub);
  }
  return { series: [s] };
}
