import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { castBytes } from '../../src/format';
import { readGguf, readTensorBytes } from '../../src/format/gguf/reader';
import { GGML_TYPE, gguf, writeGguf, type GgufTensor } from '../../src/format/gguf/writer';
import { NodeFileSource } from '../../src/format/source';
import { quantizeGgufFtype } from '../../src/pipelines/ftypeFromGguf';
import { FTYPES, type FtypeName } from '../../src/pipelines/llamaFtype';
import { loadLlamaQuantize, type LlamaQuantize } from './llamaQuantizeOracle';

/**
 * A Mixtral-style model (llama architecture, experts stacked in 3-D ffn_*_exps tensors, an
 * F32 router) written as a BF16 GGUF: `quantize --ftype` of it must equal libllama's
 * `llama_model_quantize` tensor for tensor and byte for byte. Eight experts reach the
 * rules llama.cpp keeps for 8-expert models (attn_v and attn_k at Q8_0, attn_output at
 * Q5_K); four experts the general expert rules (layers taken from the names).
 */

const HIDDEN = 256;
const FF = 256;
const VOCAB = 320;
const LAYERS = 8;

let dir = '';
let oracle: LlamaQuantize | undefined;
let why = '';

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tw-ftype-moe-'));
  const o = loadLlamaQuantize();
  if (typeof o === 'string') why = o;
  else oracle = o;
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** xorshift values with heavy tails, as BF16 bytes. */
function bf16(seed: number, n: number): Uint8Array {
  let x = seed | 0 || 1;
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const u = (x >>> 0) / 4294967296 - 0.5;
    f[i] = i % 11 === 0 ? u * u * u * 8 : u * 0.4;
  }
  return castBytes(new Uint8Array(f.buffer), 'F32', 'BF16', { overflow: 0, underflow: 0 });
}

async function writeMoe(path: string, experts: number): Promise<void> {
  let seed = 99;
  const tensors: GgufTensor[] = [];
  const add = (name: string, ne: number[], type: 'BF16' | 'F32') => {
    const n = ne.reduce((a, b) => a * b, 1);
    const data = type === 'BF16' ? bf16(seed++ * 2654435761, n) : new Uint8Array(new Float32Array(n).fill(1).buffer);
    tensors.push({ name, dims: ne, ggmlType: GGML_TYPE[type], byteLength: data.length, data });
  };
  add('token_embd.weight', [HIDDEN, VOCAB], 'BF16');
  add('output_norm.weight', [HIDDEN], 'F32');
  add('output.weight', [HIDDEN, VOCAB], 'BF16');
  for (let l = 0; l < LAYERS; l++) {
    const p = `blk.${l}.`;
    add(`${p}attn_norm.weight`, [HIDDEN], 'F32');
    add(`${p}attn_q.weight`, [HIDDEN, HIDDEN], 'BF16');
    add(`${p}attn_k.weight`, [HIDDEN, 64], 'BF16');
    add(`${p}attn_v.weight`, [HIDDEN, 64], 'BF16');
    add(`${p}attn_output.weight`, [HIDDEN, HIDDEN], 'BF16');
    add(`${p}ffn_norm.weight`, [HIDDEN], 'F32');
    add(`${p}ffn_gate_inp.weight`, [HIDDEN, experts], 'F32');
    add(`${p}ffn_gate_exps.weight`, [HIDDEN, FF, experts], 'BF16');
    add(`${p}ffn_up_exps.weight`, [HIDDEN, FF, experts], 'BF16');
    add(`${p}ffn_down_exps.weight`, [FF, HIDDEN, experts], 'BF16');
  }
  const kv: Array<[string, ReturnType<typeof gguf.u32>]> = [
    ['general.architecture', gguf.str('llama')],
    ['general.file_type', gguf.u32(32)],
    ['llama.block_count', gguf.u32(LAYERS)],
    ['llama.context_length', gguf.u32(512)],
    ['llama.embedding_length', gguf.u32(HIDDEN)],
    ['llama.feed_forward_length', gguf.u32(FF)],
    ['llama.attention.head_count', gguf.u32(8)],
    ['llama.attention.head_count_kv', gguf.u32(2)],
    ['llama.rope.dimension_count', gguf.u32(32)],
    ['llama.attention.layer_norm_rms_epsilon', gguf.f32(1e-5)],
    ['llama.expert_count', gguf.u32(experts)],
    ['llama.expert_used_count', gguf.u32(2)],
    ['llama.vocab_size', gguf.u32(VOCAB)],
  ];
  await writeGguf(path, kv, tensors);
}

async function tensorsOf(path: string): Promise<Map<string, { type: string; bytes: Uint8Array }>> {
  const f = await readGguf(await NodeFileSource.open(path));
  const out = new Map<string, { type: string; bytes: Uint8Array }>();
  try {
    for (const t of f.tensors) {
      const bytes = new Uint8Array(t.byteLength);
      await readTensorBytes(f, t, 0, bytes);
      out.set(t.name, { type: t.type.name, bytes });
    }
  } finally {
    await f.source.close?.();
  }
  return out;
}

for (const experts of [8, 4]) {
  test(`MoE with ${experts} experts: --ftype types and bytes equal llama_model_quantize`, async (t) => {
    if (!oracle) return process.env.CI === 'true' ? assert.fail(why) : t.skip(why);
    const input = join(dir, `moe${experts}.gguf`);
    await writeMoe(input, experts);
    // Eight experts reach fewer distinct rules; three file types cover them at a third of the time.
    const ftypes: FtypeName[] = experts === 8 ? ['Q4_K_M', 'Q3_K_M', 'Q2_K'] : ['Q4_K_M', 'Q3_K_M', 'Q2_K', 'Q5_K_M', 'IQ4_XS'];
    for (const ftype of ftypes) {
      const ours = join(dir, `ours-${experts}-${ftype}.gguf`);
      const theirs = join(dir, `theirs-${experts}-${ftype}.gguf`);
      await quantizeGgufFtype({ input, output: ours, ftype }, { backend: 'cpu' });
      oracle.quantize(input, theirs, { ftype: FTYPES[ftype].id });
      const [a, b] = [await tensorsOf(ours), await tensorsOf(theirs)];
      assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
      for (const [name, y] of b) {
        const x = a.get(name)!;
        assert.equal(x.type, y.type, `${ftype} ${name}: type`);
        assert.ok(Buffer.from(x.bytes).equals(Buffer.from(y.bytes)), `${ftype} ${name} (${y.type}): bytes differ`);
      }
      if (experts === 8) {
        assert.equal(b.get('blk.3.attn_v.weight')!.type, 'Q8_0');
        assert.equal(b.get('blk.3.attn_k.weight')!.type, 'Q8_0');
      }
      const mix = [...new Set([...b.values()].map((v) => v.type))].sort().join(' ');
      console.log(`# ${experts} experts, ${ftype}: ${b.size} tensors equal (${mix})`);
    }
  });
}
