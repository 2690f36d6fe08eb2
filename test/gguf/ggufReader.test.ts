import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FormatError, type FormatErrorCode } from '../../src/format/errors';
import { ggufArrayItems, readGguf, readTensorBytes } from '../../src/format/gguf/reader';
import { joinParts, openGguf, splitPaths } from '../../src/format/gguf/split';
import { MemorySource } from '../../src/format/source';
import { buildGguf, Bytes, V, type Enc, type GgufSpec, type TensorSpec } from './ggufBuild';

const Q8_0 = 8;
const F32 = 0;
const base = (): TensorSpec[] => [
  { name: 'a', ne: [64, 2], type: Q8_0, size: 2 * 2 * 34 },
  { name: 'b', ne: [4], type: F32, size: 16 },
];
const arch: [string, number, Enc] = ['general.architecture', ...V.str('llama')];

function read(bytes: Uint8Array, name = 'bad.gguf') {
  return readGguf(new MemorySource(bytes, name));
}

/** Each rule, broken on its own, and the code it must give. */
const BAD: [string, () => Uint8Array, FormatErrorCode][] = [
  ['an empty file', () => new Uint8Array(0), 'gguf_magic'],
  ['another format', () => new TextEncoder().encode('{"a":1}xxxxxxxxxxxxxxxxxxxxxx'), 'gguf_magic'],
  ['version 1', () => buildGguf({ version: 1 }), 'gguf_version'],
  ['version 4', () => buildGguf({ version: 4 }), 'gguf_version'],
  ['a big-endian v3 file', () => buildGguf({ version: 0x03000000 }), 'gguf_big_endian'],
  ['a key/value count the file cannot hold', () => buildGguf({ kvs: [arch], kvCount: 2 ** 40 }), 'gguf_count'],
  ['a tensor count the file cannot hold', () => buildGguf({ tensors: base(), tensorCount: 1000 }), 'gguf_count'],
  ['a count of 2^60', () => buildGguf({ tensorCount: 2n ** 60n }), 'overflow'],
  ['a string longer than the file', () => buildGguf({ kvs: [['k', 8, (b) => b.u64(1e9)]] }), 'gguf_string'],
  ['a string that is not UTF-8', () => buildGguf({ kvs: [['k', 8, (b) => b.u64(2).raw([0xc3, 0x28])]] }), 'gguf_string'],
  ['an empty key', () => buildGguf({ kvs: [['', ...V.u32(1)]] }), 'gguf_key'],
  ['a duplicate key', () => buildGguf({ kvs: [arch, arch] }), 'duplicate_key'],
  ['value type 13', () => buildGguf({ kvs: [['k', 13, (b) => b.u32(0)]] }), 'gguf_value_type'],
  ['array item type 13', () => buildGguf({ kvs: [['k', 9, (b) => b.u32(13).u64(1).u32(0)]] }), 'gguf_value_type'],
  ['arrays nested 9 deep', () => buildGguf({ kvs: [['k', 9, (b) => { for (let i = 0; i < 9; i++) b.u32(9).u64(1); b.u32(0).u64(0); }]] }), 'gguf_value_type'],
  ['an array longer than the file', () => buildGguf({ kvs: [['k', 9, (b) => b.u32(4).u64(1e6)]] }), 'gguf_count'],
  ['a string array longer than the file', () => buildGguf({ kvs: [['k', 9, (b) => b.u32(8).u64(1e6)]] }), 'gguf_count'],
  ['a bool of 2', () => buildGguf({ kvs: [['k', ...V.bool(2)]] }), 'gguf_bool'],
  ['a bool of 2 inside a long array', () => buildGguf({ kvs: [['k', ...V.arr(7, Array.from({ length: 100 }, (_, i) => (b: Bytes) => b.u8(i === 99 ? 2 : 1)))]] }), 'gguf_bool'],
  ['alignment stored as a u8', () => buildGguf({ kvs: [['general.alignment', ...V.u8(32)]] }), 'gguf_alignment'],
  ['alignment 48', () => buildGguf({ kvs: [['general.alignment', ...V.u32(48)]] }), 'gguf_alignment'],
  ['alignment 0', () => buildGguf({ kvs: [['general.alignment', ...V.u32(0)]] }), 'gguf_alignment'],
  ['an empty tensor name', () => buildGguf({ tensors: [{ ...base()[1], name: '' }] }), 'gguf_name'],
  ['a 65-byte tensor name', () => buildGguf({ tensors: [{ ...base()[1], name: 'x'.repeat(65) }] }), 'gguf_name'],
  ['5 dimensions', () => buildGguf({ tensors: [{ name: 't', ne: [1, 1, 1, 1, 4], type: F32, size: 16 }] }), 'gguf_dims'],
  ['removed ggml type 4', () => buildGguf({ tensors: [{ name: 't', ne: [32], type: 4, size: 20 }] }), 'dtype_unknown'],
  ['ggml type 99', () => buildGguf({ tensors: [{ name: 't', ne: [4], type: 99, size: 16 }] }), 'dtype_unknown'],
  ['a Q8_0 row of 33', () => buildGguf({ tensors: [{ name: 't', ne: [33], type: Q8_0, size: 34 }] }), 'gguf_row'],
  ['an unaligned data offset', () => buildGguf({ tensors: [{ ...base()[1], offset: 16 }] }), 'gguf_offset'],
  ['overlapping tensors', () => buildGguf({ tensors: [base()[0], { ...base()[1], offset: 128 }] }), 'offsets_overlap'],
  ['a duplicate tensor name', () => buildGguf({ tensors: [base()[1], { ...base()[1], offset: 32 }] }), 'tensor_duplicate'],
  ['2^26 × 2^26 × 2^26 elements', () => buildGguf({ tensors: [{ name: 't', ne: [2 ** 26, 2 ** 26, 2 ** 26], type: F32, size: 4 }] }), 'overflow'],
  ['data past the end', () => buildGguf({ tensors: base() }).slice(0, -1), 'truncated'],
  ['a header cut short', () => buildGguf({ kvs: [arch, ['k', ...V.u64(5)]] }).slice(0, -3), 'truncated'],
];

for (const [what, make, code] of BAD) {
  test(`refuses ${what} with ${code}`, async () => {
    await assert.rejects(read(make()), (e: unknown) => {
      assert.ok(e instanceof FormatError, String(e));
      assert.equal(e.code, code, e.message);
      assert.match(e.message, /^bad\.gguf: /);
      return true;
    });
  });
}

test('reads a valid file: shapes both ways, offsets, values, lazy and eager arrays', async () => {
  const tokens = Array.from({ length: 1000 }, (_, i) => `tök${i}`);
  const spec: GgufSpec = {
    kvs: [
      arch,
      ['general.alignment', ...V.u32(64)],
      ['big', ...V.u64(2n ** 64n - 1n)],
      ['tokens', ...V.arr(8, tokens.map((s) => (b: Bytes) => b.str(s)))],
      ['nested', ...V.arr(9, [V.arr(5, [(b) => b.u32(1), (b) => b.u32(-2)])[1], V.arr(8, [(b) => b.str('x')])[1]])],
      ['empty', ...V.arr(6, [])],
    ],
    alignment: 64,
    tensors: [{ name: 'w', ne: [64, 3, 2], type: Q8_0, size: 12 * 34 }, { name: 's', ne: [], type: F32, size: 4 }],
  };
  const bytes = buildGguf(spec);
  const f = await read(bytes, 'ok.gguf');
  assert.equal(f.version, 3);
  assert.equal(f.alignment, 64);
  assert.equal(f.dataOffset % 64, 0);
  const [w, s] = f.tensors;
  assert.deepEqual(w.ne, [64, 3, 2]);
  assert.deepEqual(w.shape, [2, 3, 64]);
  assert.equal(w.elements, 384);
  assert.equal(w.byteLength, 408);
  assert.equal(w.fileOffset, f.dataOffset);
  assert.equal(s.fileOffset, f.dataOffset + 448);
  assert.deepEqual(s.shape, []);
  assert.equal(s.elements, 1);
  assert.deepEqual(f.metadata.get('big'), { type: 'u64', value: 2n ** 64n - 1n });
  const t = f.metadata.get('tokens')!;
  assert.ok(t.type === 'array' && t.items === undefined && t.length === 1000);
  assert.deepEqual(await ggufArrayItems(f, t), tokens);
  assert.deepEqual(await ggufArrayItems(f, t, 998, 2), tokens.slice(998));
  const n = f.metadata.get('nested')!;
  assert.ok(n.type === 'array' && n.items);
  const [a0, a1] = n.items!;
  assert.ok(typeof a0 === 'object' && typeof a1 === 'object');
  assert.deepEqual(a0.items, [1, -2]);
  assert.deepEqual(a1.items, ['x']);
  assert.deepEqual(f.metadata.get('empty'), { type: 'array', itemType: 'f32', length: 0, offset: (f.metadata.get('empty') as { offset: number }).offset, byteLength: 0, items: [] });
  const data = new Uint8Array(4);
  await readTensorBytes(f, s, 0, data);
  assert.deepEqual(data, bytes.subarray(s.fileOffset, s.fileOffset + 4));
});

test('a file with no tensors and no metadata is valid', async () => {
  const f = await read(buildGguf({}));
  assert.equal(f.tensors.length, 0);
  assert.equal(f.metadata.size, 0);
});

function part(no: number, count: number, tensors: TensorSpec[], total = 3): Uint8Array {
  return buildGguf({ kvs: [['split.no', 2, (b) => b.raw([no, 0])], ['split.count', 2, (b) => b.raw([count, 0])], ['split.tensors.count', ...V.i32(total)]], tensors });
}

test('split sets: part numbers, counts and duplicate tensors are checked', async () => {
  const t = (name: string): TensorSpec => ({ name, ne: [4], type: F32, size: 16 });
  const open = (bytes: Uint8Array[]) => Promise.all(bytes.map((b, i) => read(b, `m-0000${i + 1}-of-00002.gguf`)));
  const good = await open([part(0, 2, [t('x'), t('y')]), part(1, 2, [t('z')])]);
  assert.deepEqual(joinParts(good).map((x) => [x.name, x.part]), [['x', 0], ['y', 0], ['z', 1]]);
  const cases: [Uint8Array[], FormatErrorCode][] = [
    [[part(0, 3, [t('x'), t('y')]), part(1, 2, [t('z')])], 'split_invalid'],
    [[part(0, 2, [t('x'), t('y')]), part(0, 2, [t('z')])], 'split_invalid'],
    [[part(0, 2, [t('x')]), part(1, 2, [t('z')])], 'split_invalid'],
    [[part(0, 2, [t('x'), t('y')]), part(1, 2, [t('x')])], 'tensor_duplicate'],
  ];
  for (const [parts, code] of cases) {
    const files = await open(parts);
    assert.throws(() => joinParts(files), (e: unknown) => e instanceof FormatError && e.code === code);
  }
});

test('split sets: names of every part, and a missing part is named', async () => {
  assert.deepEqual(splitPaths('/d/m-00002-of-00003.gguf'), ['/d/m-00001-of-00003.gguf', '/d/m-00002-of-00003.gguf', '/d/m-00003-of-00003.gguf']);
  assert.deepEqual(splitPaths('/d/model.gguf'), ['/d/model.gguf']);
  const dir = mkdtempSync(join(tmpdir(), 'tw-gguf-split-'));
  try {
    writeFileSync(join(dir, 'm-00001-of-00002.gguf'), part(0, 2, [{ name: 'x', ne: [4], type: F32, size: 16 }], 1));
    await assert.rejects(openGguf(join(dir, 'm-00001-of-00002.gguf')), (e: unknown) => e instanceof FormatError && e.code === 'shard_missing' && /m-00002-of-00002\.gguf/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
