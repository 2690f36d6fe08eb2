import assert from 'node:assert/strict';
import { it } from 'node:test';
import { forEachBackend } from '../compute/backends';
import { SCHEMES, SCHEME_NAMES } from '../../src/compute/quant/schemes';
import { reportOf } from '../../src/compute/quant/common';
import { quantCases } from './quantCases';
import { refFp8, refInt8Channel, refQ4_0, refQ4_1, refQ8_0 } from './quantRef';

function firstDiff(a: Uint8Array, b: Uint8Array): string {
  for (let i = 0; i < Math.max(a.length, b.length); i++) if (a[i] !== b[i]) return `byte ${i}: got ${a[i]} want ${b[i]}`;
  return 'equal';
}

/** The reference's bytes and scales for a case. */
function expected(scheme: string, held: number[], rows: number, cols: number): { data: Uint8Array; scales?: Float32Array } {
  switch (scheme) {
    case 'q8_0': return { data: refQ8_0(held) };
    case 'q4_0': return { data: refQ4_0(held) };
    case 'q4_1': return { data: refQ4_1(held) };
    case 'int8-channel': {
      const r = refInt8Channel(held, rows, cols);
      return { data: new Uint8Array(r.q.buffer), scales: r.scales };
    }
    default: {
      const r = refFp8(held, rows, cols);
      return { data: r.q, scales: r.scales };
    }
  }
}

// One table, both backends: the GPU twin must give the reference's bytes too (its
// out-of-range blocks are redone on the host, the rest is the shader's own work).
forEachBackend('quantizers', (backend) => {
  const cases = quantCases();
  // The K-quant, Q5 and IQ4 schemes are held to libggml itself (kquantOracle, kquantPipeline).
  for (const name of SCHEME_NAMES.filter((n) => ['q8_0', 'q4_0', 'q4_1', 'int8-channel', 'fp8-e4m3'].includes(n))) {
    it(`${name}: bytes equal the reference on every case`, async () => {
      for (const c of cases) {
        const rows = c.held.length / c.cols;
        const got = await backend.run(SCHEMES[name].kernel, { src: c.bytes.slice(), dtype: c.dtype, rows, cols: c.cols });
        const want = expected(name, c.held, rows, c.cols);
        assert.ok(Buffer.compare(got.data, want.data) === 0, `${name} ${c.name}: ${firstDiff(got.data, want.data)}`);
        // Only values outside [2^-96, 2^126) may send work back to the host.
        if (backend.kind === 'webgpu' && !/extremes|wide|random bf16/.test(c.name)) assert.equal(got.hostRedone, 0, `${name} ${c.name} ran on the host`);
        if (want.scales) assert.deepEqual(Array.from(got.scales!), Array.from(want.scales), `${name} ${c.name} scales`);
        // The error sums are the backend's own (f32 partial sums on the GPU): check them against f64.
        if (c.name.startsWith('gaussian')) {
          const rep = reportOf(got.stats);
          assert.equal(got.stats.n, c.held.length);
          assert.ok(rep.cosine > 0.98 && rep.cosine <= 1 + 1e-6, `${name} cosine ${rep.cosine}`);
          assert.ok(rep.snrDb > 10, `${name} snr ${rep.snrDb}`);
        }
      }
    });
  }
});
