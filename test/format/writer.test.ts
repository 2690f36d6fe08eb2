// The streaming writer, checked against the spec's byte layout (parsed here by
// hand) and against the independent `safetensors` npm reader.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { writeSafetensors, writeSharded, type TensorSource } from '../../src/format/writer';
import { FormatError } from '../../src/format/errors';
import { DTYPES, DTYPE_INFO, type DType } from '../../src/format/dtypes';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { SafeTensor } = require('safetensors') as { SafeTensor: new (b: Uint8Array) => { metadata: Map<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>; getTensor(n: string): Uint8Array } };

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'tw-writer-'));
}

/** The file as a fresh buffer: the npm reader views `buffer.buffer` from offset 0. */
function readFresh(path: string): Uint8Array {
  const b = readFileSync(path);
  const u = new Uint8Array(b.length);
  u.set(b);
  return u;
}

/**
 * The top-level keys in the order the text has them. (Object.keys would put
 * integer-like names such as "0" first, whatever the file says.)
 */
function topLevelKeys(json: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === '"') {
      let j = i + 1;
      while (json[j] !== '"') j += json[j] === '\\' ? 2 : 1;
      if (depth === 1 && /^\s*:/.test(json.slice(j + 1, j + 8))) keys.push(JSON.parse(json.slice(i, j + 1)));
      i = j;
    } else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
  }
  return keys;
}

/** Parses a file's header the way the spec lays it out: u64 LE length N, N bytes of JSON. */
function rawHeader(bytes: Uint8Array): { n: number; json: string; keys: string[]; obj: Record<string, any> } {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const json = Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8');
  const obj = JSON.parse(json);
  return { n, json, keys: topLevelKeys(json), obj };
}

function bytesOf(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + 3) & 0xff;
  return b;
}

test('header order follows the reference writer: dtype descending, then name', async () => {
  const dir = tmp();
  try {
    const src: TensorSource[] = [
      { name: 'b', dtype: 'F16', shape: [2], data: bytesOf(4, 1) },
      { name: 'a', dtype: 'BOOL', shape: [3], data: bytesOf(3, 2) },
      { name: 'c', dtype: 'F32', shape: [1], data: bytesOf(4, 3) },
      { name: 'a2', dtype: 'F16', shape: [1], data: bytesOf(2, 4) },
      { name: 'z', dtype: 'U64', shape: [], data: bytesOf(8, 5) },
      { name: 'm', dtype: 'BF16', shape: [0, 4], data: new Uint8Array(0) },
      { name: 'f4', dtype: 'F4', shape: [2], data: bytesOf(1, 6) },
    ];
    const path = join(dir, 'o.safetensors');
    await writeSafetensors(path, src, { metadata: { format: 'pt' } });
    const h = rawHeader(readFresh(path));
    // Expected order written out from the spec's enum (U64 > F32 > BF16 > F16 > F4 > BOOL), names ascending within F16.
    assert.deepEqual(h.keys, ['__metadata__', 'z', 'c', 'm', 'a2', 'b', 'f4', 'a']);
    assert.deepEqual(h.obj.__metadata__, { format: 'pt' });
    assert.deepEqual(h.obj.z, { dtype: 'U64', shape: [], data_offsets: [0, 8] });
    assert.deepEqual(h.obj.m.data_offsets, [12, 12]);
    assert.deepEqual(h.obj.a.data_offsets, [19, 22]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('source order is kept when asked', async () => {
  const dir = tmp();
  try {
    const src: TensorSource[] = [
      { name: 'b', dtype: 'I8', shape: [2], data: bytesOf(2, 1) },
      { name: 'a', dtype: 'F64', shape: [1], data: bytesOf(8, 2) },
    ];
    const path = join(dir, 'o.safetensors');
    await writeSafetensors(path, src, { order: 'source' });
    const h = rawHeader(readFresh(path));
    assert.deepEqual(h.keys, ['b', 'a']);
    assert.deepEqual(h.obj.a.data_offsets, [2, 10]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the header is padded with spaces to a multiple of 8 and data follows it', async () => {
  const dir = tmp();
  try {
    for (let len = 1; len <= 9; len++) {
      const path = join(dir, `p${len}.safetensors`);
      const data = bytesOf(len, len);
      await writeSafetensors(path, [{ name: 'x'.repeat(len), dtype: 'U8', shape: [len], data }]);
      const f = readFresh(path);
      const h = rawHeader(f);
      assert.equal(h.n % 8, 0);
      assert.match(h.json, /^\{.*\} *$/);
      assert.ok(h.n - Buffer.byteLength(h.json.trimEnd()) < 8, 'at most 7 bytes of padding');
      assert.equal(f.length, 8 + h.n + len);
      assert.deepEqual(f.subarray(8 + h.n), data);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('chunked async sources stream in order and the npm reader reads what was written', async () => {
  const dir = tmp();
  try {
    const big = bytesOf(3 * 1024 * 1024 + 6, 9); // crosses the writer's batching size
    async function* chunks(): AsyncIterable<Uint8Array> {
      for (let o = 0; o < big.length; o += 100_003) yield big.subarray(o, Math.min(big.length, o + 100_003));
    }
    const src: TensorSource[] = [
      { name: 'w', dtype: 'BF16', shape: [big.length / 2], data: chunks },
      { name: 'n', dtype: 'F32', shape: [2, 2], data: [bytesOf(8, 1), bytesOf(8, 2)] },
    ];
    const path = join(dir, 'o.safetensors');
    const r = await writeSafetensors(path, src);
    const f = readFresh(path);
    assert.equal(r.bytes, f.length);
    const st = new SafeTensor(f);
    assert.deepEqual(st.getTensor('w'), big);
    assert.deepEqual(st.getTensor('n'), new Uint8Array([...bytesOf(8, 1), ...bytesOf(8, 2)]));
    assert.deepEqual(st.metadata.get('n')!.shape, [2, 2]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('writes go to a temp file in the target folder, renamed only when complete', async () => {
  const dir = tmp();
  try {
    const path = join(dir, 'o.safetensors');
    let seen: string[] = [];
    async function* data(): AsyncIterable<Uint8Array> {
      yield new Uint8Array(4);
      seen = readdirSync(dir);
      yield new Uint8Array(4);
    }
    await writeSafetensors(path, [{ name: 't', dtype: 'F32', shape: [2], data }]);
    assert.equal(seen.length, 1);
    assert.match(seen[0], new RegExp(`^\\.o\\.safetensors\\.tmp-${process.pid}\\.\\d+\\.[0-9a-f]{6}\\.[0-9a-f]{12}$`));
    assert.deepEqual(readdirSync(dir), ['o.safetensors']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a wrong byte count fails naming the tensor, and leaves nothing behind (nor touches the old file)', async () => {
  const dir = tmp();
  try {
    const path = join(dir, 'o.safetensors');
    writeFileSync(path, 'previous');
    for (const n of [3, 5]) {
      await assert.rejects(
        writeSafetensors(path, [
          { name: 'ok', dtype: 'U8', shape: [2], data: new Uint8Array(2) },
          { name: 'bad.weight', dtype: 'F32', shape: [1], data: [new Uint8Array(n)] },
        ]),
        (e: unknown) => e instanceof FormatError && e.code === 'size_mismatch' && e.tensor === 'bad.weight' && e.message.includes('bad.weight'),
      );
      assert.deepEqual(readdirSync(dir), ['o.safetensors']);
      assert.equal(readFileSync(path, 'utf8'), 'previous');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a source that throws leaves nothing behind', async () => {
  const dir = tmp();
  try {
    async function* failing(): AsyncIterable<Uint8Array> {
      yield new Uint8Array(8);
      throw new Error('disk on fire');
    }
    await assert.rejects(writeSafetensors(join(dir, 'o.safetensors'), [{ name: 't', dtype: 'F32', shape: [4], data: failing }]), /disk on fire/);
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('aborting mid-stream rejects with AbortError and leaves nothing behind', async () => {
  const dir = tmp();
  try {
    const ac = new AbortController();
    async function* data(): AsyncIterable<Uint8Array> {
      yield new Uint8Array(8);
      ac.abort();
      yield new Uint8Array(8);
    }
    await assert.rejects(writeSharded(dir, [{ name: 't', dtype: 'F32', shape: [4], data }, { name: 'u', dtype: 'F32', shape: [4], data: new Uint8Array(16) }], { maxShardBytes: 16, signal: ac.signal }), (e: Error) => e.name === 'AbortError');
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('invalid tensors are refused before anything is written', async () => {
  const dir = tmp();
  try {
    const p = join(dir, 'o.safetensors');
    const cases: [TensorSource[], string][] = [
      [[{ name: 'a', dtype: 'F4', shape: [3], data: new Uint8Array(2) }], 'misaligned'],
      [[{ name: 'a', dtype: 'F32', shape: [-1], data: new Uint8Array(0) }], 'shape_invalid'],
      [[{ name: 'a', dtype: 'F32', shape: [1.5], data: new Uint8Array(0) }], 'shape_invalid'],
      [[{ name: 'a', dtype: 'F64', shape: [2 ** 40, 2 ** 20], data: new Uint8Array(0) }], 'overflow'],
      [[{ name: 'a', dtype: 'U8', shape: [1], data: new Uint8Array(1) }, { name: 'a', dtype: 'U8', shape: [1], data: new Uint8Array(1) }], 'tensor_duplicate'],
      [[{ name: '__metadata__', dtype: 'U8', shape: [1], data: new Uint8Array(1) }], 'tensor_invalid'],
      [[{ name: 'a', dtype: 'F99' as DType, shape: [1], data: new Uint8Array(1) }], 'dtype_unknown'],
      [[{ name: 'a', dtype: 'toString' as DType, shape: [1], data: new Uint8Array(1) }], 'dtype_unknown'],
      [[{ name: 'x\ud800y', dtype: 'U8', shape: [1], data: new Uint8Array(1) }], 'tensor_invalid'],
    ];
    for (const [src, code] of cases) {
      await assert.rejects(writeSafetensors(p, src), (e: unknown) => e instanceof FormatError && e.code === code, code);
    }
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sharded output: HF names, index.json, every shard readable, split before the overflowing tensor', async () => {
  const dir = tmp();
  try {
    const src: TensorSource[] = ['l0', 'l1', 'l2', 'l3', 'l4'].map((n, i) => ({ name: `${n}.w`, dtype: 'F32', shape: [10 + i], data: bytesOf(4 * (10 + i), i) }));
    // 40+44 = 84 fits in 100; 48 would overflow; 48+52 = 100 fits; 56 opens a third shard.
    // No __metadata__: the npm reader treats every top-level key as a tensor.
    const r = await writeSharded(dir, src, { maxShardBytes: 100 });
    const names = readdirSync(dir).sort();
    assert.deepEqual(names, ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors', 'model.safetensors.index.json']);
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
    assert.equal(index.metadata.total_size, 40 + 44 + 48 + 52 + 56);
    assert.deepEqual(index.weight_map, {
      'l0.w': 'model-00001-of-00003.safetensors',
      'l1.w': 'model-00001-of-00003.safetensors',
      'l2.w': 'model-00002-of-00003.safetensors',
      'l3.w': 'model-00002-of-00003.safetensors',
      'l4.w': 'model-00003-of-00003.safetensors',
    });
    assert.equal(r.totalSize, index.metadata.total_size);
    for (const [name, file] of Object.entries(index.weight_map as Record<string, string>)) {
      const f = readFresh(join(dir, file));
      const i = Number(name[1]);
      assert.deepEqual(new SafeTensor(f).getTensor(name), bytesOf(4 * (10 + i), i));
      assert.equal(statSync(join(dir, file)).size, f.length);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sharded output: a failure in the last shard leaves no shard and no index', async () => {
  const dir = tmp();
  try {
    const src: TensorSource[] = [
      { name: 'a', dtype: 'U8', shape: [8], data: new Uint8Array(8) },
      { name: 'b', dtype: 'U8', shape: [8], data: new Uint8Array(7) },
    ];
    await assert.rejects(writeSharded(dir, src, { maxShardBytes: 8 }), (e: unknown) => e instanceof FormatError && e.tensor === 'b');
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sharded output with one shard is a single model.safetensors; shardCount splits evenly', async () => {
  const dir = tmp();
  try {
    const src = (): TensorSource[] => [0, 1, 2].map((i) => ({ name: `t${i}`, dtype: 'U8', shape: [3], data: bytesOf(3, i) }));
    await writeSharded(join(dir), src(), { maxShardBytes: 1000 });
    assert.deepEqual(readdirSync(dir), ['model.safetensors']);
    const d2 = join(dir, 'two');
    mkdirSync(d2);
    // 3 tensors of 3 bytes into 2 shards: starts at 0, 3 (first half of 9) and 6 (second half).
    await writeSharded(d2, src(), { shardCount: 2 });
    const index = JSON.parse(readFileSync(join(d2, 'model.safetensors.index.json'), 'utf8'));
    assert.deepEqual(Object.values(index.weight_map), ['model-00001-of-00002.safetensors', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const WHOLE_BYTE = DTYPES.filter((d) => DTYPE_INFO[d].bits % 8 === 0);

test('property: any set of tensors round-trips through the npm reader', async () => {
  const dir = tmp();
  try {
    const tensorArb = fc.record({
      // Any Unicode (astral planes included): names must survive UTF-8 and sort by their bytes.
      name: fc.fullUnicodeString({ minLength: 1, maxLength: 12 }).filter((s) => s !== '__metadata__'),
      dtype: fc.constantFrom(...WHOLE_BYTE),
      shape: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 }),
      seed: fc.integer({ min: 0, max: 255 }),
    });
    let k = 0;
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(tensorArb, { selector: (t) => t.name, maxLength: 8 }), fc.boolean(), async (ts, keep) => {
        const path = join(dir, `p${k++}.safetensors`);
        const src = ts.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: bytesOf((t.shape.reduce((a, b) => a * b, 1) * DTYPE_INFO[t.dtype].bits) / 8, t.seed) }));
        await writeSafetensors(path, src, { order: keep ? 'source' : 'reference' });
        const f = readFresh(path);
        const st = new SafeTensor(f);
        assert.equal(st.metadata.size, src.length);
        for (const s of src) {
          assert.deepEqual(st.metadata.get(s.name)!.dtype, s.dtype);
          assert.deepEqual(st.metadata.get(s.name)!.shape, s.shape);
          assert.deepEqual(st.getTensor(s.name), s.data);
        }
        if (keep) assert.deepEqual(rawHeader(f).keys, src.map((s) => s.name));
        else {
          // Reference order: dtype position descending, then names ascending by UTF-8 bytes.
          const ks = rawHeader(f).keys;
          const dt = new Map(src.map((s) => [s.name, DTYPE_INFO[s.dtype].order]));
          for (let i = 1; i < ks.length; i++) {
            const [a, b] = [ks[i - 1], ks[i]];
            assert.ok(dt.get(a)! > dt.get(b)! || (dt.get(a) === dt.get(b) && Buffer.compare(Buffer.from(a), Buffer.from(b)) < 0), `${JSON.stringify(a)} before ${JSON.stringify(b)}`);
          }
        }
        // Offsets are contiguous from 0 to the end of the file.
        const h = rawHeader(f);
        const spans = Object.values(h.obj).map((v: any) => v.data_offsets as [number, number]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
        let at = 0;
        for (const [b, e] of spans) {
          assert.equal(b, at);
          at = e;
        }
        assert.equal(8 + h.n + at, f.length);
      }),
      // TW_PROPERTY_RUNS raises the count for a longer local or nightly run.
      { numRuns: Number(process.env.TW_PROPERTY_RUNS ?? 60) },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('removeStale: a rewrite with fewer shards deletes the old shards and single file, and nothing else', async () => {
  const dir = tmp();
  try {
    const src = (): TensorSource[] => [0, 1, 2].map((i) => ({ name: `t${i}`, dtype: 'U8', shape: [10], data: bytesOf(10, i) }));
    await writeSharded(dir, src(), { maxShardBytes: 10 });
    writeFileSync(join(dir, 'model.safetensors'), 'old single file');
    writeFileSync(join(dir, 'config.json'), '{}');
    writeFileSync(join(dir, 'other-00001-of-00002.safetensors'), 'not ours');
    await writeSharded(dir, src(), { maxShardBytes: 20, removeStale: true });
    assert.deepEqual(readdirSync(dir).sort(), ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'other-00001-of-00002.safetensors']);
    await writeSharded(dir, src(), { removeStale: true });
    assert.deepEqual(readdirSync(dir).sort(), ['config.json', 'model.safetensors', 'other-00001-of-00002.safetensors']);
    assert.deepEqual(new SafeTensor(readFresh(join(dir, 'model.safetensors'))).getTensor('t2'), bytesOf(10, 2));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
