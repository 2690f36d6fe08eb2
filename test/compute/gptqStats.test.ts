// GPTQ int4 statistics from each cell's code sums (gptqStats.cpu.ts) against decode-then-reduce:
// gptqCpu's float32 values (checked bit for bit against the reference dequantizer in
// test/quantized), then the generic statistics (statsWide.cpu.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gptqCpu } from '../../src/compute/dequant/gptq.cpu';
import { gptqScan } from '../../src/compute/stats/gptqStats.cpu';
import { gptqStatsModule } from '../../src/compute/stats/gptqStatsSimd';
import type { StatsScanArgs, WideScan } from '../../src/compute/stats/stats';
import { binWide, scanWide } from '../../src/compute/stats/statsWide.cpu';
import { binsParams, mergeWide } from '../../src/compute/stats/summarize';
import type { StorageType } from '../../src/format/storage';

type Scheme = Extract<StorageType, { kind: 'scheme' }>;

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

// Float16 scales that stress the fold: +0, −0, +Inf, −Inf, NaN, the smallest subnormal, the largest finite, −1, 2^-10.
const SPECIAL_F16 = [0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x0001, 0x7bff, 0xbc00, 0x1400];

interface Layout {
  /** Output features (the logical weight's rows) and input features (its columns). */
  rows: number;
  cols: number;
  groupSize: number;
  /** The group of each input row (act-order), or none: row ÷ group size. */
  gIdx?: (i: number, groups: number) => number;
  code: (r: () => number) => number;
  zero: (r: () => number) => number;
  /** A float16 scale pattern. */
  scale: (r: () => number) => number;
  zeroOffset: number;
}

/** A GPTQ weight in AutoGPTQ's layout, its parts as the kernel receives them, and its values decoded by gptqCpu. */
function weight(l: Layout, seed: number) {
  const r = rng(seed);
  const groups = Math.ceil(l.cols / l.groupSize);
  const zWords = Math.ceil(l.rows / 8);
  const qweight = new Int32Array((l.cols / 8) * l.rows);
  for (let i = 0; i < l.cols; i++) for (let o = 0; o < l.rows; o++) qweight[(i >> 3) * l.rows + o] |= (l.code(r) & 15) << ((i & 7) * 4);
  const qzeros = new Int32Array(groups * zWords);
  for (let g = 0; g < groups; g++) for (let o = 0; o < l.rows; o++) qzeros[g * zWords + (o >> 3)] |= (l.zero(r) & 15) << ((o & 7) * 4);
  const scales = Uint16Array.from({ length: groups * l.rows }, () => l.scale(r));
  const parts = [new Uint8Array(qweight.buffer), new Uint8Array(qzeros.buffer), new Uint8Array(scales.buffer)];
  if (l.gIdx) parts.push(new Uint8Array(Int32Array.from({ length: l.cols }, (_, i) => l.gIdx!(i, groups)).buffer));
  const params = { order: 'gptq', bits: 4, rows: l.rows, cols: l.cols, groupSize: l.groupSize, zeroOffset: l.zeroOffset, scaleDtype: 'F16', gIdxDtype: l.gIdx ? 'I32' : '' };
  const storage = { kind: 'scheme', scheme: 'gptq', params, parts: [], unit: { elements: l.rows * l.cols, bytes: parts[0].length } } as unknown as Scheme;
  const values = new Float32Array(l.rows * l.cols);
  gptqCpu(parts, values, storage);
  const args: StatsScanArgs = { dtype: 'F32', storage, more: parts.slice(1), first: 0, count: values.length, bytes: parts[0], phase: 'scan', topK: 0 };
  return { args, values };
}

/** Sums agree with the value-by-value sums within float64 rounding of their magnitude. */
function close(a: number, b: number, scale: number): boolean {
  return Math.abs(a - b) <= 1e-12 * Math.max(1, scale) || a === b;
}

function assertScan(got: WideScan, want: WideScan, values: Float32Array): void {
  for (const k of ['finite', 'nan', 'posInf', 'negInf', 'zeros', 'minAbsNonzero'] as const) assert.equal(got[k], want[k], k);
  // A zero extreme's sign follows which zero the value-by-value scan met first.
  for (const k of ['min', 'max'] as const) assert.ok(got[k] === want[k], `${k}: ${got[k]} vs ${want[k]}`);
  let mag = 0;
  for (const v of values) if (Number.isFinite(v)) mag += v * v;
  assert.ok(close(got.sum, want.sum, Math.sqrt(mag) * Math.sqrt(values.length)), `sum ${got.sum} vs ${want.sum}`);
  assert.ok(close(got.m2, want.m2, mag), `m2 ${got.m2} vs ${want.m2}`);
}

const gaussianCode = (r: () => number): number => Math.max(0, Math.min(15, Math.round(8 + 3 * (r() + r() + r() - 1.5))));
const normalScale = (r: () => number): number => 0x1400 + Math.floor(r() * 0x1000) | (r() < 0.1 ? 0x8000 : 0);

const cases: [string, Partial<Layout>][] = [
  ['Gaussian-like codes, groups of 128', {}],
  ['act-order: every input row in a random group', { gIdx: (i, groups) => (i * 7919 + 13) % groups }],
  ['act-order with an empty group and groups of 16', { groupSize: 16, gIdx: (i, groups) => ((i * 31) % (groups - 1)) + 1 }],
  ['special scales: ±0, ±Inf, NaN, subnormal, largest', { scale: (r) => (r() < 0.4 ? SPECIAL_F16[Math.floor(r() * SPECIAL_F16.length)] : normalScale(r)) }],
  ['every code equal to its zero point (all-zero cells)', { code: () => 5, zero: () => 5 - 1 }],
  ['random codes, the v2 format (no zero offset)', { code: (r) => Math.floor(r() * 16), zero: (r) => Math.floor(r() * 16), zeroOffset: 0 }],
  ['zero point 15 stored as 14, codes 0 and 15 only', { code: (r) => (r() < 0.5 ? 0 : 15), zero: () => 14 }],
];

describe('GPTQ int4 statistics from cell sums', () => {
  it('has its WebAssembly module here', () => assert.ok(gptqStatsModule(), 'WebAssembly SIMD is missing: only the scalar counts run'));

  // 24 and 64 outputs go through the SIMD module (4 outputs a vector) where groups are runs of whole packed rows; 10 through the scalar counts.
  for (const [name, over] of cases) {
    for (const [rows, cols] of [[24, 256], [64, 512], [10, 256]]) {
      it(`${name}: ${rows}×${cols}: every count and extreme as decoded, sums within rounding, bins in the same task`, () => {
        const layout: Layout = { rows, cols, groupSize: 128, code: gaussianCode, zero: (r) => 6 + Math.floor(r() * 4), scale: normalScale, zeroOffset: 1, ...over };
        const { args, values } = weight(layout, rows * 31 + cols + name.length);
        const want = scanWide(values, { ...args, storage: undefined, more: undefined });
        const got = gptqScan(args);
        assert.ok(got, 'the fold applies');
        assertScan(got, want, values);
        const whole = gptqScan({ ...args, whole: { bins: 16, histograms: false } })!;
        const params = binsParams(mergeWide([want], 0), 16);
        if (!params) return assert.equal(whole.binned, undefined);
        const wantBins = binWide(values, { ...args, storage: undefined, more: undefined, phase: 'bins', ...params, histograms: false });
        assert.ok(whole.binned, 'bins came with the scan');
        assert.deepEqual([whole.binned.nearZero, whole.binned.outliers], [wantBins.nearZero, wantBins.outliers]);
      });
    }
  }

  it('counts the outliers and near-zero values of cells that straddle the thresholds, value by value', () => {
    // One cell far larger than the rest: its large codes are outliers, its small ones are not, and every other cell is near zero.
    const layout: Layout = { rows: 16, cols: 256, groupSize: 128, code: (r) => Math.floor(r() * 16), zero: () => 7, scale: () => 0x1400, zeroOffset: 1 };
    const { args, values } = weight(layout, 5);
    new Uint16Array(args.more![1].buffer, args.more![1].byteOffset, 32)[3] = 0x5800;
    gptqCpu([args.bytes, ...args.more!], values, args.storage as Scheme);
    const want = scanWide(values, { ...args, storage: undefined, more: undefined });
    const whole = gptqScan({ ...args, whole: { bins: 8, histograms: false } })!;
    assertScan(whole, want, values);
    const params = binsParams(mergeWide([want], 0), 8)!;
    const wantBins = binWide(values, { ...args, storage: undefined, more: undefined, phase: 'bins', ...params, histograms: false });
    assert.ok(wantBins.outliers > 0 && wantBins.nearZero > wantBins.outliers, `${wantBins.nearZero} ${wantBins.outliers}`);
    assert.deepEqual([whole.binned!.nearZero, whole.binned!.outliers], [wantBins.nearZero, wantBins.outliers]);
  });

  it('top-k, histograms, 8 bits, other scale types and g_idx out of range take the decoding path', () => {
    const layout: Layout = { rows: 8, cols: 128, groupSize: 128, code: gaussianCode, zero: () => 7, scale: normalScale, zeroOffset: 1 };
    const { args } = weight(layout, 9);
    assert.equal(gptqScan({ ...args, topK: 4 }), undefined);
    assert.equal(gptqScan({ ...args, whole: { bins: 8, histograms: true } })?.binned, undefined);
    const params = (args.storage as Scheme).params!;
    const changes: Record<string, number | string>[] = [{ bits: 8 }, { scaleDtype: 'BF16' }, { order: 'awq' }];
    for (const p of changes) assert.equal(gptqScan({ ...args, storage: { ...(args.storage as Scheme), params: { ...params, ...p } } }), undefined, JSON.stringify(p));
    const bad = weight({ ...layout, gIdx: (i) => (i === 77 ? 1 : 0) }, 9);
    assert.equal(gptqScan(bad.args), undefined);
  });
});
