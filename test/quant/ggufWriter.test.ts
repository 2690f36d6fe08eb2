import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GGML_TYPE, gguf, ggufHeader, writeGguf, type GgufTensor } from '../../src/format/gguf/writer';
import { llamaCppName, llamaMetadata } from '../../src/format/gguf/names';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { gguf: parseGguf } = require('@huggingface/gguf') as typeof import('@huggingface/gguf');

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tw-gguf-'));
});
after(() => rm(dir, { recursive: true, force: true }));

function tensors(): GgufTensor[] {
  const a = Float32Array.from([1.5, -2, 3.25]);
  const b = Int8Array.from([1, -2, 3, -4, 5]);
  return [
    { name: 'a', dims: [3], ggmlType: GGML_TYPE.F32, byteLength: 12, data: new Uint8Array(a.buffer) },
    // Streamed in two pieces, and 5 bytes long: the next tensor must start on the alignment.
    { name: 'b.int8', dims: [5, 1], ggmlType: GGML_TYPE.I8, byteLength: 5, data: () => [new Uint8Array(b.buffer, 0, 2), new Uint8Array(b.buffer, 2, 3)] },
    { name: 'c', dims: [2], ggmlType: GGML_TYPE.F32, byteLength: 8, data: new Uint8Array(Float32Array.from([7, 8]).buffer) },
  ];
}

test('every metadata type and tensor offsets read back with @huggingface/gguf', async () => {
  const path = join(dir, 'types.gguf');
  const meta = [
    ['general.architecture', gguf.str('llama')],
    ['t.u8', { type: 'u8', value: 200 }],
    ['t.i8', { type: 'i8', value: -100 }],
    ['t.u16', { type: 'u16', value: 60000 }],
    ['t.i16', { type: 'i16', value: -30000 }],
    ['t.u32', gguf.u32(4000000000)],
    ['t.i32', gguf.i32(-2000000000)],
    ['t.f32', gguf.f32(0.5)],
    ['t.bool', gguf.bool(true)],
    ['t.u64', gguf.u64(2n ** 40n)],
    ['t.i64', { type: 'i64', value: -(2n ** 40n) }],
    ['t.f64', { type: 'f64', value: Math.PI }],
    ['t.str', gguf.str('héllo')],
    ['t.arr', gguf.arr('i32', [1, -2, 3])],
    ['t.strs', gguf.arr('string', ['x', 'yz'])],
  ] as const;
  const size = await writeGguf(path, meta, tensors());
  const file = new Uint8Array(await readFile(path));
  assert.equal(file.length, size);
  const p = await parseGguf(path, { allowLocalFile: true });
  const m = p.metadata as Record<string, unknown>;
  assert.equal(m.version, 3);
  assert.equal(m['t.u8'], 200);
  assert.equal(m['t.i8'], -100);
  assert.equal(m['t.u16'], 60000);
  assert.equal(m['t.i16'], -30000);
  assert.equal(m['t.u32'], 4000000000);
  assert.equal(m['t.i32'], -2000000000);
  assert.equal(m['t.f32'], 0.5);
  assert.equal(m['t.bool'], true);
  assert.equal(m['t.u64'], 2n ** 40n);
  assert.equal(m['t.i64'], -(2n ** 40n));
  assert.equal(m['t.f64'], Math.PI);
  assert.equal(m['t.str'], 'héllo');
  assert.deepEqual(m['t.arr'], [1, -2, 3]);
  assert.deepEqual(m['t.strs'], ['x', 'yz']);
  assert.equal(Number(p.tensorDataOffset) % 32, 0);
  const infos = p.tensorInfos;
  assert.deepEqual(infos.map((t) => [t.name, Number(t.offset), t.shape.map(Number), t.dtype]), [
    ['a', 0, [3], 0],
    ['b.int8', 32, [5, 1], 24],
    ['c', 64, [2], 0],
  ]);
  const base = Number(p.tensorDataOffset);
  assert.deepEqual(Array.from(new Float32Array(file.slice(base, base + 12).buffer)), [1.5, -2, 3.25]);
  assert.deepEqual(Array.from(new Int8Array(file.slice(base + 32, base + 37).buffer)), [1, -2, 3, -4, 5]);
  assert.deepEqual(Array.from(new Float32Array(file.slice(base + 64, base + 72).buffer)), [7, 8]);
  // The padding after a tensor is zeros.
  assert.ok(file.subarray(base + 12, base + 32).every((x) => x === 0));
});

test('a source with the wrong length fails naming the tensor and leaves no file', async () => {
  const path = join(dir, 'bad.gguf');
  const t = tensors();
  t[1] = { ...t[1], byteLength: 6 };
  await assert.rejects(writeGguf(path, [], t), (e: Error & { code?: string; tensor?: string }) => e.code === 'size_mismatch' && e.tensor === 'b.int8');
  assert.deepEqual((await readdir(dir)).filter((f) => f.includes('bad.gguf')), []);
  assert.throws(() => ggufHeader([['k', gguf.u32(1)], ['k', gguf.u32(2)]], []), /twice/);
});

test('llama.cpp names and hyperparameters from a Llama config', () => {
  assert.equal(llamaCppName('model.layers.12.self_attn.o_proj.weight'), 'blk.12.attn_output.weight');
  assert.equal(llamaCppName('model.layers.0.mlp.down_proj.weight'), 'blk.0.ffn_down.weight');
  assert.equal(llamaCppName('model.layers.3.post_attention_layernorm.weight'), 'blk.3.ffn_norm.weight');
  assert.equal(llamaCppName('model.embed_tokens.weight'), 'token_embd.weight');
  assert.equal(llamaCppName('lm_head.weight'), 'output.weight');
  assert.equal(llamaCppName('model.layers.0.self_attn.rotary_emb.inv_freq'), undefined);
  const { kv, missing } = llamaMetadata({ hidden_size: 4096, num_attention_heads: 32, num_hidden_layers: 2, intermediate_size: 11008, max_position_embeddings: 4096 });
  const m = Object.fromEntries(kv.map(([k, v]) => [k, v.value]));
  assert.equal(m['llama.attention.head_count_kv'], 32);
  assert.equal(m['llama.rope.dimension_count'], 128);
  assert.deepEqual(missing, []);
  assert.ok(llamaMetadata({}).missing.some((x) => x.includes('llama.block_count')));
});
