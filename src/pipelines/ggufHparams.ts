import { FormatError } from '../format';
import { gguf, type GgufValue } from '../format/gguf/writer';

/**
 * Architecture and hyperparameters that llama.cpp reads, from an HF config.json, as
 * llama.cpp's converter writes them for Llama (Llama 2/3, Mistral) and Qwen2/Qwen3.
 * Keys the converter writes only when the config has them are written only then.
 */

type Json = Record<string, unknown>;

export type GgufArch = 'llama' | 'qwen2' | 'qwen3';

const ARCHITECTURES: Record<string, GgufArch> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'llama',
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
};

export interface ModelShape {
  readonly arch: GgufArch;
  readonly layers: number;
  readonly hidden: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
}

function int(config: Json, key: string, file: string, required = true): number | undefined {
  const v = config[key];
  if (v === undefined || v === null) {
    if (required) throw new FormatError('unsupported', `config.json has no ${key}`, file);
    return undefined;
  }
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new FormatError('unsupported', `config.json ${key} is ${JSON.stringify(v)}, not a positive integer`, file);
  return v;
}

export function modelShape(config: Json, file: string): ModelShape {
  const names = Array.isArray(config.architectures) ? config.architectures : [];
  const arch = ARCHITECTURES[String(names[0])];
  if (!arch) throw new FormatError('unsupported', `architecture ${JSON.stringify(names[0] ?? config.model_type)} is not converted (only ${Object.keys(ARCHITECTURES).join(', ')})`, file);
  const hidden = int(config, 'hidden_size', file)!;
  const heads = int(config, 'num_attention_heads', file)!;
  const kvHeads = int(config, 'num_key_value_heads', file, false) ?? heads;
  const headDim = int(config, 'head_dim', file, false) ?? Math.floor(hidden / heads);
  if (heads % kvHeads) throw new FormatError('unsupported', `num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`, file);
  return { arch, layers: int(config, 'num_hidden_layers', file)!, hidden, heads, kvHeads, headDim };
}

/** Llama 3.1's per-frequency RoPE factors, the `rope_freqs.weight` tensor llama.cpp multiplies in. */
export function llama3RopeFactors(config: Json, headDim: number): Float32Array {
  const s = config.rope_scaling as Json;
  const base = typeof config.rope_theta === 'number' ? config.rope_theta : 10000;
  const num = (k: string, d: number) => (typeof s[k] === 'number' ? (s[k] as number) : d);
  const factor = num('factor', 8);
  const low = num('low_freq_factor', 1);
  const high = num('high_freq_factor', 4);
  const oldCtx = num('original_max_position_embeddings', 8192);
  const lowWavelen = oldCtx / low;
  const highWavelen = oldCtx / high;
  const out = new Float32Array(headDim / 2);
  for (let i = 0; i < out.length; i++) {
    // The converter computes the frequencies in float32.
    const freq = Math.fround(1 / Math.fround(Math.pow(base, Math.fround((2 * i) / headDim))));
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = factor;
    else {
      const smooth = (oldCtx / wavelen - low) / (high - low);
      out[i] = 1 / ((1 - smooth) / factor + smooth);
    }
  }
  return out;
}

/** `rope_scaling` handling: 'llama3' needs rope_freqs, 'linear' two keys; anything else is refused. */
export function ropeScaling(config: Json, arch: GgufArch, file: string): 'none' | 'linear' | 'llama3' {
  const s = config.rope_scaling;
  if (s === undefined || s === null) return 'none';
  if (typeof s !== 'object') throw new FormatError('unsupported', 'rope_scaling is not an object', file);
  const type = String((s as Json).rope_type ?? (s as Json).type ?? '');
  if (arch === 'llama' && type === 'llama3') return 'llama3';
  if (arch === 'llama' && type === 'linear' && typeof (s as Json).factor === 'number') return 'linear';
  if (type === 'default') return 'none';
  throw new FormatError('unsupported', `rope_scaling type '${type}' is not converted for ${arch}`, file);
}

export function hparamKeys(config: Json, shape: ModelShape, fileType: number, file: string): Array<[string, GgufValue]> {
  const a = shape.arch;
  const kv: Array<[string, GgufValue]> = [];
  const opt = (key: string, hk: string, as: 'u32' | 'f32') => {
    const v = config[hk];
    if (typeof v === 'number') kv.push([`${a}.${key}`, as === 'u32' ? gguf.u32(v) : gguf.f32(v)]);
  };
  kv.push([`${a}.block_count`, gguf.u32(shape.layers)]);
  opt('context_length', 'max_position_embeddings', 'u32');
  kv.push([`${a}.embedding_length`, gguf.u32(shape.hidden)]);
  const ff = int(config, 'intermediate_size', file)!;
  kv.push([`${a}.feed_forward_length`, gguf.u32(ff)]);
  kv.push([`${a}.attention.head_count`, gguf.u32(shape.heads)]);
  opt('attention.head_count_kv', 'num_key_value_heads', 'u32');
  opt('rope.freq_base', 'rope_theta', 'f32');
  opt('attention.layer_norm_rms_epsilon', 'rms_norm_eps', 'f32');
  if (typeof config.head_dim === 'number') {
    kv.push([`${a}.attention.key_length`, gguf.u32(shape.headDim)]);
    kv.push([`${a}.attention.value_length`, gguf.u32(shape.headDim)]);
  }
  kv.push(['general.file_type', gguf.u32(fileType)]);
  if (a === 'llama') {
    kv.push(['llama.vocab_size', gguf.u32(int(config, 'vocab_size', file)!)]);
    kv.push(['llama.rope.dimension_count', gguf.u32(shape.headDim)]);
    if (ropeScaling(config, a, file) === 'linear') {
      kv.push(['llama.rope.scaling.type', gguf.str('linear')]);
      kv.push(['llama.rope.scaling.factor', gguf.f32((config.rope_scaling as Json).factor as number)]);
    }
  } else {
    ropeScaling(config, a, file);
  }
  return kv;
}
