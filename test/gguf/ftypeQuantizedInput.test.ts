import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { disposeBackends } from '../../src/compute/backend';
import { FormatError } from '../../src/format/errors';
import { quantizeGgufFtype } from '../../src/pipelines/ftypeFromGguf';
import { FTYPES } from '../../src/pipelines/llamaFtype';
import { quantize } from '../../src/pipelines/quantize';
import { toGguf } from '../../src/pipelines/toGguf';
import { compare } from './ggufCompare';
import { trainSentencePiece, writeBf16Model } from './ftypeFixture';
import { loadLlamaQuantize, type LlamaQuantize } from './llamaQuantizeOracle';
import type { TinySpec } from './toGgufFixture';

/**
 * Quantized inputs to the GGUF conversion and to llama-quantize's job:
 *  - an FP8-block release (DeepSeek's 128×128 weight_scale_inv layout) converted with --ftype
 *    Q4_K_M (and to F16) gives the bytes of converting the folder of the float32 values that
 *    Transformers' own FP8 dequantizer gives (block_schemes_oracle.py dequant);
 *  - a Q8_0 GGUF requantized to Q4_K_M with --allow-requantize gives the bytes of libllama's
 *    llama_model_quantize with allow_requantize; without the flag both refuse, and nothing is written.
 * The FFN width 320 is not a multiple of 128 (ragged FP8 blocks) nor of 256 (K-quant fallbacks).
 */

const SPEC: TinySpec = { arch: 'llama', vocab: 400, hidden: 256, heads: 8, kvHeads: 2, headDim: 32, ff: 320, layers: 4, tied: false, ropeTheta: 10000, rmsEps: 1e-5 };
const ORACLE = join(__dirname, '..', 'test', 'quantized', 'block_schemes_oracle.py');

let dir = '';
let why = '';
let folder = '';
let fp8 = '';
let ref = '';
let oracle: LlamaQuantize | undefined;
let oracleWhy = '';

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tw-ftype-q-'));
  const tf = spawnSync('python3', ['-c', 'import transformers, torch, safetensors'], { encoding: 'utf8' });
  if (tf.status !== 0) return void (why = `python3 with transformers, torch and safetensors is needed: ${tf.stderr.trim().split('\n').pop()}`);
  const sp = trainSentencePiece(dir);
  if (!sp.path) return void (why = sp.why!);
  folder = join(dir, 'bf16');
  await writeBf16Model(folder, SPEC, sp.path);
  // The FP8-block release: our fp8-block quantizer, whose codes and scales equal Transformers' (qstBlockSchemes.test.ts).
  fp8 = join(dir, 'fp8');
  await quantize({ input: folder, output: fp8, scheme: 'fp8-block' }, { backend: 'cpu' });
  copyFileSync(join(folder, 'tokenizer.model'), join(fp8, 'tokenizer.model'));
  ref = join(dir, 'ref');
  const r = spawnSync('python3', [ORACLE, 'dequant', fp8, ref], { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`block_schemes_oracle.py dequant: ${r.stderr}`);
  const o = loadLlamaQuantize();
  if (typeof o === 'string') oracleWhy = o;
  else oracle = o;
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
  disposeBackends();
});

function skipWhy(t: { skip: (m: string) => void }, reason: string): boolean {
  if (!reason) return false;
  if (process.env.CI === 'true') assert.fail(reason);
  t.skip(reason);
  return true;
}

for (const ftype of ['Q4_K_M', 'F16'] as const) {
  test(`an FP8-block folder converted with --ftype ${ftype} equals converting Transformers' dequantized float32 values`, async (t) => {
    if (skipWhy(t, why)) return;
    const cfg = JSON.parse(readFileSync(join(fp8, 'config.json'), 'utf8')) as { quantization_config?: { quant_method: string } };
    assert.equal(cfg.quantization_config?.quant_method, 'fp8', 'the input is an FP8 release');
    const ours = join(dir, `fp8-${ftype}.gguf`);
    const theirs = join(dir, `ref-${ftype}.gguf`);
    const r = await toGguf({ input: fp8, output: ours, ftype }, { backend: 'cpu' });
    // Seven linear weights per layer are FP8; embeddings, head and norms stay BF16.
    assert.equal(r.dequantized?.length, 7 * SPEC.layers);
    assert.deepEqual([...new Set(r.dequantized!.map((d) => d.from))], ['fp8-block']);
    await toGguf({ input: ref, output: theirs, ftype }, { backend: 'cpu' });
    const types = await compare(ours, theirs);
    assert.ok(types.size > 0);
    if (ftype === 'Q4_K_M') assert.ok([...types.values()].includes('Q4_K') && [...types.values()].includes('Q6_K'), [...types.values()].join(' '));
  });
}

test('a Q8_0 GGUF is requantized to Q4_K_M only with --allow-requantize, as llama_model_quantize does', async (t) => {
  if (skipWhy(t, why) || skipWhy(t, oracleWhy)) return;
  const q8 = join(dir, 'q8.gguf');
  await toGguf({ input: folder, output: q8, ftype: 'Q8_0' }, { backend: 'cpu' });
  const refused = join(dir, 'refused.gguf');
  await assert.rejects(quantizeGgufFtype({ input: q8, output: refused, ftype: 'Q4_K_M' }, { backend: 'cpu' }), (e: unknown) => e instanceof FormatError && e.code === 'requantize' && /stored as Q8_0/.test(e.message));
  assert.equal(existsSync(refused), false);
  assert.throws(() => oracle!.quantize(q8, join(dir, 'theirs-refused.gguf'), { ftype: FTYPES.Q4_K_M.id }), /requantizing from type q8_0 is disabled/);
  const ours = join(dir, 'ours-requant.gguf');
  const theirs = join(dir, 'theirs-requant.gguf');
  await quantizeGgufFtype({ input: q8, output: ours, ftype: 'Q4_K_M', allowRequantize: true }, { backend: 'cpu' });
  oracle!.quantize(q8, theirs, { ftype: FTYPES.Q4_K_M.id, allowRequantize: true });
  const types = await compare(ours, theirs);
  assert.ok([...types.values()].includes('Q4_K'), [...types.values()].join(' '));
});
