// Every recognised quantization scheme through the one decoded value stream: convert dequantizes
// each logical tensor bit for bit as the reference dequantizers do (make_quantized_fixtures.py,
// Transformers' own functions where they exist) and drops quantization_config from config.json;
// the stream's chunks are whole units and bounded; diff pairs a quantized model with its
// dequantized copy by value; the viewer's heatmap decodes scheme tensors like plain ones.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { disposeBackends, getBackend } from '../../src/compute/backend';
import { decodeValues, valueChunks } from '../../src/compute/decode/tensorValues';
import { openModel, storageOf, storageUnit, type Model } from '../../src/format';
import { convertModel } from '../../src/pipelines/convert';
import { diff } from '../../src/pipelines/diff';
import { computeHeatmap } from '../../src/pipelines/viewer/heatmap';
import { CASES, expectedOf, f32File, firstBitDifference, quantFixtures, torchAvailable } from './qstFixtures';


after(() => disposeBackends());

const skip = !torchAvailable() && 'python3 with torch is not installed';
const SCHEME_CASES = CASES.filter((c) => c !== 'unrecognised');

/** A plain reading of the file as the safetensors spec lays it out (the npm reader refuses a header padded with spaces). */
function readSafetensors(path: string) {
  const b = readFileSync(path);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const metadata = new Map(Object.entries(header));
  return { metadata, getTensor: (k: string) => b.subarray(8 + n + header[k].data_offsets[0], 8 + n + header[k].data_offsets[1]) };
}

function floats(bytes: Uint8Array): Float32Array {
  // A copy (Buffer's slice would share the pool), aligned for the view.
  const c = new Uint8Array(bytes.length);
  c.set(bytes);
  return new Float32Array(c.buffer, 0, c.length / 4);
}

async function opened<T>(path: string, f: (m: Model) => Promise<T>): Promise<T> {
  const m = await openModel(path);
  try {
    return await f(m);
  } finally {
    await m.close();
  }
}

for (const name of SCHEME_CASES) {
  test(`${name}: convert --dtype f32 writes each quantized weight as the reference dequantizer's values, without its parts`, { skip }, async () => {
    const dir = join(quantFixtures().dir, name);
    const want = expectedOf(dir);
    const out = join(mkdtempSync(join(tmpdir(), 'tw-qconvert-')), 'out');
    const r = await convertModel({ input: dir, output: out, dtype: 'F32' });
    const st = readSafetensors(join(out, 'model.safetensors'));
    for (const [tname, e] of Object.entries(want.logical)) {
      const meta = st.metadata.get(tname);
      assert.ok(meta, `${tname} written`);
      assert.equal(meta.dtype, 'F32');
      assert.deepEqual(meta.shape, e.shape);
      const got = floats(st.getTensor(tname));
      const ref = f32File(join(dir, e.ref));
      const at = firstBitDifference(got, ref);
      assert.equal(at, -1, `${tname}: value ${at} is ${got[at]}, the reference ${ref[at]}`);
      if (e.lib) assert.equal(firstBitDifference(got, f32File(join(dir, e.lib))), -1, `${tname}: Transformers' dequantizer`);
      assert.equal(r.tensors.find((t) => t.name === tname)?.from, e.scheme);
    }
    // Only logical tensors and the stored ones left raw: no scale, zero point or packed part.
    const written = [...st.metadata.keys()].filter((k) => k !== '__metadata__');
    assert.equal(written.length, r.tensors.length);
    const inCfg = existsSync(join(dir, 'config.json')) ? (JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>) : undefined;
    if (inCfg) {
      assert.equal(r.config, join(out, 'config.json'));
      const outCfg = JSON.parse(readFileSync(r.config!, 'utf8')) as Record<string, unknown>;
      const { quantization_config: _, ...rest } = inCfg;
      assert.deepEqual(outCfg, rest);
    }
  });

  test(`${name}: the decoded stream yields whole units within the chunk bound, equal to one decode of the whole tensor`, { skip }, async () => {
    const dir = join(quantFixtures().dir, name);
    const want = expectedOf(dir);
    await opened(dir, async (m) => {
      const backend = await getBackend('cpu');
      for (const tname of Object.keys(want.logical)) {
        const t = m.tensor(tname)!;
        const unit = storageUnit(storageOf(t)).elements;
        const wantChunk = 3 * unit + 1;
        const joined = new Float32Array(t.numel);
        let next = 0;
        for await (const c of valueChunks(m, t, { chunkValues: wantChunk, backend })) {
          assert.equal(c.first, next);
          assert.ok(c.values.length <= 3 * unit, `${tname}: a chunk of ${c.values.length} values, unit ${unit}`);
          assert.ok(c.first % unit === 0);
          joined.set(c.values, c.first);
          next += c.values.length;
        }
        assert.equal(next, t.numel);
        assert.equal(firstBitDifference(joined, await decodeValues(m, t, 0, t.numel)), -1);
        assert.equal(firstBitDifference(joined, f32File(join(dir, want.logical[tname].ref))), -1);
      }
    });
  });
}

test('diff pairs each quantized weight with its dequantized copy by value: identical, and a changed copy is measured', { skip }, async () => {
  const dir = join(quantFixtures().dir, 'fp8_block');
  const want = expectedOf(dir);
  const out = join(mkdtempSync(join(tmpdir(), 'tw-qdiff-')), 'f32');
  await convertModel({ input: dir, output: out, dtype: 'F32' });
  await opened(dir, (a) =>
    opened(out, async (b) => {
      const r = await diff(a, b, { backend: 'cpu' });
      for (const tname of Object.keys(want.logical)) {
        const row = r.tensors.find((t) => t.name === tname);
        assert.ok(row, `${tname} compared`);
        assert.equal(row.identical, true, `${tname}: ${JSON.stringify(row)}`);
        assert.equal(row.dtype, 'fp8-block');
        assert.equal(row.dtypeB, 'F32');
      }
      assert.deepEqual(r.changed, []);
    }),
  );
});

test('the heatmap of a quantized weight is the heatmap of its reference values', { skip }, async () => {
  for (const name of ['fp8_block', 'mxfp4', 'gptq']) {
    const dir = join(quantFixtures().dir, name);
    const want = expectedOf(dir);
    const out = join(mkdtempSync(join(tmpdir(), 'tw-qheat-')), 'f32');
    await convertModel({ input: dir, output: out, dtype: 'F32' });
    for (const tname of Object.keys(want.logical)) {
      const a = await opened(dir, (m) => computeHeatmap(m, m.tensor(tname)!, 64));
      const b = await opened(out, (m) => computeHeatmap(m, m.tensor(tname)!, 64));
      assert.deepEqual([a.rows, a.cols, a.width, a.height, a.scale], [b.rows, b.cols, b.width, b.height, b.scale], `${name} ${tname}`);
      assert.deepEqual(a.pixels, b.pixels, `${name} ${tname}`);
      assert.ok(a.scale > 0);
    }
  }
});

test('the viewer decodes a heatmap in the backend\'s workers (GPTQ act-order: its whole tensor is one unit), identical to decoding on the calling thread', { skip }, async () => {
  for (const name of ['gptq', 'fp8_block']) {
    const dir = join(quantFixtures().dir, name);
    for (const tname of Object.keys(expectedOf(dir).logical)) {
      const here = await opened(dir, (m) => computeHeatmap(m, m.tensor(tname)!, 64));
      const pooled = await opened(dir, (m) => computeHeatmap(m, m.tensor(tname)!, 64, undefined, 'cpu'));
      assert.deepEqual([pooled.width, pooled.height, pooled.scale], [here.width, here.height, here.scale], `${name} ${tname}`);
      assert.deepEqual(pooled.pixels, here.pixels, `${name} ${tname}`);
      assert.deepEqual(pooled.nonFinite, here.nonFinite, `${name} ${tname}`);
    }
  }
});

test('convert --dtype keep refuses a quantized model and writes nothing', { skip }, async () => {
  const dir = join(quantFixtures().dir, 'fp8_block');
  const out = join(mkdtempSync(join(tmpdir(), 'tw-qkeep-')), 'out');
  await assert.rejects(convertModel({ input: dir, output: out, dtype: 'keep' }), /choose --dtype bf16, f16 or f32 to dequantize/);
  assert.equal(existsSync(out), false);
});
