import assert from 'node:assert/strict';
import { it } from 'node:test';
import { deltaSketchKernel } from '../../src/compute/diff/deltaSketch';
import { deltaSketchCpu, deltaSketchScalar } from '../../src/compute/diff/deltaSketch.cpu';
import { diffReduceKernel, type DiffReduceArgs } from '../../src/compute/diff/diffReduce';
import { forEachBackend } from '../compute/backends';
import { decodeRef, elementBits, encode, normals, rng, type FloatDType } from './diffFixtures';

/**
 * Tolerances per backend. CPU: f64 accumulation of exactly decoded values, so only
 * summation order separates it from the oracle. WebGPU: f32 partials of at most
 * 4096 terms (16 sequential + an 8-level tree), summed in f64 on the host.
 */
const SUM_TOL = { cpu: 1e-12, webgpu: 1e-5 } as const;
/**
 * The sketch products: both twins sum in f32 (the CPU in WebAssembly SIMD, four lanes
 * then a tree of eight rows' lanes), so the error grows like √n·2⁻²⁴ of ‖row‖·‖column‖.
 */
const SKETCH_TOL = { cpu: 1e-5, webgpu: 1e-4 } as const;

interface ReduceCase {
  readonly name: string;
  readonly dtype: FloatDType;
  readonly a: Uint8Array;
  readonly b?: Uint8Array;
  readonly hist?: DiffReduceArgs['hist'];
  /** Expected histogram, when the case is built so that every Δ sits mid-bin. */
  readonly histExpect?: number[];
}

/** Values of moderate range, so that Δ of two stored values is exact in f32 and max ties are meaningful. */
function pair(dtype: FloatDType, n: number, seed: number, changedShare: number): { a: Uint8Array; b: Uint8Array } {
  const r = rng(seed);
  const va = normals(n, r);
  const a = encode(dtype, va);
  const da = decodeRef(dtype, a);
  const vb = Float64Array.from(da, (x) => (r() < changedShare ? x + 0.05 * (r() - 0.5) : x));
  return { a, b: encode(dtype, vb) };
}

function cases(): ReduceCase[] {
  const out: ReduceCase[] = [];
  for (const dtype of ['BF16', 'F16', 'F32'] as const) {
    for (const n of [1, 7, 4096 + 13, 20000]) {
      const { a, b } = pair(dtype, n, n * 7 + dtype.length, 0.3);
      out.push({ name: `${dtype} n=${n} 30% changed`, dtype, a, b });
    }
    const { a } = pair(dtype, 5000, 99, 0);
    out.push({ name: `${dtype} without b (norms only)`, dtype, a });
    // Ties: the same |Δ| at three indices (one negative) across workgroups; the lowest index must win.
    const n = 9000;
    const base = decodeRef(dtype, pair(dtype, n, 5, 0).a);
    const vb = Float64Array.from(base);
    for (const i of [6000, 300, 8999]) vb[i] = base[i] + (i === 300 ? -1 : 1) * 64;
    const ta = encode(dtype, Float64Array.from(base, (x, i) => ([6000, 300, 8999].includes(i) ? 0.5 : x)));
    const tb = encode(dtype, Float64Array.from(vb, (x, i) => (i === 300 ? 0.5 - 64 : [6000, 8999].includes(i) ? 64.5 : x)));
    out.push({ name: `${dtype} max ties go to the lowest index`, dtype, a: ta, b: tb });
    // +0 against −0: the bits differ, the values do not.
    out.push({ name: `${dtype} signed zeros differ in bits only`, dtype, a: encode(dtype, [0, 0, 1, 2]), b: encode(dtype, [-0, 0, 1, 2]) });
    // Histogram: bins of width 1 over [−4, 4); every Δ mid-bin, two beyond each end.
    const deltas = [-3.5, -0.5, 0.5, 0.5, 2.5, 3.5, 10, -10, 0];
    const ha = new Float64Array(deltas.length).fill(1);
    out.push({
      name: `${dtype} Δ histogram`,
      dtype,
      a: encode(dtype, ha),
      b: encode(dtype, ha.map((x, i) => x + deltas[i])),
      hist: { bins: 8, lo: -4, hi: 4 },
      histExpect: [2, 0, 0, 1, 2, 0, 1, 2],
    });
  }
  return out;
}

function reference(c: ReduceCase) {
  const a = decodeRef(c.dtype, c.a);
  const b = c.b ? decodeRef(c.dtype, c.b) : a;
  let sumA2 = 0, sumB2 = 0, dot = 0, sumD2 = 0, sumAbsD = 0, maxAbs = 0, maxIndex = -1, nDiff = 0;
  for (let i = 0; i < a.length; i++) {
    const d = b[i] - a[i];
    sumA2 += a[i] * a[i];
    sumB2 += b[i] * b[i];
    dot += a[i] * b[i];
    sumD2 += d * d;
    sumAbsD += Math.abs(d);
    if (Math.abs(d) > maxAbs) {
      maxAbs = Math.abs(d);
      maxIndex = i;
    }
    if (c.b && elementBits(c.dtype, c.a, i) !== elementBits(c.dtype, c.b, i)) nDiff++;
  }
  return { n: a.length, sumA2, sumB2, dot, sumD2, sumAbsD, maxAbs, maxIndex, nDiff };
}

forEachBackend('diff.reduce', (backend) => {
  const tol = SUM_TOL[backend.kind];
  for (const c of cases()) {
    it(c.name, async () => {
      const ref = reference(c);
      const got = await backend.run(diffReduceKernel, { dtype: c.dtype, a: c.a.slice(), b: c.b?.slice(), hist: c.hist });
      assert.equal(got.n, ref.n);
      assert.equal(got.nDiff, ref.nDiff, 'differing elements');
      assert.equal(got.maxIndex, ref.maxIndex, 'index of the largest |Δ|');
      assert.equal(got.maxAbs, Math.fround(ref.maxAbs), 'largest |Δ|');
      for (const k of ['sumA2', 'sumB2', 'sumD2', 'sumAbsD'] as const) {
        assert.ok(Math.abs(got[k] - ref[k]) <= tol * Math.abs(ref[k]) + 1e-30, `${k}: ${got[k]} vs ${ref[k]}`);
      }
      assert.ok(Math.abs(got.dot - ref.dot) <= tol * Math.sqrt(ref.sumA2 * ref.sumB2) + 1e-30, `dot: ${got.dot} vs ${ref.dot}`);
      if (c.histExpect) assert.deepEqual([...got.hist!], c.histExpect);
    });
  }
});

interface SketchCase {
  readonly dtype: FloatDType;
  readonly rows: number;
  readonly cols: number;
  readonly k: number;
  readonly back: boolean;
  /** Share of Δ's elements that are non-zero. */
  readonly density: number;
}

const SKETCH_CASES: SketchCase[] = [
  { dtype: 'BF16', rows: 37, cols: 53, k: 9, back: true, density: 1 },
  { dtype: 'F16', rows: 16, cols: 130, k: 72, back: true, density: 0.2 },
  { dtype: 'F32', rows: 65, cols: 33, k: 5, back: false, density: 1 },
  { dtype: 'BF16', rows: 1, cols: 7, k: 3, back: true, density: 1 },
  // A real row length (Llama's hidden size) and a sketch width that is not a multiple of eight.
  { dtype: 'BF16', rows: 13, cols: 2048, k: 20, back: true, density: 1 },
];

forEachBackend('diff.sketch', (backend) => {
  const tol = SKETCH_TOL[backend.kind];
  for (const c of SKETCH_CASES) {
    it(`${c.dtype} ${c.rows}×${c.cols}, k=${c.k}${c.back ? ', with Δᵀy' : ''}`, async () => {
      const { a, b } = pair(c.dtype, c.rows * c.cols, c.rows * 31 + c.cols, c.density);
      const d = decodeRef(c.dtype, b).map((y, i) => y - decodeRef(c.dtype, a)[i]);
      const x = Float32Array.from(normals(c.cols * c.k, rng(7)));
      // Inputs move to the worker: hand over copies, keep the originals for the oracle.
      const got = await backend.run(deltaSketchKernel, { dtype: c.dtype, rows: c.rows, cols: c.cols, a: a.slice(), b: b.slice(), k: c.k, x: x.slice(), back: c.back });
      // y = Δx in f64, compared relative to ‖Δ_row‖·‖x_col‖ (the scale of each dot product).
      const y = new Float64Array(c.rows * c.k);
      for (let r = 0; r < c.rows; r++) {
        for (let j = 0; j < c.k; j++) {
          let s = 0, nd = 0, nx = 0;
          for (let col = 0; col < c.cols; col++) {
            s += d[r * c.cols + col] * x[col * c.k + j];
            nd += d[r * c.cols + col] ** 2;
            nx += x[col * c.k + j] ** 2;
          }
          y[r * c.k + j] = s;
          assert.ok(Math.abs(got.y[r * c.k + j] - s) <= tol * Math.sqrt(nd * nx) + 1e-30, `y[${r},${j}]: ${got.y[r * c.k + j]} vs ${s}`);
        }
      }
      if (!c.back) {
        assert.equal(got.z, undefined);
        return;
      }
      assert.equal(got.z!.length, c.cols * c.k);
      for (let col = 0; col < c.cols; col++) {
        for (let j = 0; j < c.k; j++) {
          let s = 0, nd = 0, ny = 0;
          for (let r = 0; r < c.rows; r++) {
            s += d[r * c.cols + col] * y[r * c.k + j];
            nd += d[r * c.cols + col] ** 2;
            ny += y[r * c.k + j] ** 2;
          }
          assert.ok(Math.abs(got.z![col * c.k + j] - s) <= 2 * tol * Math.sqrt(nd * ny) + 1e-30, `z[${col},${j}]: ${got.z![col * c.k + j]} vs ${s}`);
        }
      }
    });
  }
});

it('diff.sketch: the portable scalar loops (where WebAssembly SIMD is missing) agree with the SIMD path', () => {
  const c = { dtype: 'BF16' as const, rows: 9, cols: 300, k: 11 };
  const { a, b } = pair(c.dtype, c.rows * c.cols, 5, 1);
  const x = Float32Array.from(normals(c.cols * c.k, rng(3)));
  const simd = deltaSketchCpu({ ...c, a: a.slice(), b: b.slice(), x: x.slice(), back: true });
  const scalar = deltaSketchScalar({ ...c, a: a.slice(), b: b.slice(), x: x.slice(), back: true });
  const close = (p: Float32Array, q: Float32Array) => {
    const scale = Math.max(...q.map(Math.abs));
    for (let i = 0; i < q.length; i++) assert.ok(Math.abs(p[i] - q[i]) <= 1e-5 * scale, `${i}: ${p[i]} vs ${q[i]}`);
  };
  close(simd.y, scalar.y);
  close(simd.z!, scalar.z!);
});
