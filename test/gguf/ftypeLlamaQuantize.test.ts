import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { compare } from './ggufCompare';
import { FTYPES, type FtypeName } from '../../src/pipelines/llamaFtype';
import { toGguf } from '../../src/pipelines/toGguf';
import { quantizeGgufFtype } from '../../src/pipelines/ftypeFromGguf';
import { GGML_TYPE_BY_NAME } from '../../src/format/gguf/types';
import { trainSentencePiece, writeBf16Model } from './ftypeFixture';
import { loadLlamaQuantize, type LlamaQuantize } from './llamaQuantizeOracle';
import type { TinySpec } from './toGgufFixture';

/**
 * `convert --ftype Q4_K_M` (and the other file types) against libllama's own
 * `llama_model_quantize` run on the BF16 GGUF of the same model: every tensor's type and
 * every byte of its data must be equal. Eight layers so that use_more_bits picks some layers
 * and not others; 8 query heads over 2 KV heads (n_gqa 4); an FFN width of 320, not a multiple
 * of 256, so that ffn_down falls back to a 32-block type.
 */

const SPEC: TinySpec = { arch: 'llama', vocab: 400, hidden: 256, heads: 8, kvHeads: 2, headDim: 32, ff: 320, layers: 8, tied: false, ropeTheta: 10000, rmsEps: 1e-5 };

let dir = '';
let oracle: LlamaQuantize | undefined;
let why = '';
let base = '';
let folder = '';

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tw-ftype-'));
  const o = loadLlamaQuantize();
  if (typeof o === 'string') return void (why = o);
  const sp = trainSentencePiece(dir);
  if (!sp.path) return void (why = sp.why!);
  oracle = o;
  folder = join(dir, 'llama');
  await writeBf16Model(folder, SPEC, sp.path);
  base = join(dir, 'base-bf16.gguf');
  await toGguf({ input: folder, output: base, ftype: 'BF16' });
});
after(() => rmSync(dir, { recursive: true, force: true }));

const CASES: FtypeName[] = ['Q4_K_M', 'Q4_K_S', 'Q5_K_M', 'Q5_K_S', 'Q6_K', 'Q8_0', 'Q3_K_S', 'Q3_K_M', 'Q3_K_L', 'Q2_K', 'Q4_0', 'IQ4_XS', 'IQ4_NL'];

for (const ftype of CASES) {
  test(`--ftype ${ftype}: tensor types and bytes equal llama_model_quantize from the BF16 GGUF`, async (t) => {
    if (!oracle) {
      if (process.env.CI === 'true') assert.fail(why);
      return t.skip(why);
    }
    const ours = join(dir, `ours-${ftype}.gguf`);
    const theirs = join(dir, `theirs-${ftype}.gguf`);
    const r = await toGguf({ input: folder, output: ours, ftype }, { backend: 'cpu' });
    const log = oracle.quantize(base, theirs, { ftype: FTYPES[ftype].id });
    const types = await compare(ours, theirs);
    const m = /(\d+) of \d+ tensor\(s\) required fallback/.exec(log.join('\n'));
    assert.equal(r.fallbacks.length, m ? Number(m[1]) : 0, 'fallback count');
    const distinct = [...new Set(types.values())].sort().join(' ');
    console.log(`# ${ftype}: ${types.size} tensors equal (${distinct}); ${r.fallbacks.length} fallbacks`);
  });
}

test('--ftype from the BF16 GGUF itself (llama-quantize\'s own input): bytes equal llama_model_quantize', async (t) => {
  if (!oracle) return process.env.CI === 'true' ? assert.fail(why) : t.skip(why);
  for (const ftype of ['Q4_K_M', 'Q3_K_M', 'IQ4_XS'] as const) {
    const ours = join(dir, `gguf-ours-${ftype}.gguf`);
    const theirs = join(dir, `gguf-theirs-${ftype}.gguf`);
    const r = await quantizeGgufFtype({ input: base, output: ours, ftype }, { backend: 'cpu' });
    oracle.quantize(base, theirs, { ftype: FTYPES[ftype].id });
    const types = await compare(ours, theirs);
    console.log(`# from GGUF, ${ftype}: ${types.size} tensors equal; ${r.fallbacks.length} fallbacks`);
  }
});

test('--tensor-type, --output-tensor-type, --token-embedding-type: as llama-quantize applies them', async (t) => {
  if (!oracle) return process.env.CI === 'true' ? assert.fail(why) : t.skip(why);
  const ours = join(dir, 'ours-overrides.gguf');
  const theirs = join(dir, 'theirs-overrides.gguf');
  const tensorTypes = [
    { pattern: 'blk\\.[0-3]\\.ffn_up', type: 'Q8_0' as const },
    { pattern: 'attn_v', type: 'Q3_K' as const },
    { pattern: 'ffn_down', type: 'Q6_K' as const },
  ];
  const ftypeOptions = { tensorTypes, outputType: 'Q5_K' as const, tokenEmbeddingType: 'Q4_0' as const };
  const r = await toGguf({ input: folder, output: ours, ftype: 'Q4_K_M', ftypeOptions }, { backend: 'cpu' });
  const id = (n: string) => GGML_TYPE_BY_NAME.get(n as never)!.id;
  oracle.quantize(base, theirs, { ftype: FTYPES.Q4_K_M.id, outputType: id('Q5_K'), tokenEmbeddingType: id('Q4_0'), tensorTypes: tensorTypes.map((x) => ({ pattern: x.pattern, type: id(x.type) })) });
  const types = await compare(ours, theirs);
  assert.equal(types.get('blk.2.ffn_up.weight'), 'Q8_0');
  assert.equal(types.get('blk.5.ffn_up.weight'), 'Q4_K');
  assert.equal(types.get('blk.0.ffn_down.weight'), 'Q8_0', 'a manual Q6_K on 320 columns still falls back');
  assert.equal(types.get('output.weight'), 'Q5_K');
  assert.equal(types.get('token_embd.weight'), 'Q4_0');
  assert.ok(r.overrides.length > 0);
});

test('tied embeddings (no output.weight): token_embd takes the output rule, bytes equal llama_model_quantize', async (t) => {
  if (!oracle) return process.env.CI === 'true' ? assert.fail(why) : t.skip(why);
  const tiedDir = join(dir, 'tied');
  await writeBf16Model(tiedDir, { ...SPEC, tied: true, layers: 16, ff: 512 }, join(folder, 'tokenizer.model'));
  const tiedBase = join(dir, 'tied-bf16.gguf');
  await toGguf({ input: tiedDir, output: tiedBase, ftype: 'BF16' });
  for (const ftype of ['Q4_K_M', 'Q2_K', 'Q5_K_M'] as const) {
    const ours = join(dir, `tied-ours-${ftype}.gguf`);
    const theirs = join(dir, `tied-theirs-${ftype}.gguf`);
    await toGguf({ input: tiedDir, output: ours, ftype }, { backend: 'cpu' });
    oracle.quantize(tiedBase, theirs, { ftype: FTYPES[ftype].id });
    const types = await compare(ours, theirs);
    assert.equal(types.get('token_embd.weight'), 'Q6_K');
    console.log(`# tied, 16 layers, ${ftype}: ${types.size} tensors equal`);
  }
});

test('--pure: every quantizable tensor the base type (with the 256-column fallbacks), as llama-quantize --pure', async (t) => {
  if (!oracle) return process.env.CI === 'true' ? assert.fail(why) : t.skip(why);
  for (const ftype of ['Q4_K_M', 'Q3_K_S'] as const) {
    const ours = join(dir, `pure-ours-${ftype}.gguf`);
    const theirs = join(dir, `pure-theirs-${ftype}.gguf`);
    await toGguf({ input: folder, output: ours, ftype, ftypeOptions: { pure: true } }, { backend: 'cpu' });
    oracle.quantize(base, theirs, { ftype: FTYPES[ftype].id, pure: true });
    const types = await compare(ours, theirs);
    assert.equal(types.get('output.weight'), FTYPES[ftype].base);
    console.log(`# --pure ${ftype}: ${types.size} tensors equal (${[...new Set(types.values())].sort().join(' ')})`);
  }
});
