import { Cursor } from './cursor';
import type { GgufFile } from './reader';
import { readItemsAt, type GgufItem, type GgufValue } from './values';

/**
 * What a GGUF header says about the model beyond its tensors, as text for `Model.metadata`
 * and `Model.notes`: every key as a string (long arrays as a one-line description, never
 * their items), the architecture and its hyperparameters, and the tokenizer in one line.
 */

/** Items of an array shown in its metadata string; longer ones are described, not listed. */
const SHOWN_ITEMS = 16;

function itemText(v: GgufItem): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'object') return `[${v.length} × ${v.itemType}]`;
  return String(v);
}

/** One metadata value as a string: scalars as they are, arrays listed when short. */
export function valueText(v: GgufValue): string {
  if (v.type !== 'array') return String(v.value);
  if (v.items && v.length <= SHOWN_ITEMS) return `[${v.items.map(itemText).join(', ')}]`;
  return `[${v.length} × ${v.itemType}]`;
}

export function metadataStrings(meta: ReadonlyMap<string, GgufValue>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of meta) out[k] = valueText(v);
  return out;
}

function num(meta: ReadonlyMap<string, GgufValue>, key: string): number | undefined {
  const v = meta.get(key);
  if (!v || v.type === 'array' || typeof v.value === 'string' || typeof v.value === 'boolean') return undefined;
  return Number(v.value);
}

function str(meta: ReadonlyMap<string, GgufValue>, key: string): string | undefined {
  const v = meta.get(key);
  return v && v.type === 'string' ? (v.value as string) : undefined;
}

// [key suffix after `{arch}.`, label], in the order a reader expects them.
export const HYPER: readonly (readonly [string, string])[] = [
  ['block_count', 'layers'],
  ['embedding_length', 'embedding'],
  ['feed_forward_length', 'FFN'],
  ['attention.head_count', 'heads'],
  ['attention.head_count_kv', 'KV heads'],
  ['context_length', 'context'],
  ['rope.dimension_count', 'rope dims'],
  ['rope.freq_base', 'rope base'],
  ['expert_count', 'experts'],
  ['expert_used_count', 'experts used'],
  ['vocab_size', 'vocab'],
];

/** `architecture llama: 32 layers, embedding 4096, …`, or undefined without general.architecture. */
export function architectureLine(meta: ReadonlyMap<string, GgufValue>): string | undefined {
  const arch = str(meta, 'general.architecture');
  if (!arch) return undefined;
  const parts: string[] = [];
  for (const [k, label] of HYPER) {
    const v = meta.get(`${arch}.${k}`);
    if (v) parts.push(`${label} ${valueText(v)}`);
  }
  return `architecture ${arch}${parts.length ? `: ${parts.join(', ')}` : ''}`;
}

// The special tokens llama.cpp's tokenizer keys name, and how they are shown.
export const SPECIAL: readonly (readonly [string, string])[] = [
  ['bos', 'BOS'],
  ['eos', 'EOS'],
  ['eot', 'EOT'],
  ['unknown', 'UNK'],
  ['padding', 'PAD'],
  ['separator', 'SEP'],
];

/** A special token the tokenizer keys name: its role, id, and its text from the token list when the id is in it. */
export interface SpecialToken {
  readonly label: string;
  readonly key: string;
  readonly id: number;
  readonly text?: string;
}

/**
 * The special tokens, their texts looked up in `tokenizer.ggml.tokens` in one walk over the
 * array (read from the file): a few ids out of a 150,000-entry vocabulary cost one pass, no strings.
 */
export async function specialTokens(file: GgufFile): Promise<SpecialToken[]> {
  const meta = file.metadata;
  const tokens = meta.get('tokenizer.ggml.tokens');
  const list = tokens && tokens.type === 'array' && tokens.itemType === 'string' ? tokens : undefined;
  const ids = SPECIAL.map(([k, label]) => ({ label, key: `tokenizer.ggml.${k}_token_id`, id: num(meta, `tokenizer.ggml.${k}_token_id`) })).filter((s) => s.id !== undefined);
  const texts = list ? await readItemsAt(new Cursor(file.source), list, ids.map((s) => s.id!)) : new Map<number, GgufItem>();
  return ids.map((s) => {
    const t = texts.get(s.id!);
    return typeof t === 'string' ? { label: s.label, key: s.key, id: s.id!, text: t } : { label: s.label, key: s.key, id: s.id! };
  });
}

/**
 * `tokenizer llama (pre default): 32000 tokens, merges absent; BOS 1 "<s>", EOS 2 "</s>"`, from
 * the metadata and the special tokens (`specialTokens`).
 */
export function tokenizerLine(meta: ReadonlyMap<string, GgufValue>, special: readonly SpecialToken[]): string | undefined {
  const model = str(meta, 'tokenizer.ggml.model');
  const tokens = meta.get('tokenizer.ggml.tokens');
  if (!model && !tokens) return undefined;
  const list = tokens && tokens.type === 'array' && tokens.itemType === 'string' ? tokens : undefined;
  const pre = str(meta, 'tokenizer.ggml.pre');
  const merges = meta.get('tokenizer.ggml.merges');
  const head = `tokenizer ${model ?? '(no model)'}${pre ? ` (pre ${pre})` : ''}: ${list ? `${list.length} tokens` : 'no token list'}, merges ${merges && merges.type === 'array' ? `present (${merges.length})` : 'absent'}`;
  const shown = special.map((s) => `${s.label} ${s.id}${s.text !== undefined ? ` ${JSON.stringify(s.text)}` : ''}`);
  const template = str(meta, 'tokenizer.chat_template');
  return head + (shown.length ? `; ${shown.join(', ')}` : '') + (template !== undefined ? `; chat template ${template.length} chars` : '');
}
