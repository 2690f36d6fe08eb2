// diff.reduceMany against diff.reduce: every pair of a batch, at any byte offset in its
// buffers, reduces exactly as it would alone on the same backend.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { DiffDType } from '../../src/compute/diff/decodeChunk';
import { diffReduceKernel } from '../../src/compute/diff/diffReduce';
import { diffReduceManyKernel, REDUCE_FIELDS } from '../../src/compute/diff/diffReduceMany';
import { forEachBackend } from '../compute/backends';
import { rng } from '../compute/reference';

const BYTES: Record<DiffDType, number> = { F32: 4, F16: 2, BF16: 2 };

forEachBackend('diff.reduceMany', (backend) => {
  it('gives each pair the single-pair reduction, whatever its offsets', async () => {
    const next = rng(11);
    const dtypes: DiffDType[] = [];
    const counts: number[] = [];
    for (let i = 0; i < 60; i++) {
      dtypes.push((['F32', 'F16', 'BF16'] as const)[i % 3]);
      // Odd, even, one-element and multi-block counts.
      counts.push([1, 2, 7, 32, 333, 20_000][next() % 6]);
    }
    // Gaps of 0..3 bytes before each item: offsets not aligned to the element size.
    const atA = new Float64Array(dtypes.length);
    const atB = new Float64Array(dtypes.length);
    const bytes = new Float64Array(dtypes.length);
    let posA = 0;
    let posB = 0;
    dtypes.forEach((d, i) => {
      bytes[i] = counts[i] * BYTES[d];
      atA[i] = posA += next() % 4;
      atB[i] = posB += next() % 4;
      posA += bytes[i];
      posB += bytes[i];
    });
    const a = new Uint8Array(posA);
    const b = new Uint8Array(posB);
    for (let i = 0; i < a.length; i++) a[i] = next() & 0xff;
    dtypes.forEach((_, i) => {
      const src = a.subarray(atA[i], atA[i] + bytes[i]);
      const dst = b.subarray(atB[i], atB[i] + bytes[i]);
      dst.set(src);
      // Some pairs equal, some with a few changed bytes, some all changed.
      if (i % 3 === 1) for (let k = 0; k < 3; k++) dst[next() % dst.length] ^= 1 << (next() % 8);
      if (i % 3 === 2) for (let k = 0; k < dst.length; k++) dst[k] = next() & 0xff;
    });
    const want = [];
    for (let i = 0; i < dtypes.length; i++) {
      // Copies, so that the per-pair run cannot move the batch's buffers.
      want.push(await backend.run(diffReduceKernel, { dtype: dtypes[i], a: a.slice(atA[i], atA[i] + bytes[i]), b: b.slice(atB[i], atB[i] + bytes[i]) }));
    }
    const got = await backend.run(diffReduceManyKernel, { a: a.slice(), b: b.slice(), dtypes, atA, atB, bytes });
    assert.equal(got.length, dtypes.length * REDUCE_FIELDS.length);
    want.forEach((w, i) => {
      REDUCE_FIELDS.forEach((f, k) => assert.ok(Object.is(got[i * REDUCE_FIELDS.length + k], w[f]), `pair ${i} (${dtypes[i]} × ${counts[i]}) ${f}: ${got[i * REDUCE_FIELDS.length + k]} vs ${w[f]}`));
    });
    // Not vacuous: some pairs differ and some do not.
    assert.ok(want.some((w) => w.nDiff > 0) && want.some((w) => w.nDiff === 0));
  });
});
