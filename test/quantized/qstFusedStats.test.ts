// The statistics that count codes instead of decoding (FP8 blocks, MXFP4, GPTQ int4: the CLI's
// table asks for no top-k) against the same weights decoded value by value (a top-k asks for
// that path), on every fixture: MXFP4 scales at the E8M0 extremes, GPTQ's act-order g_idx and
// its zero point that wraps, NaN and zero scales. Every count, extreme and bin is the decoded
// path's; mean and std agree within float64 rounding, and with the reference's statistics.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { disposeBackends } from '../../src/compute/backend';
import { openModel } from '../../src/format';
import { stats, type TensorStats } from '../../src/pipelines/stats';
import { CASES, expectedOf, quantFixtures, torchAvailable } from './qstFixtures';

after(() => disposeBackends());

const skip = !torchAvailable() && 'python3 with torch is not installed';

function assertSame(got: TensorStats, want: TensorStats, what: string): void {
  for (const k of ['count', 'finite', 'nan', 'posInf', 'negInf', 'zeros', 'nearZero', 'outliers', 'min', 'max', 'absMax'] as const) assert.equal(got[k], want[k], `${what}.${k}`);
  for (const k of ['mean', 'std'] as const) {
    if (want[k] === null) assert.equal(got[k], null, `${what}.${k}`);
    else assert.ok(Math.abs(got[k]! - want[k]!) <= 1e-12 * Math.max(1, Math.abs(want[k]!)), `${what}.${k}: ${got[k]} vs ${want[k]}`);
  }
  assert.deepEqual(got.histogram, want.histogram, `${what}.histogram`);
  assert.deepEqual(got.logHistogram, want.logHistogram, `${what}.logHistogram`);
}

for (const name of CASES) {
  test(`${name}: statistics from counted codes equal the decoded values' statistics, with and without histograms`, { skip }, async () => {
    const dir = join(quantFixtures().dir, name);
    const m = await openModel(dir);
    try {
      const want = expectedOf(dir);
      const names = Object.keys(want.logical);
      if (names.length === 0) return;
      for (const histograms of [false, true]) {
        // topK 1 takes the decoding path; its one entry is the only difference the reports may have.
        const decoded = await stats(m, { backend: 'cpu', tensors: names, histograms, topK: 1 });
        const counted = await stats(m, { backend: 'cpu', tensors: names, histograms, topK: 0 });
        for (const n of names) {
          const d = decoded.tensors.find((x) => x.name === n)!;
          const c = counted.tensors.find((x) => x.name === n)!;
          assertSame(c, d, `${n} (histograms ${histograms})`);
          const r = want.logical[n].stats;
          for (const k of ['finite', 'nan', 'posInf', 'negInf', 'zeros', 'min', 'max'] as const) assert.equal(c[k], r[k], `${n}.${k} against the reference`);
        }
        assert.deepEqual(counted.health, { ...decoded.health }, 'health');
      }
    } finally {
      await m.close();
    }
  });
}
