import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { disposeBackends, getBackend } from '../../src/compute/backend';
import { getCpuPool } from '../../src/compute/cpu/pool';
import { gpuIsSoftware, isSoftwareAdapter } from '../../src/compute/gpu/device';
import { decodeKernel } from '../../src/compute/decode/decode';
import { statsKernel, type PatternScan } from '../../src/compute/stats/stats';
import { resultTransfer } from '../../src/compute/worker';
import { BATCH_KERNEL } from '../../src/compute/cpu/pool';
import { CancelledError } from '../../src/core/job';
import type { DType } from '../../src/format/dtypes';
import { forEachBackend, webgpuOrSkip } from './backends';
import { pack, refDecode } from './reference';

const SMALL: [DType, number][] = [
  ['BF16', 16], ['F16', 16], ['F8_E5M2', 8], ['F8_E4M3', 8], ['F8_E8M0', 8], ['F8_E4M3FNUZ', 8], ['F8_E5M2FNUZ', 8],
  ['F6_E2M3', 6], ['F6_E3M2', 6], ['F4', 4],
];

/** Every pattern, then a pseudo-random tail so that lengths are not multiples of the workgroup size. */
function patternsFor(bits: number, extra: number): number[] {
  const all = Array.from({ length: 1 << bits }, (_, i) => i);
  let x = 12345;
  for (let i = 0; i < extra; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    all.push(x % (1 << bits));
  }
  return all;
}

forEachBackend('decode', (backend) => {
  for (const [dtype, bits] of SMALL) {
    for (const extra of [0, 1, 37, 1000]) {
      it(`${dtype}: every pattern + ${extra} random, vs the format definition`, async () => {
        const pats = patternsFor(bits, extra);
        const got = await backend.run(decodeKernel, { dtype, bytes: pack(bits, pats), count: pats.length });
        assert.equal(got.length, pats.length);
        for (let i = 0; i < pats.length; i++) {
          const want = refDecode(dtype, pats[i]);
          if (Number.isNaN(want)) assert.ok(Number.isNaN(got[i]), `${dtype} pattern ${pats[i]}: want NaN, got ${got[i]}`);
          else assert.ok(Object.is(got[i], Math.fround(want)), `${dtype} pattern ${pats[i]}: want ${want}, got ${got[i]}`);
        }
      });
    }
  }
  it('known maxima: E4M3 448, E5M2 57344, E4M3FNUZ 240, F6_E2M3 7.5, F6_E3M2 28, F4 6', async () => {
    const cases: [DType, number, number][] = [
      ['F8_E4M3', 0x7e, 448], ['F8_E5M2', 0x7b, 57344], ['F8_E4M3FNUZ', 0x7f, 240], ['F6_E2M3', 0x1f, 7.5], ['F6_E3M2', 0x1f, 28], ['F4', 0x7, 6],
    ];
    for (const [dtype, p, v] of cases) {
      const bits = dtype.startsWith('F6') ? 6 : dtype === 'F4' ? 4 : 8;
      const got = await backend.run(decodeKernel, { dtype, bytes: pack(bits, [p]), count: 1 });
      assert.equal(got[0], v, dtype);
    }
  });
  it('empty input', async () => {
    const got = await backend.run(decodeKernel, { dtype: 'BF16', bytes: new Uint8Array(0) });
    assert.equal(got.length, 0);
  });
});

describe('cpu pool', () => {
  after(() => disposeBackends());
  it('a throwing kernel rejects with its own message', async () => {
    const cpu = await getBackend('cpu');
    await assert.rejects(cpu.run(decodeKernel, { dtype: 'I32', bytes: new Uint8Array(8) }), /decode: I32 is not a float dtype/);
    // The worker survived and still answers.
    const ok = await cpu.run(decodeKernel, { dtype: 'F4', bytes: new Uint8Array([0x72]) });
    assert.deepEqual([...ok], [1, 6]);
  });
  it('cancelling a running task rejects it with CancelledError and the pool recovers', async () => {
    const cpu = await getBackend('cpu');
    const ac = new AbortController();
    // 64 Mi elements: long enough to still be running when the abort lands.
    const p = cpu.run(decodeKernel, { dtype: 'BF16', bytes: new Uint8Array(128 << 20) }, ac.signal);
    setTimeout(() => ac.abort(), 20);
    await assert.rejects(p, (e) => e instanceof CancelledError);
    const ok = await cpu.run(decodeKernel, { dtype: 'BF16', bytes: new Uint8Array([0x80, 0x3f]) });
    assert.deepEqual([...ok], [1]);
  });
  it('an already-aborted signal never starts the task', async () => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(getCpuPool().run('decode', { dtype: 'BF16', bytes: new Uint8Array(2) }, [], ac.signal), (e) => e instanceof CancelledError);
  });
});

describe('buffers across the worker boundary', () => {
  after(disposeBackends);
  it('statistics results are copied back (alone or batched); other kernels move their buffers, never shared ones', () => {
    const result = { patterns: new Uint32Array(16), parts: [new Uint8Array(64), new Uint8Array(new SharedArrayBuffer(64))] };
    assert.deepEqual(resultTransfer('stats', {}, result), []);
    assert.deepEqual(resultTransfer(BATCH_KERNEL, { kernel: 'stats', items: [] }, [result]), []);
    assert.deepEqual(resultTransfer('stats.small', {}, result), []);
    assert.deepEqual(resultTransfer('decode', {}, result), [result.patterns.buffer, result.parts[0].buffer]);
    assert.deepEqual(resultTransfer(BATCH_KERNEL, { kernel: 'decode', items: [] }, [result]), [result.patterns.buffer, result.parts[0].buffer]);
  });
  it('statistics of shared bytes leave them in place, unmoved and unchanged, for the next slice', async () => {
    const n = 4096;
    const bytes = new Uint8Array(new SharedArrayBuffer(2 * n));
    for (let i = 0; i < n; i++) bytes.set([i & 0xff, 0x3f], 2 * i); // BF16 values in [0.5, 1)
    const before = bytes.slice();
    const args = { phase: 'scan' as const, dtype: 'BF16' as const, first: 0, count: n, bytes, topK: 4 };
    assert.deepEqual(statsKernel.transfer!(args), []);
    const r = (await (await getBackend('cpu')).run(statsKernel, args)) as PatternScan;
    assert.equal(r.counts.reduce((a, b) => a + b, 0), n);
    assert.equal(r.patterns.length, 256);
    assert.equal(bytes.byteLength, 2 * n);
    assert.deepEqual(bytes, before);
  });
});

describe('backend choice', () => {
  after(() => disposeBackends());
  it('recognises WebGPU adapters that run on the CPU by their reported names', () => {
    // As Dawn reports them: SwiftShader (Chromium's), Mesa's llvmpipe through lavapipe, Windows' WARP; then two GPUs.
    assert.equal(isSoftwareAdapter({ vendor: 'google', architecture: 'swiftshader', device: 'swiftshader-device-subzero-', description: 'SwiftShader driver 5.0.0', isFallbackAdapter: true }), true);
    assert.equal(isSoftwareAdapter({ vendor: 'mesa', architecture: '', device: 'llvmpipe (LLVM 15.0.6, 256 bits)', description: 'Mesa 22.3.6' }), true);
    assert.equal(isSoftwareAdapter({ vendor: 'microsoft', architecture: '', device: 'Microsoft Basic Render Driver', description: 'D3D12 Microsoft Basic Render Driver' }), true);
    assert.equal(isSoftwareAdapter({ vendor: 'nvidia', architecture: 'hopper', device: 'NVIDIA H100 80GB HBM3', description: 'NVIDIA: 580.159.04' }), false);
    assert.equal(isSoftwareAdapter({ vendor: 'apple', architecture: 'metal-3', device: '', description: 'Apple M2' }), false);
  });
  it('auto runs on the CPU pool when the only adapter is a software one; webgpu still takes it', async (t) => {
    const gpu = await webgpuOrSkip(t);
    if (!gpu) return;
    assert.equal(gpu.kind, 'webgpu');
    const software = gpuIsSoftware();
    // CI's adapter is SwiftShader (VK_ICD_FILENAMES): there the software branch must be the one taken.
    if (process.env.CI === 'true' && /swiftshader/.test(process.env.VK_ICD_FILENAMES ?? '')) assert.equal(software, true);
    assert.equal((await getBackend('auto')).kind, software ? 'cpu' : 'webgpu');
  });
});
