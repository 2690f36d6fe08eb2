import { FormatError } from './errors';

// The header's JSON, checked as the reference reader (serde_json) checks it: strict
// structure, depth, no duplicate key at any depth, and exact integers for sizes. The
// bytes are scanned once for what JSON.parse cannot report.

/**
 * serde_json, which the reference reader uses, stops at 128 levels of nesting. A
 * valid header needs 3; the bound also keeps our own recursive walks off the stack limit.
 */
export const MAX_JSON_DEPTH = 128;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
export const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
export const SPACE = 0x20;
const DOT = 0x2e;
const MINUS = 0x2d;
const LOWER_E = 0x65;
const UPPER_E = 0x45;
const LOWER_U = 0x75;

function hex4(b: Uint8Array, i: number): number {
  let v = 0;
  for (let k = 0; k < 4; k++) {
    const c = b[i + k];
    const d = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/**
 * JSON.parse accepts `\ud800` alone, but a lone surrogate is not a Unicode scalar, and
 * the reference reader (serde_json) rejects it. `i` is just past the `u`. Returns the
 * bytes to skip from the `u` (past a surrogate pair's second escape), or -1 for a lone
 * surrogate. A malformed escape is skipped by one byte and left for JSON.parse to reject.
 */
function unicodeEscapeLength(b: Uint8Array, i: number): number {
  const v = hex4(b, i);
  if (v < 0xd800 || v > 0xdfff) return 1;
  if (v >= 0xdc00) return -1;
  // A high surrogate must be followed by an escaped low one.
  if (b[i + 4] !== BACKSLASH || b[i + 5] !== LOWER_U) return -1;
  const w = hex4(b, i + 6);
  return w >= 0xdc00 && w <= 0xdfff ? 11 : -1;
}

export interface ScanResult {
  /** Members in all objects: each has exactly one `:` outside strings. */
  colons: number;
  /** Of those, members of the top-level object, and of the objects directly inside it. */
  colons1: number;
  colons2: number;
  /** Index just past the top-level value's closing brace, or -1 if it never closes. */
  end: number;
  /** A number outside strings has a sign, a fraction or an exponent (or `true`/`false` appear). */
  lexicalNumbers: boolean;
}

/**
 * One tight pass over the bytes, outside strings. In UTF-8 the bytes `"`, `\` and `:`
 * never occur inside a multi-byte sequence, so bytes can be scanned without decoding.
 */
export function scan(b: Uint8Array, file: string): ScanResult {
  let colons = 0;
  let colons1 = 0;
  let colons2 = 0;
  let depth = 0;
  let lexicalNumbers = false;
  let digits = 0;
  let i = 0;
  const n = b.length;
  while (i < n) {
    const c = b[i++];
    // 16 digits or more may be above 2^53, where JSON.parse rounds: the exact parser keeps the text.
    if (c >= 0x30 && c <= 0x39) {
      if (++digits >= BIG_INTEGER_DIGITS) lexicalNumbers = true;
      continue;
    }
    digits = 0;
    if (c === QUOTE) {
      // Skip the string; a backslash always escapes exactly the next byte.
      while (i < n) {
        const d = b[i++];
        if (d === QUOTE) break;
        if (d === BACKSLASH) {
          if (b[i] === LOWER_U) {
            const skip = unicodeEscapeLength(b, i + 1);
            if (skip < 0) {
              throw new FormatError('header_json', `the \\u escape at header offset ${i - 1} encodes a lone surrogate, which is not Unicode text`, file);
            }
            i += skip;
          } else i++;
        }
      }
    } else if (c === COLON) {
      colons++;
      if (depth === 1) colons1++;
      else if (depth === 2) colons2++;
    } else if (c === LBRACE || c === LBRACKET) {
      if (++depth > MAX_JSON_DEPTH) {
        throw new FormatError('header_json', `header JSON nests deeper than ${MAX_JSON_DEPTH} levels`, file);
      }
    } else if (c === RBRACE || c === RBRACKET) {
      if (--depth === 0) return { colons, colons1, colons2, end: i, lexicalNumbers };
    } else if (c === DOT || c === MINUS || c === LOWER_E || c === UPPER_E) {
      lexicalNumbers = true;
    }
  }
  return { colons, colons1, colons2, end: -1, lexicalNumbers };
}

/** Counts object members in a parsed JSON tree (the walk is bounded by MAX_JSON_DEPTH). */
export function countKeys(v: unknown, depth = 1): number {
  if (typeof v !== 'object' || v === null) return 0;
  if (depth > MAX_JSON_DEPTH) throw new SyntaxError(`JSON nests deeper than ${MAX_JSON_DEPTH} levels`);
  let k = 0;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const e = v[i];
      if (typeof e === 'object' && e !== null) k += countKeys(e, depth + 1);
    }
    return k;
  }
  for (const key in v) {
    k++;
    const e = (v as Record<string, unknown>)[key];
    if (typeof e === 'object' && e !== null) k += countKeys(e, depth + 1);
  }
  return k;
}

/**
 * A JSON number literal that is not a plain non-negative integer (`-1`, `1.0`, `1e3`).
 * JSON.parse folds `1.0` into 1, but the spec's sizes are integers, so the slow path
 * keeps such literals apart and validation rejects them where an integer is required.
 */
export class NonIntegerLiteral {
  constructor(readonly raw: string) {}
  toString(): string {
    return this.raw;
  }
}

/** A plain integer above 2^53, kept as its text so that messages quote the file exactly. */
export class LargeIntegerLiteral extends NonIntegerLiteral {}

// Digits in a row from which an integer may exceed Number.MAX_SAFE_INTEGER (9007199254740991, 16 digits).
const BIG_INTEGER_DIGITS = 16;

/** Where the exact parser found a key twice. */
export interface DuplicateKey {
  key: string;
  /** Keys from the top level down to the object holding the duplicate. */
  path: string[];
}

/**
 * A strict JSON parser (RFC 8259, like JSON.parse) for the rare headers the fast path
 * cannot judge alone: it reports duplicate keys with their path, keeps top-level key
 * order exact (JSON.parse moves integer-like keys first), and keeps non-integer number
 * literals distinct. Only called after JSON.parse has accepted the same text.
 */
export class ExactParser {
  private i = 0;
  duplicate: DuplicateKey | undefined;
  topKeys: string[] = [];
  /** Keys from the top level down to the value being parsed; copied only when a duplicate is found. */
  private readonly path: string[] = [];
  constructor(private readonly s: string) {}

  parse(): unknown {
    this.ws();
    return this.value(0);
  }

  private fail(): never {
    // JSON.parse accepted the text, so this means the two grammars disagree.
    throw new SyntaxError(`unexpected character at ${this.i}`);
  }

  private ws(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.i++;
      else break;
    }
  }

  private value(depth: number): unknown {
    if (depth > MAX_JSON_DEPTH) throw new SyntaxError(`JSON nests deeper than ${MAX_JSON_DEPTH} levels`);
    const c = this.s.charCodeAt(this.i);
    if (c === LBRACE) return this.object(depth + 1);
    if (c === LBRACKET) return this.array(depth + 1);
    if (c === QUOTE) return this.string();
    if (this.s.startsWith('true', this.i)) return (this.i += 4), true;
    if (this.s.startsWith('false', this.i)) return (this.i += 5), false;
    if (this.s.startsWith('null', this.i)) return (this.i += 4), null;
    return this.number();
  }

  private object(depth: number): Record<string, unknown> {
    this.i++;
    const out: Record<string, unknown> = Object.create(null);
    const seen = new Set<string>();
    this.ws();
    if (this.s.charCodeAt(this.i) === RBRACE) return this.i++, out;
    for (;;) {
      this.ws();
      if (this.s.charCodeAt(this.i) !== QUOTE) this.fail();
      const key = this.string();
      if (seen.has(key)) this.duplicate ??= { key, path: this.path.slice() };
      seen.add(key);
      if (depth === 1) this.topKeys.push(key);
      this.ws();
      if (this.s.charCodeAt(this.i++) !== COLON) this.fail();
      this.ws();
      this.path.push(key);
      out[key] = this.value(depth);
      this.path.pop();
      this.ws();
      const c = this.s.charCodeAt(this.i++);
      if (c === RBRACE) return out;
      if (c !== 0x2c) this.fail();
    }
  }

  private array(depth: number): unknown[] {
    this.i++;
    const out: unknown[] = [];
    this.ws();
    if (this.s.charCodeAt(this.i) === RBRACKET) return this.i++, out;
    for (;;) {
      this.ws();
      out.push(this.value(depth));
      this.ws();
      const c = this.s.charCodeAt(this.i++);
      if (c === RBRACKET) return out;
      if (c !== 0x2c) this.fail();
    }
  }

  private string(): string {
    const r = stringEnd(this.s, this.i);
    if (r < 0) this.fail();
    const start = this.i;
    this.i = r;
    return decodeJsonString(this.s, start, r);
  }

  private number(): number | NonIntegerLiteral {
    const s = this.s;
    const start = this.i;
    let plain = true;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c >= 0x30 && c <= 0x39) this.i++;
      else if (c === MINUS || c === DOT || c === LOWER_E || c === UPPER_E || c === 0x2b) {
        plain = false;
        this.i++;
      } else break;
    }
    if (this.i === start) this.fail();
    const raw = s.slice(start, this.i);
    // JSON.parse accepted the text, so `raw` is a valid literal; only its kind matters here.
    if (!plain) return new NonIntegerLiteral(raw);
    const v = Number(raw);
    return v > Number.MAX_SAFE_INTEGER ? new LargeIntegerLiteral(raw) : v;
  }
}

/** Index just past the closing quote of the string starting at `i` (which holds `"`), or -1. */
function stringEnd(s: string, i: number): number {
  const n = s.length;
  i++;
  while (i < n) {
    const c = s.charCodeAt(i++);
    if (c === QUOTE) return i;
    if (c === BACKSLASH) i++;
  }
  return -1;
}

/** The value of the JSON string literal s[start, end): sliced directly unless it has escapes. */
function decodeJsonString(s: string, start: number, end: number): string {
  const inner = s.slice(start + 1, end - 1);
  return inner.includes('\\') ? (JSON.parse(s.slice(start, end)) as string) : inner;
}

/**
 * The top-level keys of a JSON object text in written order, duplicates included.
 * JSON.parse lists integer-like keys first; this recovers the file's order cheaply.
 */
export function topLevelKeys(s: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let i = 0;
  const n = s.length;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(s, i);
      if (end < 0) break;
      if (depth === 1) {
        let j = end;
        while (j < n && (s.charCodeAt(j) === 0x20 || s.charCodeAt(j) === 0x09 || s.charCodeAt(j) === 0x0a || s.charCodeAt(j) === 0x0d)) j++;
        if (s.charCodeAt(j) === COLON) keys.push(decodeJsonString(s, i, end));
      }
      i = end;
      continue;
    }
    if (c === LBRACE || c === LBRACKET) depth++;
    else if (c === RBRACE || c === RBRACKET) {
      if (--depth === 0) break;
    }
    i++;
  }
  return keys;
}

/** True for keys that JS objects order before all others (canonical array indices). */
export function isIndexLikeKey(k: string): boolean {
  if (k.length === 0 || k.length > 10) return false;
  const c = k.charCodeAt(0);
  if (c < 0x30 || c > 0x39 || (c === 0x30 && k.length > 1)) return false;
  for (let i = 1; i < k.length; i++) {
    const d = k.charCodeAt(i);
    if (d < 0x30 || d > 0x39) return false;
  }
  return Number(k) < 4294967295;
}

/** Members outside strings, counted from the colons of a JSON text (any JSON, not only headers). */
function countColons(s: string): number {
  let colons = 0;
  let i = 0;
  const n = s.length;
  while (i < n) {
    const c = s.charCodeAt(i++);
    if (c === QUOTE) {
      while (i < n) {
        const d = s.charCodeAt(i++);
        if (d === QUOTE) break;
        if (d === BACKSLASH) i++;
      }
    } else if (c === COLON) colons++;
  }
  return colons;
}

/**
 * JSON.parse, plus where a key appears twice in one object (JSON.parse keeps the last
 * silently). Used for small JSON files beside a model, such as index.json. Throws
 * SyntaxError for invalid JSON.
 */
export function parseJsonChecked(text: string): { value: unknown; duplicate?: DuplicateKey } {
  const value: unknown = JSON.parse(text);
  if (countKeys(value) === countColons(text)) return { value };
  const exact = new ExactParser(text);
  exact.parse();
  return { value, duplicate: exact.duplicate };
}
