import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { DTYPES, DTYPE_INFO, openModel, writeSafetensors, writeSharded, type DType, type Model, type TensorSource } from '../../src/format';

/** Property-based write → read: whatever the writer produces, the reader returns unchanged. */
const RUNS = Number(process.env.TW_ROUNDTRIP_RUNS ?? 40);

interface Gen {
  name: string;
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

function bytesFor(dtype: DType, shape: number[]): number {
  return (shape.reduce((a, b) => a * b, 1) * DTYPE_INFO[dtype].bits) / 8;
}

function fill(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x;
  }
  return b;
}

const tensorArb = fc
  .record({
    dtype: fc.constantFrom(...DTYPES),
    dims: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 }),
    seed: fc.integer(),
  })
  .map(({ dtype, dims, seed }) => {
    const bits = DTYPE_INFO[dtype].bits;
    // Sub-byte dtypes must end on a byte boundary: scale the shape by the packing group.
    const group = bits === 4 ? 2 : bits === 6 ? 4 : 1;
    const shape = group > 1 ? [...dims, group] : dims;
    return { dtype, shape, data: fill(bytesFor(dtype, shape), seed) };
  });

const nameArb = fc.oneof(
  fc.string({ minLength: 0, maxLength: 12 }),
  fc.fullUnicodeString({ maxLength: 6 }),
  fc.constantFrom('0', '1', '10', 'model.layers.0.self_attn.q_proj.weight', 'a"b\\c', 'x:y{z}'),
);

const modelArb = fc.record({
  tensors: fc.uniqueArray(fc.tuple(nameArb, tensorArb), { selector: ([n]) => n, maxLength: 8 }).map((ts) =>
    ts.filter(([n]) => n !== '__metadata__').map(([name, t]): Gen => ({ name, ...t })),
  ),
  metadata: fc.option(fc.dictionary(fc.string({ maxLength: 8 }), fc.fullUnicodeString({ maxLength: 8 }), { maxKeys: 3 }), { nil: undefined }),
  order: fc.constantFrom('reference' as const, 'source' as const),
});

function sources(ts: Gen[]): TensorSource[] {
  return ts.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: t.data }));
}

async function checkModel(m: Model, ts: Gen[]): Promise<void> {
  assert.equal(m.tensors.length, ts.length);
  for (const g of ts) {
    const t = m.tensor(g.name);
    assert.ok(t, `missing ${JSON.stringify(g.name)}`);
    assert.equal(t.dtype, g.dtype);
    assert.deepEqual([...t.shape], g.shape);
    assert.equal(t.byteLength, g.data.length);
    const got = new Uint8Array(t.byteLength);
    await m.read(t, 0, got);
    assert.deepEqual(got, g.data, `data of ${JSON.stringify(g.name)}`);
    const streamed: number[] = [];
    for await (const c of m.chunks(t, { chunkBytes: 7 })) streamed.push(...c);
    assert.deepEqual(Uint8Array.from(streamed), g.data);
  }
}

test('write → read round trip (single file): names, order, dtypes, shapes, metadata, bytes', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tw-roundtrip-'));
  let run = 0;
  try {
    await fc.assert(
      fc.asyncProperty(modelArb, async ({ tensors, metadata, order }) => {
        const path = join(dir, `m${run++}.safetensors`);
        const written = await writeSafetensors(path, sources(tensors), { metadata, order });
        const m = await openModel(path);
        try {
          await checkModel(m, tensors);
          // Header order is file order: what the writer reports, and offsets ascend in it.
          assert.deepEqual(m.tensors.map((t) => t.name), [...written.tensors]);
          if (order === 'source') assert.deepEqual(m.tensors.map((t) => t.name), tensors.map((t) => t.name));
          for (let i = 1; i < m.tensors.length; i++) assert.ok(m.tensors[i].byteOffset >= m.tensors[i - 1].byteOffset + m.tensors[i - 1].byteLength);
          assert.deepEqual({ ...m.metadata }, metadata ?? {});
          assert.equal(m.files[0].bytes, written.bytes);
          assert.equal(m.files[0].headerBytes, written.headerBytes);
          assert.equal(m.files[0].headerBytes % 8, 0, 'the header is padded to 8 bytes');
        } finally {
          await m.close();
        }
      }),
      { numRuns: RUNS, seed: 20261126 },
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('write → read round trip (sharded): the index opens as one model with every tensor', async () => {
  const root = await mkdtemp(join(tmpdir(), 'tw-roundtrip-sharded-'));
  let run = 0;
  try {
    await fc.assert(
      fc.asyncProperty(modelArb, fc.integer({ min: 1, max: 4 }), async ({ tensors, metadata }, shardCount) => {
        const dir = join(root, `m${run++}`);
        await mkdir(dir);
        const res = await writeSharded(dir, sources(tensors), { metadata, shardCount });
        const m = await openModel(dir);
        try {
          await checkModel(m, tensors);
          assert.equal(m.files.length, res.files.length);
          const names = await readdir(dir);
          assert.equal(names.filter((n) => n.endsWith('.safetensors')).length, res.files.length);
          if (res.index) {
            assert.ok(names.includes('model.safetensors.index.json'));
            assert.ok(res.files.length > 1);
          } else assert.deepEqual(names, ['model.safetensors']);
        } finally {
          await m.close();
        }
      }),
      { numRuns: Math.max(1, RUNS >> 1), seed: 42 },
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
