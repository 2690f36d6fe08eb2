import { FormatError } from '../errors';

/**
 * Which llama.cpp pre-tokenizer (`tokenizer.ggml.pre`) a Hugging Face BPE tokenizer needs.
 * llama.cpp's converter finds it by hashing the tokenization of a fixed text; the same
 * answer follows from what decides that tokenization: the split regexes, the byte-level
 * step, the normalizer and whether whole-word vocabulary hits bypass the merges. Each row
 * is a tokenizer.json whose tokenization llama.cpp reproduces under that name; anything
 * else is refused rather than written with a name that would tokenize differently.
 */

interface PreRow {
  readonly pre: string;
  readonly family: string;
  readonly regexes: readonly string[];
  readonly normalizer: string | null;
  readonly ignoreMerges: boolean;
}

const LLAMA3_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const TABLE: readonly PreRow[] = [
  { pre: 'llama-bpe', family: 'Llama 3', regexes: [LLAMA3_REGEX], normalizer: null, ignoreMerges: true },
  { pre: 'qwen2', family: 'Qwen2/Qwen2.5/Qwen3', regexes: [QWEN2_REGEX], normalizer: 'NFC', ignoreMerges: false },
];

type Json = Record<string, unknown>;

const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The split regexes of a Sequence[Split(Isolated)…, ByteLevel(use_regex=false)] pre-tokenizer, else a reason. */
function splitRegexes(pt: unknown): string[] | string {
  if (!isObj(pt)) return 'no pre_tokenizer';
  const steps = pt.type === 'Sequence' && Array.isArray(pt.pretokenizers) ? (pt.pretokenizers as unknown[]) : [pt];
  const regexes: string[] = [];
  let byteLevel = false;
  for (const s of steps) {
    if (!isObj(s)) return 'a pre_tokenizer step is not an object';
    if (s.type === 'Split' && !byteLevel) {
      const pattern = isObj(s.pattern) ? s.pattern.Regex : undefined;
      if (typeof pattern !== 'string') return 'a Split step without a Regex pattern';
      if (s.behavior !== 'Isolated' || s.invert === true) return `a Split step with behavior ${String(s.behavior)}${s.invert ? ', inverted' : ''}`;
      regexes.push(pattern);
    } else if (s.type === 'ByteLevel' && !byteLevel) {
      if (s.use_regex !== false) return 'ByteLevel with its own GPT-2 regex';
      if (s.add_prefix_space === true) return 'ByteLevel adds a prefix space';
      byteLevel = true;
    } else {
      return `pre_tokenizer step ${String(s.type)}`;
    }
  }
  if (!byteLevel) return 'no ByteLevel step';
  return regexes;
}

/** The `tokenizer.ggml.pre` name for a tokenizer.json, or a FormatError saying why there is none. */
export function identifyPreTokenizer(tokenizer: Json, file?: string): { pre: string; family: string } {
  const model = isObj(tokenizer.model) ? tokenizer.model : {};
  const regexes = splitRegexes(tokenizer.pre_tokenizer);
  const normalizer = tokenizer.normalizer === null || tokenizer.normalizer === undefined ? null : isObj(tokenizer.normalizer) ? String(tokenizer.normalizer.type) : '?';
  const ignoreMerges = model.ignore_merges === true;
  if (typeof regexes !== 'string') {
    for (const row of TABLE) {
      if (row.normalizer === normalizer && row.ignoreMerges === ignoreMerges && row.regexes.length === regexes.length && row.regexes.every((r, i) => r === regexes[i])) {
        return { pre: row.pre, family: row.family };
      }
    }
  }
  const what = typeof regexes === 'string' ? regexes : `split regex ${JSON.stringify(regexes)}, normalizer ${normalizer ?? 'none'}, ignore_merges ${ignoreMerges}`;
  throw new FormatError(
    'unsupported',
    `pre-tokenizer not recognised (${what}); known: ${TABLE.map((r) => `${r.pre} (${r.family})`).join(', ')}. llama.cpp would split text differently, so no GGUF is written`,
    file,
  );
}
