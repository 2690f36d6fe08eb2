import { readdir, realpath } from 'node:fs/promises';
import { dirname, relative, isAbsolute, sep } from 'node:path';
import { mapLimited } from '../core/stream';
import { FormatError } from './errors';
import { parseJsonChecked } from './header';
import type { Model, ModelFile, SourceOpener, TensorInfo } from './model';
import { withQuantized } from './quantized/open';
import { openSource, readFileHeader, SourceModel } from './reader';
import { NodeFileSource, readSmallTextFile, type ByteSource } from './source';
import { looksLikeTorchPath } from './pickle/torch';
import { openTorchModel, TorchModel } from './pickle/torchModel';
import { CompositeModel } from './compositeModel';

/**
 * An index.json lists every tensor name once, like a header, so it gets the same cap:
 * a 400 GB checkpoint's index is a few MB, and nothing legitimate comes near 100 MB.
 */
export const MAX_INDEX_BYTES = 100_000_000;

/**
 * Shards opened at once. Enough to overlap the latency of remote or network file
 * systems, few enough not to exhaust file descriptors on a model with hundreds of shards.
 */
const OPEN_CONCURRENCY = 8;

export const INDEX_SUFFIX = '.safetensors.index.json';
export const DEFAULT_INDEX_NAME = 'model' + INDEX_SUFFIX;

/** Opens files through Node's `fs.promises`, read-only. */
export class NodeOpener implements SourceOpener {
  open(path: string): Promise<ByteSource> {
    return NodeFileSource.open(path);
  }

  async readText(path: string): Promise<string> {
    try {
      return await readSmallTextFile(path, MAX_INDEX_BYTES, 'an index', 'index_invalid');
    } catch (e) {
      throw toFormatError(e, path);
    }
  }

  async list(path: string): Promise<string[]> {
    try {
      return await readdir(path);
    } catch (e) {
      throw toFormatError(e, path);
    }
  }

  async openShard(path: string, dir: string): Promise<ByteSource> {
    let real: string;
    let realDir: string;
    try {
      [real, realDir] = await Promise.all([realpath(path), realpath(dir)]);
    } catch (e) {
      throw toFormatError(e, path);
    }
    if (!isInside(real, realDir) && !isHubBlob(real, realDir)) {
      throw new FormatError('index_invalid', `the shard is a link to ${real}, outside the model's folder ${realDir}`, path);
    }
    // The resolved path is opened, so that the file checked is the file read.
    return NodeFileSource.open(real, path);
  }
}

function isInside(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel !== '' && !rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel);
}

/**
 * The Hugging Face hub cache keeps `<repo>/snapshots/<revision>/<file>` as links to
 * `<repo>/blobs/<hash>`: a shard there may resolve to that repo's own blobs folder.
 */
function isHubBlob(real: string, realDir: string): boolean {
  const snapshots = dirname(realDir);
  if (!snapshots.endsWith(`${sep}snapshots`)) return false;
  const blobs = dirname(snapshots) + `${sep}blobs`;
  return dirname(real) === blobs;
}

function toFormatError(e: unknown, path: string): FormatError {
  if (e instanceof FormatError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'ENOENT') return new FormatError('not_found', 'no such file or folder', path);
  return new FormatError('io', err?.message ?? String(e), path);
}

export const nodeOpener: SourceOpener = new NodeOpener();

/** The folder part of a path or URI string (either separator). */
export function parentOf(path: string): string {
  const i = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
  if (i < 0) return '.';
  if (i === 0) return path.slice(0, 1);
  return path.slice(0, i);
}

export function joinPath(dir: string, name: string): string {
  if (dir === '' || dir === '.') return name;
  const sep = dir.includes('\\') && !dir.includes('/') ? '\\' : '/';
  return dir.endsWith('/') || dir.endsWith('\\') ? dir + name : dir + sep + name;
}

function baseName(path: string): string {
  const i = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
  return path.slice(i + 1);
}

/** What a model.safetensors.index.json says. */
export interface ModelIndex {
  /** The index's own `metadata` (e.g. `total_size`), as written. */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Tensor name → shard file name, in the index's order. */
  readonly weightMap: ReadonlyMap<string, string>;
  /** Distinct shard file names, sorted (HF names sort in shard order). */
  readonly shards: readonly string[];
}

/** Validates an index.json's text. Shard names must stay inside the index's folder. */
export function parseIndex(text: string, path: string): ModelIndex {
  let parsed: ReturnType<typeof parseJsonChecked>;
  try {
    parsed = parseJsonChecked(text);
  } catch (e) {
    throw new FormatError('index_invalid', `is not valid JSON (${(e as Error).message})`, path);
  }
  const { value, duplicate } = parsed;
  if (duplicate) {
    if (duplicate.path.length === 1 && duplicate.path[0] === 'weight_map') {
      throw new FormatError('tensor_duplicate', 'the index lists the tensor twice in weight_map', path, duplicate.key);
    }
    const where = duplicate.path.length === 0 ? 'the top level' : duplicate.path.map((p) => JSON.stringify(p)).join(' → ');
    throw new FormatError('index_invalid', `key ${JSON.stringify(duplicate.key)} appears twice in ${where}`, path);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new FormatError('index_invalid', 'must be a JSON object with a weight_map', path);
  }
  const root = value as Record<string, unknown>;
  const wm = root.weight_map;
  if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) {
    throw new FormatError('index_invalid', 'weight_map must be an object of tensor names to shard file names', path);
  }
  const md = root.metadata;
  if (md !== undefined && md !== null && (typeof md !== 'object' || Array.isArray(md))) {
    throw new FormatError('index_invalid', 'metadata must be an object', path);
  }
  const weightMap = new Map<string, string>();
  const shardSet = new Set<string>();
  for (const [name, shard] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof shard !== 'string' || shard === '') {
      throw new FormatError('index_invalid', 'weight_map value must be a shard file name', path, name);
    }
    const parts = shard.split(/[\\/]/);
    if (shard.startsWith('/') || /^[A-Za-z]:/.test(shard) || parts.includes('..') || parts.includes('')) {
      throw new FormatError('index_invalid', `shard ${JSON.stringify(shard)} is not a file name inside the index's folder`, path, name);
    }
    weightMap.set(name, shard);
    shardSet.add(shard);
  }
  if (weightMap.size === 0) throw new FormatError('index_invalid', 'weight_map lists no tensors', path);
  return { metadata: (md ?? {}) as Record<string, unknown>, weightMap, shards: [...shardSet].sort() };
}

/** Opens one .safetensors file as a model (its header only). */
export async function openSafetensorsFile(path: string, opener: SourceOpener = nodeOpener, openedAs = path): Promise<Model> {
  return openSource(await opener.open(path), path, openedAs);
}

/**
 * Opens the shards an index.json names as one model. Every tensor must be in exactly
 * the shard the index names, and every tensor of every shard must be in the index.
 */
export async function openIndexedModel(indexPath: string, opener: SourceOpener = nodeOpener, openedAs = indexPath): Promise<Model> {
  const index = parseIndex(await opener.readText(indexPath), indexPath);
  if (index.shards.every((s) => looksLikeTorchPath(s))) return openTorchIndex(index, indexPath, opener, openedAs);
  const dir = parentOf(indexPath);
  const sources: (ByteSource | undefined)[] = new Array(index.shards.length);
  try {
    const opened = await mapLimited(index.shards, OPEN_CONCURRENCY, async (shard, i) => {
      const p = joinPath(dir, shard);
      let source: ByteSource;
      try {
        source = await (opener.openShard ? opener.openShard(p, dir) : opener.open(p));
      } catch (e) {
        if (e instanceof FormatError && e.code === 'not_found') {
          throw new FormatError('shard_missing', `shard named by ${baseName(indexPath)} does not exist`, p);
        }
        throw e;
      }
      sources[i] = source;
      return readFileHeader(source, i, p);
    });
    const files: ModelFile[] = opened.map((o) => o.file);
    const tensors: TensorInfo[] = [];
    const where = new Map<string, number>();
    for (let i = 0; i < opened.length; i++) {
      for (const t of opened[i].tensors) {
        const prev = where.get(t.name);
        if (prev !== undefined) {
          throw new FormatError('tensor_duplicate', `appears in two shards: ${index.shards[prev]} and ${index.shards[i]}`, indexPath, t.name);
        }
        where.set(t.name, i);
        tensors.push(t);
      }
    }
    for (const [name, shard] of index.weightMap) {
      const at = where.get(name);
      if (at === undefined || index.shards[at] !== shard) {
        const found = at === undefined ? 'no shard holds it' : `it is in ${index.shards[at]}`;
        throw new FormatError('tensor_missing', `the index places it in ${shard}, but ${found}`, joinPath(dir, shard), name);
      }
    }
    for (const t of tensors) {
      if (!index.weightMap.has(t.name)) {
        throw new FormatError('index_invalid', `shard ${index.shards[t.file]} holds a tensor that ${baseName(indexPath)} does not list`, indexPath, t.name);
      }
    }
    return new SourceModel(openedAs, files, tensors, sources as ByteSource[]);
  } catch (e) {
    await Promise.all(sources.map((s) => s?.close().catch(() => undefined)));
    throw e;
  }
}

/** The shards of a `pytorch_model.bin.index.json`, each read without executing it, as one model. */
async function openTorchIndex(index: ModelIndex, indexPath: string, opener: SourceOpener, openedAs: string): Promise<Model> {
  const dir = parentOf(indexPath);
  const parts: TorchModel[] = [];
  try {
    for (const shard of index.shards) {
      try {
        parts.push(await openTorchModel(joinPath(dir, shard), opener));
      } catch (e) {
        if (e instanceof FormatError && e.code === 'not_found') throw new FormatError('shard_missing', `shard named by ${baseName(indexPath)} does not exist`, joinPath(dir, shard));
        throw e;
      }
    }
    for (const [name, shard] of index.weightMap) {
      const part = parts[index.shards.indexOf(shard)];
      if (!part.tensor(name) && !part.torch.aliases.has(name)) {
        throw new FormatError('tensor_missing', `the index places it in ${shard}, but that shard does not hold it`, joinPath(dir, shard), name);
      }
    }
    return new CompositeModel(openedAs, parts);
  } catch (e) {
    await Promise.all(parts.map((p) => p.close().catch(() => undefined)));
    throw e;
  }
}

/**
 * Opens a folder as a model: its index.json when there is one, else its single
 * .safetensors file. Anything else is an error that says what the folder holds.
 */
export async function openFolderModel(dir: string, opener: SourceOpener = nodeOpener, listed?: readonly string[]): Promise<Model> {
  const names = (listed ?? (await opener.list(dir))).slice().sort();
  if (names.includes(DEFAULT_INDEX_NAME)) return openIndexedModel(joinPath(dir, DEFAULT_INDEX_NAME), opener, dir);
  const indexes = names.filter((n) => n.endsWith(INDEX_SUFFIX));
  // A PyTorch-only folder (no safetensors weights): Hugging Face's sharded .bin index.
  if (indexes.length === 0 && !names.some((n) => n.endsWith('.safetensors')) && names.includes('pytorch_model.bin.index.json')) {
    return openIndexedModel(joinPath(dir, 'pytorch_model.bin.index.json'), opener, dir);
  }
  if (indexes.length === 1) return openIndexedModel(joinPath(dir, indexes[0]), opener, dir);
  if (indexes.length > 1) {
    throw new FormatError('unsupported', `the folder holds several indexes (${indexes.join(', ')}); open one of them`, dir);
  }
  const files = names.filter((n) => n.endsWith('.safetensors'));
  if (files.length === 1) {
    return openSafetensorsFile(joinPath(dir, files[0]), opener, dir);
  }
  if (files.length > 1) {
    throw new FormatError('unsupported', `the folder holds ${files.length} .safetensors files and no index.json (${listSome(files)}); open one of them`, dir);
  }
  // Hugging Face's name for a PyTorch checkpoint, when the folder has no safetensors weights.
  if (names.includes('pytorch_model.bin')) return openTorchModel(joinPath(dir, 'pytorch_model.bin'), opener, dir);
  throw new FormatError('not_found', `the folder holds no .safetensors file and no index.json (it holds ${names.length === 0 ? 'nothing' : listSome(names)})`, dir);
}

function listSome(names: readonly string[]): string {
  // Enough names to recognise the folder, without flooding a one-line error.
  const shown = 10;
  return names.length <= shown ? names.join(', ') : `${names.slice(0, shown).join(', ')} and ${names.length - shown} more`;
}

/**
 * Opens a safetensors model: a .safetensors file, a model.safetensors.index.json
 * (any `*.json` is read as an index), or a folder holding either. Only headers are read.
 */
export async function openSafetensorsModel(path: string, opener: SourceOpener = nodeOpener): Promise<Model> {
  if (path.endsWith('.json')) return withQuantized(await openIndexedModel(path, opener), parentOf(path), opener);
  if (path.endsWith('.safetensors')) return withQuantized(await openSafetensorsFile(path, opener), parentOf(path), opener);
  let names: string[] | undefined;
  try {
    names = await opener.list(path);
  } catch {
    names = undefined;
  }
  if (names !== undefined) return withQuantized(await openFolderModel(path, opener, names), path, opener);
  return withQuantized(await openSafetensorsFile(path, opener), parentOf(path), opener);
}
