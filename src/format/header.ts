import { DTYPE_INFO, isDType, type DType } from './dtypes';
import { FormatError } from './errors';
import { countKeys, ExactParser, isIndexLikeKey, LargeIntegerLiteral, LBRACE, NonIntegerLiteral, scan, SPACE, topLevelKeys } from './json';
import { scanPlainHeader } from './headerScan';
import type { TensorInfo } from './model';

export { MAX_JSON_DEPTH, parseJsonChecked, type DuplicateKey } from './json';

/**
 * The reference implementation refuses headers above 100,000,000 bytes. The cap is
 * also what keeps a lying length field from making us allocate gigabytes: nothing
 * is allocated for the header before its length passes this cap and the file size.
 */
export const MAX_HEADER_BYTES = 100_000_000;

/** The little-endian u64 that holds the header length. */
export const HEADER_PREFIX_BYTES = 8;

export interface ParsedHeader {
  /** N: the header length, excluding the 8-byte prefix. */
  readonly headerBytes: number;
  /** Where tensor data starts in the file: 8 + N. */
  readonly dataOffset: number;
  readonly metadata: Readonly<Record<string, string>>;
  /** Header order; `byteOffset` is absolute within the file. */
  readonly tensors: TensorInfo[];
}

/**
 * Reads N from the first 8 bytes and checks it against the cap and the file size,
 * so that the caller can then allocate exactly N bytes and no more.
 */
export function readHeaderLength(prefix: Uint8Array, file: string, fileSize: number): number {
  if (fileSize < HEADER_PREFIX_BYTES || prefix.length < HEADER_PREFIX_BYTES) {
    throw new FormatError('file_too_small', `${fileSize} bytes is too small for a safetensors file (the header length alone takes 8)`, file);
  }
  const lo = (prefix[0] | (prefix[1] << 8) | (prefix[2] << 16) | (prefix[3] << 24)) >>> 0;
  const hi = (prefix[4] | (prefix[5] << 8) | (prefix[6] << 16) | (prefix[7] << 24)) >>> 0;
  if (hi !== 0 || lo > MAX_HEADER_BYTES) {
    // As a BigInt: above 2^53 a double would print a rounded neighbour of what the file says.
    const n = (BigInt(hi) << 32n) | BigInt(lo);
    throw new FormatError('header_too_large', `header length ${n} is above the ${MAX_HEADER_BYTES}-byte limit`, file);
  }
  if (HEADER_PREFIX_BYTES + lo > fileSize) {
    throw new FormatError('header_length', `header length ${lo} runs past the end of the ${fileSize}-byte file`, file);
  }
  return lo;
}

// Byte values the scanner looks at.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof NonIntegerLiteral) return `the number ${v.raw}`;
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  return `${typeof v} ${String(v)}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof NonIntegerLiteral);
}

function isSize(v: unknown): v is number {
  // `1 / v > 0` tells +0 from -0.
  return typeof v === 'number' && v <= Number.MAX_SAFE_INTEGER && Math.floor(v) === v && (v > 0 || (v === 0 && 1 / v > 0));
}

/**
 * Explains why a value is not a size the spec stores as usize. JSON.parse rounds
 * integers above 2^53, so anything above Number.MAX_SAFE_INTEGER is an overflow:
 * it could not be told apart from its neighbours.
 */
function sizeError(v: unknown, code: 'shape_invalid' | 'offsets_invalid', what: string, file: string, tensor: string): FormatError {
  if (v instanceof LargeIntegerLiteral || (typeof v === 'number' && Number.isInteger(v) && v > Number.MAX_SAFE_INTEGER)) {
    return new FormatError('overflow', `${what} ${String(v)} is above ${Number.MAX_SAFE_INTEGER}, the largest size this reader can represent exactly`, file, tensor);
  }
  return new FormatError(code, `${what} must be a non-negative integer, not ${describe(v)}`, file, tensor);
}

function checkedMul(a: number, b: number, file: string, tensor: string, what: string): number {
  const p = a * b;
  if (p > Number.MAX_SAFE_INTEGER) {
    throw new FormatError('overflow', `${what} overflows (${a} × ${b} is above ${Number.MAX_SAFE_INTEGER})`, file, tensor);
  }
  return p;
}

/**
 * Byte length of `numel` elements of `dtype`, with the spec's byte-boundary rule for
 * sub-byte dtypes. Computed without ever forming numel × bits, which could exceed 2^53
 * even when the byte length does not.
 */
export function byteLengthForElements(dtype: DType, numel: number, file = '', tensor = ''): number {
  const bits = DTYPE_INFO[dtype].bits;
  if (bits % 8 === 0) return checkedMul(numel, bits / 8, file, tensor, 'byte length');
  // 4-bit: 2 elements per byte; 6-bit: 4 elements per 3 bytes.
  const perGroup = bits === 4 ? 2 : 4;
  const groupBytes = (bits * perGroup) / 8;
  if (numel % perGroup !== 0) {
    throw new FormatError('misaligned', `${numel} elements of ${dtype} (${bits} bits each) do not end on a byte boundary`, file, tensor);
  }
  return checkedMul(numel / perGroup, groupBytes, file, tensor, 'byte length');
}

function parseTensor(name: string, v: unknown, file: string, dataOffset: number, fileIndex: number): TensorInfo {
  if (!isPlainObject(v)) {
    throw new FormatError('tensor_invalid', `entry must be an object with dtype, shape and data_offsets, not ${describe(v)}`, file, name);
  }
  const dtype = v.dtype;
  const shape = v.shape;
  const offsets = v.data_offsets;
  if (dtype === undefined || shape === undefined || offsets === undefined) {
    const missing = ['dtype', 'shape', 'data_offsets'].filter((k) => v[k] === undefined);
    throw new FormatError('tensor_invalid', `entry lacks ${missing.join(', ')}`, file, name);
  }
  if (typeof dtype !== 'string') {
    throw new FormatError('tensor_invalid', `dtype must be a string, not ${describe(dtype)}`, file, name);
  }
  if (!isDType(dtype)) {
    throw new FormatError('dtype_unknown', `unknown dtype ${JSON.stringify(dtype)}`, file, name);
  }
  if (!Array.isArray(shape)) {
    throw new FormatError('shape_invalid', `shape must be a list of non-negative integers, not ${describe(shape)}`, file, name);
  }
  // The parsed array becomes TensorInfo.shape once every element checks out (no copy per tensor).
  const dims = shape as number[];
  let numel = 1;
  for (let i = 0; i < dims.length; i++) {
    const d = dims[i];
    if (!isSize(d)) throw sizeError(d, 'shape_invalid', `shape[${i}]`, file, name);
    numel = checkedMul(numel, d, file, name, 'element count');
  }
  if (!Array.isArray(offsets) || offsets.length !== 2) {
    throw new FormatError('offsets_invalid', `data_offsets must be [begin, end], not ${describe(offsets)}${Array.isArray(offsets) ? ` of length ${offsets.length}` : ''}`, file, name);
  }
  const begin = offsets[0];
  const end = offsets[1];
  if (!isSize(begin)) throw sizeError(begin, 'offsets_invalid', 'data_offsets[0]', file, name);
  if (!isSize(end)) throw sizeError(end, 'offsets_invalid', 'data_offsets[1]', file, name);
  if (end < begin) {
    throw new FormatError('offsets_invalid', `data_offsets [${begin}, ${end}] end before they begin`, file, name);
  }
  const byteLength = byteLengthForElements(dtype, numel, file, name);
  if (end - begin !== byteLength) {
    throw new FormatError(
      'size_mismatch',
      `shape [${dims.join(', ')}] of ${dtype} needs ${byteLength} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`,
      file,
      name,
    );
  }
  return { name, dtype, shape: dims, numel, file: fileIndex, byteOffset: dataOffset + begin, byteLength };
}

function parseMetadata(v: unknown, file: string): Record<string, string> {
  // The reference reader reads `__metadata__` as an optional map, so null means absent.
  if (v === undefined || v === null) return {};
  if (!isPlainObject(v)) {
    throw new FormatError('metadata_invalid', `__metadata__ must be a map of strings to strings, not ${describe(v)}`, file);
  }
  const out: Record<string, string> = {};
  for (const k of Object.keys(v)) {
    const s = v[k];
    if (typeof s !== 'string') {
      throw new FormatError('metadata_invalid', `__metadata__[${JSON.stringify(k)}] must be a string, not ${describe(s)}`, file);
    }
    // Defined, not assigned: `out['__proto__'] = s` would set the prototype and drop the key.
    Object.defineProperty(out, k, { value: s, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/**
 * Validates a whole header against the safetensors spec and returns its tensors.
 * `headerBytes` is the N bytes after the 8-byte prefix; `fileSize` is the whole file's
 * size, used to check that the last tensor ends exactly at the end of the file.
 * Throws FormatError, naming `file` and, where there is one, the tensor.
 */
export function parseHeader(headerBytes: Uint8Array, file: string, fileSize: number, fileIndex = 0): ParsedHeader {
  const n = headerBytes.length;
  const dataOffset = HEADER_PREFIX_BYTES + n;
  if (dataOffset > fileSize) {
    throw new FormatError('header_length', `header length ${n} runs past the end of the ${fileSize}-byte file`, file);
  }
  // Most headers are plainly valid: read straight into records, with no JSON tree to discard.
  const plain = scanPlainHeader(headerBytes, dataOffset, fileIndex);
  if (plain) {
    checkLayout(plain.tensors, file, fileSize - dataOffset, dataOffset);
    return { headerBytes: n, dataOffset, metadata: plain.metadata, tensors: plain.tensors };
  }
  return parseHeaderThorough(headerBytes, file, fileSize, fileIndex);
}

/**
 * `parseHeader` without the direct scan: JSON.parse, then every check, the exact parser where
 * JSON.parse cannot tell (duplicates, number spelling). Every header that the scan does not
 * take comes here, so every error is this function's; tests hold the two paths to one result.
 */
export function parseHeaderThorough(headerBytes: Uint8Array, file: string, fileSize: number, fileIndex = 0): ParsedHeader {
  const n = headerBytes.length;
  const dataOffset = HEADER_PREFIX_BYTES + n;
  if (dataOffset > fileSize) {
    throw new FormatError('header_length', `header length ${n} runs past the end of the ${fileSize}-byte file`, file);
  }
  let text: string;
  try {
    text = utf8.decode(headerBytes);
  } catch {
    throw new FormatError('header_utf8', 'header is not valid UTF-8', file);
  }
  if (n === 0 || headerBytes[0] !== LBRACE) {
    throw new FormatError('header_start', n === 0 ? 'header is empty' : `header must begin with '{', not byte 0x${headerBytes[0].toString(16).padStart(2, '0')}`, file);
  }
  const sc = scan(headerBytes, file);
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch (e) {
    throw new FormatError('header_json', `header is not valid JSON (${(e as Error).message})`, file);
  }
  // JSON.parse accepts any JSON whitespace after the value; the spec pads with spaces only.
  if (sc.end < 0) throw new FormatError('header_json', 'header JSON object never closes', file);
  for (let i = sc.end; i < n; i++) {
    if (headerBytes[i] !== SPACE) {
      throw new FormatError('header_json', `byte 0x${headerBytes[i].toString(16).padStart(2, '0')} at header offset ${i} follows the JSON object; only spaces may`, file);
    }
  }
  if (!isPlainObject(root)) {
    throw new FormatError('header_not_object', `header must be a JSON object, not ${describe(root)}`, file);
  }
  // JSON.parse folds `1.0` into 1; only the exact parser can tell them apart.
  if (sc.lexicalNumbers) return parseExact(text, n, file, fileSize, fileIndex);
  const distinctKeys = Object.keys(root);
  // JSON.parse lists integer-like keys first: take the order from the text instead.
  const keys = distinctKeys.length > 0 && isIndexLikeKey(distinctKeys[0]) ? topLevelKeys(text) : distinctKeys;
  // Fast path. Every object member has one colon outside strings, so if the parsed tree holds
  // fewer keys than there are colons, JSON.parse merged a duplicate. A valid entry has exactly
  // its 3 required keys: when the colons inside entries number 3 per tensor plus the metadata
  // keys, and none lie deeper, no object can hide a duplicate, and nothing needs walking.
  const obj = root;
  const tensors: TensorInfo[] = [];
  let metadata: Record<string, string> = {};
  let metadataKeys = 0;
  let invalid: unknown;
  for (let i = 0; i < keys.length; i++) {
    const name = keys[i];
    try {
      if (name === '__metadata__') {
        metadata = parseMetadata(obj[name], file);
        metadataKeys = Object.keys(metadata).length;
      } else tensors.push(parseTensor(name, obj[name], file, dataOffset, fileIndex));
    } catch (err) {
      // A duplicate key, found anywhere, is reported before what it hides: count first.
      invalid = err;
      break;
    }
  }
  const exactFit =
    invalid === undefined && sc.colons1 === distinctKeys.length && sc.colons2 === 3 * tensors.length + metadataKeys && sc.colons === sc.colons1 + sc.colons2;
  if (!exactFit) {
    // Extra fields, or an error: count every member the slow way (walking from the key list,
    // because for-in over a 50,000-key object costs more than the list).
    let members = distinctKeys.length;
    for (let i = 0; i < distinctKeys.length; i++) {
      const e = obj[distinctKeys[i]];
      if (typeof e === 'object' && e !== null) members += countKeys(e, 2);
    }
    if (members !== sc.colons) return parseExact(text, n, file, fileSize, fileIndex);
  }
  if (invalid !== undefined) throw invalid;
  checkLayout(tensors, file, fileSize - dataOffset, dataOffset);
  return { headerBytes: n, dataOffset, metadata, tensors };
}

/** The slow path: the exact parser names duplicates and keeps literal order and number spelling. */
function parseExact(text: string, n: number, file: string, fileSize: number, fileIndex: number): ParsedHeader {
  const dataOffset = HEADER_PREFIX_BYTES + n;
  let root: unknown;
  let keys: string[];
  {
    const exact = new ExactParser(text);
    try {
      root = exact.parse();
    } catch (e) {
      throw new FormatError('header_json', `header is not valid JSON (${(e as Error).message})`, file);
    }
    if (exact.duplicate) {
      const { key, path } = exact.duplicate;
      const tensor = path.length > 0 && path[0] !== '__metadata__' ? path[0] : undefined;
      const where = path.length === 0 ? 'the header' : path.map((p) => JSON.stringify(p)).join(' → ');
      throw new FormatError('duplicate_key', `key ${JSON.stringify(key)} appears twice in ${where}`, file, tensor ?? (path.length === 0 && key !== '__metadata__' ? key : undefined));
    }
    keys = exact.topKeys;
  }
  const obj = root as Record<string, unknown>;
  const metadata = parseMetadata(obj.__metadata__, file);
  const tensors: TensorInfo[] = [];
  for (const name of keys) {
    if (name === '__metadata__') continue;
    tensors.push(parseTensor(name, obj[name], file, dataOffset, fileIndex));
  }
  checkLayout(tensors, file, fileSize - dataOffset, dataOffset);
  return { headerBytes: n, dataOffset, metadata, tensors };
}

/** Where the data ends if `tensors`, in the given order, follow one another from 0; else -1. */
function contiguousEnd(tensors: readonly TensorInfo[], dataOffset: number): number {
  let pos = 0;
  for (let i = 0; i < tensors.length; i++) {
    const t = tensors[i];
    if (t.byteOffset - dataOffset !== pos) return -1;
    pos += t.byteLength;
  }
  return pos;
}

/** Sorted by offset, tensors must tile the data section exactly: from 0, no hole, no overlap, to the end. */
function checkLayout(tensors: readonly TensorInfo[], file: string, dataBytes: number, dataOffset: number): void {
  // Writers emit headers in offset order, so one pass usually proves the layout; only a
  // header that fails it is sorted and walked again to name the fault.
  let order = tensors;
  let pos = contiguousEnd(tensors, dataOffset);
  if (pos < 0) {
    order = tensors.slice().sort((x, y) => x.byteOffset - y.byteOffset || x.byteLength - y.byteLength);
    pos = 0;
    for (let i = 0; i < order.length; i++) {
      const t = order[i];
      const begin = t.byteOffset - dataOffset;
      if (i === 0 && begin > 0) {
        // errors.ts files "does not start at 0" under overlap, as the reference reports both as one offset error.
        throw new FormatError('offsets_overlap', `the first tensor's data begins at ${begin}, not 0`, file, t.name);
      }
      if (begin > pos) {
        throw new FormatError('offsets_hole', `data begins at ${begin}, leaving bytes ${pos}..${begin} unused`, file, t.name);
      }
      if (begin < pos) {
        throw new FormatError('offsets_overlap', `data begins at ${begin}, inside the previous tensor (which ends at ${pos})`, file, t.name);
      }
      pos = begin + t.byteLength;
    }
  }
  const last = order.length > 0 ? order[order.length - 1].name : undefined;
  if (pos > dataBytes) {
    throw new FormatError('truncated', `data ends at ${pos} but the file holds only ${dataBytes} bytes after the header`, file, last);
  }
  if (pos < dataBytes) {
    throw new FormatError('trailing_bytes', `${dataBytes - pos} bytes follow the last tensor's data`, file, last);
  }
}
