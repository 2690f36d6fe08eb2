import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeSafetensors, type TensorSource } from '../../src/format';

/**
 * Tiny random-weight Llama / Qwen2 / Qwen3 folders (F32 weights, so that a float64
 * forward pass sees the exact values llama.cpp sees in an F32 GGUF), with real
 * tokenizer files copied in.
 */

export interface TinySpec {
  readonly arch: 'llama' | 'qwen2' | 'qwen3';
  readonly vocab: number;
  readonly hidden: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly ff: number;
  readonly layers: number;
  readonly tied: boolean;
  readonly ropeTheta: number;
  readonly rmsEps: number;
  readonly ropeScaling?: Record<string, unknown>;
  readonly extraConfig?: Record<string, unknown>;
}

/** xorshift32 → uniform values in (-scale, scale), rounded to float32. */
function uniform(seed: number, n: number, scale: number): Float32Array {
  let x = seed | 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = ((x >>> 0) / 4294967296 - 0.5) * 2 * scale;
  }
  return out;
}

export function tinyTensors(s: TinySpec): Map<string, { shape: number[]; data: Float32Array }> {
  const m = new Map<string, { shape: number[]; data: Float32Array }>();
  let seed = 12345;
  const add = (name: string, shape: number[], scale: number, around = 0) => {
    const d = uniform(seed++ * 2654435761, shape.reduce((a, b) => a * b, 1), scale);
    if (around) for (let i = 0; i < d.length; i++) d[i] = Math.fround(d[i] + around);
    m.set(name, { shape, data: d });
  };
  const q = s.heads * s.headDim;
  const kv = s.kvHeads * s.headDim;
  add('model.embed_tokens.weight', [s.vocab, s.hidden], 0.5);
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}`;
    add(`${p}.self_attn.q_proj.weight`, [q, s.hidden], 0.3);
    add(`${p}.self_attn.k_proj.weight`, [kv, s.hidden], 0.3);
    add(`${p}.self_attn.v_proj.weight`, [kv, s.hidden], 0.3);
    if (s.arch === 'qwen2') {
      add(`${p}.self_attn.q_proj.bias`, [q], 0.1);
      add(`${p}.self_attn.k_proj.bias`, [kv], 0.1);
      add(`${p}.self_attn.v_proj.bias`, [kv], 0.1);
    }
    if (s.arch === 'qwen3') {
      add(`${p}.self_attn.q_norm.weight`, [s.headDim], 0.2, 1);
      add(`${p}.self_attn.k_norm.weight`, [s.headDim], 0.2, 1);
    }
    add(`${p}.self_attn.o_proj.weight`, [s.hidden, q], 0.3);
    add(`${p}.mlp.gate_proj.weight`, [s.ff, s.hidden], 0.3);
    add(`${p}.mlp.up_proj.weight`, [s.ff, s.hidden], 0.3);
    add(`${p}.mlp.down_proj.weight`, [s.hidden, s.ff], 0.3);
    add(`${p}.input_layernorm.weight`, [s.hidden], 0.2, 1);
    add(`${p}.post_attention_layernorm.weight`, [s.hidden], 0.2, 1);
  }
  add('model.norm.weight', [s.hidden], 0.2, 1);
  if (!s.tied) add('lm_head.weight', [s.vocab, s.hidden], 0.5);
  return m;
}

const ARCH_CLASS = { llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM' };

export function tinyConfig(s: TinySpec): Record<string, unknown> {
  return {
    architectures: [ARCH_CLASS[s.arch]],
    model_type: s.arch,
    hidden_size: s.hidden,
    intermediate_size: s.ff,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    ...(s.arch === 'qwen3' ? { head_dim: s.headDim } : {}),
    vocab_size: s.vocab,
    max_position_embeddings: 4096,
    rms_norm_eps: s.rmsEps,
    rope_theta: s.ropeTheta,
    rope_scaling: s.ropeScaling ?? null,
    tie_word_embeddings: s.tied,
    torch_dtype: 'float32',
    ...s.extraConfig,
  };
}

/** Writes config.json, model.safetensors and copies of `tokenizerFiles` (name → source path) into `dir`. */
export async function writeTinyModel(dir: string, s: TinySpec, tokenizerFiles: Record<string, string>): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  await mkdir(dir, { recursive: true });
  const tensors = tinyTensors(s);
  const sources: TensorSource[] = [...tensors].map(([name, t]) => ({ name, dtype: 'F32', shape: t.shape, data: new Uint8Array(t.data.buffer) }));
  await writeSafetensors(join(dir, 'model.safetensors'), sources, { metadata: { format: 'pt' } });
  await writeFile(join(dir, 'config.json'), JSON.stringify(tinyConfig(s), null, 2));
  for (const [name, from] of Object.entries(tokenizerFiles)) await copyFile(from, join(dir, name));
  return tensors;
}
