// Scale statistics of ggml block types and quantized-safetensors schemes, against scales_oracle.py:
// numpy views of GGUFReader's blocks for `d`, gguf-py's own dequantizers for the sub-block scales,
// torch for the schemes' scale parts. Whole, and in chunks of one block or element at a time.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { disposeBackends } from '../../src/compute/backend';
import { gpuBrokenReason } from '../../src/compute/gpu/device';
import { webgpuOrSkip } from '../compute/backends';
import { LOG2_BINS_PER_OCTAVE, LOG2_LO, ZERO_LO } from '../../src/compute/scales/scaleStats';
import { openModel } from '../../src/format/openModel';
import type { Model } from '../../src/format/model';
import { hasScales, scaleStats, type ScaleSeries } from '../../src/pipelines/scaleStats';
import { CASES, quantFixtures, torchAvailable } from '../quantized/qstFixtures';

after(() => disposeBackends());

interface OracleSeries {
  readonly kind: 'scale' | 'zero';
  readonly count: number;
  readonly zeros: number;
  readonly nonFinite: number;
  readonly negative: number;
  readonly min: number | null;
  readonly max: number | null;
  readonly mean: number | null;
  readonly absMin?: number | null;
  readonly absMax?: number | null;
  readonly hist: Record<string, number>;
  readonly saturated?: { readonly low: number; readonly high: number };
}

const ORACLE = join(__dirname, '..', 'test', 'scales', 'scales_oracle.py');
const skip = !torchAvailable() && 'python3 with torch is not installed';

/** The series' bins as the oracle numbers them (absolute bin indices), from the report's trimmed histogram. */
function bins(s: ScaleSeries): Record<string, number> {
  const first = s.kind === 'zero' ? s.histogram.lo - ZERO_LO : Math.round((s.histogram.lo - LOG2_LO) * LOG2_BINS_PER_OCTAVE);
  const out: Record<string, number> = {};
  s.histogram.counts.forEach((c, i) => {
    if (c) out[String(first + i)] = c;
  });
  return out;
}

const num = (x: number | null | undefined) => (x === null || x === undefined ? NaN : x);

function check(got: ScaleSeries, want: OracleSeries, where: string): void {
  assert.equal(got.kind, want.kind, where);
  assert.equal(got.count, want.count, `${where}: count`);
  assert.equal(got.zeros, want.zeros, `${where}: zeros`);
  assert.equal(got.nonFinite, want.nonFinite, `${where}: non-finite`);
  assert.equal(got.negative, want.negative, `${where}: negative`);
  assert.equal(got.min, num(want.min), `${where}: min`);
  assert.equal(got.max, num(want.max), `${where}: max`);
  if (want.mean === null) assert.ok(Number.isNaN(got.mean), `${where}: mean`);
  else assert.ok(Math.abs(got.mean - want.mean) <= 1e-12 * Math.max(1, Math.abs(want.mean)) + 1e-300, `${where}: mean ${got.mean} vs ${want.mean}`);
  if (want.kind === 'scale') {
    assert.equal(got.absMin, num(want.absMin), `${where}: absMin`);
    assert.equal(got.absMax, num(want.absMax), `${where}: absMax`);
  }
  assert.deepEqual(bins(got), want.hist, `${where}: histogram`);
  if (want.saturated) assert.deepEqual({ low: got.saturated?.low, high: got.saturated?.high }, want.saturated, `${where}: saturated`);
  else assert.equal(got.saturated, undefined, `${where}: no saturation rule`);
}

function checkReport(series: readonly ScaleSeries[], want: Record<string, OracleSeries>, where: string): void {
  assert.deepEqual(series.map((s) => s.name).sort(), Object.keys(want).sort(), `${where}: series`);
  for (const s of series) check(s, want[s.name]!, `${where} ${s.name}`);
}

test('ggml block types: d, m, dmin and the K-quants’ sub-block scales equal numpy’s and gguf-py’s, whole and block by block', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tw-scales-'));
  try {
    const r = spawnSync('python3', [ORACLE, 'gguf', dir], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const want = JSON.parse(readFileSync(join(dir, 'scales.gguf.json'), 'utf8')) as Record<string, { type: string; series: Record<string, OracleSeries> }>;
    const m = await openModel(join(dir, 'scales.gguf'));
    try {
      assert.equal(Object.keys(want).length, 17);
      for (const [name, w] of Object.entries(want)) {
        const t = m.tensor(name)!;
        assert.ok(hasScales(t), name);
        const whole = await scaleStats(m, name, { backend: 'cpu' });
        assert.equal(whole.storage, w.type);
        checkReport(whole.series, w.series, name);
        assert.equal(whole.bytesRead, t.byteLength, `${name}: every block read once`);
        // One block per chunk (the smallest chunk there is): the folds give the same numbers.
        const small = await scaleStats(m, name, { backend: 'cpu', chunkBytes: 1 });
        checkReport(small.series, w.series, `${name} (block by block)`);
      }
      // Random bytes give NaN/Inf d values, zeros, and MXFP4 exponents at both limits: the checks above saw them.
      const mx = want['raw_mxfp4.weight']!.series['E8M0 scale']!;
      assert.ok(mx.saturated!.low > 0 && mx.saturated!.high > 0 && mx.nonFinite > 0);
      assert.ok(want['raw_q4_0.weight']!.series.d!.nonFinite > 0);
      assert.equal(want['q4_0.weight']!.series.d!.zeros, 16, 'the all-zero row: 16 blocks with d = 0');
    } finally {
      await m.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

async function schemeCase(name: string, f: (m: Model) => Promise<void>): Promise<void> {
  const m = await openModel(join(quantFixtures().dir, name));
  try {
    await f(m);
  } finally {
    await m.close();
  }
}

test('quantized safetensors: scale and zero-point parts of every scheme equal torch’s reading of the stored tensors', { skip }, async () => {
  const cases = CASES.filter((c) => c !== 'unrecognised');
  const r = spawnSync('python3', [ORACLE, 'st', ...cases.map((c) => join(quantFixtures().dir, c))], { encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, r.stderr);
  const want = JSON.parse(r.stdout) as Record<string, Record<string, Record<string, OracleSeries>>>;
  let checked = 0;
  for (const c of cases) {
    await schemeCase(c, async (m) => {
      const logical = m.tensors.filter((t) => t.storage?.kind === 'scheme');
      assert.deepEqual(logical.map((t) => t.name).sort(), Object.keys(want[c]!).sort(), `${c}: the tensors with scales`);
      for (const t of logical) {
        assert.ok(hasScales(t), t.name);
        const rep = await scaleStats(m, t, { backend: 'cpu' });
        checkReport(rep.series, want[c]![t.name]!, `${c} ${t.name}`);
        const small = await scaleStats(m, t, { backend: 'cpu', chunkBytes: 1 });
        checkReport(small.series, want[c]![t.name]!, `${c} ${t.name} (element by element)`);
        checked++;
      }
      for (const t of m.tensors.filter((x) => !x.storage)) assert.equal(hasScales(t), false, t.name);
    });
  }
  assert.ok(checked >= 12, `${checked} tensors checked`);
});

test('a plain tensor has no scales: scaleStats refuses it with unsupported, naming the tensor', { skip }, async () => {
  await schemeCase('fp8_block', async (m) => {
    await assert.rejects(scaleStats(m, 'model.layers.0.input_layernorm.weight'), (e: Error & { code?: string }) => e.code === 'unsupported' && /input_layernorm/.test(e.message));
    await assert.rejects(scaleStats(m, 'nope'), (e: Error & { code?: string }) => e.code === 'not_found');
  });
});

test('cancelling stops the count with CancelledError', { skip }, async () => {
  await schemeCase('mxfp4', async (m) => {
    const t = m.tensors.find((x) => x.storage?.kind === 'scheme')!;
    const ctl = new AbortController();
    ctl.abort();
    await assert.rejects(scaleStats(m, t, { signal: ctl.signal, backend: 'cpu' }), (e: Error) => e.name === 'CancelledError');
  });
});

test('on the WebGPU backend the count runs the CPU twin and gives the same numbers, leaving the device in use', { skip }, async (t) => {
  const gpu = await webgpuOrSkip(t);
  if (!gpu) return;
  await schemeCase('nvfp4_modelopt', async (m) => {
    const x = m.tensors.find((y) => y.storage?.kind === 'scheme')!;
    const cpu = await scaleStats(m, x, { backend: 'cpu' });
    const web = await scaleStats(m, x, { backend: 'webgpu' });
    assert.deepEqual(web.series, cpu.series);
    assert.equal(gpuBrokenReason(), undefined);
  });
});
