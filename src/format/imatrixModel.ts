import { FormatError } from './errors';
import { ggufReader } from './gguf/ggufModel';
import type { ModelReader } from './readers';
import type { Model, ModelFile, SourceOpener, TensorInfo } from './model';
import { SourceModel } from './reader';
import type { ByteSource } from './source';

/**
 * llama.cpp importance matrices as models, so that the viewer shows where a model is
 * sensitive: `*.imatrix` and `imatrix*.dat` files. A GGUF one (recent llama-imatrix) opens
 * as the GGUF it is (`NAME.in_sum2`, `NAME.counts`); a legacy one becomes one F32 row [1, n] per
 * matrix, its stored values (squared activations summed over `ncall` calls, per input
 * column and expert), read in place. Each entry's call count and the dataset are metadata.
 * The layout (all little-endian): i32 n; n × (i32 len, name, i32 ncall, i32 nval, nval × f32);
 * then optionally i32 chunks, i32 len, dataset.
 */

// An entry name is a tensor name; llama-quantize reads no longer ones either.
const MAX_NAME_BYTES = 4096;
// Entries are matrices of one model: a few thousand at most (1 k MoE layers × 3 experts' tensors…).
const MAX_ENTRIES = 1_000_000;
// A dataset name is a path or a few file names.
const MAX_DATASET_BYTES = 1 << 16;

export function looksLikeImatrixPath(path: string): boolean {
  return /\.imatrix$/i.test(path) || /(^|[\\/])[^\\/]*imatrix[^\\/]*\.dat$/i.test(path);
}

class Cursor {
  at = 0;
  private readonly word = new Uint8Array(4);
  constructor(private readonly src: ByteSource) {}

  async bytes(n: number, what: string): Promise<Uint8Array> {
    if (this.at + n > this.src.size) throw new FormatError('truncated', `ends inside ${what} at byte ${this.at}`, this.src.name);
    const out = new Uint8Array(n);
    if (n > 0 && (await this.src.read(this.at, out)) !== n) throw new FormatError('truncated', `ends inside ${what} at byte ${this.at}`, this.src.name);
    this.at += n;
    return out;
  }

  async i32(what: string): Promise<number> {
    const b = await this.bytes(4, what);
    this.word.set(b);
    return new DataView(this.word.buffer).getInt32(0, true);
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

function text(b: Uint8Array, what: string, file: string): string {
  try {
    return UTF8.decode(b);
  } catch {
    throw new FormatError('unsupported', `${what} is not UTF-8`, file);
  }
}

/** The entries of a legacy file as tensors over their values, and the trailer as metadata. */
async function readLegacy(src: ByteSource): Promise<{ tensors: TensorInfo[]; metadata: Record<string, string> }> {
  const c = new Cursor(src);
  const n = await c.i32('the entry count');
  if (n < 1 || n > MAX_ENTRIES) throw new FormatError('unsupported', `${n} entries: not a legacy imatrix`, src.name);
  const tensors: TensorInfo[] = [];
  const metadata: Record<string, string> = { 'imatrix.format': 'legacy (llama-imatrix .dat)' };
  const seen = new Set<string>();
  for (let e = 0; e < n; e++) {
    const len = await c.i32('a name length');
    if (len < 1 || len > MAX_NAME_BYTES) throw new FormatError('unsupported', `entry ${e}: name length ${len}`, src.name);
    const name = text(await c.bytes(len, 'a name'), `entry ${e}'s name`, src.name);
    if (seen.has(name)) throw new FormatError('duplicate_key', `entry ${e}: '${name}' appears twice`, src.name, name);
    seen.add(name);
    const ncall = await c.i32('a call count');
    const nval = await c.i32('a value count');
    if (nval < 1 || c.at + nval * 4 > src.size) throw new FormatError(nval < 1 ? 'shape_invalid' : 'truncated', `${nval} values at byte ${c.at}, the file has ${src.size} bytes`, src.name, name);
    // One row of channels (experts one after another): the viewer draws it as a strip, a cell per channel.
    tensors.push({ name, dtype: 'F32', shape: [1, nval], numel: nval, file: 0, byteOffset: c.at, byteLength: nval * 4 });
    metadata[`imatrix.ncall.${name}`] = String(ncall);
    c.at += nval * 4;
  }
  if (c.at + 4 <= src.size) {
    metadata['imatrix.chunk_count'] = String(await c.i32('the chunk count'));
    if (c.at + 4 <= src.size) {
      const len = await c.i32('the dataset length');
      if (len < 0 || len > MAX_DATASET_BYTES) throw new FormatError('unsupported', `dataset name length ${len}`, src.name);
      metadata['imatrix.dataset'] = text(await c.bytes(len, 'the dataset name'), 'the dataset name', src.name);
    }
  }
  if (c.at !== src.size) throw new FormatError('trailing_bytes', `${src.size - c.at} bytes follow the imatrix at byte ${c.at}`, src.name);
  return { tensors, metadata };
}

async function openImatrixModel(path: string, opener: SourceOpener): Promise<Model> {
  const src = await opener.open(path);
  try {
    const head = new Uint8Array(4);
    await src.read(0, head);
    if (String.fromCharCode(...head) === 'GGUF') {
      await src.close?.();
      return ggufReader.open(path, opener);
    }
    const { tensors, metadata } = await readLegacy(src);
    const file: ModelFile = { path: src.name, bytes: src.size, headerBytes: 0, metadata, mtimeMs: src.mtimeMs };
    const notes = [`llama.cpp importance matrix (legacy): ${tensors.length} entries, stored as squared activations summed over each entry's calls`];
    return new SourceModel(path, [file], tensors, [src], notes);
  } catch (e) {
    await src.close?.();
    throw e;
  }
}

export const imatrixReader: ModelReader = {
  name: 'imatrix',
  claims: looksLikeImatrixPath,
  open: openImatrixModel,
};
