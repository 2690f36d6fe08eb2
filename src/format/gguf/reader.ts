import { FormatError } from '../errors';
import type { ByteSource } from '../source';
import { Cursor } from './cursor';
import { ggmlType, type GgmlTypeInfo } from './types';
import { readArrayItems, readValue, type GgufArray, type GgufItem, type GgufValue } from './values';

/**
 * A GGUF reader (v2 and v3, ggml's docs/gguf.md): opening reads the header, the metadata and
 * the tensor infos, in bounded chunks, and checks every count, length and offset against the
 * file before it allocates anything. Tensor data is not touched; `tensorRange` says where it is.
 */

/** "GGUF" read as a little-endian u32. */
const MAGIC = 0x46554747;
/** The spec's default `general.alignment`. */
const DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_DIMS. */
const MAX_DIMS = 4;
/** The spec: tensor names are at most 64 bytes. */
const MAX_NAME_BYTES = 64;
/** The spec: keys are at most 2^16 - 1 bytes. */
const MAX_KEY_BYTES = 65535;
/** Smallest key/value: u64 key length, 1-byte key, u32 type, 1-byte value. */
const MIN_KV_BYTES = 14;
/** Smallest tensor info: u64 name length, u32 n_dims, u32 type, u64 offset. */
const MIN_TENSOR_INFO_BYTES = 24;

export interface GgufTensorInfo {
  readonly name: string;
  readonly type: GgmlTypeInfo;
  /** ggml order: ne[0] is the innermost, contiguous dimension. */
  readonly ne: readonly number[];
  /** Row-major shape, outermost first: `ne` reversed. */
  readonly shape: readonly number[];
  readonly elements: number;
  readonly byteLength: number;
  /** Offset from the start of the data section, as stored. */
  readonly offset: number;
  /** Absolute offset of the first byte in the file. */
  readonly fileOffset: number;
}

export interface GgufFile {
  readonly source: ByteSource;
  readonly version: 2 | 3;
  readonly alignment: number;
  /** Metadata in file order. */
  readonly metadata: ReadonlyMap<string, GgufValue>;
  /** Tensor infos in file order. */
  readonly tensors: readonly GgufTensorInfo[];
  /** Absolute offset of the data section (0 tensors: the end of the header). */
  readonly dataOffset: number;
}

function swap32(x: number): number {
  return (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
}

async function readPreamble(c: Cursor): Promise<{ version: 2 | 3; tensorCount: number; kvCount: number }> {
  if (c.source.size < 4 || (await c.u32('magic')) !== MAGIC) c.fail('gguf_magic', 'not a GGUF file (it does not start with "GGUF")');
  const version = await c.u32('version');
  if (version === 1) c.fail('gguf_version', 'GGUF v1 (32-bit counts) is obsolete; convert it with a current llama.cpp');
  if ((version & 0xffff) === 0 && (swap32(version) === 2 || swap32(version) === 3)) {
    c.fail('gguf_big_endian', `big-endian GGUF v${swap32(version)}; only little-endian files are supported`);
  }
  if (version !== 2 && version !== 3) c.fail('gguf_version', `GGUF version ${version}; versions 2 and 3 are supported`);
  const tensorCount = await c.size('tensor count');
  const kvCount = await c.size('metadata count');
  if (kvCount > c.remaining / MIN_KV_BYTES) c.fail('gguf_count', `${kvCount} metadata entries cannot fit in the ${c.remaining} bytes that remain`);
  if (tensorCount > (c.remaining - kvCount * MIN_KV_BYTES) / MIN_TENSOR_INFO_BYTES) {
    c.fail('gguf_count', `${tensorCount} tensor infos cannot fit in the ${c.remaining} bytes that remain`);
  }
  return { version, tensorCount, kvCount };
}

async function readMetadata(c: Cursor, count: number): Promise<Map<string, GgufValue>> {
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < count; i++) {
    const key = await c.string(`key ${i}`, 'gguf_key', { min: 1, max: MAX_KEY_BYTES });
    if (metadata.has(key)) c.fail('duplicate_key', `key '${key}' appears twice`);
    const code = await c.u32(`type of '${key}'`);
    metadata.set(key, await readValue(c, code, `'${key}'`));
  }
  return metadata;
}

function alignmentOf(c: Cursor, metadata: ReadonlyMap<string, GgufValue>): number {
  const v = metadata.get('general.alignment');
  if (v === undefined) return DEFAULT_ALIGNMENT;
  // The spec asks for a multiple of 8; ggml (reader and writer) asks for a power of two. Both hold for every real file.
  if (v.type !== 'u32') c.fail('gguf_alignment', `general.alignment is a ${v.type}; it must be a u32`);
  const a = v.value as number;
  if (a === 0 || (a & (a - 1)) !== 0) c.fail('gguf_alignment', `general.alignment ${a} is not a power of two`);
  return a;
}

interface RawInfo {
  readonly name: string;
  readonly type: GgmlTypeInfo;
  readonly ne: number[];
  readonly elements: number;
  readonly byteLength: number;
  readonly offset: number;
}

async function readTensorInfo(c: Cursor, index: number, names: Set<string>): Promise<RawInfo> {
  const name = await c.string(`name of tensor ${index}`, 'gguf_name', { min: 1, max: MAX_NAME_BYTES });
  if (names.has(name)) c.fail('tensor_duplicate', 'appears twice', name);
  names.add(name);
  const nDims = await c.u32('n_dims');
  if (nDims > MAX_DIMS) c.fail('gguf_dims', `${nDims} dimensions; ggml allows at most ${MAX_DIMS}`, name);
  const ne: number[] = [];
  let elements = 1;
  for (let d = 0; d < nDims; d++) {
    const n = await c.size(`dimension ${d} of tensor '${name}'`);
    ne.push(n);
    elements *= n;
    if (!Number.isSafeInteger(elements)) c.fail('overflow', `the element count ${ne.join(' × ')} × … is not below 2^53`, name);
  }
  const typeId = await c.u32('type');
  const type = ggmlType(typeId);
  if (!type) c.fail('dtype_unknown', `ggml type ${typeId} is not one this reader knows`, name);
  const row = nDims > 0 ? ne[0] : 1;
  if (row % type.blockSize !== 0) c.fail('gguf_row', `rows of ${row} elements are not a whole number of ${type.name} blocks of ${type.blockSize}`, name);
  const byteLength = (elements / type.blockSize) * type.typeSize;
  if (!Number.isSafeInteger(byteLength)) c.fail('overflow', `${elements} ${type.name} elements take more than 2^53 bytes`, name);
  const offset = await c.size(`data offset of tensor '${name}'`);
  return { name, type, ne, elements, byteLength, offset };
}

/** Checks data placement: aligned, inside the file, no two tensors sharing bytes. */
function placeTensors(c: Cursor, raw: readonly RawInfo[], alignment: number, dataOffset: number): GgufTensorInfo[] {
  const tensors = raw.map((t): GgufTensorInfo => {
    if (t.offset % alignment !== 0) c.fail('gguf_offset', `data offset ${t.offset} is not a multiple of the alignment ${alignment}`, t.name);
    const fileOffset = dataOffset + t.offset;
    if (fileOffset + t.byteLength > c.source.size) {
      c.fail('truncated', `data [${fileOffset}, ${fileOffset + t.byteLength}) runs past the end of the file (${c.source.size} bytes)`, t.name);
    }
    return { name: t.name, type: t.type, ne: t.ne, shape: [...t.ne].reverse(), elements: t.elements, byteLength: t.byteLength, offset: t.offset, fileOffset };
  });
  const sorted = tensors.filter((t) => t.byteLength > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    if (sorted[i].offset < prev.offset + prev.byteLength) c.fail('offsets_overlap', `data overlaps tensor '${prev.name}'`, sorted[i].name);
  }
  return tensors;
}

/** Reads and validates a GGUF file's header, metadata and tensor infos. */
export async function readGguf(source: ByteSource): Promise<GgufFile> {
  const c = new Cursor(source);
  const { version, tensorCount, kvCount } = await readPreamble(c);
  const metadata = await readMetadata(c, kvCount);
  const alignment = alignmentOf(c, metadata);
  if (tensorCount > c.remaining / MIN_TENSOR_INFO_BYTES) c.fail('gguf_count', `${tensorCount} tensor infos cannot fit in the ${c.remaining} bytes that remain`);
  const raw: RawInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) raw.push(await readTensorInfo(c, i, names));
  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  if (tensorCount > 0 && dataOffset > source.size) c.fail('truncated', `the data section would start at byte ${dataOffset}, past the end of the file`);
  const tensors = placeTensors(c, raw, alignment, dataOffset);
  return { source, version, alignment, metadata, tensors, dataOffset };
}

/** Items of a metadata array, read from the file when it was too long to decode at open. */
export function ggufArrayItems(file: GgufFile, a: GgufArray, start?: number, count?: number): Promise<GgufItem[]> {
  return readArrayItems(new Cursor(file.source), a, start, count);
}

/** Where a tensor's bytes are: absolute offset and length within `file.source`. */
export function tensorRange(t: GgufTensorInfo): { offset: number; length: number } {
  return { offset: t.fileOffset, length: t.byteLength };
}

/** Reads `into.length` bytes of a tensor's data starting `start` bytes into it. */
export async function readTensorBytes(file: GgufFile, t: GgufTensorInfo, start: number, into: Uint8Array): Promise<void> {
  if (start < 0 || start + into.length > t.byteLength) throw new RangeError(`bytes ${start}..${start + into.length} of a ${t.byteLength}-byte tensor`);
  const got = await file.source.read(t.fileOffset + start, into);
  if (got !== into.length) throw new FormatError('truncated', `short read at byte ${t.fileOffset + start}`, file.source.name, t.name);
}
