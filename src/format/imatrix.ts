import { open, stat } from 'node:fs/promises';
import { FormatError } from './errors';
import { readGguf, readTensorBytes } from './gguf/reader';
import { NodeFileSource } from './source';

/**
 * llama.cpp importance matrices, as llama-quantize loads them: the GGUF format of recent
 * llama.cpp (`NAME.in_sum2` and `NAME.counts` tensors, one count per expert) or the legacy
 * `.dat` (entries of name, call count and values). Each entry becomes the mean squared
 * activation per column: in_sum2 / count per expert (1 where the count is 0), or the legacy
 * values / ncall, each division rounded to f32 as in C.
 */

export interface Imatrix {
  /** Per llama.cpp tensor name: ne[0] values per expert, experts one after another. */
  readonly entries: ReadonlyMap<string, Float32Array>;
  readonly format: 'gguf' | 'legacy';
  readonly datasets: readonly string[];
  readonly chunks: number;
}

// A legacy file is read whole: the largest models' imatrices are a few hundred MB (one f32 per
// input column per matrix and expert); past this it is not an imatrix.
const MAX_LEGACY_BYTES = 2 ** 31;
// Entry names are tensor names, well under a few hundred bytes.
const MAX_NAME_BYTES = 4096;

export async function readImatrix(path: string): Promise<Imatrix> {
  const head = new Uint8Array(4);
  const h = await open(path, 'r');
  try {
    await h.read(head, 0, 4, 0);
  } finally {
    await h.close();
  }
  return new TextDecoder().decode(head) === 'GGUF' ? readGgufImatrix(path) : readLegacy(path);
}

async function readGgufImatrix(path: string): Promise<Imatrix> {
  const source = await NodeFileSource.open(path);
  try {
    const f = await readGguf(source);
    const parts = new Map<string, { sums?: Float32Array; counts?: Float32Array }>();
    for (const t of f.tensors) {
      const m = /^(.*)\.(in_sum2|counts)$/.exec(t.name);
      if (!m) continue;
      if (t.type.name !== 'F32') throw new FormatError('unsupported', `imatrix tensor is ${t.type.name}, not F32`, path, t.name);
      const bytes = new Uint8Array(t.byteLength);
      await readTensorBytes(f, t, 0, bytes);
      const e = parts.get(m[1]) ?? {};
      e[m[2] === 'in_sum2' ? 'sums' : 'counts'] = new Float32Array(bytes.buffer);
      parts.set(m[1], e);
    }
    if (parts.size === 0) throw new FormatError('unsupported', 'no NAME.in_sum2 / NAME.counts tensors: not an imatrix', path);
    const entries = new Map<string, Float32Array>();
    for (const [name, { sums, counts }] of parts) {
      if (!sums || !counts) throw new FormatError('unsupported', `has ${sums ? 'in_sum2' : 'counts'} without ${sums ? 'counts' : 'in_sum2'}`, path, name);
      if (counts.length === 0 || sums.length % counts.length !== 0) throw new FormatError('unsupported', `${sums.length} sums do not split into ${counts.length} experts`, path, name);
      entries.set(name, normalize(sums, counts));
    }
    const ds = f.metadata.get('imatrix.datasets');
    const datasets = ds?.type === 'array' && ds.items ? ds.items.filter((x): x is string => typeof x === 'string') : [];
    const cc = f.metadata.get('imatrix.chunk_count');
    return { entries, format: 'gguf', datasets, chunks: cc && cc.type !== 'array' ? Number(cc.value) : 0 };
  } finally {
    await source.close();
  }
}

function normalize(sums: Float32Array, counts: Float32Array): Float32Array {
  const ne0 = sums.length / counts.length;
  const out = new Float32Array(sums.length);
  for (let j = 0; j < counts.length; j++) {
    // llama.cpp rounds each count to an integer first, then divides in f32.
    const count = Math.fround(Math.round(counts[j]));
    for (let i = 0; i < ne0; i++) out[j * ne0 + i] = count > 0 ? Math.fround(sums[j * ne0 + i] / count) : 1;
  }
  return out;
}

async function readLegacy(path: string): Promise<Imatrix> {
  const size = (await stat(path)).size;
  if (size > MAX_LEGACY_BYTES) throw new FormatError('unsupported', `${size} bytes is over the ${MAX_LEGACY_BYTES}-byte limit for a legacy imatrix`, path);
  const h = await open(path, 'r');
  const buf = new Uint8Array(size);
  try {
    await h.read(buf, 0, size, 0);
  } finally {
    await h.close();
  }
  const v = new DataView(buf.buffer);
  let at = 0;
  const need = (n: number, what: string) => {
    if (at + n > size) throw new FormatError('truncated', `ends inside ${what} at byte ${at}`, path);
  };
  const i32 = (what: string) => (need(4, what), (at += 4), v.getInt32(at - 4, true));
  const n = i32('the entry count');
  if (n < 1) throw new FormatError('unsupported', `${n} entries: not a legacy imatrix`, path);
  const entries = new Map<string, Float32Array>();
  for (let e = 0; e < n; e++) {
    const len = i32('a name length');
    if (len < 0 || len > MAX_NAME_BYTES) throw new FormatError('unsupported', `entry ${e}: name length ${len}`, path);
    need(len, 'a name');
    const name = new TextDecoder().decode(buf.subarray(at, at + len)).replace(/\0.*$/s, '');
    at += len;
    const ncall = i32('a call count');
    const nval = i32('a value count');
    if (nval < 1) throw new FormatError('unsupported', `entry ${e}: ${nval} values`, path, name);
    need(nval * 4, 'the values');
    const vals = new Float32Array(nval);
    for (let i = 0; i < nval; i++) vals[i] = v.getFloat32(at + 4 * i, true);
    at += nval * 4;
    if (ncall > 0) for (let i = 0; i < nval; i++) vals[i] = Math.fround(vals[i] / ncall);
    entries.set(name, vals);
  }
  let chunks = 0;
  const datasets: string[] = [];
  if (at + 4 <= size) {
    chunks = i32('the chunk count');
    if (at + 4 <= size) {
      const len = v.getInt32(at, true);
      at += 4;
      if (len > 0 && at + len <= size) datasets.push(new TextDecoder().decode(buf.subarray(at, at + len)));
    }
  }
  return { entries, format: 'legacy', datasets, chunks };
}
