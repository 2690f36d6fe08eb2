import { RE2JS } from 're2js';
import { FormatError } from '../format/errors';
import { GGML_TYPE_BY_NAME, type GgmlTypeName } from '../format/gguf/types';

/**
 * llama.cpp's file types (`enum llama_ftype`) and the per-tensor type each one picks, as
 * `llama_model_quantize` decides them in the llama.cpp build that node-llama-cpp 3.21.1
 * ships (src/llama-quant.cpp: tensor categories, `use_more_bits`, the GQA and expert
 * rules, the 256-column fallbacks). One place for the rules: `quantize --ftype` and the
 * HF→GGUF converter both ask `chooseTypes`.
 */

export type FtypeName =
  | 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'Q8_0'
  | 'Q2_K' | 'Q3_K_S' | 'Q3_K_M' | 'Q3_K_L' | 'Q4_K_S' | 'Q4_K_M' | 'Q5_K_S' | 'Q5_K_M' | 'Q6_K'
  | 'IQ4_NL' | 'IQ4_XS';

/** The types this project can write for a tensor (quantized by the twins, or a float cast). */
export type ChosenType = 'F32' | 'F16' | 'BF16' | 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'Q8_0' | 'Q2_K' | 'Q3_K' | 'Q4_K' | 'Q5_K' | 'Q6_K' | 'IQ4_NL' | 'IQ4_XS';

/** [llama_ftype id, the type most tensors get] per file type, as llama.h and `llama_ftype_get_default_type` say. */
export const FTYPES: Readonly<Record<FtypeName, { readonly id: number; readonly base: ChosenType }>> = {
  Q4_0: { id: 2, base: 'Q4_0' },
  Q4_1: { id: 3, base: 'Q4_1' },
  Q8_0: { id: 7, base: 'Q8_0' },
  Q5_0: { id: 8, base: 'Q5_0' },
  Q5_1: { id: 9, base: 'Q5_1' },
  Q2_K: { id: 10, base: 'Q2_K' },
  Q3_K_S: { id: 11, base: 'Q3_K' },
  Q3_K_M: { id: 12, base: 'Q3_K' },
  Q3_K_L: { id: 13, base: 'Q3_K' },
  Q4_K_S: { id: 14, base: 'Q4_K' },
  Q4_K_M: { id: 15, base: 'Q4_K' },
  Q5_K_S: { id: 16, base: 'Q5_K' },
  Q5_K_M: { id: 17, base: 'Q5_K' },
  Q6_K: { id: 18, base: 'Q6_K' },
  IQ4_NL: { id: 25, base: 'IQ4_NL' },
  IQ4_XS: { id: 30, base: 'IQ4_XS' },
};

export const FTYPE_NAMES = Object.keys(FTYPES) as FtypeName[];

export function isFtypeName(s: string): s is FtypeName {
  return Object.prototype.hasOwnProperty.call(FTYPES, s);
}

const CHOSEN: readonly ChosenType[] = ['F32', 'F16', 'BF16', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K', 'IQ4_NL', 'IQ4_XS'];

/** A type named on the command line (`q4_k`, `Q4_K`, `f16`), or undefined. */
export function parseChosenType(s: string): ChosenType | undefined {
  const u = s.toUpperCase();
  return CHOSEN.find((c) => c === u);
}

const blockOf = (t: ChosenType): number => GGML_TYPE_BY_NAME.get(t as GgmlTypeName)!.blockSize;
const isQuantized = (t: ChosenType): boolean => t !== 'F32' && t !== 'F16' && t !== 'BF16';

/** What the rules read from the model's hyperparameters. */
export interface FtypeModel {
  readonly arch: string;
  readonly nLayer: number;
  readonly nHead: number;
  readonly nHeadKv: number;
  readonly nExpert: number;
}

export interface FtypeOptions {
  /** `--tensor-type REGEX=TYPE`, in order: the first pattern found in a name wins (RE2 search). */
  readonly tensorTypes?: ReadonlyArray<{ readonly pattern: string; readonly type: ChosenType }>;
  readonly outputType?: ChosenType;
  readonly tokenEmbeddingType?: ChosenType;
  /** llama-quantize --pure: every quantizable tensor gets the file type's base type. */
  readonly pure?: boolean;
  /** An importance matrix is given: a few rules differ (IQ4 and Q4_0/Q5_0 ffn_down). */
  readonly hasImatrix?: boolean;
}

/** One tensor as the rules see it: llama.cpp name, ggml dims (ne[0] = row length) and its type now. */
export interface FtypeTensor {
  readonly name: string;
  readonly ne: readonly number[];
  readonly type: ChosenType;
}

export interface TypePlan {
  /** Per tensor name, the type to write. */
  readonly types: Map<string, ChosenType>;
  /** llama.cpp's warnings for rows that do not fit the chosen type's blocks, and what each fell back to. */
  readonly fallbacks: string[];
  /** Manual overrides applied (`--tensor-type`), for the log. */
  readonly overrides: string[];
}

type Category = 'output' | 'token_embd' | 'attn_qkv' | 'attn_kv_b' | 'attn_v' | 'attn_k' | 'attn_q' | 'attn_output' | 'ffn_up' | 'ffn_gate' | 'ffn_down' | 'other';

function categoryOf(name: string): Category {
  if (name === 'output.weight') return 'output';
  if (name === 'token_embd.weight' || name === 'per_layer_token_embd.weight') return 'token_embd';
  for (const c of ['attn_qkv', 'attn_kv_b', 'attn_v', 'attn_k', 'attn_q', 'attn_output'] as const) if (name.includes(`${c}.weight`)) return c;
  for (const c of ['ffn_up', 'ffn_gate', 'ffn_down'] as const) if (name.includes(c)) return c;
  return 'other';
}

const isAttnV = (c: Category) => c === 'attn_v' || c === 'attn_qkv' || c === 'attn_kv_b';

// Substrings of tensors llama.cpp never quantizes: small, routing, positional or multimodal tables.
const NEVER_QUANTIZED = [
  '_norm.weight', 'ffn_gate_inp.weight', 'ffn_gate_tid2eid.weight', 'altup', 'laurel', 'per_layer_model_proj', 'ssm_conv1d', 'shortconv.conv.weight',
  'indexer.k_proj.weight', 'indexer.q_proj.weight', 'time_mix_first.weight', 'time_mix_w0.weight', 'time_mix_w1.weight', 'time_mix_w2.weight',
  'time_mix_v0.weight', 'time_mix_v1.weight', 'time_mix_v2.weight', 'time_mix_a0.weight', 'time_mix_a1.weight', 'time_mix_a2.weight',
  'time_mix_g1.weight', 'time_mix_g2.weight', 'time_mix_decay_w1.weight', 'time_mix_decay_w2.weight', 'time_mix_lerp_fused.weight',
  'attn_rel_b.weight', '.position_embd', 'sam.pos_embd', 'sam.neck.', 'sam.net_', '.rel_pos', '.patch_embd', '.patch_merger', 'a.rvq.codebook', 'mm.a.code_embd',
];

/** ggml_n_dims: trailing dimensions of 1 do not count. */
function nDims(ne: readonly number[]): number {
  let n = ne.length;
  while (n > 1 && ne[n - 1] === 1) n--;
  return n;
}

/** `tensor_allows_quantization`: 2-D and 3-D weights, minus the tables above. */
export function allowsQuantization(t: FtypeTensor): boolean {
  if (nDims(t.ne) < 2 || !t.name.endsWith('weight')) return false;
  if (t.name === 'position_embd.weight' || t.name === 'token_types.weight') return false;
  return !NEVER_QUANTIZED.some((s) => t.name.includes(s));
}

/** llama.cpp's layer order: by the number after `blk.` (none first), then by name. */
export function llamaTensorOrder(a: string, b: string): number {
  const la = /^blk\.(\d+)\./.exec(a);
  const lb = /^blk\.(\d+)\./.exec(b);
  const ia = la ? Number(la[1]) : -1;
  const ib = lb ? Number(lb[1]) : -1;
  if (ia !== ib) return ia - ib;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The state `quantize_state_impl` carries from tensor to tensor. */
interface State {
  readonly ftype: FtypeName;
  readonly model: FtypeModel;
  readonly opts: FtypeOptions;
  readonly nAttnV: number;
  readonly tied: boolean;
  readonly is70B: boolean;
  iAttnV: number;
  iFfnDown: number;
  iFfnGate: number;
  iFfnUp: number;
}

const useMoreBits = (i: number, n: number): boolean => i < Math.trunc(n / 8) || i >= Math.trunc((7 * n) / 8) || (i - Math.trunc(n / 8)) % 3 === 2;

/** The layer a feed-forward tensor belongs to: its counter, or (with experts, whose tensors are not in layer order) its name. */
function layerOf(s: State, counter: number, name: string): number {
  if (Math.max(1, s.model.nExpert) <= 1) return counter;
  const m = /^blk\.(\d+)\./.exec(name);
  if (!m) throw new FormatError('unsupported', 'cannot tell its layer (no blk.N. prefix)', undefined, name);
  const i = Number(m[1]);
  if (i >= s.model.nLayer) throw new FormatError('unsupported', `layer ${i} is not below block_count ${s.model.nLayer}`, undefined, name);
  return i;
}

const gqa = (m: FtypeModel): number => (m.nHeadKv > 0 ? Math.trunc(m.nHead / m.nHeadKv) : 0);

/** `llama_tensor_get_type_impl` for the output / tied token embedding. */
function outputType(s: State, t: FtypeTensor, base: ChosenType): ChosenType {
  if (s.opts.outputType) return s.opts.outputType;
  if (s.model.arch === 'falcon' || t.ne[0] % blockOf(base) !== 0) return 'Q8_0';
  return base !== 'Q8_0' ? 'Q6_K' : base;
}

function attnVType(s: State, t: ChosenType): ChosenType {
  const f = s.ftype;
  if (f === 'Q2_K') t = gqa(s.model) >= 4 ? 'Q4_K' : 'Q3_K';
  else if (f === 'Q3_K_M') t = s.iAttnV < 2 ? 'Q5_K' : 'Q4_K';
  else if (f === 'Q3_K_L') t = 'Q5_K';
  else if ((f === 'IQ4_NL' || f === 'IQ4_XS') && gqa(s.model) >= 4) t = 'Q5_K';
  else if ((f === 'Q4_K_M' || f === 'Q5_K_M') && useMoreBits(s.iAttnV, s.nAttnV)) t = 'Q6_K';
  else if (f === 'Q4_K_S' && s.iAttnV < 4) t = 'Q5_K';
  // 70B: eight heads share attn_v, which is 8× smaller than attn_q, so more bits there cost little.
  if (s.is70B && (t === 'Q3_K' || t === 'Q4_K')) t = 'Q5_K';
  if (s.model.nExpert === 8) t = 'Q8_0';
  s.iAttnV++;
  return t;
}

function ffnDownType(s: State, name: string, t: ChosenType): ChosenType {
  const f = s.ftype;
  const i = layerOf(s, s.iFfnDown, name);
  const n = s.model.nLayer;
  const falcon = s.model.arch === 'falcon';
  const n8 = Math.trunc(n / 8);
  if (f === 'Q2_K') t = 'Q3_K';
  else if (f === 'Q3_K_M') t = i < Math.trunc(n / 16) ? 'Q5_K' : !falcon || useMoreBits(i, n) ? 'Q4_K' : 'Q3_K';
  else if (f === 'Q3_K_L') t = falcon ? 'Q4_K' : 'Q5_K';
  else if (f === 'Q4_K_M') {
    if (falcon) t = i < Math.trunc(n / 16) ? 'Q6_K' : useMoreBits(i, n) ? 'Q5_K' : 'Q4_K';
    else if (useMoreBits(i, n)) t = 'Q6_K';
  } else if (i < n8 && (f === 'IQ4_NL' || f === 'IQ4_XS') && !s.opts.hasImatrix) t = 'Q5_K';
  else if (f === 'Q5_K_M' && useMoreBits(i, n)) t = 'Q6_K';
  else if (f === 'Q4_K_S' && !falcon && i < n8) t = 'Q5_K';
  // With an imatrix the first layers' ffn_down go to the type with a minimum, against outliers there.
  else if ((f === 'Q4_0' || f === 'Q5_0') && s.opts.hasImatrix && i < n8) t = f === 'Q4_0' ? 'Q4_1' : 'Q5_1';
  s.iFfnDown++;
  return t;
}

function attnOutputType(s: State, t: ChosenType): ChosenType {
  const f = s.ftype;
  if (s.model.arch === 'falcon') return f === 'Q3_K_L' ? 'Q4_K' : t;
  if (s.model.nExpert === 8) return ['Q2_K', 'Q3_K_S', 'Q3_K_M', 'IQ4_NL', 'Q4_K_S', 'Q4_K_M', 'IQ4_XS'].includes(f) ? 'Q5_K' : t;
  if (f === 'Q2_K') return 'Q3_K';
  if (f === 'Q3_K_M') return 'Q4_K';
  if (f === 'Q3_K_L') return 'Q5_K';
  return t;
}

/** `llama_tensor_get_type_impl`: the mix's choice for one quantizable tensor. */
function mixType(s: State, t: FtypeTensor, base: ChosenType): ChosenType {
  const c = categoryOf(t.name);
  if (c === 'output' || (s.tied && c === 'token_embd')) return outputType(s, t, base);
  if (c === 'token_embd') return s.opts.tokenEmbeddingType ?? base;
  // attn_qkv counts as attn_v here (llama.cpp's own attn_qkv branch after it is never reached).
  if (isAttnV(c)) return attnVType(s, base);
  if (c === 'attn_k') return s.model.nExpert === 8 ? 'Q8_0' : base;
  if (c === 'ffn_down') return ffnDownType(s, t.name, base);
  if (c === 'attn_output') return attnOutputType(s, base);
  if (c === 'ffn_gate' || c === 'ffn_up') {
    // No mix listed here changes them; the layer check (and its error for a bad name) still runs.
    if (c === 'ffn_gate') layerOf(s, s.iFfnGate++, t.name);
    else layerOf(s, s.iFfnUp++, t.name);
  }
  return base;
}

// The block a fallback type moves to when the row does not fit the chosen type's 256-value blocks.
const FALLBACK: Partial<Record<ChosenType, ChosenType>> = { IQ4_XS: 'IQ4_NL', Q2_K: 'Q4_0', Q3_K: 'Q4_0', Q4_K: 'Q5_0', Q5_K: 'Q5_1', Q6_K: 'Q8_0' };

function fallback(t: FtypeTensor, want: ChosenType, log: string[]): ChosenType {
  const cols = t.ne[0];
  const qk = blockOf(want);
  if (cols % qk === 0) return want;
  let got = FALLBACK[want] ?? want;
  let note = '';
  if (cols % blockOf(got) !== 0) {
    got = 'F16';
    note = ' (must use F16: unusual shape)';
  }
  log.push(`${t.name}: ${cols} columns not divisible by ${qk} (required for ${want.toLowerCase()})${note}: falling back to ${got.toLowerCase()}`);
  return got;
}

function compilePatterns(opts: FtypeOptions): Array<[RE2JS, ChosenType, string]> {
  return (opts.tensorTypes ?? []).map(({ pattern, type }) => {
    try {
      return [RE2JS.compile(pattern), type, pattern];
    } catch (e) {
      throw new FormatError('unsupported', `--tensor-type '${pattern}': ${(e as Error).message}`);
    }
  });
}

/** llama.cpp's LLM_TYPE_70B: a llama-architecture model of 80 layers with grouped KV heads (and not the 8-expert size table). */
function is70B(m: FtypeModel): boolean {
  return m.arch === 'llama' && m.nExpert !== 8 && m.nLayer === 80 && m.nHead !== m.nHeadKv;
}

/**
 * `llama_tensor_get_type` over a model's tensors, visited in llama.cpp's order (the
 * attn_v and ffn counters depend on it). Tensors it does not quantize keep their type.
 */
export function chooseTypes(tensors: readonly FtypeTensor[], model: FtypeModel, ftype: FtypeName, opts: FtypeOptions = {}): TypePlan {
  const base = FTYPES[ftype].base;
  const patterns = compilePatterns(opts);
  const ordered = [...tensors].sort((a, b) => llamaTensorOrder(a.name, b.name));
  const cats = ordered.map((t) => categoryOf(t.name));
  const s: State = {
    ftype, model, opts, nAttnV: cats.filter(isAttnV).length, tied: !cats.includes('output'), is70B: is70B(model),
    iAttnV: 0, iFfnDown: 0, iFfnGate: 0, iFfnUp: 0,
  };
  const types = new Map<string, ChosenType>();
  const fallbacks: string[] = [];
  const overrides: string[] = [];
  ordered.forEach((t, k) => {
    if (!allowsQuantization(t)) return types.set(t.name, t.type);
    const cat = cats[k];
    const named = t.name === 'per_layer_token_embd.weight' && patterns.some(([re]) => re.test(t.name));
    if (opts.tokenEmbeddingType && cat === 'token_embd' && !named) return types.set(t.name, opts.tokenEmbeddingType);
    if (opts.outputType && cat === 'output') return types.set(t.name, opts.outputType);
    let type: ChosenType = base;
    const manual = patterns.find(([re]) => re.test(t.name));
    if (manual) {
      if (manual[1] !== type) overrides.push(`${t.name}: ${type.toLowerCase()} → ${manual[1].toLowerCase()} (--tensor-type ${manual[2]})`);
      type = manual[1];
    } else if (!opts.pure) type = mixType(s, t, base);
    types.set(t.name, isQuantized(type) ? fallback(t, type, fallbacks) : type);
  });
  return { types, fallbacks, overrides };
}

/**
 * The tensors whose type a budget plan (`--target-bpw`) may not choose, and that type: those
 * llama.cpp never quantizes (kept), the `--token-embedding-type`, `--output-tensor-type` and
 * `--tensor-type` overrides (in `chooseTypes`' order, with its fallbacks), and rows no quantized
 * type fits (F16, as llama.cpp falls back). The others are left out of the map.
 */
export function fixedTypes(tensors: readonly FtypeTensor[], opts: FtypeOptions = {}): Map<string, { type: ChosenType; why: string }> {
  const patterns = compilePatterns(opts);
  const tied = !tensors.some((t) => categoryOf(t.name) === 'output');
  const out = new Map<string, { type: ChosenType; why: string }>();
  const log: string[] = [];
  for (const t of tensors) {
    const cat = categoryOf(t.name);
    if (!allowsQuantization(t)) {
      out.set(t.name, { type: t.type, why: 'not quantized' });
      continue;
    }
    const named = t.name === 'per_layer_token_embd.weight' && patterns.some(([re]) => re.test(t.name));
    const manual = patterns.find(([re]) => re.test(t.name));
    let want: [ChosenType, string] | undefined;
    if (opts.tokenEmbeddingType && cat === 'token_embd' && !named) want = [opts.tokenEmbeddingType, '--token-embedding-type'];
    else if (opts.outputType && cat === 'output') want = [opts.outputType, '--output-tensor-type'];
    else if (manual) want = [manual[1], `--tensor-type ${manual[2]}`];
    else if (opts.outputType && tied && cat === 'token_embd') want = [opts.outputType, '--output-tensor-type, tied'];
    else if (t.ne[0] % 32 !== 0) want = ['F16', `${t.ne[0]} columns fit no quantized block`];
    if (want) out.set(t.name, { type: isQuantized(want[0]) ? fallback(t, want[0], log) : want[0], why: want[1] });
  }
  return out;
}
