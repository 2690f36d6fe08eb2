import { FormatError } from '../errors';
import type { ByteSource } from '../source';
import { setNestedScanner, storageDType, type Finding } from './globals';
import { PickleTruncated, unpickle, type UnpickleOptions } from './unpickler';
import { asInt, isKind, itemsOf, TORCH_DTYPE_BYTES, type PyStorage, type PyValue } from './values';
import { readSmallEntry, readZipDirectory, entryDataOffset, type ZipDirectory, type ZipEntry } from './zip';

/**
 * Opens a PyTorch checkpoint without running it: the zip container of torch ≥ 1.6,
 * the legacy container (`_use_new_zipfile_serialization=False`), or a plain pickle.
 * The result says where each storage's bytes are in the file, and lists every global
 * the pickle names that is not a tensor rebuild.
 */

/** A data.pkl above this is not a state dict's (a 100,000-tensor one is ~10 MB). */
const MAX_PICKLE_BYTES = 512 * 2 ** 20;
/** First window read for a legacy file's pickles; doubled while a pickle runs past it. */
const LEGACY_WINDOW = 4 * 2 ** 20;
/** A file may take this long to unpickle before it is refused (a bound on hostile input, far above real files). */
export const PICKLE_TIME_LIMIT_MS = 20_000;
/** torch's legacy magic number, the first pickle of a legacy file. */
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

export type TorchContainer = 'zip' | 'legacy' | 'pickle';

export interface StorageLocation {
  /** Absolute offset of the storage's first byte in the file. */
  readonly offset: number;
  readonly byteLength: number;
}

export interface TorchCheckpoint {
  readonly container: TorchContainer;
  /** The object the pickle rebuilds, as data. */
  readonly root: PyValue;
  readonly findings: readonly Finding[];
  /** Storage key → where its bytes are. */
  readonly storages: ReadonlyMap<string, StorageLocation>;
  /** Notes on the container that are not findings (entries we ignored, a byte order). */
  readonly notes: readonly string[];
  readonly protocol: number;
}

export function looksLikeTorchPath(path: string): boolean {
  return /\.(pt|pth|ckpt|bin|pkl|pickle)$/i.test(path);
}

function findingsCtx(file: string, findings: Finding[], depth: number): UnpickleOptions {
  return { file, findings, depth, deadline: Date.now() + PICKLE_TIME_LIMIT_MS };
}

// A `torch.storage._load_from_bytes` blob is a legacy container inside the pickle; it is
// scanned for findings (never rebuilt), one level deep.
setNestedScanner((bytes, ctx) => {
  if (ctx.depth >= 2) return;
  try {
    scanLegacyBytes(bytes, ctx.file, ctx.findings, ctx.depth + 1);
  } catch {
    ctx.findings.push({ module: 'torch.storage', name: '_load_from_bytes (unreadable nested pickle)', offset: ctx.at, severity: 'unknown', nested: true });
  }
});

function scanLegacyBytes(bytes: Uint8Array, file: string, findings: Finding[], depth: number): void {
  let pos = 0;
  for (let i = 0; i < 5 && pos < bytes.length; i++) {
    const r = unpickle(bytes, pos, { ...findingsCtx(file, findings, depth), persistentLoad: () => null });
    pos = r.end;
  }
}

/** Reads the container and runs its pickle. Throws FormatError for anything malformed. */
export async function readTorchCheckpoint(src: ByteSource): Promise<TorchCheckpoint> {
  const head = new Uint8Array(Math.min(4, src.size));
  await src.read(0, head);
  if (head[0] === 0x50 && head[1] === 0x4b) return readZipCheckpoint(src);
  if (head[0] === 0x80 || head[0] === 0x28 || head[0] === 0x7d || head[0] === 0x63) return readLegacyOrPlain(src);
  throw new FormatError('unsupported', 'is neither a PyTorch zip checkpoint nor a pickle', src.name);
}

function storageFromPid(pid: PyValue, file: string, at: number): PyStorage {
  const t = itemsOf(pid);
  if (!t || t[0] !== 'storage' || t.length < 5) {
    throw new FormatError('pickle_invalid', `at byte ${at}: a persistent id that is not a torch storage`, file);
  }
  const dtype = storageDType(t[1]);
  const key = t[2];
  const numel = asInt(t[4]);
  if (dtype === undefined) throw new FormatError('pickle_invalid', `at byte ${at}: storage of an unknown class`, file);
  if (typeof key !== 'string' || numel === undefined || numel < 0) {
    throw new FormatError('pickle_invalid', `at byte ${at}: storage with an invalid key or size`, file);
  }
  return { kind: 'storage', key, dtype, numel, location: String(t[3]) };
}

async function readZipCheckpoint(src: ByteSource): Promise<TorchCheckpoint> {
  const file = src.name;
  const dir = await readZipDirectory(src);
  const notes: string[] = [];
  const findings: Finding[] = [];
  const pkls = dir.entries.filter((e) => e.name === 'data.pkl' || e.name.endsWith('/data.pkl'));
  if (pkls.length === 0) throw new FormatError('unsupported', 'is a ZIP file without data.pkl: not a PyTorch checkpoint', file);
  const seen = new Set<string>();
  for (const e of dir.entries) {
    if (seen.has(e.name)) findings.push({ module: '<zip>', name: `duplicate entry '${e.name}'`, offset: e.localHeaderOffset, severity: 'dangerous', nested: false, entry: e.name });
    seen.add(e.name);
    if (e.name.startsWith('/') || e.name.split(/[\\/]/).includes('..')) {
      findings.push({ module: '<zip>', name: `entry with a path outside the archive '${e.name}'`, offset: e.localHeaderOffset, severity: 'dangerous', nested: false, entry: e.name });
    }
  }
  // torch reads the first record whose name ends in data.pkl under the archive's one top folder.
  const pkl = pkls[0];
  if (pkls.length > 1) {
    findings.push({ module: '<zip>', name: `${pkls.length} data.pkl entries (a second pickle hidden in the archive)`, offset: pkls[1].localHeaderOffset, severity: 'dangerous', nested: false, entry: pkls[1].name });
  }
  const prefix = pkl.name.slice(0, pkl.name.length - 'data.pkl'.length);
  const byName = new Map<string, ZipEntry>();
  for (const e of dir.entries) if (!byName.has(e.name)) byName.set(e.name, e);
  const order = byName.get(prefix + 'byteorder');
  if (order) {
    const text = new TextDecoder().decode(await readSmallEntry(src, order, dir, 16));
    if (text !== 'little') throw new FormatError('unsupported', `stores tensors in '${text}'-endian byte order`, file);
  }
  const bytes = await readSmallEntry(src, pkl, dir, MAX_PICKLE_BYTES);
  const storages = new Map<string, PyStorage>();
  const opts: UnpickleOptions = {
    ...findingsCtx(file, findings, 0),
    persistentLoad: (pid, at) => {
      const s = storageFromPid(pid, file, at);
      storages.set(s.key, s);
      return s;
    },
  };
  const res = unpickle(bytes, 0, opts);
  for (const f of findings) if (f.entry === undefined) (f as { entry?: string }).entry = pkl.name;
  const where = await locateZipStorages(src, dir, byName, prefix, storages);
  for (const e of dir.entries) {
    if (!e.name.startsWith(prefix) && !pkls.includes(e)) notes.push(`entry '${e.name}' is outside the checkpoint's folder and was ignored`);
  }
  return { container: 'zip', root: res.value, findings, storages: where, notes, protocol: res.protocol };
}

async function locateZipStorages(
  src: ByteSource,
  dir: ZipDirectory,
  byName: ReadonlyMap<string, ZipEntry>,
  prefix: string,
  storages: ReadonlyMap<string, PyStorage>,
): Promise<Map<string, StorageLocation>> {
  const out = new Map<string, StorageLocation>();
  for (const [key, s] of storages) {
    const e = byName.get(`${prefix}data/${key}`);
    if (!e) throw new FormatError('truncated', `storage '${key}' is named by the pickle but the archive has no data/${key}`, src.name);
    if (e.method !== 0 || e.encrypted) throw new FormatError('unsupported', `storage '${key}' is compressed; only stored entries are read in place`, src.name);
    const need = s.numel * TORCH_DTYPE_BYTES[s.dtype];
    if (!Number.isSafeInteger(need) || e.size < need) {
      throw new FormatError('size_mismatch', `storage '${key}' declares ${s.numel} elements (${need} bytes) but its entry holds ${e.size}`, src.name);
    }
    out.set(key, { offset: await entryDataOffset(src, e, dir), byteLength: e.size });
  }
  return out;
}

/** Runs the pickles of a legacy file from a window that grows while a pickle runs past it. */
async function readLegacyOrPlain(src: ByteSource): Promise<TorchCheckpoint> {
  let window = Math.min(src.size, LEGACY_WINDOW);
  for (;;) {
    const buf = new Uint8Array(window);
    await src.read(0, buf);
    try {
      return await parseLegacyWindow(src, buf);
    } catch (e) {
      if (!(e instanceof PickleTruncated) || window >= src.size) throw e;
      if (window >= MAX_PICKLE_BYTES) throw new FormatError('unsupported', `the pickle is longer than ${MAX_PICKLE_BYTES} bytes`, src.name);
      window = Math.min(src.size, window * 2);
    }
  }
}

async function parseLegacyWindow(src: ByteSource, buf: Uint8Array): Promise<TorchCheckpoint> {
  const file = src.name;
  const findings: Finding[] = [];
  const first = unpickle(buf, 0, findingsCtx(file, findings, 0));
  if (first.value !== LEGACY_MAGIC && first.value !== Number(LEGACY_MAGIC)) {
    // Not torch's legacy container: a plain pickle, whose tensors (if any) cannot be located.
    return { container: 'pickle', root: first.value, findings, storages: new Map(), notes: [], protocol: first.protocol };
  }
  const version = unpickle(buf, first.end, findingsCtx(file, findings, 0));
  const sysInfo = unpickle(buf, version.end, findingsCtx(file, findings, 0));
  if (isKind(sysInfo.value, 'dict')) {
    for (const [k, v] of sysInfo.value.entries) {
      if (k === 'little_endian' && v === false) throw new FormatError('unsupported', 'was written on a big-endian machine', file);
    }
  }
  const storages = new Map<string, PyStorage>();
  const main = unpickle(buf, sysInfo.end, {
    ...findingsCtx(file, findings, 0),
    persistentLoad: (pid, at) => {
      const s = storageFromPid(pid, file, at);
      if (!storages.has(s.key)) storages.set(s.key, s);
      return storages.get(s.key) as PyStorage;
    },
  });
  const keys = unpickle(buf, main.end, findingsCtx(file, findings, 0));
  const where = await locateLegacyStorages(src, keys.value, keys.end, storages);
  return { container: 'legacy', root: main.value, findings, storages: where, notes: [], protocol: main.protocol };
}

/** After the key list, each storage is an 8-byte little-endian element count and its bytes, in list order. */
async function locateLegacyStorages(src: ByteSource, keyList: PyValue, start: number, storages: ReadonlyMap<string, PyStorage>): Promise<Map<string, StorageLocation>> {
  const keys = itemsOf(keyList);
  if (!keys) throw new FormatError('pickle_invalid', 'the legacy storage key list is not a list', src.name);
  const out = new Map<string, StorageLocation>();
  let pos = start;
  const head = new Uint8Array(8);
  for (const k of keys) {
    const key = String(k);
    const s = storages.get(key);
    if (!s) throw new FormatError('pickle_invalid', `the key list names storage '${key}' that the pickle never uses`, src.name);
    if ((await src.read(pos, head)) !== 8) throw new FormatError('truncated', `the file ends before storage '${key}'`, src.name);
    const n = new DataView(head.buffer).getBigInt64(0, true);
    const len = n * BigInt(TORCH_DTYPE_BYTES[s.dtype]);
    if (n < 0n || BigInt(pos) + 8n + len > BigInt(src.size)) {
      throw new FormatError('truncated', `storage '${key}' declares ${n} elements, past the end of the file`, src.name);
    }
    out.set(key, { offset: pos + 8, byteLength: Number(len) });
    pos += 8 + Number(len);
  }
  for (const key of storages.keys()) {
    if (!out.has(key)) throw new FormatError('truncated', `storage '${key}' is used by the pickle but missing from the file`, src.name);
  }
  return out;
}
