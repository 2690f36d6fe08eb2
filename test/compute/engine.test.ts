import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { disposeBackends, getBackend } from '../../src/compute/backend';
import { getCpuPool } from '../../src/compute/cpu/pool';
import { decodeKernel } from '../../src/compute/decode/decode';
import { CancelledError } from '../../src/pipelines/job';
import type { DType } from '../../src/format/dtypes';
import { forEachBackend } from './backends';

/**
 * An independent reading of each format's definition (OCP MX / IEEE 754 / FNUZ),
 * written without the library's tables: sign, exponent field, mantissa field.
 */
function refDecode(dtype: DType, p: number): number {
  const spec: Record<string, [number, number, number]> = {
    F16: [5, 10, 15], F8_E5M2: [5, 2, 15], F8_E4M3: [4, 3, 7], F8_E4M3FNUZ: [4, 3, 8], F8_E5M2FNUZ: [5, 2, 16],
    F6_E2M3: [2, 3, 1], F6_E3M2: [3, 2, 3], F4: [2, 1, 1],
  };
  if (dtype === 'BF16') {
    const dv = new DataView(new ArrayBuffer(4));
    dv.setUint32(0, p * 65536);
    return dv.getFloat32(0);
  }
  if (dtype === 'F8_E8M0') return p === 255 ? NaN : Math.pow(2, p - 127);
  const [eb, mb, bias] = spec[dtype];
  const s = Math.floor(p / 2 ** (eb + mb)) % 2 === 1 ? -1 : 1;
  const e = Math.floor(p / 2 ** mb) % 2 ** eb;
  const m = p % 2 ** mb;
  if (dtype.endsWith('FNUZ')) {
    if (p === 2 ** (eb + mb)) return NaN;
  } else if (dtype === 'F16' || dtype === 'F8_E5M2') {
    if (e === 2 ** eb - 1) return m === 0 ? s * Infinity : NaN;
  } else if (dtype === 'F8_E4M3') {
    if (e === 15 && m === 7) return NaN;
  }
  return e === 0 ? s * m * Math.pow(2, 1 - bias - mb) : s * (1 + m / 2 ** mb) * Math.pow(2, e - bias);
}

/** Packs patterns LSB-first into bytes, as safetensors stores sub-byte dtypes. */
function pack(bits: number, pats: number[]): Uint8Array {
  const out = new Uint8Array(Math.ceil((pats.length * bits) / 8));
  pats.forEach((p, i) => {
    for (let b = 0; b < bits; b++) if ((p >> b) & 1) out[(i * bits + b) >> 3] |= 1 << ((i * bits + b) & 7);
  });
  return out;
}

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
