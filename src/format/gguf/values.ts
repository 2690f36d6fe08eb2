import type { Cursor } from './cursor';

/**
 * GGUF metadata values (`gguf_metadata_value_type`). Scalars are decoded; arrays are decoded
 * when short and otherwise kept as a lazy description (where they start, how many items),
 * so a 150,000-entry vocabulary costs one pass over its bytes and no strings.
 */

export const GGUF_VALUE_TYPES = ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'f32', 'bool', 'string', 'array', 'u64', 'i64', 'f64'] as const;
export type GgufValueType = (typeof GGUF_VALUE_TYPES)[number];

/** Bytes of one item of each fixed-size type. */
const FIXED: Partial<Record<GgufValueType, number>> = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, bool: 1, u64: 8, i64: 8, f64: 8 };

/** Arrays of at most this many items are decoded when the file is opened (names, small lists). */
export const EAGER_ARRAY_ITEMS = 64;

/**
 * Arrays nest in the spec (ggml itself writes none); deeper than this is refused so a crafted
 * file cannot recurse without end.
 */
export const MAX_ARRAY_DEPTH = 8;

export type GgufScalar = number | bigint | boolean | string;
/** u64 and i64 are bigint; every other number type is a number. */
export type GgufItem = GgufScalar | GgufArray;

export interface GgufArray {
  readonly type: 'array';
  readonly itemType: GgufValueType;
  readonly length: number;
  /** File offset of the first item. */
  readonly offset: number;
  /** Bytes the items take in the file. */
  readonly byteLength: number;
  /** The items, present when `length` ≤ EAGER_ARRAY_ITEMS; otherwise read them with `readArrayItems`. */
  readonly items?: readonly GgufItem[];
}

export type GgufValue = { readonly type: Exclude<GgufValueType, 'array'>; readonly value: GgufScalar } | GgufArray;

export function valueType(code: number): GgufValueType | undefined {
  return GGUF_VALUE_TYPES[code];
}

/** Smallest number of bytes an item of this type can take (an empty string or array still has its header). */
function minItemBytes(t: GgufValueType): number {
  return FIXED[t] ?? (t === 'string' ? 8 : 12);
}

async function readScalar(c: Cursor, t: GgufValueType, what: string): Promise<GgufScalar> {
  switch (t) {
    case 'u8':
      return c.u8(what);
    case 'i8':
      return c.fixed(1, what, (v, at) => v.getInt8(at));
    case 'u16':
      return c.fixed(2, what, (v, at) => v.getUint16(at, true));
    case 'i16':
      return c.fixed(2, what, (v, at) => v.getInt16(at, true));
    case 'u32':
      return c.u32(what);
    case 'i32':
      return c.fixed(4, what, (v, at) => v.getInt32(at, true));
    case 'f32':
      return c.fixed(4, what, (v, at) => v.getFloat32(at, true));
    case 'u64':
      return c.u64(what);
    case 'i64':
      return c.fixed(8, what, (v, at) => v.getBigInt64(at, true));
    case 'f64':
      return c.fixed(8, what, (v, at) => v.getFloat64(at, true));
    case 'bool': {
      const b = await c.u8(what);
      if (b > 1) c.fail('gguf_bool', `${what} is a bool stored as ${b}; only 0 and 1 are valid`);
      return b === 1;
    }
    case 'string':
      return c.string(what);
    default:
      throw new Error(`not a scalar type: ${t}`);
  }
}

async function readArrayHeader(c: Cursor, what: string, depth: number): Promise<{ itemType: GgufValueType; length: number }> {
  if (depth > MAX_ARRAY_DEPTH) c.fail('gguf_value_type', `${what} nests arrays deeper than ${MAX_ARRAY_DEPTH} levels`);
  const code = await c.u32(`item type of ${what}`);
  const itemType = valueType(code);
  if (!itemType) c.fail('gguf_value_type', `${what} has item type ${code}; the spec defines 0–12`);
  const length = await c.size(`length of ${what}`);
  const min = minItemBytes(itemType);
  if (length > c.remaining / min) c.fail('gguf_count', `${what} claims ${length} items of at least ${min} bytes; only ${c.remaining} bytes remain`);
  return { itemType, length };
}

/** Reads an array after its header: decodes it when short, else only walks past it. */
async function readArrayBody(c: Cursor, itemType: GgufValueType, length: number, what: string, depth: number): Promise<GgufArray> {
  const offset = c.pos;
  let items: GgufItem[] | undefined;
  if (length <= EAGER_ARRAY_ITEMS) {
    items = [];
    for (let i = 0; i < length; i++) items.push(await readItem(c, itemType, `${what}[${i}]`, depth));
  } else {
    await skipItems(c, itemType, length, what, depth);
  }
  return { type: 'array', itemType, length, offset, byteLength: c.pos - offset, items };
}

async function readItem(c: Cursor, t: GgufValueType, what: string, depth: number): Promise<GgufItem> {
  if (t !== 'array') return readScalar(c, t, what);
  const h = await readArrayHeader(c, what, depth + 1);
  return readArrayBody(c, h.itemType, h.length, what, depth + 1);
}

/** Walks past `length` items, checking every length against the file; strings are checked as UTF-8 when decoded. */
async function skipItems(c: Cursor, t: GgufValueType, length: number, what: string, depth: number): Promise<void> {
  const fixed = FIXED[t];
  if (fixed !== undefined && t !== 'bool') {
    c.skip(length * fixed, what);
    return;
  }
  if (t === 'string') {
    await c.skipStrings(length, what);
    return;
  }
  for (let i = 0; i < length; i++) {
    if (t === 'bool') {
      await readScalar(c, t, `${what}[${i}]`);
    } else {
      const h = await readArrayHeader(c, `${what}[${i}]`, depth + 1);
      await skipItems(c, h.itemType, h.length, `${what}[${i}]`, depth + 1);
    }
  }
}

/** One metadata value of type code `code` at the cursor. */
export async function readValue(c: Cursor, code: number, what: string): Promise<GgufValue> {
  const t = valueType(code);
  if (!t) return c.fail('gguf_value_type', `${what} has value type ${code}; the spec defines 0–12`);
  if (t !== 'array') return { type: t, value: await readScalar(c, t, what) } as GgufValue;
  const h = await readArrayHeader(c, what, 1);
  return readArrayBody(c, h.itemType, h.length, what, 1);
}

/**
 * Items [start, start + count) of an array, decoded now (the lazy half of GgufArray). Strings
 * are walked from the array's start, since their lengths vary.
 */
export async function readArrayItems(c: Cursor, a: GgufArray, start = 0, count = a.length - start): Promise<GgufItem[]> {
  if (start < 0 || count < 0 || start + count > a.length) throw new RangeError(`items ${start}..${start + count} of an array of ${a.length}`);
  if (a.items) return a.items.slice(start, start + count);
  const fixed = FIXED[a.itemType];
  c.pos = a.offset;
  if (fixed !== undefined) c.pos += start * fixed;
  else await skipItems(c, a.itemType, start, 'array', 1);
  const out: GgufItem[] = [];
  for (let i = 0; i < count; i++) out.push(await readItem(c, a.itemType, `item ${start + i}`, 1));
  return out;
}

/**
 * The items at `indices` (any order, repeats allowed) of a string or other array, in one walk
 * from its start: a few special tokens out of a 150,000-entry vocabulary cost one pass, no strings.
 */
export async function readItemsAt(c: Cursor, a: GgufArray, indices: readonly number[]): Promise<Map<number, GgufItem>> {
  const out = new Map<number, GgufItem>();
  const wanted = [...new Set(indices)].filter((i) => Number.isInteger(i) && i >= 0 && i < a.length).sort((x, y) => x - y);
  if (a.items) {
    for (const i of wanted) out.set(i, a.items[i]);
    return out;
  }
  let at = 0;
  c.pos = a.offset;
  for (const i of wanted) {
    if (FIXED[a.itemType] !== undefined) c.pos = a.offset + i * FIXED[a.itemType]!;
    else await skipItems(c, a.itemType, i - at, 'array', 1);
    out.set(i, await readItem(c, a.itemType, `item ${i}`, 1));
    at = i + 1;
  }
  return out;
}

/** Where an item of an array starts: its index and its file offset. */
export interface ArrayMark {
  readonly index: number;
  readonly offset: number;
}

/**
 * Items [start, start + count) of an array and where the item after them starts. Given
 * `from` (an earlier page's `next`, at or before `start`), a string array is walked from
 * there instead of from its first item, so paging through a 150,000-entry vocabulary
 * costs each page its own bytes.
 */
export async function readArrayPage(c: Cursor, a: GgufArray, start: number, count: number, from?: ArrayMark): Promise<{ items: GgufItem[]; next: ArrayMark }> {
  if (start < 0 || count < 0 || start + count > a.length) throw new RangeError(`items ${start}..${start + count} of an array of ${a.length}`);
  if (a.items) return { items: a.items.slice(start, start + count), next: { index: start + count, offset: a.offset } };
  const fixed = FIXED[a.itemType];
  if (fixed !== undefined) c.pos = a.offset + start * fixed;
  else if (from && from.index <= start) {
    c.pos = from.offset;
    await skipItems(c, a.itemType, start - from.index, 'array', 1);
  } else {
    c.pos = a.offset;
    await skipItems(c, a.itemType, start, 'array', 1);
  }
  const items: GgufItem[] = [];
  for (let i = 0; i < count; i++) items.push(await readItem(c, a.itemType, `item ${start + i}`, 1));
  return { items, next: { index: start + count, offset: c.pos } };
}
