// Quantized safetensors read as logical tensors: recognition (names, schemes, shapes, parts, notes),
// dequantized values bit for bit against the references (and Transformers' own functions), chunk
// boundaries, and stats on the dequantized values against torch's statistics of the reference.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { disposeBackends } from '../../src/compute/backend';
import { decodeCpu } from '../../src/compute/decode/decode.cpu';
import { openModel, type Model, type TensorInfo } from '../../src/format';
import { readSchemeUnits, unitCount } from '../../src/format/quantized/units';
import { inspectReport } from '../../src/pipelines/inspect';
import { stats } from '../../src/pipelines/stats';
import { CASES, expectedOf, f32File, firstBitDifference, quantFixtures, torchAvailable } from './qstFixtures';

after(() => disposeBackends());

const skip = !torchAvailable() && 'python3 with torch is not installed';

async function withCase<T>(name: string, f: (m: Model, dir: string) => Promise<T>): Promise<T> {
  const dir = join(quantFixtures().dir, name);
  const m = await openModel(dir);
  try {
    return await f(m, dir);
  } finally {
    await m.close();
  }
}

/** Decodes units [u0, u1) of a scheme tensor through the decode kernel's CPU twin. */
async function decodeUnits(m: Model, t: TensorInfo, u0: number, u1: number): Promise<Float32Array> {
  const u = await readSchemeUnits(m, t, u0, u1);
  return decodeCpu({ dtype: t.dtype, bytes: u.data, more: u.more, count: u.count, storage: t.storage });
}

for (const name of CASES) {
  test(`${name}: inspect lists each quantized weight once, by the weight's name, with its scheme, shape and parts`, { skip }, async () => {
    await withCase(name, async (m, dir) => {
      const want = expectedOf(dir);
      const rep = inspectReport(m);
      const names = rep.tensors.map((t) => t.name).sort();
      assert.deepEqual(names, [...Object.keys(want.logical), ...want.raw].sort());
      for (const [n, e] of Object.entries(want.logical)) {
        const row = rep.tensors.find((t) => t.name === n)!;
        assert.equal(row.scheme, e.scheme, n);
        assert.deepEqual(row.shape, e.shape, n);
        assert.deepEqual(row.parts?.map((p) => p.role), e.parts, n);
      }
      for (const n of want.raw) assert.equal(rep.tensors.find((t) => t.name === n)!.scheme, undefined, n);
      const json = JSON.parse(JSON.stringify(rep)) as typeof rep;
      assert.equal(json.tensors.length, names.length);
    });
  });

  test(`${name}: dequantized values equal the reference's bit for bit, whole and in pieces`, { skip }, async () => {
    await withCase(name, async (m, dir) => {
      const want = expectedOf(dir);
      for (const [n, e] of Object.entries(want.logical)) {
        const t = m.tensor(n)!;
        const ref = f32File(join(dir, e.ref));
        const units = unitCount(t);
        const whole = await decodeUnits(m, t, 0, units);
        assert.equal(whole.length, ref.length, n);
        assert.equal(firstBitDifference(whole, ref), -1, `${n}: first difference at ${firstBitDifference(whole, ref)}`);
        if (e.lib) assert.equal(firstBitDifference(whole, f32File(join(dir, e.lib))), -1, `${n}: differs from Transformers' dequantizer`);
        if (units > 2) {
          // Three pieces of whole units: each part's bytes must line up with the data's.
          const a = Math.floor(units / 3);
          const b = Math.floor((2 * units) / 3);
          const joined = new Float32Array(ref.length);
          let at = 0;
          for (const [u0, u1] of [[0, a], [a, b], [b, units]]) {
            const piece = await decodeUnits(m, t, u0, u1);
            joined.set(piece, at);
            at += piece.length;
          }
          assert.equal(at, ref.length, n);
          assert.equal(firstBitDifference(joined, ref), -1, `${n} in pieces`);
        }
      }
    });
  });

  test(`${name}: stats --json reports quantized weights by name with the reference's statistics`, { skip }, async () => {
    await withCase(name, async (m, dir) => {
      const want = expectedOf(dir);
      const rep = await stats(m, { backend: 'cpu', tensors: Object.keys(want.logical) });
      for (const [n, e] of Object.entries(want.logical)) {
        const s = rep.tensors.find((x) => x.name === n)!;
        assert.equal(s.scheme, e.scheme, n);
        const r = e.stats;
        for (const k of ['count', 'finite', 'nan', 'posInf', 'negInf', 'zeros', 'min', 'max'] as const) assert.equal(s[k], r[k], `${n}.${k}`);
        for (const k of ['mean', 'std'] as const) {
          if (r[k] === null) assert.equal(s[k], null);
          else assert.ok(Math.abs(s[k]! - r[k]!) <= 1e-12 * Math.max(1, Math.abs(r[k]!)), `${n}.${k}: ${s[k]} vs ${r[k]}`);
        }
      }
    });
  });
}

test('where config.json and the tensors disagree, the tensors win and a note says so', { skip }, async () => {
  await withCase('fp8_block_disagree', async (m) => {
    assert.ok(m.notes?.some((n) => n.includes('q_proj.weight') && n.includes('weight_block_size') && n.includes('128×128')), m.notes?.join('\n'));
  });
  await withCase('ct_pack', async (m) => {
    assert.ok(m.notes?.some((n) => n.includes('v_proj.weight_packed') && n.includes('4 bits') && n.includes('read as 8')), m.notes?.join('\n'));
  });
});

test('unrecognised parts stay as stored, each with the reason in a note', { skip }, async () => {
  await withCase('unrecognised', async (m) => {
    for (const n of ['a.weight_scale', 'b.qweight', 'c.weight']) assert.ok(m.notes?.some((x) => x.startsWith(`${n}:`)), `${n}: ${m.notes?.join('\n')}`);
    assert.ok(m.tensors.every((t) => (t.storage?.kind ?? 'dtype') === 'dtype'));
  });
});

test('MXFP4 scales at the E8M0 extremes: 2^-127 stays finite and non-zero, 2^127 overflows to ±inf, 0xFF is NaN', { skip }, async () => {
  await withCase('mxfp4', async (m) => {
    const rep = await stats(m, { backend: 'cpu' });
    const down = rep.tensors.find((t) => t.name === 'model.layers.0.mlp.experts.down_proj')!;
    assert.ok(down.posInf + down.negInf > 0);
    assert.ok(down.min !== null && down.absMax !== null);
    const router = rep.tensors.find((t) => t.name === 'model.layers.0.mlp.router_proj')!;
    assert.equal(router.nan, 32);
    const t = m.tensor('model.layers.0.mlp.experts.down_proj')!;
    const v = await decodeUnits(m, t, 0, 1);
    // Expert 0, row 0, group 0 has scale byte 0: its values land at [k][0] for k < 32 (the transposed layout).
    const smallest = [...Array(32).keys()].map((k) => Math.abs(v[k * 8])).filter((x) => x > 0);
    assert.ok(smallest.length > 0 && smallest.every((x) => x <= 6 * 2 ** -127 && x >= 2 ** -128), `${smallest}`);
  });
});
