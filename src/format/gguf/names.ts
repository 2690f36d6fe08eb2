// llama.cpp's names for Llama-family checkpoints: tensor names and the hyperparameter keys.
import { gguf, type GgufValue } from './writer';

/** HF → llama.cpp tensor names for Llama-family checkpoints (`blk.N.attn_q.weight` …). */
const LLAMA_LAYER_NAMES: Record<string, string> = {
  'self_attn.q_proj': 'attn_q',
  'self_attn.k_proj': 'attn_k',
  'self_attn.v_proj': 'attn_v',
  'self_attn.o_proj': 'attn_output',
  'mlp.gate_proj': 'ffn_gate',
  'mlp.up_proj': 'ffn_up',
  'mlp.down_proj': 'ffn_down',
  input_layernorm: 'attn_norm',
  post_attention_layernorm: 'ffn_norm',
};

/**
 * The llama.cpp name of an HF Llama tensor, or undefined when it has none (rotary
 * `inv_freq` buffers, which llama.cpp recomputes).
 */
export function llamaCppName(hf: string): string | undefined {
  if (hf === 'model.embed_tokens.weight') return 'token_embd.weight';
  if (hf === 'model.norm.weight') return 'output_norm.weight';
  if (hf === 'lm_head.weight') return 'output.weight';
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hf);
  if (m) {
    const mapped = LLAMA_LAYER_NAMES[m[2]];
    if (mapped) return `blk.${m[1]}.${mapped}.${m[3]}`;
  }
  if (hf.endsWith('rotary_emb.inv_freq')) return undefined;
  return hf;
}

/** Model types llama.cpp converts with the `llama` architecture. */
export const LLAMA_FAMILY: readonly string[] = ['llama', 'mistral'];

/**
 * `llama.*` hyperparameters from an HF config.json, plus the names of the ones the
 * config lacks (a GGUF without them does not load in llama.cpp).
 */
export function llamaMetadata(config: Record<string, unknown>): { kv: Array<[string, GgufValue]>; missing: string[] } {
  const kv: Array<[string, GgufValue]> = [];
  const missing: string[] = [];
  const num = (k: string): number | undefined => (typeof config[k] === 'number' ? (config[k] as number) : undefined);
  const u32 = (gk: string, hk: string, fallback?: number) => {
    const v = num(hk) ?? fallback;
    if (v === undefined) missing.push(`${gk} (config.json has no ${hk})`);
    else kv.push([gk, gguf.u32(v)]);
  };
  u32('llama.context_length', 'max_position_embeddings');
  u32('llama.embedding_length', 'hidden_size');
  u32('llama.block_count', 'num_hidden_layers');
  u32('llama.feed_forward_length', 'intermediate_size');
  u32('llama.attention.head_count', 'num_attention_heads');
  u32('llama.attention.head_count_kv', 'num_key_value_heads', num('num_attention_heads'));
  const hidden = num('hidden_size');
  const heads = num('num_attention_heads');
  const headDim = num('head_dim') ?? (hidden && heads ? hidden / heads : undefined);
  if (headDim !== undefined) kv.push(['llama.rope.dimension_count', gguf.u32(headDim)]);
  else missing.push('llama.rope.dimension_count (no head_dim, hidden_size or num_attention_heads)');
  // Llama's defaults when the config omits them (transformers' LlamaConfig).
  kv.push(['llama.rope.freq_base', gguf.f32(num('rope_theta') ?? 10000)]);
  kv.push(['llama.attention.layer_norm_rms_epsilon', gguf.f32(num('rms_norm_eps') ?? 1e-6)]);
  const vocab = num('vocab_size');
  if (vocab !== undefined) kv.push(['llama.vocab_size', gguf.u32(vocab)]);
  const scaling = config.rope_scaling as Record<string, unknown> | null | undefined;
  if (scaling && typeof scaling === 'object') {
    const type = String(scaling.rope_type ?? scaling.type ?? '');
    if (type === 'linear' || type === 'yarn') {
      kv.push(['llama.rope.scaling.type', gguf.str(type)]);
      if (typeof scaling.factor === 'number') kv.push(['llama.rope.scaling.factor', gguf.f32(scaling.factor)]);
    } else if (type) {
      missing.push(`llama.rope.scaling (rope_scaling type '${type}' is not written)`);
    }
  }
  return { kv, missing };
}

const HF_LAYER_NAMES: Record<string, string> = Object.fromEntries(Object.entries(LLAMA_LAYER_NAMES).map(([hf, cpp]) => [cpp, hf]));

/** The HF name of a llama.cpp Llama tensor (the inverse of `llamaCppName`), or undefined for a name outside the table. */
export function hfLlamaName(name: string): string | undefined {
  if (name === 'token_embd.weight') return 'model.embed_tokens.weight';
  if (name === 'output_norm.weight') return 'model.norm.weight';
  if (name === 'output.weight') return 'lm_head.weight';
  const m = /^blk\.(\d+)\.(\w+)\.(weight|bias)$/.exec(name);
  const mapped = m && HF_LAYER_NAMES[m[2]];
  return mapped ? `model.layers.${m![1]}.${mapped}.${m![3]}` : undefined;
}

/**
 * For llama.cpp's q and k weights, which its converter stores with rows reordered from HF's
 * rotary layout (see `ropePermutation`): the metadata key of the head count that sets the groups.
 */
export function ropeHeadKey(name: string, arch: string): string | undefined {
  if (/^blk\.\d+\.attn_q\.weight$/.test(name)) return `${arch}.attention.head_count`;
  if (/^blk\.\d+\.attn_k\.weight$/.test(name)) return `${arch}.attention.head_count_kv`;
  return undefined;
}
