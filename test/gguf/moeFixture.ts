import { castBytes } from '../../src/format';
import { GGML_TYPE, gguf, writeGguf, type GgufTensor } from '../../src/format/gguf/writer';

/** A Mixtral-style BF16 GGUF: llama architecture, 8 layers, experts stacked in 3-D ffn_*_exps tensors, an F32 router (or dense FFNs). */

const HIDDEN = 256;
const FF = 256;
const VOCAB = 320;
const LAYERS = 8;

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

/** `experts` 0 writes dense ffn_gate/up/down; `layers` defaults to 8. */
export async function writeMoe(path: string, experts: number, layers = LAYERS): Promise<void> {
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
  for (let l = 0; l < layers; l++) {
    const p = `blk.${l}.`;
    add(`${p}attn_norm.weight`, [HIDDEN], 'F32');
    add(`${p}attn_q.weight`, [HIDDEN, HIDDEN], 'BF16');
    add(`${p}attn_k.weight`, [HIDDEN, 64], 'BF16');
    add(`${p}attn_v.weight`, [HIDDEN, 64], 'BF16');
    add(`${p}attn_output.weight`, [HIDDEN, HIDDEN], 'BF16');
    add(`${p}ffn_norm.weight`, [HIDDEN], 'F32');
    if (experts) {
      add(`${p}ffn_gate_inp.weight`, [HIDDEN, experts], 'F32');
      add(`${p}ffn_gate_exps.weight`, [HIDDEN, FF, experts], 'BF16');
      add(`${p}ffn_up_exps.weight`, [HIDDEN, FF, experts], 'BF16');
      add(`${p}ffn_down_exps.weight`, [FF, HIDDEN, experts], 'BF16');
    } else {
      add(`${p}ffn_gate.weight`, [HIDDEN, FF], 'BF16');
      add(`${p}ffn_up.weight`, [HIDDEN, FF], 'BF16');
      add(`${p}ffn_down.weight`, [FF, HIDDEN], 'BF16');
    }
  }
  const kv: Array<[string, ReturnType<typeof gguf.u32>]> = [
    ['general.architecture', gguf.str('llama')],
    ['general.file_type', gguf.u32(32)],
    ['llama.block_count', gguf.u32(layers)],
    ['llama.context_length', gguf.u32(512)],
    ['llama.embedding_length', gguf.u32(HIDDEN)],
    ['llama.feed_forward_length', gguf.u32(FF)],
    ['llama.attention.head_count', gguf.u32(8)],
    ['llama.attention.head_count_kv', gguf.u32(2)],
    ['llama.rope.dimension_count', gguf.u32(32)],
    ['llama.attention.layer_norm_rms_epsilon', gguf.f32(1e-5)],
    ...(experts ? ([['llama.expert_count', gguf.u32(experts)], ['llama.expert_used_count', gguf.u32(2)]] as Array<[string, ReturnType<typeof gguf.u32>]>) : []),
    ['llama.vocab_size', gguf.u32(VOCAB)],
  ];
  await writeGguf(path, kv, tensors);
}

