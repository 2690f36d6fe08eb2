// The common header, parsed straight from its bytes into tensor records. JSON.parse builds a
// tree (an object, two arrays and their numbers per tensor) that is thrown away as soon as the
// records are made: at 100,000 tensors that garbage was most of what opening a file cost in
// time and memory. This reader takes only headers that are plainly valid (each entry exactly
// dtype, shape and data_offsets, integer sizes, no duplicate key) and returns undefined for
// anything else, which `parseHeader` then parses and checks the thorough way: every error
// message and code therefore still comes from one place.
import { DTYPE_INFO, DTYPES, type DType } from './dtypes';
import type { TensorInfo } from './model';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const SPACE = 0x20;
const ZERO = 0x30;
const NINE = 0x39;
// 15 digits are below 10^15 < 2^53: every such integer is exact as a double. Longer ones go to the
// thorough parser, which tells a size above 2^53 (an overflow) from a representable one.
const MAX_DIGITS = 15;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const DTYPE_KEY = ascii('dtype');
const SHAPE_KEY = ascii('shape');
const OFFSETS_KEY = ascii('data_offsets');
const METADATA_KEY = ascii('__metadata__');
// The dtype names as bytes, so that an entry's dtype is matched without making a string for it.
const DTYPE_BYTES: readonly (readonly [Uint8Array, DType])[] = DTYPES.map((d) => [ascii(d), d]);

export interface ScannedHeader {
  readonly metadata: Record<string, string>;
  readonly tensors: TensorInfo[];
}

/** Thrown inside the scanner for anything it does not take; never leaves this module. */
class NotPlain {}
const NOT_PLAIN = new NotPlain();

function isWhitespace(c: number): boolean {
  return c === SPACE || c === 0x09 || c === 0x0a || c === 0x0d;
}

/** True when the string holds a UTF-16 surrogate without its partner (only a `\u` escape can make one). */
function hasLoneSurrogate(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c >= 0xdc00) return true;
    const d = s.charCodeAt(i + 1);
    if (!(d >= 0xdc00 && d <= 0xdfff)) return true;
    i++;
  }
  return false;
}

class Scanner {
  i = 0;
  constructor(readonly b: Uint8Array) {}

  ws(): number {
    const b = this.b;
    let i = this.i;
    while (i < b.length && isWhitespace(b[i])) i++;
    this.i = i;
    return i < b.length ? b[i] : -1;
  }

  expect(c: number): void {
    if (this.ws() !== c) throw NOT_PLAIN;
    this.i++;
  }

  /** Past a string's closing quote; returns where its content starts (see `escaped` and `end`). */
  skipString(): number {
    if (this.ws() !== QUOTE) throw NOT_PLAIN;
    const b = this.b;
    const start = ++this.i;
    let i = start;
    this.escaped = false;
    for (;;) {
      if (i >= b.length) throw NOT_PLAIN;
      const c = b[i++];
      if (c === QUOTE) break;
      // JSON forbids raw control characters in strings.
      if (c < SPACE) throw NOT_PLAIN;
      if (c === BACKSLASH) {
        this.escaped = true;
        i++;
      }
    }
    this.i = i;
    this.end = i - 1;
    return start;
  }
  /** Of the string last skipped: whether it has escapes, and where its content ends. */
  escaped = false;
  end = 0;

  /** The string last skipped (content [start, end)) as text. */
  text(start: number): string {
    const raw = this.b.subarray(start, this.end);
    let s: string;
    try {
      s = utf8.decode(raw);
      if (this.escaped) s = JSON.parse(`"${s}"`) as string;
    } catch {
      throw NOT_PLAIN;
    }
    if (this.escaped && hasLoneSurrogate(s)) throw NOT_PLAIN;
    return s;
  }

  /** Whether the string last skipped is exactly `key` (no escapes). */
  is(start: number, key: Uint8Array): boolean {
    if (this.escaped || this.end - start !== key.length) return false;
    for (let k = 0; k < key.length; k++) if (this.b[start + k] !== key[k]) return false;
    return true;
  }

  /** A non-negative integer of at most MAX_DIGITS digits, without a leading zero. */
  size(): number {
    const b = this.b;
    const c = this.ws();
    if (c < ZERO || c > NINE) throw NOT_PLAIN;
    const start = this.i;
    let i = start;
    let v = 0;
    while (i < b.length && b[i] >= ZERO && b[i] <= NINE) v = v * 10 + (b[i++] - ZERO);
    const digits = i - start;
    if (digits > MAX_DIGITS || (digits > 1 && b[start] === ZERO)) throw NOT_PLAIN;
    // A fraction or exponent: not an integer literal (1.0 is refused as the spec's usize is).
    if (i < b.length && (b[i] === 0x2e || b[i] === 0x65 || b[i] === 0x45)) throw NOT_PLAIN;
    this.i = i;
    return v;
  }

  /**
   * `[a, b, …]` of sizes, into `this.list` (reused, and never shortened: setting its length
   * would free its storage, and each call would allocate it again). Returns the count.
   */
  sizes(): number {
    this.expect(LBRACKET);
    const out = this.list;
    let n = 0;
    if (this.ws() === RBRACKET) {
      this.i++;
      return 0;
    }
    for (;;) {
      out[n++] = this.size();
      const c = this.ws();
      this.i++;
      if (c === RBRACKET) return n;
      if (c !== COMMA) throw NOT_PLAIN;
    }
  }
  private readonly list: number[] = [];

  /**
   * The first `n` entries of the list that `sizes` filled, as an array of exactly that length,
   * shared by every tensor of this header with the same shape: a model repeats a few shapes
   * over all its layers, and shapes are read-only, so 100,000 tensors need not hold 100,000 arrays.
   */
  shape(n: number): number[] {
    let key = '';
    for (let k = 0; k < n; k++) key += k === 0 ? String(this.list[k]) : `,${this.list[k]}`;
    let shape = this.shapes.get(key);
    if (!shape) this.shapes.set(key, (shape = this.list.slice(0, n)));
    return shape;
  }
  private readonly shapes = new Map<string, number[]>();

  /** Entry `i` of the list that `sizes` filled. */
  at(i: number): number {
    return this.list[i];
  }

  /** Past an object's `{`: false when the object is empty (its `}` consumed too). */
  open(): boolean {
    this.expect(LBRACE);
    if (this.ws() !== RBRACE) return true;
    this.i++;
    return false;
  }

  /** A member's key, past its colon: where the key's text starts. */
  key(): number {
    const start = this.skipString();
    this.expect(COLON);
    return start;
  }

  /** Past the `,` before another member (true) or the object's closing `}` (false). */
  more(): boolean {
    const c = this.ws();
    this.i++;
    if (c === COMMA) return true;
    if (c === RBRACE) return false;
    throw NOT_PLAIN;
  }
}

function dtypeAt(sc: Scanner, start: number): DType {
  for (const [bytes, d] of DTYPE_BYTES) if (sc.is(start, bytes)) return d;
  throw NOT_PLAIN;
}

/** Byte length of `numel` elements, or NOT_PLAIN where the thorough parser would report an error. */
function byteLength(dtype: DType, numel: number): number {
  const bits = DTYPE_INFO[dtype].bits;
  // 4-bit: 2 elements per byte; 6-bit: 4 elements per 3 bytes (as byteLengthForElements).
  const perGroup = bits % 8 === 0 ? 1 : bits === 4 ? 2 : 4;
  if (numel % perGroup !== 0) throw NOT_PLAIN;
  const bytes = (numel / perGroup) * ((bits * perGroup) / 8);
  if (bytes > Number.MAX_SAFE_INTEGER) throw NOT_PLAIN;
  return bytes;
}

function tensorEntry(sc: Scanner, name: string, dataOffset: number, fileIndex: number): TensorInfo {
  let dtype: DType | undefined;
  let shape: number[] | undefined;
  let begin = -1;
  let end = -1;
  for (let more = sc.open(); more; more = sc.more()) {
    const key = sc.key();
    if (sc.is(key, DTYPE_KEY) && dtype === undefined) dtype = dtypeAt(sc, sc.skipString());
    else if (sc.is(key, SHAPE_KEY) && shape === undefined) shape = sc.shape(sc.sizes());
    else if (sc.is(key, OFFSETS_KEY) && begin < 0) {
      if (sc.sizes() !== 2) throw NOT_PLAIN;
      begin = sc.at(0);
      end = sc.at(1);
    }
    // An extra field, a duplicate or an escaped key name: the thorough parser decides.
    else throw NOT_PLAIN;
  }
  if (dtype === undefined || shape === undefined || begin < 0) throw NOT_PLAIN;
  let numel = 1;
  for (let k = 0; k < shape.length; k++) {
    numel *= shape[k];
    if (numel > Number.MAX_SAFE_INTEGER) throw NOT_PLAIN;
  }
  const bytes = byteLength(dtype, numel);
  if (end < begin || end - begin !== bytes) throw NOT_PLAIN;
  // The same fields, in the same order, as the thorough parser's records.
  return { name, dtype, shape, numel, file: fileIndex, byteOffset: dataOffset + begin, byteLength: bytes };
}

function metadataEntry(sc: Scanner): Record<string, string> {
  const out: Record<string, string> = {};
  const seen = new Set<string>();
  for (let more = sc.open(); more; more = sc.more()) {
    const k = sc.text(sc.key());
    if (seen.has(k)) throw NOT_PLAIN;
    seen.add(k);
    const v = sc.text(sc.skipString());
    // Defined, not assigned: `out['__proto__'] = v` would set the prototype and drop the key.
    Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/**
 * The header's metadata and tensors (header order), when the header is plainly valid JSON with
 * nothing but well-formed entries; undefined otherwise. The layout (offsets tiling the data) is
 * not checked here. `dataOffset` is 8 + the header's length.
 */
export function scanPlainHeader(b: Uint8Array, dataOffset: number, fileIndex: number): ScannedHeader | undefined {
  if (b.length === 0 || b[0] !== LBRACE) return undefined;
  const sc = new Scanner(b);
  const tensors: TensorInfo[] = [];
  const names = new Set<string>();
  let metadata: Record<string, string> = {};
  try {
    for (let more = sc.open(); more; more = sc.more()) {
      const key = sc.key();
      // An escaped spelling of __metadata__ is left to the thorough parser, as is any duplicate.
      const name = sc.is(key, METADATA_KEY) ? '__metadata__' : sc.text(key);
      if (names.has(name) || (name === '__metadata__' && sc.escaped)) throw NOT_PLAIN;
      names.add(name);
      if (name === '__metadata__') metadata = metadataEntry(sc);
      else tensors.push(tensorEntry(sc, name, dataOffset, fileIndex));
    }
  } catch (e) {
    if (e === NOT_PLAIN) return undefined;
    throw e;
  }
  // The spec pads the header with spaces only.
  for (let i = sc.i; i < b.length; i++) if (b[i] !== SPACE) return undefined;
  return { metadata, tensors };
}
