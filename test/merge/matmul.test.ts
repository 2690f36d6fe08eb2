import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { disposeBackends, getBackend } from '../../src/compute/backend';
import type { Backend } from '../../src/compute/kernel';
import { matmulKernel, type MatmulArgs, type MatmulDType, type MatmulOut } from '../../src/compute/matmul/matmul';
import { matmulCpu, matmulScalar } from '../../src/compute/matmul/matmul.cpu';
import { matmulSimdAvailable } from '../../src/compute/matmul/matmulSimd';
import { forEachBackend } from '../compute/backends';
import { bytesOf, decode, encodeExact, maxUlpError, normal, quantize, rng, type FloatDType } from './oracle';

interface Case {
  readonly name: string;
  readonly out: number;
  readonly inp: number;
  readonly rank: number;
  readonly transpose: boolean;
  readonly baseDtype?: MatmulDType;
  readonly adapterDtype: FloatDType;
  readonly outDtype: MatmulOut;
  /** Scale applied to b (adapter weight × alpha / r); irrational scales exercise the f64 path. */
  readonly scale: number;
  readonly seed: number;
  /** Relative size of Δ against W: 1 makes W + Δ cancel often, which is where f32 sums lose ulps. */
  readonly deltaSize: number;
}

const CASES: Case[] = [];
for (const outDtype of ['F32', 'BF16', 'F16', 'PAIR'] as const) {
  for (const baseDtype of ['F32', 'BF16', 'F16'] as const) {
    for (const transpose of [false, true]) {
      CASES.push({
        name: `${baseDtype} base → ${outDtype}${transpose ? ', transposed' : ''}`,
        out: 37,
        inp: 29,
        rank: 16,
        transpose,
        baseDtype,
        adapterDtype: baseDtype === 'F16' ? 'F16' : 'F32',
        outDtype,
        scale: 32 / Math.sqrt(16) / 3,
        seed: CASES.length + 1,
        deltaSize: 1,
      });
    }
  }
}
CASES.push({ name: 'Δ alone (no base), BF16 adapter, rank 1', out: 8, inp: 300, rank: 1, transpose: false, adapterDtype: 'BF16', outDtype: 'F32', scale: 2, seed: 90, deltaSize: 1 });
CASES.push({ name: 'rank 64 (stacked adapters), F32 out', out: 16, inp: 64, rank: 64, transpose: false, baseDtype: 'F32', adapterDtype: 'F32', outDtype: 'F32', scale: Math.PI, seed: 91, deltaSize: 3 });
// Wide rows: many eight-column blocks per row, and a tail block (cols % 8 ≠ 0) that runs into the next row.
for (const outDtype of ['BF16', 'F16', 'F32'] as const) {
  CASES.push({ name: `wide rows (300 × 203), BF16 base → ${outDtype}`, out: 300, inp: 203, rank: 19, transpose: false, baseDtype: 'BF16', adapterDtype: 'F32', outDtype, scale: 32 / 16, seed: 80 + CASES.length, deltaSize: 0.2 });
}
CASES.push({ name: 'wide rows, transposed, F32 base → PAIR', out: 131, inp: 64, rank: 8, transpose: true, baseDtype: 'F32', adapterDtype: 'F32', outDtype: 'PAIR', scale: 0.75, seed: 95, deltaSize: 1 });
CASES.push({ name: 'odd element count, F16 out, transposed', out: 7, inp: 5, rank: 3, transpose: true, baseDtype: 'F16', adapterDtype: 'F16', outDtype: 'F16', scale: 0.5, seed: 92, deltaSize: 1 });

interface Built {
  readonly args: MatmulArgs;
  /** The float64 merged values in stored order. */
  readonly want: Float64Array;
  /** Σ|terms| + |w| per element: the magnitude that the PAIR output's error is measured against. */
  readonly mag: Float64Array;
}

function build(c: Case, rowStart = 0, rows?: number): Built {
  const r = rng(c.seed);
  const a = new Float32Array(c.rank * c.inp);
  for (let i = 0; i < a.length; i++) a[i] = quantize(c.adapterDtype, normal(r) / Math.sqrt(c.inp));
  const bRaw = new Float64Array(c.out * c.rank);
  for (let i = 0; i < bRaw.length; i++) bRaw[i] = quantize(c.adapterDtype, normal(r) * 0.3 * c.deltaSize);
  const b = bRaw.map((x) => x * c.scale);
  const storedRows = c.transpose ? c.inp : c.out;
  const cols = c.transpose ? c.out : c.inp;
  const n = rows ?? storedRows - rowStart;
  const wAll = new Float64Array(storedRows * cols);
  for (let i = 0; i < wAll.length; i++) wAll[i] = c.baseDtype ? quantize(c.baseDtype, normal(r) * 0.5) : 0;
  const want = new Float64Array(n * cols);
  const mag = new Float64Array(n * cols);
  for (let rr = 0; rr < n; rr++) {
    for (let cc = 0; cc < cols; cc++) {
      const row = rowStart + rr;
      const [o, i] = c.transpose ? [cc, row] : [row, cc];
      let s = 0;
      let m = 0;
      for (let k = 0; k < c.rank; k++) {
        // The oracle keeps the scale outside the sum, as the formula reads: Δ = scale · Σ B·A.
        const t = bRaw[o * c.rank + k] * a[k * c.inp + i];
        s += t;
        m += Math.abs(t * c.scale);
      }
      const w = wAll[row * cols + cc];
      want[rr * cols + cc] = w + c.scale * s;
      mag[rr * cols + cc] = m + Math.abs(w);
    }
  }
  const base = c.baseDtype ? encodeExact(c.baseDtype, wAll.subarray(rowStart * cols, (rowStart + n) * cols)) : undefined;
  return {
    args: { outFeatures: c.out, inFeatures: c.inp, rank: c.rank, a, b, transpose: c.transpose, rowStart, rows: n, base, baseDtype: c.baseDtype, out: c.outDtype },
    want,
    mag,
  };
}

function checkResult(c: Case, built: Built, bytes: Uint8Array): void {
  if (c.outDtype === 'PAIR') {
    const f = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    for (let i = 0; i < built.want.length; i++) {
      const got = f[2 * i] + f[2 * i + 1];
      // A (hi, lo) pair carries ~48 bits: its error is bounded against the terms' magnitude.
      assert.ok(Math.abs(got - built.want[i]) <= 2 ** -40 * built.mag[i], `element ${i}: ${got} vs ${built.want[i]}`);
    }
    return;
  }
  const got = decode(c.outDtype, bytes);
  const { max, at } = maxUlpError(c.outDtype, got, built.want);
  assert.ok(max <= 1, `max error ${max} ulp at element ${at}: got ${got[at]}, want ${built.want[at]}`);
}

forEachBackend('matmul twin', (backend) => {
  for (const c of CASES) {
    it(`${c.name}: every element within 1 ulp of float64`, async () => {
      const built = build(c);
      const res = await backend.run(matmulKernel, built.args);
      assert.equal(res.nonFinite, 0);
      assert.equal(res.bytes.length, built.want.length * (c.outDtype === 'PAIR' ? 8 : bytesOf(c.outDtype)));
      checkResult(c, built, res.bytes);
    });
  }

  it('a slice of rows (rowStart > 0) matches the same rows of the whole', async () => {
    const c = CASES.find((x) => x.transpose && x.outDtype === 'BF16')!;
    const built = build(c, 5, 9);
    const res = await backend.run(matmulKernel, built.args);
    checkResult(c, built, res.bytes);
  });

  it('rounds to nearest even from the exact sum, not through f32 (no double rounding)', async () => {
    // 1 + 2⁻⁸ + 2⁻³⁰: f32 would round to 1 + 2⁻⁸, a BF16 tie that goes to even (1.0);
    // the exact value is above the tie, so BF16 must give 1 + 2⁻⁷. Likewise below the tie.
    const mk = (delta: number, out: MatmulOut): MatmulArgs => ({
      outFeatures: 1, inFeatures: 2, rank: 1, a: new Float32Array([1, -1]), b: new Float64Array([delta]), transpose: false,
      rowStart: 0, rows: 1, base: encodeExact('BF16', [1, 1]), baseDtype: 'BF16', out,
    });
    const up = await backend.run(matmulKernel, mk(2 ** -8 + 2 ** -30, 'BF16'));
    assert.deepEqual([...decode('BF16', up.bytes)], [1 + 2 ** -7, 1 - 2 ** -8]);
    const f16 = await backend.run(matmulKernel, mk(2 ** -11 + 2 ** -40, 'F16'));
    assert.deepEqual([...decode('F16', f16.bytes)], [1 + 2 ** -10, 1 - 2 ** -11]);
    // Exact ties go to even.
    const tie = await backend.run(matmulKernel, mk(2 ** -8, 'BF16'));
    assert.deepEqual([...decode('BF16', tie.bytes)], [1, 1 - 2 ** -8]);
  });

  it('reports non-finite results with the first index', async () => {
    const args: MatmulArgs = {
      outFeatures: 2, inFeatures: 2, rank: 1, a: new Float32Array([1, 1]), b: new Float64Array([1, 70000]), transpose: false,
      rowStart: 0, rows: 2, base: encodeExact('F16', [0, 0, 0, 0]), baseDtype: 'F16', out: 'F16',
    };
    const res = await backend.run(matmulKernel, args);
    assert.equal(res.nonFinite, 2);
    assert.equal(res.firstNonFinite, 2);
  });
});

it('the F32 cases are hard: a plain f32 accumulation misses 1 ulp on them (the oracle can fail)', () => {
  const c = CASES.find((x) => x.outDtype === 'F32' && x.baseDtype === 'F32' && !x.transpose)!;
  const built = build(c);
  const { a, b } = built.args;
  const w = decode('F32', built.args.base!);
  const naive = new Float64Array(built.want.length);
  for (let o = 0; o < c.out; o++) {
    for (let i = 0; i < c.inp; i++) {
      let s = Math.fround(0);
      for (let k = 0; k < c.rank; k++) s = Math.fround(s + Math.fround(Math.fround(b[o * c.rank + k]) * a[k * c.inp + i]));
      naive[o * c.inp + i] = Math.fround(s + w[o * c.inp + i]);
    }
  }
  assert.ok(maxUlpError('F32', naive, built.want).max > 1);
});

describe('matmul CPU paths', () => {
  it('WebAssembly SIMD is available on this Node (else only the scalar loop would be tested)', () => {
    assert.equal(matmulSimdAvailable(), true);
  });
  for (const c of CASES) {
    it(`scalar loop, ${c.name}: every element within 1 ulp of float64`, () => {
      const built = build(c);
      const res = matmulScalar(built.args);
      assert.equal(res.nonFinite, 0);
      checkResult(c, built, res.bytes);
    });
  }
  it('the SIMD pass and the scalar loop round to the same bits (both sum in float64)', () => {
    let same = 0;
    let total = 0;
    for (const c of CASES) {
      if (c.outDtype === 'PAIR') continue;
      const built = build(c);
      const x = matmulScalar(built.args).bytes;
      const y = matmulCpu(built.args).bytes;
      for (let i = 0; i < x.length; i++) if (x[i] === y[i]) same++;
      total += x.length;
    }
    // Their sums associate differently, so only a sum within 2⁻⁵⁰ or so of a rounding boundary can differ.
    assert.ok(same / total > 0.9999, `${same} of ${total} bytes identical`);
  });
  it('flags a NaN in the base whatever its payload, on both paths', () => {
    // A negative NaN with every mantissa bit set: rounding its bits up must not wrap to +0.
    const base = new Uint8Array(new Float32Array([1, -1, 2, 3]).buffer);
    new Uint32Array(base.buffer)[2] = 0xffffffff;
    for (const out of ['BF16', 'F32', 'F16', 'PAIR'] as const) {
      const args: MatmulArgs = { outFeatures: 2, inFeatures: 2, rank: 1, a: new Float32Array([1, 0]), b: new Float64Array([0.5, 0.5]), transpose: false, rowStart: 0, rows: 2, base, baseDtype: 'F32', out };
      for (const run of [matmulScalar, matmulCpu]) {
        const res = run({ ...args, base: base.slice() });
        assert.equal(res.nonFinite, 1, `${out} ${run.name}`);
        assert.equal(res.firstNonFinite, 2, `${out} ${run.name}`);
      }
    }
  });
});

describe('matmul twins agree', () => {
  after(() => disposeBackends());
  it('CPU and WebGPU results differ by at most 1 ulp on every case, and mostly not at all', async (t) => {
    let gpu: Backend;
    try {
      gpu = await getBackend('webgpu');
    } catch (e) {
      if (process.env.CI === 'true') throw e;
      t.skip(`no WebGPU adapter: ${(e as Error).message}`);
      return;
    }
    const cpu = await getBackend('cpu');
    let same = 0;
    let total = 0;
    for (const c of CASES) {
      if (c.outDtype === 'PAIR') continue;
      const built = build(c);
      // The CPU pool takes ownership of (transfers) the base slice: each twin gets its own copy.
      const y = await gpu.run(matmulKernel, { ...built.args, base: built.args.base?.slice() });
      const x = await cpu.run(matmulKernel, built.args);
      const gx = decode(c.outDtype, x.bytes);
      const gy = decode(c.outDtype, y.bytes);
      const { max, at } = maxUlpError(c.outDtype, gy, gx);
      assert.ok(max <= 1, `${c.name}: twins differ by ${max} ulp at ${at}`);
      for (let i = 0; i < gx.length; i++) if (gx[i] === gy[i]) same++;
      total += gx.length;
    }
    // Both twins round a ~48-bit-or-better sum correctly: they can differ only where the exact value
    // sits on (or within 2⁻⁴⁸ of) a tie, which F16 inputs times 8/3 hit exactly now and then.
    assert.ok(same / total > 0.99, `${same} of ${total} identical`);
  });
});
