import { basename, dirname, join } from 'node:path';
import { FormatError } from '../errors';
import { NodeFileSource, type ByteSource } from '../source';
import { readGguf, type GgufFile, type GgufTensorInfo } from './reader';
import type { GgufValue } from './values';

/**
 * A GGUF model, one file or a split set (`NAME-00001-of-00003.gguf`, as llama.cpp's gguf-split
 * and gguf-py write them): opened from any part, it is every part's tensors under the first
 * part's metadata. The parts must agree on split.count, carry split.no 0…count-1 in order, and
 * hold split.tensors.count tensors between them, each name once.
 */

export interface GgufModelTensor extends GgufTensorInfo {
  /** Index into `parts` of the file that holds the data. */
  readonly part: number;
}

export interface GgufModel {
  /** The files, in split order (one for an unsplit model). */
  readonly parts: readonly GgufFile[];
  /** The first part's metadata (where gguf-split keeps the model's keys). */
  readonly metadata: ReadonlyMap<string, GgufValue>;
  readonly tensors: readonly GgufModelTensor[];
  close(): Promise<void>;
}

const SPLIT_NAME = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/;

/** The paths of every part of the split set `path` belongs to, or just `path`. */
export function splitPaths(path: string): string[] {
  const m = SPLIT_NAME.exec(basename(path));
  if (!m) return [path];
  const count = Number(m[3]);
  return Array.from({ length: count }, (_, i) => join(dirname(path), `${m[1]}-${String(i + 1).padStart(5, '0')}-of-${m[3]}.gguf`));
}

function intValue(file: GgufFile, key: string): number | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type === 'array' || typeof v.value === 'string' || typeof v.value === 'boolean') {
    throw new FormatError('split_invalid', `${key} is a ${v.type}, not an integer`, file.source.name);
  }
  return Number(v.value);
}

/** Checks that the parts form one split set and joins their tensors. */
export function joinParts(parts: readonly GgufFile[]): GgufModelTensor[] {
  const tensors: GgufModelTensor[] = [];
  const seen = new Map<string, string>();
  parts.forEach((file, part) => {
    const name = file.source.name;
    if (parts.length > 1) {
      const count = intValue(file, 'split.count');
      const no = intValue(file, 'split.no');
      if (count !== parts.length) throw new FormatError('split_invalid', `split.count is ${count}; the file names say ${parts.length} parts`, name);
      if (no !== part) throw new FormatError('split_invalid', `split.no is ${no}; part ${part + 1} of the set should say ${part}`, name);
    }
    for (const t of file.tensors) {
      const other = seen.get(t.name);
      if (other !== undefined) throw new FormatError('tensor_duplicate', `also in ${other}`, name, t.name);
      seen.set(t.name, name);
      tensors.push({ name: t.name, type: t.type, ne: t.ne, shape: t.shape, elements: t.elements, byteLength: t.byteLength, offset: t.offset, fileOffset: t.fileOffset, part });
    }
  });
  const declared = parts.length > 1 ? intValue(parts[0], 'split.tensors.count') : undefined;
  if (declared !== undefined && declared !== tensors.length) {
    throw new FormatError('split_invalid', `split.tensors.count is ${declared}; the parts hold ${tensors.length} tensors`, parts[0].source.name);
  }
  return tensors;
}

/**
 * Opens a GGUF file, or the whole split set when its name is `…-0000k-of-0000n.gguf`.
 * `open` makes a ByteSource for a path (disk by default; the extension passes workspace.fs).
 */
export async function openGguf(path: string, open: (path: string) => Promise<ByteSource> = NodeFileSource.open): Promise<GgufModel> {
  const paths = splitPaths(path);
  const sources: ByteSource[] = [];
  try {
    const parts: GgufFile[] = [];
    for (const p of paths) {
      let source: ByteSource;
      try {
        source = await open(p);
      } catch (e) {
        if (e instanceof FormatError && e.code === 'not_found' && p !== path) throw new FormatError('shard_missing', `part ${basename(p)} of the split set is missing`, path);
        throw e;
      }
      sources.push(source);
      parts.push(await readGguf(source));
    }
    const tensors = joinParts(parts);
    return {
      parts,
      metadata: parts[0].metadata,
      tensors,
      close: async () => {
        await Promise.all(sources.map((s) => s.close()));
      },
    };
  } catch (e) {
    await Promise.all(sources.map((s) => s.close().catch(() => undefined)));
    throw e;
  }
}
