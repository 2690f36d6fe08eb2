import { chunkValuesOf, decodeValues } from '../compute/decode/tensorValues';
import { STORAGE_DECODERS } from '../compute/decode/blocks';
import { throwIfCancelled } from '../core/job';
import { FormatError } from '../format/errors';
import { partsOf, storageOf, typeNameOf, type ChunkOptions, type Model, type TensorInfo } from '../format/model';
import type { Backend } from '../compute/kernel';

/**
 * A model whose quantized tensors (a ggml block type, or a scheme such as FP8 with its block
 * scales, MXFP4, NVFP4, GPTQ, AWQ, compressed-tensors) read as plain F32 tensors of their
 * logical shape, decoded through the one decoded value stream (`decodeValues`). The writers of
 * quantize, merge and the GGUF conversion read `Model.read`/`chunks` in the element's dtype;
 * through this view they take any decodable tensor without knowing its storage.
 *
 * Memory: reads are served from decoded runs of whole storage units (about RUN_VALUES values,
 * or one unit when a unit is larger: a 128-row FP8 band, one MoE expert, GPTQ's whole tensor),
 * and at most CACHED_RUNS of them are held, so reads smaller than a run (a writer's row chunk)
 * decode each run once while the pipeline's read-ahead stays a few chunks. `runValues` 1 decodes
 * one unit per run, for scattered samples.
 */

// 1 M values (4 MiB of float32) per decoded run: as large as the decode stream's own chunks.
const RUN_VALUES = 1 << 20;
// Runs kept decoded: the pipelines read at most two or three chunks ahead, in order.
const CACHED_RUNS = 4;
// Values kept decoded at most (16 MiB of float32), unless the latest run alone is larger: a unit
// that is a whole tensor (GPTQ's act-order) is then the only one held, as the decode stream holds it.
const CACHED_VALUES = CACHED_RUNS * RUN_VALUES;
// Chunk size of `chunks()` when the caller names none, as the readers' default.
const DEFAULT_CHUNK_BYTES = 4 << 20;

export interface DecodedModel extends Model {
  /** The stored tensor a plain F32 tensor of this view decodes, or undefined for a tensor read as stored. */
  storedOf(name: string): TensorInfo | undefined;
  /** Names of the tensors that read decoded, in model order. */
  readonly decoded: readonly string[];
}

/** Whether a block or scheme storage has a decoder (a plain dtype reads as stored). */
export function hasDecoder(t: TensorInfo): boolean {
  const s = storageOf(t);
  if (s.kind === 'dtype') return true;
  return Object.prototype.hasOwnProperty.call(STORAGE_DECODERS, s.kind === 'blocks' ? s.type : s.scheme);
}

/**
 * The reason a stored tensor's values mean nothing on their own: a quantized part (codes
 * without their scale, a scale without its codes) that the reader left as stored, with the
 * reader's note. Undefined for every other tensor.
 */
export function storedPartReason(model: Model, t: TensorInfo): string | undefined {
  const prefix = `${t.name}: kept as stored: `;
  const note = model.notes?.find((n) => n.startsWith(prefix));
  return note?.slice(prefix.length);
}

/** The error for a tensor whose values cannot be decoded, naming its file and type. */
export function undecodableError(model: Model, t: TensorInfo, what: string): FormatError {
  const file = model.files[t.file]?.path ?? model.path;
  const part = storedPartReason(model, t);
  const why = part !== undefined ? `a quantized part left as stored (${part})` : `its type ${typeNameOf(t)} has no decoder`;
  return new FormatError('undecodable', `${why}: its values cannot be decoded, so it cannot be ${what}`, file, t.name);
}

class DecodedView implements DecodedModel {
  readonly tensors: readonly TensorInfo[];
  readonly decoded: string[] = [];
  private readonly byName = new Map<string, TensorInfo>();
  private readonly stored = new Map<string, TensorInfo>();
  // Decoded runs by `name@run`, in use order (a Map keeps insertion order: the first is the oldest).
  private readonly runs = new Map<string, { values: Promise<Float32Array>; count: number }>();
  private cachedValues = 0;

  constructor(
    private readonly inner: Model,
    private readonly backend: Backend | undefined,
    private readonly runValues: number,
  ) {
    this.tensors = inner.tensors.map((t) => {
      if (storageOf(t).kind === 'dtype') return t;
      if (!hasDecoder(t)) throw undecodableError(inner, t, 'read as values');
      const plain: TensorInfo = { name: t.name, dtype: 'F32', shape: t.shape, numel: t.numel, file: t.file, byteOffset: partsOf(t)[0].byteOffset, byteLength: t.numel * 4 };
      this.stored.set(t.name, t);
      this.decoded.push(t.name);
      return plain;
    });
    for (const t of this.tensors) this.byName.set(t.name, t);
  }

  get path(): string {
    return this.inner.path;
  }
  get files() {
    return this.inner.files;
  }
  get metadata() {
    return this.inner.metadata;
  }
  get notes() {
    return this.inner.notes;
  }
  get safety() {
    return this.inner.safety;
  }
  get quantization() {
    return this.inner.quantization;
  }

  storedOf(name: string): TensorInfo | undefined {
    return this.stored.get(name);
  }

  tensor(name: string): TensorInfo | undefined {
    return this.byName.get(name);
  }

  async read(t: TensorInfo, offset: number, into: Uint8Array, signal?: AbortSignal): Promise<void> {
    const src = this.stored.get(t.name);
    if (!src) return this.inner.read(t, offset, into, signal);
    if (!Number.isInteger(offset) || offset < 0 || offset + into.length > t.numel * 4) {
      throw new RangeError(`bytes ${offset}..${offset + into.length} are outside tensor '${t.name}' (${t.numel * 4} bytes)`);
    }
    const run = chunkValuesOf(src, this.runValues);
    let at = offset;
    const end = offset + into.length;
    while (at < end) {
      throwIfCancelled(signal);
      const r = Math.floor(at / 4 / run);
      const values = await this.run(src, r, run, signal);
      const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
      const from = at - r * run * 4;
      const n = Math.min(end - at, bytes.length - from);
      into.set(bytes.subarray(from, from + n), at - offset);
      at += n;
    }
  }

  async *chunks(t: TensorInfo, opts: ChunkOptions = {}): AsyncIterable<Uint8Array> {
    if (!this.stored.has(t.name)) {
      yield* this.inner.chunks(t, opts);
      return;
    }
    // Whole float32 elements per chunk; the caller's buffers (when given) are taken in turns.
    const size = Math.max(4, Math.floor((opts.chunkBytes ?? DEFAULT_CHUNK_BYTES) / 4) * 4);
    const total = t.numel * 4;
    const bufs = opts.buffers ?? [new Uint8Array(Math.min(size, total)), new Uint8Array(Math.min(size, total))];
    for (let pos = 0, k = 0; pos < total; pos += size, k ^= 1) {
      const buf = bufs[k].subarray(0, Math.min(size, total - pos));
      await this.read(t, pos, buf, opts.signal);
      yield buf;
    }
  }

  async readPart(): Promise<void> {
    throw new Error('a decoded view has no parts to read');
  }

  close(): Promise<void> {
    this.runs.clear();
    this.cachedValues = 0;
    return this.inner.close();
  }

  /** Values of run `r` (runs of `run` values, whole units) of a stored tensor, decoded once while cached. */
  private run(src: TensorInfo, r: number, run: number, signal?: AbortSignal): Promise<Float32Array> {
    const key = `${src.name}@${r}`;
    const hit = this.runs.get(key);
    if (hit) {
      // Most recently used goes last.
      this.runs.delete(key);
      this.runs.set(key, hit);
      return hit.values;
    }
    const e0 = r * run;
    const e1 = Math.min(src.numel, e0 + run);
    const entry = { values: decodeValues(this.inner, src, e0, e1, this.backend, signal), count: e1 - e0 };
    this.runs.set(key, entry);
    this.cachedValues += entry.count;
    // A failed decode is not kept: the caller sees the error, a later read tries again.
    entry.values.catch(() => this.forget(key, entry));
    for (const [k, e] of this.runs) {
      if (this.runs.size <= 1 || (this.runs.size <= CACHED_RUNS && this.cachedValues <= CACHED_VALUES)) break;
      this.forget(k, e);
    }
    return entry.values;
  }

  private forget(key: string, entry: { count: number }): void {
    if (this.runs.get(key) !== entry) return;
    this.runs.delete(key);
    this.cachedValues -= entry.count;
  }
}

/**
 * `model` with every quantized tensor read as plain F32 values (see the module comment); throws
 * an `undecodable` error naming the first tensor whose storage has no decoder. Closing the view
 * closes `model`.
 */
export function decodedModel(model: Model, backend?: Backend, opts: { runValues?: number } = {}): DecodedModel {
  return new DecodedView(model, backend, opts.runValues ?? RUN_VALUES);
}
