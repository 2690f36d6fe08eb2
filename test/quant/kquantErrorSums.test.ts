import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kquantCpu, KQUANT_TYPES, type KQuantType } from '../../src/compute/quant/kquant.cpu';
import { useScalarQkx } from '../../src/compute/quant/kquantWasm';

/**
 * The K-quant kernels' error sums (Σx², Σx·e, Σe², max|e| against our dequantizer) are
 * summed in WebAssembly where it is present; they must equal the JavaScript loop's to the
 * last bit, over several steps of a tensor (rows longer and shorter than one step), with
 * outliers and a NaN (which never becomes the maximum error).
 */

function rows(n: number, seed: number): Float32Array {
  const x = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    x[i] = ((s / 4294967296) - 0.5) * (i % 61 === 7 ? 40 : 0.05);
  }
  return x;
}

for (const type of ['Q4_K', 'Q6_K', 'Q5_K', 'IQ4_NL'] as KQuantType[]) {
  test(`${type}: error sums in WebAssembly equal the JavaScript loop's`, () => {
    for (const [r, cols] of [[40, 4096], [3, 256 * 3], [300, 512]] as const) {
      const x = rows(r * cols, r + cols);
      if (cols === 512) x[1000] = NaN;
      const args = { src: new Uint8Array(x.buffer), dtype: 'F32' as const, rows: r, cols };
      const fast = kquantCpu(type, args).stats;
      useScalarQkx(true);
      try {
        const slow = kquantCpu(type, args).stats;
        assert.deepEqual(fast, slow, `${r}×${cols}`);
      } finally {
        useScalarQkx(false);
      }
      assert.ok(KQUANT_TYPES[type] && fast.n === r * cols);
    }
  });
}
