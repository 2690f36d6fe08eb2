// The Q4_K statistics that fold blocks without decoding them (q4kStats.cpu.ts) against the
// oracle: ggml's dequantize_row_q4_K (the scalar twin, checked against ggml elsewhere), then
// the generic float32 statistics (statsWide.cpu.ts).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { disposeBackends } from '../../src/compute/backend';
import { q4_K } from '../../src/compute/dequant/kquants.cpu';
import { quantizeGgmlRows } from '../../src/compute/quant/kquant.cpu';
import { q4kNear, q4kScan } from '../../src/compute/stats/q4kStats.cpu';
import { q4kStatsModule } from '../../src/compute/stats/q4kStatsSimd';
import type { StatsBinsArgs, StatsScanArgs, WideScan } from '../../src/compute/stats/stats';
import { binWide, scanWide } from '../../src/compute/stats/statsWide.cpu';
import { binsParams, mergeWide } from '../../src/compute/stats/summarize';
import { gguf, writeGguf } from '../../src/format/gguf/writer';
import { openModel } from '../../src/format/openModel';
import { stats } from '../../src/pipelines/stats';
import { webgpuOrSkip } from './backends';

const STORAGE = { kind: 'blocks', type: 'Q4_K', blockElements: 256, blockBytes: 144 } as const;

function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

// float16 scales that stress the fold: ±0, ±Inf, NaN, the smallest subnormal, ±1, the largest finite, 2^-7.
const SPECIAL_F16 = [0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x0001, 0x3c00, 0xbc00, 0x7bff, 0x2000];

/**
 * Blocks of one kind: 'weights' (our quantizer's output for Gaussian rows), 'random' (every byte
 * random), 'adversarial' (special scales, zero scale/min fields, codes of 0 to 2 only, negative d).
 */
function blocks(kind: 'weights' | 'random' | 'adversarial', nb: number, seed: number): Uint8Array {
  const u = xorshift(seed);
  if (kind === 'weights') {
    const x = new Float32Array(nb * 256);
    for (let i = 0; i < x.length; i += 2) {
      const m = Math.sqrt(-2 * Math.log(u() + 1e-12)) * 0.02;
      x[i] = m * Math.cos(2 * Math.PI * u());
      x[i + 1] = m * Math.sin(2 * Math.PI * u()) * (u() < 0.002 ? 12 : 1);
    }
    return quantizeGgmlRows('Q4_K', x, nb, 256);
  }
  const out = new Uint8Array(nb * 144);
  for (let i = 0; i < out.length; i++) out[i] = (u() * 256) | 0;
  if (kind === 'random') return out;
  for (let b = 0; b < nb; b++) {
    const p = b * 144;
    const f16 = (o: number, h: number): void => {
      out[p + o] = h & 255;
      out[p + o + 1] = h >> 8;
    };
    const scale = (): number => (u() < 0.5 ? 0x1400 + ((u() * 0x1600) | 0) | (u() < 0.2 ? 0x8000 : 0) : SPECIAL_F16[(u() * SPECIAL_F16.length) | 0]);
    f16(0, scale());
    f16(2, scale());
    if (u() < 0.3) for (let i = 4; i < 16; i++) if (u() < 0.5) out[p + i] = 0;
    if (u() < 0.2) for (let i = 16; i < 144; i++) out[p + i] = (u() * 3) | 0;
    if (u() < 0.05) out.fill(0x77, p + 16, p + 144);
  }
  return out;
}

function decoded(src: Uint8Array): Float32Array {
  const v = new Float32Array((src.length / 144) * 256);
  q4_K(src, v, src.length / 144);
  return v;
}

/** The sums come from the affine values a·q − mm, within two float32 roundings of the decoded ones: |δ| ≤ 2⁻²⁴(|a·q| + |x|) ≤ 2⁻²² max|x|-ish. */
function assertSums(got: WideScan, want: WideScan, values: Float32Array): void {
  if (want.finite === 0) return assert.equal(got.finite, 0);
  let big = 0;
  for (const x of values) if (x - x === 0) big = Math.max(big, Math.abs(x));
  const tol = 2 ** -20 * big;
  assert.ok(Math.abs(got.sum / got.finite - want.sum / want.finite) <= tol, `mean ${got.sum / got.finite} vs ${want.sum / want.finite}`);
  assert.ok(Math.abs(Math.sqrt(got.m2 / got.finite) - Math.sqrt(want.m2 / want.finite)) <= 2 * tol, `std ${Math.sqrt(got.m2 / got.finite)} vs ${Math.sqrt(want.m2 / want.finite)}`);
}

describe('Q4_K statistics without decoding', () => {
  it('has its WebAssembly module here', () => assert.ok(q4kStatsModule(), 'WebAssembly SIMD is missing: the fused path never runs'));

  for (const kind of ['weights', 'random', 'adversarial'] as const) {
    for (const [nb, topK, seed] of [[1, 16, 3], [37, 0, 5], [5000, 16, 11], [9000, 0, 13]] as const) {
      it(`${kind}: ${nb} blocks, top-${topK}: every count, extreme and bin as decoded, sums within two float32 roundings`, () => {
        const src = blocks(kind, nb, seed + nb);
        const values = decoded(src);
        const base = { dtype: 'F32' as const, storage: STORAGE, first: 4096, count: nb * 256, bytes: src };
        const scan: StatsScanArgs = { ...base, phase: 'scan', topK };
        const want = scanWide(values, scan);
        const got = q4kScan(scan);
        assert.ok(got);
        for (const f of ['finite', 'nan', 'posInf', 'negInf', 'zeros', 'min', 'max', 'minAbsNonzero'] as const) assert.equal(got[f], want[f], f);
        assert.deepEqual(got.top, want.top);
        assertSums(got, want, values);
        const params = binsParams(mergeWide([got], topK), 64);
        if (!params) return;
        const bins: StatsBinsArgs = { ...base, phase: 'bins', ...params, histograms: false };
        const near = q4kNear(bins);
        const ref = binWide(values, bins);
        assert.ok(near);
        assert.equal(near.nearZero, ref.nearZero, 'nearZero');
        assert.equal(near.outliers, ref.outliers, 'outliers');
        // Histograms wanted: the fused path steps aside for the decoder.
        assert.equal(q4kNear({ ...bins, histograms: true }), undefined);
      });
    }
  }

  it('thresholds that fall between float32 values count as the float64 comparison does', () => {
    const src = blocks('weights', 64, 99);
    const values = decoded(src);
    const base = { dtype: 'F32' as const, storage: STORAGE, first: 0, count: values.length, bytes: src };
    const params = binsParams(mergeWide([scanWide(values, { ...base, phase: 'scan', topK: 0 })], 0), 16)!;
    // Thresholds exactly at a value, and one float64 ulp either side of it.
    const sorted = Float64Array.from(values).sort();
    for (const at of [sorted[100], sorted[sorted.length - 50]]) {
      for (const t of [at, at * (1 + 2 ** -52), at * (1 - 2 ** -52)]) {
        const bins: StatsBinsArgs = { ...base, phase: 'bins', ...params, nearZeroBelow: Math.abs(t), mean: 0, outlierBeyond: Math.abs(t), histograms: false };
        const ref = binWide(values, bins);
        const got = q4kNear(bins)!;
        assert.equal(got.nearZero, ref.nearZero, `nearZero at ${t}`);
        assert.equal(got.outliers, ref.outliers, `outliers at ${t}`);
      }
    }
  });
});

describe('stats of a Q4_K GGUF', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tw-q4k-'));
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await disposeBackends();
  });

  async function model(): Promise<string> {
    const path = join(dir, 'q4k.gguf');
    // One tensor over two slices (8 MiB of blocks each when nothing is decoded), one of adversarial blocks, one of real weights.
    const tensors = [blocks('random', 64_000, 1), blocks('adversarial', 3000, 2), blocks('weights', 400, 3)].map((data, i) => ({ name: `t${i}`, dims: [256, data.length / 144], ggmlType: 12, byteLength: data.length, data }));
    await writeGguf(path, [['general.architecture', gguf.str('llama')]], tensors);
    return path;
  }

  it('the table (no histograms) agrees with the decoded statistics, and the GPU twin agrees with it', async (t) => {
    const m = await openModel(await model());
    try {
      const fused = await stats(m, { backend: 'cpu', histograms: false, topK: 8 });
      const full = await stats(m, { backend: 'cpu', histograms: true, topK: 8 });
      for (let i = 0; i < fused.tensors.length; i++) {
        const a = fused.tensors[i];
        const b = full.tensors[i];
        for (const f of ['count', 'finite', 'nan', 'posInf', 'negInf', 'zeros', 'nearZero', 'outliers', 'min', 'max', 'absMax'] as const) assert.equal(a[f], b[f], `${a.name} ${f}`);
        assert.deepEqual(a.topK, b.topK, `${a.name} topK`);
        assert.equal(a.histogram.counts.length, 0);
        assert.deepEqual(a.logHistogram.min, b.logHistogram.min, `${a.name} smallest |x|`);
        if (b.mean !== null) assert.ok(Math.abs(a.mean! - b.mean) <= 2 ** -20 * b.absMax!, `${a.name} mean`);
        if (b.std !== null) assert.ok(Math.abs(a.std! - b.std) <= 2 ** -19 * b.absMax!, `${a.name} std`);
      }
      const gpu = await webgpuOrSkip(t);
      if (!gpu) return;
      // The GPU twin decodes (dequant.wgsl) and scans the float32 values; its counts and extremes are exact too.
      const g = await stats(m, { backend: 'webgpu', histograms: false, topK: 8, tensors: ['t1', 't2'] });
      for (let i = 0; i < g.tensors.length; i++) {
        for (const f of ['count', 'finite', 'nan', 'posInf', 'negInf', 'zeros', 'min', 'max'] as const) assert.equal(g.tensors[i][f], fused.tensors[i + 1][f], `${g.tensors[i].name} ${f} [webgpu]`);
      }
    } finally {
      await m.close();
    }
  });
});
