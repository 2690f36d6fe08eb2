import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { MemorySource, openModel, openSafetensorsFile, type DType, type Model } from '../../src/format';
import { CancelledError, type Progress } from '../../src/core/job';
import { stats, type TensorStats } from '../../src/pipelines/stats';
import { forEachBackend } from './backends';
import { WIDTH, pack, refDecode, rng, writeSafetensorsFile } from './reference';

/**
 * One table of tensors, scanned by the `stats` pipeline on every backend and
 * compared with a float64 reference computed here from the decoded values.
 * Integer results must match exactly; mean and std within REL_TOL[dtype].
 */

interface Case {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: number[];
  readonly bytes: Uint8Array;
  /** The values in float64, decoded by the test's own reference. */
  readonly values: Float64Array;
}

const countOf = (c: Case): number => c.values.length;

const PATTERN_DTYPES: DType[] = ['BF16', 'F16', 'F8_E5M2', 'F8_E4M3', 'F8_E8M0', 'F8_E4M3FNUZ', 'F8_E5M2FNUZ', 'F6_E2M3', 'F6_E3M2', 'F4', 'U8', 'I8', 'I16', 'U16'];
// 0, 1, a length that is not a multiple of the 256-wide workgroup, and one of several workgroups plus a ragged end.
const SIZES = [0, 1, 1000, 65_537];
// Pattern dtypes sum at most 65,536 exact products, compensated; the wide ones sum in plain f64 per slice.
const REL_TOL: Partial<Record<DType, number>> = { F32: 1e-9, F64: 1e-9, I32: 1e-9, I64: 1e-9 };
const PATTERN_TOL = 1e-12;
// The GPU sums F32 in f32 (Kahan per invocation, a pairwise tree per workgroup, f64 across workgroups): ~10 ε32 of Σ|x|.
const GPU_F32_TOL = 1e-5;

function patternCase(dtype: DType, n: number, seed: number, pick?: (r: () => number, i: number) => number): Case {
  const bits = WIDTH[dtype];
  const r = rng(seed);
  const pats = new Uint32Array(n);
  for (let i = 0; i < n; i++) pats[i] = pick ? pick(r, i) : r() % 2 ** bits;
  const values = Float64Array.from(pats, (p) => refDecode(dtype, p));
  const bytes = bits === 8 ? Uint8Array.from(pats) : pack(bits, pats);
  return { name: `${dtype}_${n}_${seed}`, dtype, shape: [n], bytes, values };
}

/** Mostly N(0, 0.02)-like values with a sprinkle of NaN, ±Inf, ±0 and large outliers. */
function wideCase(dtype: 'F32' | 'F64' | 'I32' | 'I64', n: number, seed: number): Case {
  const r = rng(seed);
  const u = (): number => r() / 2 ** 32;
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const k = r() % 1000;
    if (dtype === 'I32') values[i] = (r() | 0) >> (r() % 31);
    else if (dtype === 'I64') values[i] = (r() | 0) * 2 ** (r() % 20);
    else if (k === 0) values[i] = NaN;
    else if (k === 1) values[i] = Infinity;
    else if (k === 2) values[i] = -Infinity;
    else if (k === 3) values[i] = -0;
    else if (k === 4) values[i] = (u() - 0.5) * 40;
    else values[i] = (u() + u() + u() - 1.5) * 0.02;
  }
  let bytes: Uint8Array;
  if (dtype === 'F32') {
    const f = Float32Array.from(values);
    for (let i = 0; i < n; i++) values[i] = f[i];
    bytes = new Uint8Array(f.buffer);
  } else if (dtype === 'F64') bytes = new Uint8Array(values.slice().buffer);
  else if (dtype === 'I32') bytes = new Uint8Array(Int32Array.from(values).buffer);
  else bytes = new Uint8Array(BigInt64Array.from(values, (v) => BigInt(v)).buffer);
  return { name: `${dtype}_${n}_${seed}`, dtype, shape: [n], bytes, values };
}

function buildCases(): Case[] {
  const cases: Case[] = [];
  let seed = 1;
  // Sub-byte tensors must end on a byte boundary (F6: 4 elements per 3 bytes, F4: 2 per byte).
  const whole = (dtype: DType, n: number): number => (WIDTH[dtype] === 6 ? Math.ceil(n / 4) * 4 : WIDTH[dtype] === 4 ? Math.ceil(n / 2) * 2 : n);
  for (const dtype of PATTERN_DTYPES) for (const n of SIZES) cases.push(patternCase(dtype, whole(dtype, n), seed++));
  for (const dtype of ['F32', 'F64', 'I32', 'I64'] as const) for (const n of SIZES) cases.push(wideCase(dtype, n, seed++));
  // All zeros, both signs: every value is near zero and the top-k are the first 16 indices.
  cases.push({ ...patternCase('BF16', 3000, 7, (r) => (r() & 1 ? 0x8000 : 0)), name: 'allzero' });
  // One value everywhere: top-k ties broken by index, a zero-width histogram range.
  cases.push({ ...patternCase('F4', 4098, 8, () => 0x7), name: 'constant' });
  // Ties in the formats whose top-k is screened inside the counting loop.
  cases.push({ ...patternCase('BF16', 5001, 12, () => 0x3f80), name: 'constantBF16' });
  cases.push({ ...patternCase('F8_E4M3', 3001, 13, (r) => (r() & 1 ? 0xb8 : 0x38)), name: 'plusMinusOneF8' });
  // A 2-D shape: indices are flat.
  cases.push({ ...patternCase('F16', 6 * 700, 9), name: 'matrix', shape: [6, 700] });
  return cases;
}

/** More than 2^24 elements, nearly all the same value: f32 counters would stop counting at 2^24. */
function bigCase(): Case {
  const n = 2 ** 24 + 77;
  return { ...patternCase('F8_E4M3', n, 11, (r, i) => (i % 4099 === 0 ? r() & 0x7f : 0x38)), name: 'big' };
}

// ------------------------------------------------------------ the float64 reference

function edgesLinear(lo: number, hi: number, bins: number): number[] {
  return Array.from({ length: bins + 1 }, (_, k) => (k === bins ? hi : lo + ((hi - lo) * k) / bins));
}

function edgesLog(lo: number, hi: number, bins: number): number[] {
  const e = [lo];
  for (let k = 1; k < bins; k++) e.push(Math.max(e[k - 1], 10 ** (Math.log10(lo) + ((Math.log10(hi) - Math.log10(lo)) * k) / bins)));
  e.push(hi);
  return e;
}

/** The bin of x: the last k (≤ bins − 1) with x ≥ edge k, by binary search. */
function bin(x: number, e: number[]): number {
  let lo = 0;
  let hi = e.length - 2;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (x >= e[mid]) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Pairwise summation: error O(ε log n), so the reference stays exact to ~1e-15 even over 2^24 equal terms. */
function pairwise(xs: Float64Array, lo = 0, hi = xs.length): number {
  if (hi - lo <= 8) {
    let s = 0;
    for (let i = lo; i < hi; i++) s += xs[i];
    return s;
  }
  const mid = (lo + hi) >> 1;
  return pairwise(xs, lo, mid) + pairwise(xs, mid, hi);
}

/** The k largest finite |x| (larger first, then smaller index), by one pass keeping a sorted shortlist. */
function topOf(v: Float64Array, k: number): { index: number; value: number }[] {
  const best: number[] = [];
  const before = (a: number, b: number): boolean => Math.abs(v[a]) > Math.abs(v[b]) || (Math.abs(v[a]) === Math.abs(v[b]) && a < b);
  for (let i = 0; i < v.length && k > 0; i++) {
    if (!Number.isFinite(v[i])) continue;
    if (best.length === k && !before(i, best[k - 1])) continue;
    let j = best.length < k ? best.length : k - 1;
    best[j] = i;
    while (j > 0 && before(best[j], best[j - 1])) {
      [best[j], best[j - 1]] = [best[j - 1], best[j]];
      j--;
    }
  }
  return best.map((i) => ({ index: i, value: v[i] }));
}

interface Ref {
  count: number; finite: number; nan: number; posInf: number; negInf: number; zeros: number; nearZero: number; outliers: number;
  min: number | null; max: number | null; absMax: number | null; mean: number | null; std: number | null;
  hist: number[]; logHist: number[]; logMin: number | null; logMax: number | null; top: { index: number; value: number }[];
}

function reference(v: Float64Array, bins: number, k: number): Ref {
  const finList: number[] = [];
  const r: Ref = { count: v.length, finite: 0, nan: 0, posInf: 0, negInf: 0, zeros: 0, nearZero: 0, outliers: 0, min: null, max: null, absMax: null, mean: null, std: null, hist: new Array(bins).fill(0), logHist: new Array(bins).fill(0), logMin: null, logMax: null, top: [] };
  for (const x of v) {
    if (Number.isNaN(x)) r.nan++;
    else if (x === Infinity) r.posInf++;
    else if (x === -Infinity) r.negInf++;
    else finList.push(x);
  }
  const fin = Float64Array.from(finList);
  r.finite = fin.length;
  if (fin.length === 0) return r;
  let min = Infinity;
  let max = -Infinity;
  let minNz = Infinity;
  for (const x of fin) {
    min = Math.min(min, x);
    max = Math.max(max, x);
    if (x === 0) r.zeros++;
    else minNz = Math.min(minNz, Math.abs(x));
  }
  const mean = pairwise(fin) / fin.length;
  const std = Math.sqrt(pairwise(fin.map((x) => (x - mean) ** 2)) / fin.length);
  const absMax = Math.max(Math.abs(min), Math.abs(max));
  Object.assign(r, { min, max, absMax, mean, std });
  const e = edgesLinear(min, max, bins);
  const le = minNz < Infinity ? edgesLog(minNz, absMax, bins) : undefined;
  for (const x of fin) {
    r.hist[bin(x, e)]++;
    if (x !== 0 && le) r.logHist[bin(Math.abs(x), le)]++;
    if (x === 0 || Math.abs(x) < 1e-3 * absMax) r.nearZero++;
    if (Math.abs(x - mean) > 6 * std) r.outliers++;
  }
  if (le) {
    r.logMin = Math.log10(minNz);
    r.logMax = Math.log10(absMax);
  }
  r.top = topOf(v, k);
  return r;
}

function close(got: number | null, want: number | null, rel: number, scale: number, what: string): void {
  if (want === null) return assert.equal(got, null, what);
  assert.ok(got !== null && Math.abs(got - want) <= rel * Math.max(Math.abs(want), scale, Number.MIN_VALUE), `${what}: got ${got}, want ${want}`);
}

const refs = new Map<string, Ref>();

function check(s: TensorStats, c: Case, bins = 256, k = 16, kind = 'cpu'): void {
  const key = `${c.name}/${bins}/${k}`;
  const r = refs.get(key) ?? reference(c.values, bins, k);
  refs.set(key, r);
  const where = `${c.name} (${c.dtype})`;
  assert.equal(s.dtype, c.dtype);
  assert.deepEqual(s.shape, c.shape);
  for (const f of ['count', 'finite', 'nan', 'posInf', 'negInf', 'zeros', 'nearZero', 'outliers'] as const) assert.equal(s[f], r[f], `${where} ${f}`);
  // −0 and 0 are the same minimum (=== equates them, as the statistics do).
  for (const f of ['min', 'max', 'absMax'] as const) assert.ok(s[f] === r[f], `${where} ${f}: got ${s[f]}, want ${r[f]}`);
  const tol = kind === 'webgpu' && c.dtype === 'F32' ? GPU_F32_TOL : (REL_TOL[c.dtype] ?? PATTERN_TOL);
  close(s.mean, r.mean, tol, r.std ?? 0, `${where} mean`);
  close(s.std, r.std, tol, 0, `${where} std`);
  assert.deepEqual(s.histogram.counts, r.hist, `${where} histogram`);
  assert.ok(s.histogram.min === r.min && s.histogram.max === r.max, `${where} histogram range`);
  assert.deepEqual(s.logHistogram.counts, r.logHist, `${where} logHistogram`);
  close(s.logHistogram.min, r.logMin, 1e-12, 1, `${where} logHistogram.min`);
  close(s.logHistogram.max, r.logMax, 1e-12, 1, `${where} logHistogram.max`);
  assert.deepEqual(s.topK, r.top, `${where} topK`);
}

const dir = mkdtempSync(join(tmpdir(), 'tw-stats-'));
const cases = buildCases();
const big = bigCase();
const file = join(dir, 'cases.safetensors');
const bigFile = join(dir, 'big.safetensors');
let model: Model;
let bigModel: Model;

before(async () => {
  writeSafetensorsFile(file, cases.map((c) => ({ name: c.name, dtype: c.dtype, shape: c.shape, bytes: c.bytes })));
  writeSafetensorsFile(bigFile, [{ name: big.name, dtype: big.dtype, shape: big.shape, bytes: big.bytes }]);
  model = await openModel(file);
  bigModel = await openModel(bigFile);
});
after(async () => {
  await model?.close();
  await bigModel?.close();
  rmSync(dir, { recursive: true, force: true });
});

forEachBackend('stats', (backend) => {
  const opts = { backend: backend.kind };
  it('every dtype and size, against the float64 reference', async () => {
    const report = await stats(model, opts);
    assert.equal(report.backend, backend.kind);
    assert.equal(report.tensors.length, cases.length);
    report.tensors.forEach((s, i) => check(s, cases[i], 256, 16, backend.kind));
    assert.equal(report.bytesRead, cases.reduce((n, c) => n + c.bytes.length, 0));
    const unhealthy = cases.filter((c) => c.values.some((x) => !Number.isFinite(x))).map((c) => c.name);
    assert.deepEqual(report.health.nonFiniteTensors, unhealthy);
    assert.deepEqual(report.health.allZeroTensors, ['allzero']);
  });

  it('more than 2^24 elements: exact counts', async () => {
    const [s] = (await stats(bigModel, opts)).tensors;
    check(s, big);
    assert.ok(s.count > 2 ** 24);
  });

  it('a few tensors by name, 7 bins, top 3', async () => {
    const chosen = [cases.find((c) => c.dtype === 'F16' && countOf(c) > 60_000)!, cases.find((c) => c.dtype === 'F32' && countOf(c) > 60_000)!, cases.find((c) => c.name === 'constant')!];
    const names = chosen.map((c) => c.name);
    const report = await stats(model, { ...opts, tensors: names, bins: 7, topK: 3 });
    assert.deepEqual(report.tensors.map((t) => t.name), names);
    report.tensors.forEach((s, i) => check(s, chosen[i], 7, 3, backend.kind));
  });

  it('reads through the model when the workers cannot open the file (remote sources)', async () => {
    const bytes = new Uint8Array(readFileSync(file));
    const opener = { open: async () => new MemorySource(bytes, 'remote.safetensors'), readText: async () => '', list: async () => [] };
    const m = await openSafetensorsFile('remote.safetensors', opener);
    const chosen = [cases.find((c) => c.dtype === 'BF16' && countOf(c) > 60_000)!, cases.find((c) => c.dtype === 'F64' && countOf(c) === 1000)!];
    const report = await stats(m, { ...opts, tensors: chosen.map((c) => c.name) });
    report.tensors.forEach((s, i) => check(s, chosen[i], 256, 16, backend.kind));
    await m.close();
  });

  it('reports progress up to the total and stops when cancelled', async () => {
    const seen: Progress[] = [];
    await stats(bigModel, { ...opts, progress: (p) => seen.push(p) });
    assert.ok(seen.length > 0);
    assert.equal(seen.at(-1)!.done, big.bytes.length);
    assert.equal(seen.at(-1)!.total, big.bytes.length);
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(stats(bigModel, { ...opts, signal: ac.signal }), (e) => e instanceof CancelledError);
    const ac2 = new AbortController();
    const run = stats(bigModel, { ...opts, signal: ac2.signal });
    setTimeout(() => ac2.abort(), 5);
    await assert.rejects(run, (e) => e instanceof CancelledError);
  });

  it('an unknown tensor is a not_found error naming it', async () => {
    await assert.rejects(stats(model, { ...opts, tensors: ['nope'] }), (e: Error & { code?: string }) => e.code === 'not_found' && /nope/.test(e.message));
  });
});
