import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dequantize } from '../../src/compute/dequant/dequant.cpu';
import { KQUANT_TYPES, quantizeGgmlRows, type KQuantType } from '../../src/compute/quant/kquant.cpu';
import { useScalarQkx } from '../../src/compute/quant/kquantWasm';
import { loadGgml } from '../gguf/ggmlOracle';

/**
 * The K-quant, Q5 and IQ4 quantizers against libggml's own `ggml_quantize_chunk`
 * (node-llama-cpp's CPU build, through koffi): the bytes must be equal, without and with
 * an importance matrix, on random, model-like and adversarial rows.
 */
const loaded = loadGgml();
const CI = process.env.CI === 'true';
const skip = typeof loaded === 'string' ? `libggml oracle unavailable: ${loaded}` : false;
if (typeof loaded === 'string') {
  if (CI) test('libggml oracle loads', () => assert.fail(loaded));
  else console.log(`# skipping the ggml oracle tests: ${loaded}`);
}

/** A small deterministic generator (mulberry32), so that a failing row can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gauss(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

type RowMaker = (n: number, r: () => number) => Float32Array;

const ROWS: Record<string, RowMaker> = {
  uniform: (n, r) => Float32Array.from({ length: n }, () => r() * 2 - 1),
  gaussian: (n, r) => Float32Array.from({ length: n }, () => gauss(r) * 0.02),
  heavyTailed: (n, r) => Float32Array.from({ length: n }, () => gauss(r) * 0.02 / Math.max(0.05, Math.sqrt(r()))),
  outlierChannels: (n, r) => Float32Array.from({ length: n }, (_, i) => gauss(r) * (i % 97 === 5 ? 3 : 0.01)),
  zeros: (n) => new Float32Array(n),
  oneHuge: (n, r) => { const a = Float32Array.from({ length: n }, () => gauss(r) * 1e-3); a[Math.floor(r() * n)] = 6e4; return a; },
  denormals: (n, r) => Float32Array.from({ length: n }, () => (r() - 0.5) * 1e-39),
  tinyAndNormal: (n, r) => Float32Array.from({ length: n }, (_, i) => (i % 64 < 32 ? (r() - 0.5) * 1e-30 : gauss(r))),
  ties: (n, r) => Float32Array.from({ length: n }, () => (Math.floor(r() * 9) - 4) * 0.25),
  constant: (n) => new Float32Array(n).fill(0.37),
  negativeOnly: (n, r) => Float32Array.from({ length: n }, () => -r() - 0.01),
  positiveOnly: (n, r) => Float32Array.from({ length: n }, () => r() * 3),
  bigRange: (n, r) => Float32Array.from({ length: n }, () => gauss(r) * 1e4),
  sparse: (n, r) => Float32Array.from({ length: n }, () => (r() < 0.05 ? gauss(r) : 0)),
};

type WeightMaker = ((n: number, r: () => number) => Float32Array) | null;

const WEIGHTS: Record<string, WeightMaker> = {
  none: null,
  random: (n, r) => Float32Array.from({ length: n }, () => r() * 4 + 1e-3),
  withZeros: (n, r) => Float32Array.from({ length: n }, () => (r() < 0.3 ? 0 : r() * 10)),
  heavy: (n, r) => Float32Array.from({ length: n }, () => Math.exp(gauss(r) * 3)),
};

const TYPES = Object.keys(KQUANT_TYPES) as KQuantType[];

// 5632 (22 super-blocks): rows longer than one call of the SIMD searches (16 super-blocks).
function lengthsOf(type: KQuantType): number[] {
  return KQUANT_TYPES[type].blockSize === 256 ? [256, 512, 4096, 5632] : [32, 96, 256, 4096];
}

let rowsCompared = 0;
let bytesCompared = 0;

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

for (const type of TYPES) {
  test(`${type}: byte-identical to ggml_quantize_chunk, without and with an importance matrix`, { skip }, () => {
    const g = loaded as Exclude<typeof loaded, string>;
    let seed = 1;
    for (const n of lengthsOf(type)) {
      const rows = n >= 4096 ? 2 : 3;
      for (const [rowName, make] of Object.entries(ROWS)) {
        for (const [wName, wMake] of Object.entries(WEIGHTS)) {
          const r = rng(seed++);
          const x = new Float32Array(rows * n);
          for (let k = 0; k < rows; k++) x.set(make(n, r), k * n);
          const qw = wMake ? wMake(n, r) : null;
          const want = g.quantize(type, x, rows, n, qw ?? undefined);
          const got = quantizeGgmlRows(type, x, rows, n, qw);
          const at = firstDiff(got, want);
          assert.equal(at, -1, `${type} ${rowName} ×${n} weights=${wName}: first differing byte ${at} (ours ${got[at]}, ggml ${want[at]})`);
          assert.equal(got.length, want.length);
          rowsCompared += rows;
          bytesCompared += got.length;
        }
      }
    }
  });
}

test('the scalar search loops (no WebAssembly) give the same bytes', { skip }, () => {
  const g = loaded as Exclude<typeof loaded, string>;
  useScalarQkx(true);
  try {
    let seed = 500;
    for (const type of ['Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K', 'Q5_0', 'Q5_1'] as KQuantType[]) {
      for (const rowName of ['gaussian', 'heavyTailed', 'oneHuge', 'negativeOnly', 'ties']) {
        for (const wName of ['none', 'random', 'withZeros']) {
          const r = rng(seed++);
          const x = ROWS[rowName](2 * 512, r);
          const qw = WEIGHTS[wName]?.(512, r) ?? null;
          const got = quantizeGgmlRows(type, x, 2, 512, qw);
          assert.equal(firstDiff(got, g.quantize(type, x, 2, 512, qw ?? undefined)), -1, `${type} ${rowName} ${wName}`);
          rowsCompared += 2;
          bytesCompared += got.length;
        }
      }
    }
  } finally {
    useScalarQkx(false);
  }
});

test('round trip: our dequantizer reads the bytes back exactly as ggml does', { skip }, () => {
  const g = loaded as Exclude<typeof loaded, string>;
  const r = rng(99);
  for (const type of TYPES) {
    const n = 512;
    const x = ROWS.heavyTailed(2 * n, r);
    for (const qw of [null, WEIGHTS.random!(n, r)]) {
      const bytes = quantizeGgmlRows(type, x, 2, n, qw);
      const ours = new Float32Array(2 * n);
      dequantize(type, bytes, ours);
      const theirs = g.toFloat(type, bytes, 2 * n);
      assert.deepEqual(new Uint32Array(ours.buffer), new Uint32Array(theirs.buffer), `${type}`);
      let e2 = 0, x2 = 0;
      for (let i = 0; i < 2 * n; i++) { e2 += (x[i] - ours[i]) ** 2; x2 += x[i] ** 2; }
      // Even 2-bit codes keep the error well under the signal on model-like rows.
      assert.ok(e2 < 0.5 * x2, `${type}: error ${e2} against signal ${x2}`);
    }
  }
});

test('oracle totals', { skip }, () => {
  console.log(`# ${rowsCompared} rows, ${bytesCompared} bytes compared with ggml_quantize_chunk`);
  assert.ok(rowsCompared > 0);
});
