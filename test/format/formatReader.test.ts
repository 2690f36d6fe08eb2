import assert from 'node:assert/strict';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FormatError, MemorySource, openModel, openSource, readFileHeader, SourceModel, type ByteSource, type TensorInfo } from '../../src/format';
import { paddedDataOffset, paddedFile, pattern } from '../fixtures/golden';

/** A file with tensors of awkward sizes; returns its bytes and where each tensor's data is. */
function sample() {
  const ts: [string, string, number[], number][] = [
    ['big', 'F32', [1000, 3], 12000],
    ['f4', 'F4', [2, 9], 9],
    ['f6', 'F6_E2M3', [4, 5], 15],
    ['c', 'C64', [7], 56],
    ['empty', 'BF16', [0], 0],
    ['odd', 'U8', [13], 13],
  ];
  let off = 0;
  const parts = ts.map(([n, d, s, b]) => {
    const e = `"${n}":{"dtype":"${d}","shape":[${s.join(',')}],"data_offsets":[${off},${off + b}]}`;
    off += b;
    return e;
  });
  const json = `{${parts.join(',')}}`;
  const data = pattern(off, 42);
  const bytes = paddedFile(json, data);
  return { bytes, data, base: paddedDataOffset(json) };
}

function modelOf(bytes: Uint8Array, source?: ByteSource) {
  return (async () => {
    const src = source ?? new MemorySource(bytes, 'mem.safetensors');
    const { file, tensors } = await readFileHeader(src);
    return new SourceModel(src.name, [file], tensors, [src]);
  })();
}

async function collect(it: AsyncIterable<Uint8Array>, sizes?: number[]): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of it) {
    parts.push(c.slice());
    sizes?.push(c.length);
  }
  return Uint8Array.from(parts.flatMap((p) => Array.from(p)));
}

test('read returns exactly the tensor bytes at any offset', async () => {
  const { bytes, base } = sample();
  const m = await modelOf(bytes);
  for (const t of m.tensors) {
    const whole = new Uint8Array(t.byteLength);
    await m.read(t, 0, whole);
    assert.deepEqual(whole, bytes.subarray(t.byteOffset, t.byteOffset + t.byteLength));
    if (t.byteLength > 3) {
      const part = new Uint8Array(3);
      await m.read(t, t.byteLength - 3, part);
      assert.deepEqual(part, bytes.subarray(t.byteOffset + t.byteLength - 3, t.byteOffset + t.byteLength));
    }
  }
  assert.equal(m.tensors[0].byteOffset, base);
  const big = m.tensor('big')!;
  await assert.rejects(m.read(big, big.byteLength - 1, new Uint8Array(2)), RangeError);
  await assert.rejects(m.read(big, -1, new Uint8Array(1)), RangeError);
  await m.close();
});

test('chunks are bounded, element-aligned, and concatenate to the tensor', async () => {
  const { bytes } = sample();
  const m = await modelOf(bytes);
  // group = bytes in the smallest whole-element run that ends on a byte boundary
  const group: Record<string, number> = { F32: 4, F4: 1, F6_E2M3: 3, C64: 8, BF16: 2, U8: 1 };
  for (const t of m.tensors) {
    for (const chunkBytes of [1, 5, 7, 64, 1 << 20]) {
      const sizes: number[] = [];
      const got = await collect(m.chunks(t, { chunkBytes }), sizes);
      assert.deepEqual(got, bytes.subarray(t.byteOffset, t.byteOffset + t.byteLength), `${t.name} @${chunkBytes}`);
      const g = group[t.dtype];
      const limit = Math.max(g, chunkBytes - (chunkBytes % g));
      for (const s of sizes) {
        assert.ok(s <= limit, `${t.name}: chunk ${s} > ${limit}`);
        assert.equal(s % g, 0, `${t.name}: chunk ${s} splits an element group of ${g}`);
      }
      if (t.byteLength === 0) assert.equal(sizes.length, 0);
    }
  }
  await m.close();
});

test('chunks reuse their buffers instead of allocating one per chunk', async () => {
  const { bytes } = sample();
  const m = await modelOf(bytes);
  const buffers = new Set<ArrayBufferLike>();
  let n = 0;
  for await (const c of m.chunks(m.tensor('big')!, { chunkBytes: 400 })) {
    buffers.add(c.buffer);
    n++;
  }
  assert.equal(n, 30);
  assert.ok(buffers.size <= 2, `${buffers.size} buffers for ${n} chunks`);
  await m.close();
});

test('chunks stop on abort with an AbortError, and early exit leaves no read pending', async () => {
  const { bytes } = sample();
  const m = await modelOf(bytes);
  const ac = new AbortController();
  let seen = 0;
  await assert.rejects(
    (async () => {
      for await (const _ of m.chunks(m.tensor('big')!, { chunkBytes: 100, signal: ac.signal })) {
        if (++seen === 3) ac.abort();
      }
    })(),
    (e: unknown) => (e as Error).name === 'AbortError',
  );
  assert.equal(seen, 3);
  const pre = new AbortController();
  pre.abort();
  await assert.rejects(collect(m.chunks(m.tensor('big')!, { signal: pre.signal })), (e: unknown) => (e as Error).name === 'AbortError');
  for await (const _ of m.chunks(m.tensor('big')!, { chunkBytes: 100 })) break;
  await m.close();
});

test('a file changed on disk is reported as file_changed, naming file and tensor', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tw-reader-'));
  try {
    const { bytes } = sample();
    const path = join(dir, 'm.safetensors');
    await writeFile(path, bytes);
    const m = await openModel(path);
    const t = m.tensor('odd')!;
    const buf = new Uint8Array(t.byteLength);
    await m.read(t, 0, buf);
    assert.deepEqual(m.files[0].bytes, bytes.length);
    await appendFile(path, new Uint8Array([1, 2, 3]));
    await assert.rejects(m.read(t, 0, buf), (e: unknown) => e instanceof FormatError && e.code === 'file_changed' && e.file === path && e.tensor === 'odd');
    await assert.rejects(collect(m.chunks(m.tensor('big')!)), (e: unknown) => e instanceof FormatError && e.code === 'file_changed');
    await m.close();

    // A change in the middle of a stream fails the stream before it ends.
    await writeFile(path, bytes);
    const m2 = await openModel(path);
    let chunks = 0;
    await assert.rejects(
      (async () => {
        for await (const _ of m2.chunks(m2.tensor('big')!, { chunkBytes: 400 })) {
          if (++chunks === 2) await appendFile(path, new Uint8Array([9]));
        }
      })(),
      (e: unknown) => e instanceof FormatError && e.code === 'file_changed' && e.tensor === 'big',
    );
    assert.ok(chunks < 30, 'the stream did not complete');
    await m2.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a source that returns short reads gives file_changed, and OS errors give io', async () => {
  const { bytes } = sample();
  const mem = new MemorySource(bytes, 'short.safetensors');
  let cut = bytes.length;
  const shrinking: ByteSource = { name: mem.name, size: mem.size, read: (o, into) => mem.read(o, into.subarray(0, Math.max(0, Math.min(into.length, cut - o)))), close: () => mem.close() };
  const m = await modelOf(bytes, shrinking);
  cut = bytes.length - 5;
  const t = m.tensor('odd')!;
  await assert.rejects(m.read(t, 0, new Uint8Array(t.byteLength)), (e: unknown) => e instanceof FormatError && e.code === 'file_changed' && e.tensor === 'odd');
  const failing: ByteSource = { name: 'bad.safetensors', size: bytes.length, read: async (o, into) => (o === 0 || o === 8 ? mem.read(o, into) : Promise.reject(Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }))), close: async () => {} };
  const m2 = await modelOf(bytes, failing);
  await assert.rejects(m2.read(m2.tensor('big')!, 0, new Uint8Array(4)), (e: unknown) => e instanceof FormatError && e.code === 'io' && e.tensor === 'big');
});

test('the model only answers for its own tensors, and not after close', async () => {
  const { bytes } = sample();
  const m = await modelOf(bytes);
  const t = m.tensor('big')!;
  const copy: TensorInfo = { ...t, shape: [...t.shape] };
  await m.read(copy, 0, new Uint8Array(4));
  const alien: TensorInfo = { ...t, name: 'nope' };
  await assert.rejects(m.read(alien, 0, new Uint8Array(4)), (e: unknown) => e instanceof FormatError && e.code === 'not_found');
  assert.equal(m.tensor('nope'), undefined);
  await m.close();
  await assert.rejects(m.read(t, 0, new Uint8Array(4)), FormatError);
});

test('openSource opens a ByteSource as a model and closes it on failure', async () => {
  const { bytes } = sample();
  let closed = 0;
  const track = (b: Uint8Array): ByteSource => {
    const mem = new MemorySource(b, 'tracked.safetensors');
    return { name: mem.name, size: mem.size, read: (o, i) => mem.read(o, i), close: async () => void closed++ };
  };
  const m = await openSource(track(bytes));
  assert.equal(m.path, 'tracked.safetensors');
  assert.equal(m.tensors.length, 6);
  await m.close();
  assert.equal(closed, 1);
  await assert.rejects(openSource(track(bytes.subarray(0, bytes.length - 1))), (e: unknown) => e instanceof FormatError && e.code === 'truncated');
  assert.equal(closed, 2);
});
