import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DTYPE_INFO, FormatError, MemorySource, parseIndex, readFileHeader, SourceModel, type ByteSource } from '../../src/format';
import { goldenCases, paddedFile, SPEC_DTYPES } from '../fixtures/golden';

/**
 * Mutated headers: only FormatError may come out, every parse finishes, and no read
 * (hence no allocation sized by the file's own claims) exceeds the file's real size.
 * TW_FUZZ_ITERATIONS raises the count; CI runs the default.
 */
const DEFAULT_ITERATIONS = 10_000;
const ITERATIONS = Number(process.env.TW_FUZZ_ITERATIONS ?? DEFAULT_ITERATIONS);
const SEED = Number(process.env.TW_FUZZ_SEED ?? 0x5eed);

/** xorshift32: deterministic, so a failure names the seed and iteration that reproduce it. */
class Rng {
  constructor(private x: number) {
    this.x = x >>> 0 || 1;
  }
  next(): number {
    let x = this.x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.x = x >>> 0;
    return this.x;
  }
  int(n: number): number {
    return this.next() % n;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
}

/** A source that records the largest read it was asked for. */
class WatchedSource implements ByteSource {
  maxRead = 0;
  reads = 0;
  private readonly inner: MemorySource;
  constructor(readonly bytes: Uint8Array) {
    this.inner = new MemorySource(bytes, 'fuzz.safetensors');
  }
  get name() {
    return this.inner.name;
  }
  get size() {
    return this.inner.size;
  }
  read(offset: number, into: Uint8Array): Promise<number> {
    this.maxRead = Math.max(this.maxRead, into.length);
    this.reads++;
    return this.inner.read(offset, into);
  }
  close() {
    return this.inner.close();
  }
}

/** Valid random headers, as seeds for mutation. */
function randomValid(r: Rng): Uint8Array {
  const n = r.int(6);
  let off = 0;
  const parts: string[] = [];
  if (r.int(3) === 0) parts.push(`"__metadata__":{"format":"pt","k${r.int(9)}":"v"}`);
  for (let i = 0; i < n; i++) {
    const dtype = r.pick(SPEC_DTYPES);
    const bits = DTYPE_INFO[dtype].bits;
    const group = bits === 4 ? 2 : bits === 6 ? 4 : 1;
    const shape = Array.from({ length: r.int(4) }, () => r.int(4) * group);
    const numel = shape.reduce((a, b) => a * b, 1);
    const bytes = (numel * bits) / 8;
    parts.push(`"t${i}.${r.int(100)}":{"dtype":"${dtype}","shape":[${shape.join(',')}],"data_offsets":[${off},${off + bytes}]}`);
    off += bytes;
  }
  return paddedFile(`{${parts.join(',')}}`, off);
}

const INTERESTING = [0x7b, 0x7d, 0x5b, 0x5d, 0x22, 0x3a, 0x2c, 0x2d, 0x2e, 0x65, 0x30, 0x39, 0x20, 0x5c, 0x0a, 0x00, 0xff, 0x80, 0xc0, 0xed];
const NUMBERS = ['0', '1', '-1', '1.5', '1.0', '1e3', '-0', '9007199254740993', '18446744073709551616', '99999999999999999999999', '1e400', '4294967296'];

function mutate(src: Uint8Array, r: Rng): Uint8Array {
  let b = Array.from(src);
  const rounds = 1 + r.int(4);
  for (let k = 0; k < rounds; k++) {
    const at = r.int(Math.max(1, b.length));
    switch (r.int(9)) {
      case 0: // flip a bit
        if (b.length) b[at] ^= 1 << r.int(8);
        break;
      case 1: // overwrite with a structural or awkward byte
        if (b.length) b[at] = r.pick(INTERESTING);
        break;
      case 2: // insert
        b.splice(at, 0, r.pick(INTERESTING));
        break;
      case 3: // delete a run
        b.splice(at, 1 + r.int(8));
        break;
      case 4: // duplicate a run (makes duplicate keys and overlaps)
        {
          const len = 1 + r.int(40);
          b.splice(at, 0, ...b.slice(at, at + len));
        }
        break;
      case 5: // rewrite the length prefix, often with a lie
        {
          const lie = r.pick([0, 1, 7, b.length - 8, b.length, 99_999_999, 100_000_000, 100_000_001, 2 ** 32, r.next()]);
          const v = new DataView(new ArrayBuffer(8));
          v.setBigUint64(0, BigInt(Math.max(0, Math.floor(lie))) & 0xffff_ffff_ffff_ffffn, true);
          for (let i = 0; i < 8 && i < b.length; i++) b[i] = v.getUint8(i);
        }
        break;
      case 6: // replace a digit run with an awkward number
        {
          const s = String.fromCharCode(...b.slice(8).map((c) => (c < 128 ? c : 63)));
          const m = [...s.matchAll(/[0-9]+/g)];
          if (m.length) {
            const hit = r.pick(m);
            const rep = Array.from(r.pick(NUMBERS), (c) => c.charCodeAt(0));
            b.splice(8 + hit.index!, hit[0].length, ...rep);
          }
        }
        break;
      case 7: // truncate or extend the data
        if (r.int(2)) b = b.slice(0, Math.max(0, b.length - 1 - r.int(16)));
        else b.push(...Array.from({ length: 1 + r.int(16) }, () => r.int(256)));
        break;
      case 8: // swap dtype names
        {
          const s = String.fromCharCode(...b.map((c) => (c < 128 ? c : 63)));
          const i = s.indexOf('"dtype":"');
          if (i >= 0) {
            const j = s.indexOf('"', i + 9);
            const rep = Array.from(r.pick([...SPEC_DTYPES, 'F8', 'bf16', '']), (c) => c.charCodeAt(0));
            b.splice(i + 9, j - (i + 9), ...rep);
          }
        }
        break;
    }
  }
  return Uint8Array.from(b);
}

test(`fuzz: ${ITERATIONS} mutated headers give a model or a FormatError, never more`, { timeout: 10 * 60_000 }, async () => {
  const r = new Rng(SEED);
  const seeds = [...goldenCases().map((c) => c.bytes), ...Array.from({ length: 50 }, () => randomValid(r))];
  const codes = new Map<string, number>();
  let ok = 0;
  for (let it = 0; it < ITERATIONS; it++) {
    const bytes = mutate(r.pick(seeds), r);
    const src = new WatchedSource(bytes);
    try {
      const { tensors, file } = await readFileHeader(src);
      ok++;
      // What passes must satisfy the spec: tensors tile the data exactly.
      const data = bytes.length - 8 - file.headerBytes;
      const sorted = [...tensors].sort((a, b) => a.byteOffset - b.byteOffset || a.byteLength - b.byteLength);
      let pos = 8 + file.headerBytes;
      for (const t of sorted) {
        assert.equal(t.byteOffset, pos, `seed ${SEED} iteration ${it}: ${t.name} not contiguous`);
        pos += t.byteLength;
      }
      assert.equal(pos - 8 - file.headerBytes, data, `seed ${SEED} iteration ${it}: data not covered exactly`);
      // And every tensor reads back as exactly its bytes.
      const m = new SourceModel('fuzz.safetensors', [file], tensors, [new MemorySource(bytes, 'fuzz.safetensors')]);
      for (const t of tensors) {
        const got: number[] = [];
        for await (const c of m.chunks(t, { chunkBytes: 5 })) got.push(...c);
        assert.deepEqual(Uint8Array.from(got), bytes.subarray(t.byteOffset, t.byteOffset + t.byteLength));
      }
    } catch (e) {
      if (!(e instanceof FormatError)) {
        assert.fail(`seed ${SEED} iteration ${it}: ${String((e as Error)?.stack ?? e)}\nbytes: ${Buffer.from(bytes).toString('base64')}`);
      }
      codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
    }
    assert.ok(src.maxRead <= bytes.length, `seed ${SEED} iteration ${it}: read of ${src.maxRead} bytes from a ${bytes.length}-byte file`);
    assert.ok(src.reads <= 2, 'the header is read in two reads: prefix, then header');
  }
  // The mutations must reach deep into validation, not stop at the prefix.
  for (const c of ['header_json', 'duplicate_key', 'offsets_overlap', 'size_mismatch', 'header_length', 'header_too_large']) {
    assert.ok((codes.get(c) ?? 0) > 0 || ITERATIONS < 1000, `fuzzing never produced ${c}: ${JSON.stringify([...codes])}`);
  }
  assert.ok(ok > 0 || ITERATIONS < 1000, 'some mutations stay valid');
});

test('fuzz: a 99,999,999-byte length on a 100-byte file fails before any large read', async () => {
  const bytes = new Uint8Array(100);
  new DataView(bytes.buffer).setUint32(0, 99_999_999, true);
  const src = new WatchedSource(bytes);
  await assert.rejects(readFileHeader(src), (e: unknown) => e instanceof FormatError && e.code === 'header_length');
  assert.equal(src.maxRead, 8);
  assert.equal(src.reads, 1);
});

test('fuzz: a source that claims a huge size but holds nothing fails on the short read', async () => {
  // A lying size (e.g. a remote stat) with a valid-looking prefix: the header read comes back short.
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setUint32(0, 1000, true);
  const mem = new MemorySource(bytes, 'liar.safetensors');
  const liar: ByteSource = { name: mem.name, size: 10_000, read: (o, into) => mem.read(o, into), close: () => mem.close() };
  await assert.rejects(readFileHeader(liar), (e: unknown) => e instanceof FormatError && e.code === 'file_changed');
});

test('fuzz: mutated index.json texts give an index or a FormatError', () => {
  const r = new Rng(SEED ^ 0x1dec);
  const base = [
    '{"metadata":{"total_size":16},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}',
    '{"weight_map":{"x.weight":"s.safetensors"}}',
  ].map((t) => new TextEncoder().encode(t));
  // A tenth of the header iterations: index texts are small and their parser shares the JSON checks.
  const n = Math.max(100, Math.floor(ITERATIONS / 10));
  for (let it = 0; it < n; it++) {
    const bytes = mutate(Uint8Array.from([...new Uint8Array(8), ...r.pick(base)]), r).subarray(8);
    const text = new TextDecoder().decode(bytes);
    try {
      const idx = parseIndex(text, 'fuzz.index.json');
      for (const [, shard] of idx.weightMap) assert.ok(!shard.split(/[\\/]/).includes('..'), 'a shard never escapes the folder');
    } catch (e) {
      if (!(e instanceof FormatError)) assert.fail(`iteration ${it}: ${String((e as Error)?.stack ?? e)}\ntext: ${JSON.stringify(text)}`);
    }
  }
});
