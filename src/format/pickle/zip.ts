import { inflateRawSync } from 'node:zlib';
import { FormatError } from '../errors';
import type { ByteSource } from '../source';

/**
 * A ZIP reader for PyTorch checkpoints: the central directory (ZIP64 included) and
 * each entry's data range, read through a ByteSource. Stored entries are read in place
 * (PyTorch stores tensor data uncompressed, aligned to 64 bytes); deflated entries are
 * only inflated when small (the pickle), with the output size bounded.
 */

/** The end record's comment is at most 65,535 bytes, so the record lies in the last 64 KiB + 22 bytes. */
const EOCD_SEARCH = 65_535 + 22;
/** A central directory above this is not a checkpoint's (100,000 tensors take ~10 MB). */
const MAX_CENTRAL_DIRECTORY = 256 * 2 ** 20;
/** Entries above this count are refused before their records are parsed. */
const MAX_ENTRIES = 2_000_000;

export interface ZipEntry {
  readonly name: string;
  /** 0 stored, 8 deflated. */
  readonly method: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly localHeaderOffset: number;
  readonly encrypted: boolean;
}

export interface ZipDirectory {
  readonly entries: readonly ZipEntry[];
  /** Where the central directory starts: every entry's data must end before it. */
  readonly centralOffset: number;
}

function err(file: string, message: string): FormatError {
  return new FormatError('zip_invalid', message, file);
}

async function readAt(src: ByteSource, offset: number, length: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  const n = await src.read(offset, buf);
  if (n !== length) throw new FormatError('truncated', `the file ends inside the ZIP structure at byte ${offset + n}`, src.name);
  return buf;
}

function u64(dv: DataView, at: number, file: string): number {
  const v = dv.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw err(file, `a ZIP64 field of ${v} does not fit in a safe integer`);
  return Number(v);
}

/** Reads the central directory. Every offset and size is checked against the file before use. */
export async function readZipDirectory(src: ByteSource): Promise<ZipDirectory> {
  const file = src.name;
  const tailLen = Math.min(src.size, EOCD_SEARCH + 20);
  if (tailLen < 22) throw err(file, 'too small to be a ZIP file');
  const tailStart = src.size - tailLen;
  const tail = await readAt(src, tailStart, tailLen);
  const tv = new DataView(tail.buffer);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    // The comment length must reach exactly to the end of the file, so a signature inside a comment is not taken.
    if (tv.getUint32(i, true) === 0x06054b50 && i + 22 + tv.getUint16(i + 20, true) === tailLen) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw err(file, 'no ZIP end-of-central-directory record (the file is truncated or not a ZIP)');
  if (tv.getUint16(eocd + 4, true) !== 0 || tv.getUint16(eocd + 6, true) !== 0) throw err(file, 'multi-disk ZIP files are not supported');
  let count = tv.getUint16(eocd + 10, true);
  let cdSize = tv.getUint32(eocd + 12, true);
  let cdOffset = tv.getUint32(eocd + 16, true);
  const eocdAbs = tailStart + eocd;
  let limit = eocdAbs;
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    if (eocd < 20 || tv.getUint32(eocd - 20, true) !== 0x07064b50) throw err(file, 'a ZIP64 end record is announced but its locator is missing');
    const z64 = u64(tv, eocd - 20 + 8, file);
    if (z64 + 56 > eocdAbs - 20) throw err(file, 'the ZIP64 end record lies outside the file');
    const rec = await readAt(src, z64, 56);
    const rv = new DataView(rec.buffer);
    if (rv.getUint32(0, true) !== 0x06064b50) throw err(file, 'the ZIP64 end record has a bad signature');
    count = u64(rv, 32, file);
    cdSize = u64(rv, 40, file);
    cdOffset = u64(rv, 48, file);
    limit = z64;
  }
  if (cdOffset + cdSize > limit) throw err(file, `the central directory (${cdSize} bytes at ${cdOffset}) runs past its end record`);
  if (cdSize > MAX_CENTRAL_DIRECTORY) throw err(file, `a central directory of ${cdSize} bytes is above the ${MAX_CENTRAL_DIRECTORY}-byte limit`);
  if (count > MAX_ENTRIES || count * 46 > cdSize) throw err(file, `${count} entries cannot fit in a ${cdSize}-byte central directory`);
  const cd = await readAt(src, cdOffset, cdSize);
  return { entries: parseCentral(cd, count, cdOffset, file), centralOffset: cdOffset };
}

function parseCentral(cd: Uint8Array, count: number, cdOffset: number, file: string): ZipEntry[] {
  const dv = new DataView(cd.buffer, cd.byteOffset, cd.byteLength);
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || dv.getUint32(p, true) !== 0x02014b50) throw err(file, `central directory record ${i} is truncated or has a bad signature`);
    const flags = dv.getUint16(p + 8, true);
    const method = dv.getUint16(p + 10, true);
    let compressedSize = dv.getUint32(p + 20, true);
    let size = dv.getUint32(p + 24, true);
    const nameLen = dv.getUint16(p + 28, true);
    const extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    let localHeaderOffset = dv.getUint32(p + 42, true);
    const end = p + 46 + nameLen + extraLen + commentLen;
    if (end > cd.length) throw err(file, `central directory record ${i} runs past the directory`);
    const nameBytes = cd.subarray(p + 46, p + 46 + nameLen);
    const name = new TextDecoder(flags & 0x800 ? 'utf-8' : 'latin1').decode(nameBytes);
    // ZIP64 extra field: the 64-bit values appear, in this order, only for the fields saturated above.
    let q = p + 46 + nameLen;
    const extraEnd = q + extraLen;
    while (q + 4 <= extraEnd) {
      const id = dv.getUint16(q, true);
      const len = dv.getUint16(q + 2, true);
      if (q + 4 + len > extraEnd) throw err(file, `entry '${name}' has a truncated extra field`);
      if (id === 0x0001) {
        let r = q + 4;
        const take = (): number => {
          if (r + 8 > q + 4 + len) throw err(file, `entry '${name}' has a short ZIP64 extra field`);
          const v = u64(dv, r, file);
          r += 8;
          return v;
        };
        if (size === 0xffffffff) size = take();
        if (compressedSize === 0xffffffff) compressedSize = take();
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = take();
      }
      q += 4 + len;
    }
    if (localHeaderOffset + 30 > cdOffset) throw err(file, `entry '${name}' starts past the central directory`);
    entries.push({ name, method, compressedSize, size, localHeaderOffset, encrypted: (flags & 1) !== 0 });
    p = end;
  }
  return entries;
}

/** Where an entry's data starts, from its local header; the local name must equal the central one. */
export async function entryDataOffset(src: ByteSource, e: ZipEntry, dir: ZipDirectory): Promise<number> {
  const file = src.name;
  const h = await readAt(src, e.localHeaderOffset, 30);
  const hv = new DataView(h.buffer);
  if (hv.getUint32(0, true) !== 0x04034b50) throw err(file, `entry '${e.name}' has no local header at ${e.localHeaderOffset}`);
  const nameLen = hv.getUint16(26, true);
  const extraLen = hv.getUint16(28, true);
  const localName = new TextDecoder('latin1').decode(await readAt(src, e.localHeaderOffset + 30, nameLen));
  const utf8Name = new TextDecoder('utf-8').decode(new Uint8Array([...localName].map((c) => c.charCodeAt(0))));
  if (localName !== e.name && utf8Name !== e.name) throw err(file, `entry '${e.name}' is named '${localName}' in its local header`);
  const start = e.localHeaderOffset + 30 + nameLen + extraLen;
  if (start + e.compressedSize > dir.centralOffset) throw err(file, `entry '${e.name}' (${e.compressedSize} bytes at ${start}) runs into the central directory`);
  return start;
}

/** Reads a small entry whole, inflating it when deflated; `max` bounds the output. */
export async function readSmallEntry(src: ByteSource, e: ZipEntry, dir: ZipDirectory, max: number): Promise<Uint8Array> {
  if (e.encrypted) throw new FormatError('unsupported', `entry '${e.name}' is encrypted`, src.name);
  if (e.size > max || e.compressedSize > max) throw new FormatError('unsupported', `entry '${e.name}' is ${e.size} bytes, above the ${max}-byte limit`, src.name);
  const start = await entryDataOffset(src, e, dir);
  const raw = await readAt(src, start, e.compressedSize);
  if (e.method === 0) {
    if (e.compressedSize !== e.size) throw err(src.name, `stored entry '${e.name}' has different sizes (${e.compressedSize}, ${e.size})`);
    return raw;
  }
  if (e.method === 8) {
    try {
      const out = inflateRawSync(raw, { maxOutputLength: Math.max(e.size, 1) });
      if (out.length !== e.size) throw err(src.name, `entry '${e.name}' inflates to ${out.length} bytes, not ${e.size}`);
      return new Uint8Array(out.buffer, out.byteOffset, out.length);
    } catch (x) {
      if (x instanceof FormatError) throw x;
      throw err(src.name, `entry '${e.name}' does not inflate: ${(x as Error).message}`);
    }
  }
  throw new FormatError('unsupported', `entry '${e.name}' uses compression method ${e.method}`, src.name);
}
