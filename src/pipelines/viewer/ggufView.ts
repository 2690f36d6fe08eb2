/**
 * What the viewer shows of a GGUF file beyond its tensors: the architecture's hyperparameters
 * as labelled rows, the tokenizer as a summary (special tokens with their text), the chat
 * template, every other key, and the file's bits per weight and type mix. Built from the
 * header as the reader left it: long arrays stay lazy (a 150,000-token vocabulary is a length,
 * never 150,000 strings) and are paged through on request.
 */
import { FormatError } from '../../format/errors';
import { Cursor } from '../../format/gguf/cursor';
import type { GgufSourceModel } from '../../format/gguf/ggufModel';
import { HYPER } from '../../format/gguf/summary';
import { readArrayPage, type ArrayMark, type GgufArray, type GgufItem, type GgufValue } from '../../format/gguf/values';
import { typeNameOf, type Model } from '../../format/model';
import type { GgufArrayResult, GgufKeyRow, GgufSummary, GgufTokenizerSummary, GgufTypeShare } from './types';

/** Arrays of at most this many items are listed in their row; longer ones are paged. */
const LISTED_ITEMS = 16;
/** A string value longer than this is cut in its row (a licence text, a long description): the table stays a table. */
const VALUE_MAX_CHARS = 2000;
/** Items of a paged array sent at once, and one item's text: a page stays a few hundred KB. */
export const ARRAY_PAGE_MAX = 500;
const ITEM_MAX_CHARS = 500;
/** Chat templates are a few KB; past 1 MB the text is cut, so a crafted file cannot flood the page. */
export const GGUF_TEMPLATE_MAX_CHARS = 1 << 20;

// Readable labels of keys that HYPER (the inspect line's list) leaves out.
const MORE_LABELS: Record<string, string> = {
  'attention.layer_norm_rms_epsilon': 'RMS norm ε',
  'attention.layer_norm_epsilon': 'norm ε',
  'attention.key_length': 'key length',
  'attention.value_length': 'value length',
  'attention.sliding_window': 'sliding window',
  'rope.scaling.type': 'rope scaling',
  'rope.scaling.factor': 'rope scaling factor',
  'rope.scaling.original_context_length': 'rope original context',
  'expert_feed_forward_length': 'expert FFN',
  'expert_shared_count': 'shared experts',
};

const TEMPLATE_KEY = 'tokenizer.chat_template';

/** 150000 → "150,000", without toLocaleString: its first call loads locale data, tens of ms on the host's thread. */
function grouped(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+$)/g, ',');
}

function cut(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}… (${grouped(s.length)} chars)` : s;
}

/** The shortest decimal that reads back as the same f32 (`1e-05`, not `9.999999747378752e-06`). */
function f32Text(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  for (let p = 1; p < 10; p++) {
    const s = Number(v.toPrecision(p));
    if (Math.fround(s) === v) return String(s);
  }
  return String(v);
}

function itemText(v: GgufItem, itemType: string, max: number): string {
  if (typeof v === 'string') return cut(JSON.stringify(v), max);
  if (typeof v === 'object') return `[${grouped(v.length)} × ${v.itemType}]`;
  if (typeof v === 'number' && itemType === 'f32') return f32Text(v);
  return String(v);
}

function keyRow(key: string, v: GgufValue): GgufKeyRow {
  if (v.type !== 'array') {
    const text = typeof v.value === 'string' ? cut(v.value, VALUE_MAX_CHARS) : typeof v.value === 'number' && v.type === 'f32' ? f32Text(v.value) : String(v.value);
    return { key, type: v.type, text };
  }
  const type = `[${v.itemType}]`;
  if (v.items && v.length <= LISTED_ITEMS) return { key, type, text: `[${v.items.map((x) => itemText(x, v.itemType, VALUE_MAX_CHARS)).join(', ')}]` };
  return { key, type, text: `${grouped(v.length)} × ${v.itemType}`, length: v.length };
}

function str(meta: ReadonlyMap<string, GgufValue>, key: string): string | undefined {
  const v = meta.get(key);
  return v && v.type === 'string' ? (v.value as string) : undefined;
}

function arrayLength(meta: ReadonlyMap<string, GgufValue>, key: string): number | undefined {
  const v = meta.get(key);
  return v && v.type === 'array' ? v.length : undefined;
}

function tokenizerOf(g: GgufSourceModel): GgufTokenizerSummary | undefined {
  const meta = g.gguf.metadata;
  const model = str(meta, 'tokenizer.ggml.model');
  const vocabSize = arrayLength(meta, 'tokenizer.ggml.tokens');
  const template = str(meta, TEMPLATE_KEY);
  if (model === undefined && vocabSize === undefined && template === undefined) return undefined;
  const pre = str(meta, 'tokenizer.ggml.pre');
  const merges = arrayLength(meta, 'tokenizer.ggml.merges');
  return {
    ...(model !== undefined ? { model } : {}),
    ...(pre !== undefined ? { pre } : {}),
    ...(vocabSize !== undefined ? { vocabSize } : {}),
    ...(merges !== undefined ? { merges } : {}),
    special: g.special.map((s) => ({ ...s })),
    ...(template !== undefined ? { chatTemplate: template.slice(0, GGUF_TEMPLATE_MAX_CHARS) } : {}),
    ...(template !== undefined && template.length > GGUF_TEMPLATE_MAX_CHARS ? { templateChars: template.length } : {}),
  };
}

/** Parameters and tensors by ggml type, and bits per weight, over every tensor of the model. */
export function typeMixOf(model: Model): { bitsPerWeight: number; typeMix: GgufTypeShare[] } {
  const by = new Map<string, { tensors: number; params: number }>();
  let params = 0;
  let bytes = 0;
  for (const t of model.tensors) {
    const type = typeNameOf(t);
    const e = by.get(type) ?? { tensors: 0, params: 0 };
    e.tensors++;
    e.params += t.numel;
    by.set(type, e);
    params += t.numel;
    bytes += t.byteLength;
  }
  const typeMix = [...by]
    .map(([type, e]) => ({ type, tensors: e.tensors, params: e.params, share: params ? e.params / params : 0 }))
    .sort((a, b) => b.params - a.params || a.type.localeCompare(b.type));
  return { bitsPerWeight: params ? (bytes * 8) / params : 0, typeMix };
}

export function ggufSummary(g: GgufSourceModel): GgufSummary {
  const meta = g.gguf.metadata;
  const arch = str(meta, 'general.architecture');
  const prefix = arch ? `${arch}.` : undefined;
  const hparams: (GgufKeyRow & { label: string })[] = [];
  const known = new Map(HYPER.map(([k, label], i) => [k, { label, order: i }]));
  const keys: GgufKeyRow[] = [];
  for (const [key, v] of meta) {
    if (key === TEMPLATE_KEY) continue;
    if (prefix && key.startsWith(prefix)) {
      const suffix = key.slice(prefix.length);
      hparams.push({ ...keyRow(key, v), label: known.get(suffix)?.label ?? MORE_LABELS[suffix] ?? suffix });
    } else keys.push(keyRow(key, v));
  }
  // Known keys first, in the order a reader expects them; the rest in file order.
  const rank = (r: { key: string }) => known.get(r.key.slice(prefix?.length ?? 0))?.order ?? HYPER.length;
  hparams.sort((a, b) => rank(a) - rank(b));
  const tokenizer = tokenizerOf(g);
  return {
    version: g.gguf.parts[0]!.version,
    ...(arch !== undefined ? { architecture: arch } : {}),
    hparams,
    ...(tokenizer ? { tokenizer } : {}),
    keys,
    ...typeMixOf(g),
  };
}

/**
 * Pages of long arrays, read from the file on request. The end of the last page read of each
 * array is kept, so reading the next page walks only its own items.
 */
export class GgufArrayPager {
  private readonly marks = new Map<string, ArrayMark>();

  constructor(private readonly g: GgufSourceModel) {}

  async page(key: string, start: number, count: number): Promise<GgufArrayResult> {
    const v = this.g.gguf.metadata.get(key);
    if (!v || v.type !== 'array') throw new FormatError('not_found', `no array metadata key '${key}'`, this.g.path);
    const a: GgufArray = v;
    const from = Math.max(0, Math.min(a.length, Math.floor(start)));
    const n = Math.max(0, Math.min(ARRAY_PAGE_MAX, a.length - from, Math.floor(count)));
    const mark = this.marks.get(key);
    const r = await readArrayPage(new Cursor(this.g.gguf.parts[0]!.source), a, from, n, mark && mark.index <= from ? mark : undefined);
    this.marks.set(key, r.next);
    return { type: 'ggufArray', key, start: from, total: a.length, items: r.items.map((x) => itemText(x, a.itemType, ITEM_MAX_CHARS)) };
  }
}
