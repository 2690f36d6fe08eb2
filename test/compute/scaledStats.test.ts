// FP8 block-scaled and MXFP4 statistics from code counts (scaledStats.cpu.ts, valueCounts.ts) against decode-then-stats
// (130 columns: rows that are not whole words, counted by the JavaScript loop; the others by byteCounts.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mxfp4Cpu } from '../../src/compute/dequant/mxfp4.cpu';
import { scaledCpu } from '../../src/compute/dequant/scaled.cpu';
import type { StatsBinsArgs, StatsScanArgs, WideScan } from '../../src/compute/stats/stats';
import { binsOfValues } from '../../src/compute/stats/valueCounts';
import { scaledNear, scaledScan } from '../../src/compute/stats/scaledStats.cpu';
import { binWide, scanWide } from '../../src/compute/stats/statsWide.cpu';
import { binsParams, mergeWide } from '../../src/compute/stats/summarize';
import type { StorageType } from '../../src/format/storage';

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

type Scheme = Extract<StorageType, { kind: 'scheme' }>;

/** An fp8-block slice: rows × cols E4M3 bytes, a float32 scale per 128×128 block. */
function slice(rows: number, cols: number, bytes: (i: number) => number, scaleOf: (k: number) => number) {
  const data = Uint8Array.from({ length: rows * cols }, (_, i) => bytes(i));
  const scaleCols = Math.ceil(cols / 128);
  const scale = Float32Array.from({ length: Math.ceil(rows / 128) * scaleCols }, (_, k) => scaleOf(k));
  const storage: Scheme = { kind: 'scheme', scheme: 'fp8-block', params: { data: 'F8_E4M3', cols, blockRows: 128, blockCols: 128, scaleCols, scaleDtype: 'F32', zeroDtype: '' } } as unknown as Scheme;
  const more = [new Uint8Array(scale.buffer)];
  const values = new Float32Array(rows * cols);
  scaledCpu([data, ...more], values, storage);
  return { base: { dtype: 'F32' as const, storage, more, first: 0, count: rows * cols, bytes: data }, values };
}

/**
 * The scan's table of values gives the bins phase that decoding gives, histograms included: every
 * bin, near-zero and outlier count exactly, and its counts add up to the finite values.
 */
function assertTableBins(got: WideScan, bins: StatsBinsArgs, values: Float32Array): void {
  assert.ok(got.values, 'the scan carries its table of values');
  let n = 0;
  for (const c of got.values.counts) n += c;
  assert.equal(n, got.finite);
  for (const histograms of [false, true]) {
    const want = binWide(values, { ...bins, storage: undefined, more: undefined, histograms });
    const fromTable = binsOfValues(got.values, bins, histograms);
    assert.deepEqual([fromTable.nearZero, fromTable.outliers], [want.nearZero, want.outliers]);
    assert.deepEqual([...fromTable.hist], [...want.hist], 'histogram');
    assert.deepEqual([...fromTable.logHist], [...want.logHist], 'log histogram');
  }
}

/** A slice that is its whole tensor comes back with its bins (histograms or not) and without its table. */
function assertWholeBins(scan: StatsScanArgs, values: Float32Array, bins: StatsBinsArgs): void {
  for (const histograms of [false, true]) {
    const got = scaledScan({ ...scan, whole: { bins: bins.edges.length - 1, histograms } })!;
    assert.equal(got.values, undefined);
    const want = binWide(values, { ...bins, storage: undefined, more: undefined, histograms });
    assert.deepEqual([got.binned!.nearZero, got.binned!.outliers, [...got.binned!.hist], [...got.binned!.logHist]], [want.nearZero, want.outliers, [...want.hist], [...want.logHist]]);
  }
}

/** Sums of a fold agree with the value-by-value sums within float64 rounding of their magnitude. */
function close(a: number, b: number, scale: number): boolean {
  return Math.abs(a - b) <= 1e-12 * Math.max(1, scale) || a === b;
}

const cases: [string, (r: () => number) => (i: number) => number, (r: () => number) => (k: number) => number][] = [
  ['random bytes (NaN 0x7F/0xFF among them), finite scales', (r) => () => Math.floor(r() * 256), (r) => () => 2 ** (r() * 20 - 10)],
  ['Gaussian-like bytes, scales with a zero, a NaN, ±inf and subnormals', (r) => () => (r() < 0.5 ? 0x80 : 0) | Math.floor(r() * r() * 0x7e), () => (k) => [0, NaN, Infinity, -Infinity, 1e-40, 3e38, 0.5][k % 7]],
  ['all zero codes, negative scales', () => () => 0, () => (k) => -1 - k],
];

describe('FP8 block statistics from byte counts', () => {
  for (const [name, bytes, scales] of cases) {
    for (const [rows, cols] of [[128, 128], [256, 384], [300, 200], [128, 130]]) {
      it(`${name}: ${rows}×${cols}: every count and extreme as decoded, sums within rounding`, () => {
        const r = rng(rows * 7 + cols);
        const { base, values } = slice(rows, cols, bytes(r), scales(r));
        const want = scanWide(values, { ...base, storage: undefined, more: undefined, phase: 'scan', topK: 0 });
        const got = scaledScan({ ...base, phase: 'scan', topK: 0 } as StatsScanArgs)!;
        assert.ok(got, 'the fold applies');
        for (const k of ['finite', 'nan', 'posInf', 'negInf', 'zeros', 'minAbsNonzero'] as const) assert.equal(got[k], want[k], k);
        // A zero extreme's sign follows which zero the value-by-value scan met first; counts have no order.
        for (const k of ['min', 'max'] as const) assert.ok(got[k] === want[k], `${k}: ${got[k]} vs ${want[k]}`);
        let mag = 0;
        for (const v of values) if (Number.isFinite(v)) mag += v * v;
        assert.ok(close(got.sum, want.sum, Math.sqrt(mag) * Math.sqrt(values.length)), `sum ${got.sum} vs ${want.sum}`);
        assert.ok(close(got.m2, want.m2, mag), `m2 ${got.m2} vs ${want.m2}`);
        const params = binsParams(mergeWide([want], 0), 16);
        if (!params) return;
        const bins: StatsBinsArgs = { ...base, phase: 'bins', ...params, histograms: false };
        const wantBins = binWide(values, { ...bins, storage: undefined, more: undefined });
        const gotBins = scaledNear(bins)!;
        assert.equal(gotBins.nearZero, wantBins.nearZero);
        assert.equal(gotBins.outliers, wantBins.outliers);
        assertTableBins(got, bins, values);
        assertWholeBins({ ...base, phase: 'scan', topK: 0 } as StatsScanArgs, values, bins);
      });
    }
  }

  it('thresholds between float32 values count as the float64 comparison does', () => {
    const { base, values } = slice(128, 128, (i) => i & 0x7e, () => 0.1);
    const v = values[5];
    const bins: StatsBinsArgs = { ...base, phase: 'bins', edges: new Float64Array([0, 1]), logEdges: new Float64Array([0, 1]), nearZeroBelow: v + 1e-12, mean: 0, outlierBeyond: v - 1e-12, histograms: false };
    const want = binWide(values, { ...bins, storage: undefined, more: undefined });
    const got = scaledNear(bins)!;
    assert.deepEqual([got.nearZero, got.outliers], [want.nearZero, want.outliers]);
  });

  it('top-k, histograms and small groups take the decoding path', () => {
    const { base } = slice(128, 128, () => 1, () => 1);
    assert.equal(scaledScan({ ...base, phase: 'scan', topK: 16 }), undefined);
    const more = [new Uint8Array(new Float32Array(128 * 4).fill(1).buffer)];
    const group = { ...base, more, storage: { ...base.storage, params: { ...base.storage.params, blockRows: 1, blockCols: 32, scaleCols: 4 } } as Scheme };
    assert.equal(scaledScan({ ...group, phase: 'scan', topK: 0 }), undefined);
  });
});

/** An MXFP4 slice of `groups` groups; `rows` set: the expert layout (decoded transposed). */
function mxSlice(groups: number, scaleOf: (g: number) => number, r: () => number, rows = 0) {
  const blocks = Uint8Array.from({ length: groups * 16 }, () => Math.floor(r() * 256));
  const scales = Uint8Array.from({ length: groups }, (_, g) => scaleOf(g));
  const params = rows > 0 ? { rows, groups: groups / rows } : {};
  const storage = { kind: 'scheme', scheme: 'mxfp4', params } as unknown as Scheme;
  const values = new Float32Array(groups * 32);
  mxfp4Cpu([blocks, scales], values, storage);
  return { base: { dtype: 'F32' as const, storage, more: [scales], first: 0, count: groups * 32, bytes: blocks }, values };
}

describe('MXFP4 statistics from (scale, code) counts', () => {
  const scalesCases: [string, (r: () => number) => (g: number) => number][] = [
    ['scales near 127', (r) => () => 120 + Math.floor(r() * 10)],
    ['E8M0 extremes: 0 (2^-127), 254 (overflow to ±inf), 0xFF (NaN)', (r) => () => [0, 1, 127, 254, 255][Math.floor(r() * 5)]],
    ['every scale byte', () => (g) => g % 256],
  ];
  for (const [name, scaleOf] of scalesCases) {
    for (const rows of [0, 8]) {
      it(`${name}${rows ? ', expert layout' : ''}: every count and extreme as decoded, sums within rounding`, () => {
        const r = rng(name.length * 31 + rows);
        const { base, values } = mxSlice(512, scaleOf(r), r, rows);
        const want = scanWide(values, { ...base, storage: undefined, more: undefined, phase: 'scan', topK: 0 });
        const got = scaledScan({ ...base, phase: 'scan', topK: 0 } as StatsScanArgs)!;
        assert.ok(got, 'the fold applies');
        for (const k of ['finite', 'nan', 'posInf', 'negInf', 'zeros', 'minAbsNonzero'] as const) assert.equal(got[k], want[k], k);
        for (const k of ['min', 'max'] as const) assert.ok(got[k] === want[k], `${k}: ${got[k]} vs ${want[k]}`);
        let mag = 0;
        for (const v of values) if (Number.isFinite(v)) mag += v * v;
        assert.ok(close(got.sum, want.sum, Math.sqrt(mag) * Math.sqrt(values.length)), `sum ${got.sum} vs ${want.sum}`);
        assert.ok(close(got.m2, want.m2, mag), `m2 ${got.m2} vs ${want.m2}`);
        const params = binsParams(mergeWide([want], 0), 16);
        if (!params) return;
        const bins: StatsBinsArgs = { ...base, phase: 'bins', ...params, histograms: false };
        const wantBins = binWide(values, { ...bins, storage: undefined, more: undefined });
        const gotBins = scaledNear(bins)!;
        assert.deepEqual([gotBins.nearZero, gotBins.outliers], [wantBins.nearZero, wantBins.outliers]);
        assertTableBins(got, bins, values);
        assertWholeBins({ ...base, phase: 'scan', topK: 0 } as StatsScanArgs, values, bins);
      });
    }
  }
});
