import { FormatError } from '../errors';
import { gguf, type GgufValue } from '../gguf/writer';
import { identifyPreTokenizer } from './preTokenizer';
import { PIECE_TYPE, SP_MODEL_TYPE, type SentencePieceModel } from './sentencepiece';

/**
 * The `tokenizer.ggml.*` keys llama.cpp's converter writes for a Hugging Face model:
 * a SentencePiece vocabulary ("llama") or a byte-level BPE one ("gpt2"), then the
 * special-token ids, add_bos/add_eos and the chat template (gguf-py's SpecialVocab).
 */

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

export interface GgufVocab {
  readonly model: 'llama' | 'gpt2';
  readonly pre: string;
  readonly tokens: readonly string[];
  /** SentencePiece only. */
  readonly scores?: readonly number[];
  readonly types: readonly number[];
}

// The converter's score for tokens that tokenizer_config.json adds or overrides, and for padding.
const ADDED_SCORE = -1000;
const PAD_SCORE = -10000;
// Vocabularies past this are corrupt or hostile: the largest real ones are ~262k.
const MAX_VOCAB = 1 << 22;

/** What the converter treats as a control token even when tokenizer_config.json does not say "special". */
export function looksSpecial(t: string): boolean {
  return (
    t === '<pad>' || t === '<mask>' || t === '<2mass>' || t === '[@BOS@]' ||
    (t.startsWith('<|') && t.endsWith('|>')) ||
    (t.startsWith('<｜') && t.endsWith('｜>')) ||
    (t.startsWith('<unused') && t.endsWith('>'))
  );
}

function checkVocabSize(n: unknown, file?: string): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0 || n > MAX_VOCAB) throw new FormatError('tokenizer_invalid', `vocabulary size ${String(n)} is not an integer in 1–${MAX_VOCAB}`, file);
  return n;
}

/** `added_tokens_decoder` of tokenizer_config.json as [id, content, special] rows. */
function addedTokensDecoder(tc: Json | undefined, file?: string): Array<[number, string, boolean]> {
  const d = tc?.added_tokens_decoder;
  if (d === undefined) return [];
  if (!isObj(d)) throw new FormatError('tokenizer_invalid', 'added_tokens_decoder is not an object', file);
  return Object.entries(d).map(([k, v]) => {
    const id = Number(k);
    if (!/^\d+$/.test(k) || !Number.isSafeInteger(id) || !isObj(v) || typeof v.content !== 'string') throw new FormatError('tokenizer_invalid', `added_tokens_decoder entry '${k}' is not {content, special}`, file);
    return [id, v.content, v.special === true];
  });
}

/** SentencePiece pieces → GGUF tokens, as the converter's `_create_vocab_for_sentencepiece` assigns them. */
export function sentencePieceVocab(sp: SentencePieceModel, vocabSize: number | undefined, tokenizerConfig: Json | undefined, addedTokens: Json | undefined, file?: string): GgufVocab {
  if (sp.modelType !== SP_MODEL_TYPE.bpe) throw new FormatError('unsupported', `SentencePiece model type ${sp.modelType} is not BPE; llama.cpp's "llama" tokenizer would merge it differently`, file);
  // llama.cpp's "llama" tokenizer neither normalizes nor squeezes whitespace: a model trained with either would tokenize differently.
  if (sp.normalizer !== 'identity' || sp.removeExtraWhitespaces || !sp.addDummyPrefix) {
    throw new FormatError('unsupported', `SentencePiece normalizer '${sp.normalizer}' (remove_extra_whitespaces ${sp.removeExtraWhitespaces}, add_dummy_prefix ${sp.addDummyPrefix}); llama.cpp tokenizes as 'identity' with the dummy prefix and kept whitespace`, file);
  }
  const n = checkVocabSize(vocabSize ?? sp.pieces.length, file);
  const tokens: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  for (let i = 0; i < n; i++) {
    tokens.push(`[PAD${i}]`);
    scores.push(PAD_SCORE);
    types.push(PIECE_TYPE.unused);
  }
  sp.pieces.forEach((p, i) => {
    if (i >= n) return;
    tokens[i] = p.piece;
    scores[i] = p.score;
    // User-defined pieces stay normal here: the converter checks only these four kinds.
    const t = p.type;
    types[i] = t === PIECE_TYPE.unknown || t === PIECE_TYPE.control || t === PIECE_TYPE.unused || t === PIECE_TYPE.byte ? t : PIECE_TYPE.normal;
  });
  for (const [content, id] of Object.entries(addedTokens ?? {})) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw new FormatError('tokenizer_invalid', `added_tokens.json: ${JSON.stringify(content)} has id ${String(id)}`, file);
    if (id >= n) continue;
    tokens[id] = content;
    scores[id] = ADDED_SCORE;
    types[id] = PIECE_TYPE.userDefined;
  }
  for (const [id, content, special] of addedTokensDecoder(tokenizerConfig, file)) {
    if (id >= n) continue;
    const control = special || looksSpecial(content);
    types[id] = control ? PIECE_TYPE.control : PIECE_TYPE.userDefined;
    tokens[id] = control ? content : content.replaceAll('\u2581', ' ');
    scores[id] = ADDED_SCORE;
  }
  return { model: 'llama', pre: 'default', tokens, scores, types };
}

/** tokenizer.json's model.vocab plus added_tokens, as id → [text, added entry]. */
function bpeIdTable(tok: Json, file?: string): Map<number, { text: string; added?: Json }> {
  const model = tok.model as Json;
  if (!isObj(model.vocab)) throw new FormatError('tokenizer_invalid', 'model.vocab is not an object', file);
  const byId = new Map<number, { text: string; added?: Json }>();
  for (const [text, id] of Object.entries(model.vocab)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= MAX_VOCAB) throw new FormatError('tokenizer_invalid', `vocab entry ${JSON.stringify(text)} has id ${String(id)}`, file);
    if (byId.has(id)) throw new FormatError('tokenizer_invalid', `id ${id} appears twice in model.vocab`, file);
    byId.set(id, { text });
  }
  const added = tok.added_tokens ?? [];
  if (!Array.isArray(added)) throw new FormatError('tokenizer_invalid', 'added_tokens is not a list', file);
  for (const a of added) {
    if (!isObj(a) || typeof a.content !== 'string' || typeof a.id !== 'number' || !Number.isInteger(a.id) || a.id < 0 || a.id >= MAX_VOCAB) throw new FormatError('tokenizer_invalid', 'an added_tokens entry is not {id, content}', file);
    byId.set(a.id, { text: a.content, added: a });
  }
  return byId;
}

/** Byte-level BPE → GGUF tokens, as the converter's `get_vocab_base` assigns them. */
export function bpeVocab(tok: Json, vocabSize: number | undefined, file?: string): GgufVocab {
  const model = tok.model;
  if (!isObj(model) || model.type !== 'BPE') throw new FormatError('unsupported', `tokenizer.json model type ${isObj(model) ? String(model.type) : '?'} is not BPE`, file);
  if (model.byte_fallback === true) throw new FormatError('unsupported', 'byte-fallback BPE (a SentencePiece-style tokenizer.json without tokenizer.model) is not converted', file);
  const { pre } = identifyPreTokenizer(tok, file);
  const byId = bpeIdTable(tok, file);
  const n = checkVocabSize(vocabSize ?? byId.size, file);
  const tokens: string[] = [];
  const types: number[] = [];
  for (let i = 0; i < n; i++) {
    const e = byId.get(i);
    if (!e) {
      tokens.push(`[PAD${i}]`);
      types.push(PIECE_TYPE.unused);
    } else if (e.added) {
      const control = e.added.special === true || looksSpecial(e.text);
      tokens.push(control ? e.text : e.text.replaceAll('\u2581', ' '));
      types.push(control ? PIECE_TYPE.control : PIECE_TYPE.userDefined);
    } else {
      tokens.push(e.text);
      types.push(PIECE_TYPE.normal);
    }
  }
  return { model: 'gpt2', pre, tokens, types };
}

/** `model.merges` in GGUF's "a b" form; the [a, b] form has its spaces written as U+0120, as gguf-py does. */
export function bpeMerges(tok: Json, file?: string): string[] {
  const merges = isObj(tok.model) ? tok.model.merges : undefined;
  if (merges === undefined) return [];
  if (!Array.isArray(merges)) throw new FormatError('tokenizer_invalid', 'model.merges is not a list', file);
  return merges.map((m, i) => {
    if (typeof m === 'string') return m;
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') return `${m[0].replaceAll(' ', '\u0120')} ${m[1].replaceAll(' ', '\u0120')}`;
    throw new FormatError('tokenizer_invalid', `merge ${i} is neither "a b" nor [a, b]`, file);
  });
}

export function vocabKeys(v: GgufVocab): Array<[string, GgufValue]> {
  const kv: Array<[string, GgufValue]> = [
    ['tokenizer.ggml.model', gguf.str(v.model)],
    ['tokenizer.ggml.pre', gguf.str(v.pre)],
    ['tokenizer.ggml.tokens', gguf.arr('string', v.tokens)],
  ];
  if (v.scores) kv.push(['tokenizer.ggml.scores', gguf.arr('f32', v.scores)]);
  kv.push(['tokenizer.ggml.token_type', gguf.arr('i32', v.types)]);
  return kv;
}
