import { FormatError } from '../errors';
import { gguf, type GgufValue } from '../gguf/writer';
import { bpeMerges } from './vocab';

/**
 * Special-token ids, add_bos/add_eos and the chat template, found where gguf-py's
 * SpecialVocab finds them: tokenizer_config.json's `*_token` strings looked up in
 * tokenizer.json's added_tokens, the post-processor's template for add_bos/add_eos,
 * then config.json's `*_token_id` for the ids still missing.
 */

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

const TYPES = ['bos', 'eos', 'unk', 'sep', 'pad', 'cls', 'mask'] as const;
type SpecialType = (typeof TYPES)[number];

/** GGUF key suffixes; "seperator" is the spelling llama.cpp reads. */
const ID_KEY: Record<SpecialType, string> = {
  bos: 'bos_token_id',
  eos: 'eos_token_id',
  unk: 'unknown_token_id',
  sep: 'seperator_token_id',
  pad: 'padding_token_id',
  cls: 'cls_token_id',
  mask: 'mask_token_id',
};

export interface SpecialVocabInput {
  readonly tokenizer?: Json;
  readonly tokenizerConfig?: Json;
  readonly config: Json;
  readonly nVocab: number;
  /** BPE vocabularies carry their merges; SentencePiece ones do not. */
  readonly loadMerges: boolean;
  /** chat_template.jinja, or chat_template.json's template, used when tokenizer_config.json has none. */
  readonly chatTemplateFile?: string;
  readonly file?: string;
}

function content(entry: unknown): string | undefined {
  if (typeof entry === 'string') return entry || undefined;
  if (isObj(entry) && typeof entry.content === 'string') return entry.content || undefined;
  return undefined;
}

/** add_bos/add_eos from a TemplateProcessing post-processor: a special token before or after the text. */
function templateFlags(tok: Json, tc: Json | undefined, add: Map<string, boolean>): void {
  const pp = tok.post_processor;
  if (!isObj(pp)) return;
  const steps = Array.isArray(pp.processors) ? (pp.processors as unknown[]) : [pp];
  const bos = content(tc?.bos_token) ?? content(tc?.cls_token);
  const eos = content(tc?.eos_token) ?? content(tc?.sep_token);
  for (const s of steps) {
    if (!isObj(s)) continue;
    if (s.type === 'RobertaProcessing') {
      add.set('bos', true).set('eos', true).set('sep', true);
      continue;
    }
    if (s.type !== 'TemplateProcessing' || !Array.isArray(s.single) || s.single.length < 2) continue;
    const idOf = (x: unknown) => (isObj(x) && isObj(x.SpecialToken) && typeof x.SpecialToken.id === 'string' ? x.SpecialToken.id : undefined);
    const first = idOf(s.single[0]);
    const last = idOf(s.single[s.single.length - 1]);
    if (first) add.set('bos', !tc || first === bos || first === content(tc?.cls_token));
    if (last) {
      if (tc && last !== eos) throw new FormatError('unsupported', `the post-processor appends ${last}, not the eos token ${eos ?? '(none)'}; the converter's end-of-turn swap is not reproduced`);
      add.set('eos', true);
    }
  }
}

function setId(ids: Map<SpecialType, number>, typ: SpecialType, id: unknown, nVocab: number): void {
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= nVocab || ids.has(typ)) return;
  ids.set(typ, id);
}

export function specialVocabKeys(inp: SpecialVocabInput): Array<[string, GgufValue]> {
  const { tokenizer: tok, tokenizerConfig: tc, config, nVocab } = inp;
  const ids = new Map<SpecialType, number>();
  const add = new Map<string, boolean>();
  const merges = inp.loadMerges && tok ? bpeMerges(tok, inp.file) : [];
  const added = tok && Array.isArray(tok.added_tokens) ? (tok.added_tokens as unknown[]).filter(isObj) : [];
  if (tok) templateFlags(tok, tc, add);
  let chatTemplate: string | undefined;
  if (tc) {
    const ct = tc.chat_template ?? inp.chatTemplateFile;
    if (Array.isArray(ct)) throw new FormatError('unsupported', 'named chat templates (a list in chat_template) are not written', inp.file);
    if (typeof ct === 'string') chatTemplate = ct;
    for (const typ of TYPES) {
      const flag = tc[`add_${typ}_token`];
      if (typeof flag === 'boolean') add.set(typ, flag);
      const text = content(tc[`${typ}_token`]);
      if (text === undefined) continue;
      setId(ids, typ, added.find((a) => a.content === text)?.id, nVocab);
    }
  }
  for (const typ of TYPES) setId(ids, typ, config[`${typ}_token_id`], nVocab);
  const kv: Array<[string, GgufValue]> = [];
  if (merges.length) kv.push(['tokenizer.ggml.merges', gguf.arr('string', merges)]);
  for (const typ of TYPES) {
    const id = ids.get(typ);
    if (id !== undefined) kv.push([`tokenizer.ggml.${ID_KEY[typ]}`, gguf.u32(id)]);
  }
  for (const typ of ['bos', 'eos', 'sep']) {
    const v = add.get(typ);
    if (v !== undefined) kv.push([`tokenizer.ggml.add_${typ}_token`, gguf.bool(v)]);
  }
  if (chatTemplate !== undefined) kv.push(['tokenizer.chat_template', gguf.str(chatTemplate)]);
  return kv;
}
