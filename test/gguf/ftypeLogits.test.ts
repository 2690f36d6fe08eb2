import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { toGguf } from '../../src/pipelines/toGguf';
import { dequantize } from '../../src/compute/dequant/dequant.cpu';
import { readGguf, readTensorBytes } from '../../src/format/gguf/reader';
import { NodeFileSource } from '../../src/format/source';
import { forward, softmax } from './forwardRef';
import { trainSentencePiece } from './ftypeFixture';
import { loadLlamaCpp, type LlamaCpp } from './llamaCppOracle';
import { writeTinyModel, type TinySpec } from './toGgufFixture';

/**
 * `convert --ftype Q4_K_M` output loads and runs in llama.cpp (node-llama-cpp): its
 * next-token distributions match a float64 forward pass of the weights as we decode them
 * from the file (llama.cpp rounds activations to 8 bits in K-quant products, hence the
 * tolerance), far closer than to the unquantized weights, which this small random model
 * amplifies. A wrong block layout, type id, size or row order would not match.
 */

const SPEC: TinySpec = { arch: 'llama', vocab: 400, hidden: 256, heads: 8, kvHeads: 2, headDim: 32, ff: 512, layers: 2, tied: false, ropeTheta: 10000, rmsEps: 1e-5 };
const TOKENS = [5, 17, 99, 3, 250, 42, 7, 300, 11, 64];

let dir = '';
let llama: LlamaCpp | undefined;
let why = '';

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tw-ftype-logits-'));
  const l = await loadLlamaCpp();
  if (typeof l === 'string') why = l;
  else llama = l;
});
after(async () => {
  await llama?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** Mean total-variation distance between llama.cpp's distributions and the reference, and how often their top tokens agree. */
async function distance(path: string, ref: Float64Array[]): Promise<{ tv: number; top: number }> {
  const model = await llama!.load(path);
  try {
    const got = await model.probabilities(TOKENS);
    let tv = 0;
    let top = 0;
    ref.forEach((p, pos) => {
      let d = 0;
      let best = 0;
      for (let id = 0; id < p.length; id++) {
        d += Math.abs((got[pos].get(id) ?? 0) - p[id]);
        if (p[id] > p[best]) best = id;
      }
      tv += d / 2 / ref.length;
      if ([...got[pos].entries()].sort((a, b) => b[1] - a[1])[0][0] === best) top++;
    });
    return { tv, top };
  } finally {
    await model.dispose();
  }
}

const HF_NAMES: Record<string, string> = {
  attn_q: 'self_attn.q_proj', attn_k: 'self_attn.k_proj', attn_v: 'self_attn.v_proj', attn_output: 'self_attn.o_proj',
  ffn_gate: 'mlp.gate_proj', ffn_up: 'mlp.up_proj', ffn_down: 'mlp.down_proj', attn_norm: 'input_layernorm', ffn_norm: 'post_attention_layernorm',
};

/** The GGUF's weights decoded with our dequantizers, under HF names and with HF's Q/K row order back. */
async function dequantized(path: string): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  const f = await readGguf(await NodeFileSource.open(path));
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  try {
    for (const t of f.tensors) {
      const bytes = new Uint8Array(t.byteLength);
      await readTensorBytes(f, t, 0, bytes);
      let data = new Float32Array(t.elements);
      dequantize(t.type.name, bytes, data);
      const m = /^blk\.(\d+)\.(\w+)\.weight$/.exec(t.name);
      const name = m ? `model.layers.${m[1]}.${HF_NAMES[m[2]]}.weight` : { 'token_embd.weight': 'model.embed_tokens.weight', 'output_norm.weight': 'model.norm.weight', 'output.weight': 'lm_head.weight' }[t.name]!;
      const heads = m?.[2] === 'attn_q' ? SPEC.heads : m?.[2] === 'attn_k' ? SPEC.kvHeads : 0;
      if (heads) {
        // GGUF row 2j+i of a head holds HF row i·half+j.
        const cols = t.ne[0];
        const half = SPEC.headDim / 2;
        const hf = new Float32Array(data.length);
        for (let h = 0; h < heads; h++) {
          for (let j = 0; j < half; j++) {
            for (let i = 0; i < 2; i++) hf.set(data.subarray((h * SPEC.headDim + 2 * j + i) * cols, (h * SPEC.headDim + 2 * j + i + 1) * cols), (h * SPEC.headDim + i * half + j) * cols);
          }
        }
        data = hf;
      }
      out.set(name, { shape: [...t.shape], data });
    }
  } finally {
    await f.source.close?.();
  }
  return out;
}

test('Q4_K_M GGUF loads in llama.cpp and predicts close to the float64 reference', async (t) => {
  const sp = llama ? trainSentencePiece(dir) : {};
  const reason = !llama ? why : sp.why;
  if (reason) return process.env.CI === 'true' ? assert.fail(reason) : t.skip(reason);
  const folder = join(dir, 'llama');
  const weights = await writeTinyModel(folder, SPEC, { 'tokenizer.model': sp.path! });
  const ref = forward(SPEC, weights, TOKENS).map(softmax);
  const q = join(dir, 'q4km.gguf');
  const f = join(dir, 'f32.gguf');
  const r = await toGguf({ input: folder, output: q, ftype: 'Q4_K_M' }, { backend: 'cpu' });
  await toGguf({ input: folder, output: f, ftype: 'F32' });
  assert.ok(r.tensors.some((x) => x.type === 'Q4_K') && r.tensors.some((x) => x.type === 'Q6_K'));
  const refQ = forward(SPEC, await dequantized(q), TOKENS).map(softmax);
  const dq = await distance(q, ref);
  const dd = await distance(q, refQ);
  const df = await distance(f, ref);
  console.log(`# Q4_K_M vs float64 of the original weights: mean TV ${dq.tv.toExponential(2)}, top ${dq.top}/${TOKENS.length}`);
  console.log(`# Q4_K_M vs float64 of its dequantized weights: mean TV ${dd.tv.toExponential(2)}, top ${dd.top}/${TOKENS.length}; F32 file: ${df.tv.toExponential(2)}`);
  assert.ok(df.tv < 1e-3, `the F32 file: mean total-variation distance ${df.tv}`);
  assert.ok(dd.tv < 0.1 && dd.tv < dq.tv / 3, `llama.cpp computes with the weights we wrote: ${dd.tv} vs ${dq.tv} from the originals`);
  assert.ok(dd.top >= 8, `top token agrees at ${dd.top} of ${TOKENS.length} positions`);
});
