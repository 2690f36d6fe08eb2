import type { DType } from './dtypes';
import { FormatError } from './errors';
import { HEADER_PREFIX_BYTES, parseHeader, readHeaderLength } from './header';
import { storageOf, type ChunkOptions, type Model, type ModelFile, type TensorInfo } from './model';
import type { QuantizationDeclared } from './quantized/configInfo';
import type { ByteSource } from './source';
import { plainStorage, storageUnit, type TensorPart } from './storage';

/**
 * Default chunk for streaming tensor bytes. Each read costs a thread-pool round trip
 * (tens of µs), so chunks must be large for the copy to dominate; but the copy out of
 * the page cache runs fastest when its destination stays in the CPU's last-level cache.
 * Two 8 MiB buffers (one being filled while the caller works on the other) fit a 32 MiB
 * L3 with room to spare: measured on the 2-core dev machine, 8 MiB chunks read up to 3×
 * faster than 16 MiB ones and 2–8× faster than 32 MiB, and memory stays at 16 MiB per stream.
 */
export const DEFAULT_CHUNK_BYTES = 8 << 20;

/**
 * While streaming, the file is checked for changes on the first and last chunk and at
 * most this often in between. A stat per chunk cost 15% of page-cache throughput; at this
 * interval it costs nothing measurable, and a change still surfaces within 50 ms.
 */
const CHANGE_CHECK_MS = 50;

/**
 * Bytes in the smallest run of whole elements that starts and ends on a byte
 * boundary: the element size, or 1 byte (2 × F4) and 3 bytes (4 × F6) for sub-byte dtypes.
 */
export function elementGroupBytes(dtype: DType): number {
  return storageUnit(plainStorage(dtype)).bytes;
}

export interface OpenedFile {
  readonly file: ModelFile;
  /** Header order, with `file` set to the index given to `readFileHeader`. */
  readonly tensors: TensorInfo[];
}

async function readFully(source: ByteSource, offset: number, into: Uint8Array, path: string, tensor?: string, signal?: AbortSignal): Promise<void> {
  let n: number;
  try {
    n = await source.read(offset, into, signal);
  } catch (e) {
    if (e instanceof FormatError || (e instanceof Error && e.name === 'AbortError')) throw e;
    throw new FormatError('io', (e as Error)?.message ?? String(e), path, tensor);
  }
  if (n < into.length) {
    throw new FormatError('file_changed', `the file ended at byte ${offset + n} while ${offset + into.length} were expected; it changed since it was opened`, path, tensor);
  }
}

/**
 * Reads and validates one file's header: the 8-byte prefix, then exactly the N bytes it
 * announces, allocated only after N has passed the cap and the file-size check.
 */
export async function readFileHeader(source: ByteSource, fileIndex = 0, path = source.name): Promise<OpenedFile> {
  const size = source.size;
  if (size < HEADER_PREFIX_BYTES) readHeaderLength(new Uint8Array(0), path, size);
  const prefix = new Uint8Array(HEADER_PREFIX_BYTES);
  await readFully(source, 0, prefix, path);
  const n = readHeaderLength(prefix, path, size);
  const head = new Uint8Array(n);
  await readFully(source, HEADER_PREFIX_BYTES, head, path);
  const parsed = parseHeader(head, path, size, fileIndex);
  const file: ModelFile = { path, bytes: size, headerBytes: n, metadata: parsed.metadata, mtimeMs: source.mtimeMs };
  return { file, tensors: parsed.tensors };
}

/**
 * A model over one or more opened files. Tensor data stays on disk until `read` or
 * `chunks` asks for it; the model owns the sources and closes them in `close`.
 */
export class SourceModel implements Model {
  private readonly byName: Map<string, TensorInfo>;
  private closed = false;

  constructor(
    readonly path: string,
    readonly files: readonly ModelFile[],
    readonly tensors: readonly TensorInfo[],
    private readonly sources: readonly ByteSource[],
    readonly notes?: readonly string[],
    readonly quantization?: QuantizationDeclared,
  ) {
    this.byName = new Map();
    for (const t of tensors) this.byName.set(t.name, t);
  }

  get metadata(): Readonly<Record<string, string>> {
    return this.files.length > 0 ? this.files[0].metadata : {};
  }

  tensor(name: string): TensorInfo | undefined {
    return this.byName.get(name);
  }

  async read(t: TensorInfo, offset: number, into: Uint8Array, signal?: AbortSignal): Promise<void> {
    this.refuseScheme(t);
    this.checkRange(t, offset, into.length);
    if (into.length === 0) return;
    await this.readAt(t, offset, into, true, signal);
  }

  /** The same files and sources seen through other tensors (logical ones built from these); the new model owns the sources. */
  withTensors(tensors: readonly TensorInfo[], notes: readonly string[], quantization?: QuantizationDeclared): SourceModel {
    return new SourceModel(this.path, this.files, tensors, this.sources, [...(this.notes ?? []), ...notes], quantization ?? this.quantization);
  }

  /** Reads `into.length` bytes of one part of a tensor (a scheme's scale, say), `offset` bytes into the part. */
  async readPart(t: TensorInfo, part: TensorPart, offset: number, into: Uint8Array, signal?: AbortSignal): Promise<void> {
    this.checkRange(t, 0, 0);
    if (!(t.parts ?? []).includes(part) && !(t.parts ?? []).some((p) => p.file === part.file && p.byteOffset === part.byteOffset && p.byteLength === part.byteLength)) {
      throw new RangeError(`the part '${part.role}' is not a part of tensor '${t.name}'`);
    }
    if (!Number.isInteger(offset) || offset < 0 || offset + into.length > part.byteLength) {
      throw new RangeError(`bytes ${offset}..${offset + into.length} are outside part '${part.role}' of '${t.name}' (${part.byteLength} bytes)`);
    }
    if (into.length === 0) return;
    const view: TensorInfo = { ...t, file: part.file, byteOffset: part.byteOffset, byteLength: part.byteLength };
    await this.readAt(view, offset, into, true, signal);
  }

  async readSpan(first: TensorInfo, last: TensorInfo, into: Uint8Array, signal?: AbortSignal): Promise<void> {
    this.checkRange(first, 0, 0);
    this.checkRange(last, 0, last.byteLength);
    if (first.file !== last.file || last.byteOffset < first.byteOffset || last.byteOffset + last.byteLength - first.byteOffset !== into.length) {
      throw new RangeError(`a span from '${first.name}' to '${last.name}' is not ${into.length} bytes of one file`);
    }
    if (into.length === 0) return;
    await this.readAt(first, 0, into, true, signal);
  }

  async *chunks(t: TensorInfo, opts: ChunkOptions = {}): AsyncGenerator<Uint8Array> {
    const signal = opts.signal;
    signal?.throwIfAborted();
    this.refuseScheme(t);
    this.checkRange(t, 0, t.byteLength);
    const total = t.byteLength;
    if (total === 0) return;
    // Chunks end on whole units of the storage: elements that end on a byte, or whole blocks.
    const group = storageUnit(storageOf(t)).bytes;
    const want = opts.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    const size = Math.min(total, Math.max(group, want - (want % group)));
    // Two buffers: the next chunk is read into one while the caller works on the other.
    const given = opts.buffers;
    if (given && (given[0].length < size || given[1].length < size)) {
      throw new RangeError(`chunk buffers must hold ${size} bytes each`);
    }
    const bufs = given ? [given[0], given[1]] : [new Uint8Array(size), total > size ? new Uint8Array(size) : new Uint8Array(0)];
    let pos = 0;
    let k = 0;
    let lastCheck = performance.now();
    let pending: Promise<Uint8Array> | undefined = this.readChunk(t, 0, bufs[0].subarray(0, Math.min(size, total)), true, signal);
    try {
      while (pending) {
        const cur: Uint8Array = await pending;
        pending = undefined;
        signal?.throwIfAborted();
        pos += cur.length;
        if (pos < total) {
          k ^= 1;
          const n = Math.min(size, total - pos);
          const now = performance.now();
          // The last chunk is always checked, so a stream that ends cleanly read one unchanged file.
          const check = pos + n === total || now - lastCheck >= CHANGE_CHECK_MS;
          if (check) lastCheck = now;
          pending = this.readChunk(t, pos, bufs[k].subarray(0, n), check, signal);
        }
        yield cur;
      }
    } finally {
      // A caller that stops early must not leave a read behind that rejects unobserved.
      if (pending) await pending.catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.sources.map((s) => s.close()));
  }

  /**
   * A quantized weight's data part alone means nothing (packed bytes, no scales): its values are
   * read through the decoded value stream (readUnitBytes, src/compute/decode/tensorValues.ts),
   * and a caller that would take its bytes for plain values gets this error instead of wrong numbers.
   */
  private refuseScheme(t: TensorInfo): void {
    if (t.storage?.kind !== 'scheme') return;
    throw new FormatError('unsupported', `a quantized weight (${t.storage.scheme}); this command does not dequantize it yet (inspect, stats, diff, convert and the viewer do: convert --dtype bf16 first)`, this.files[t.file]?.path ?? this.path, t.name);
  }

  private checkRange(t: TensorInfo, offset: number, length: number): void {
    if (this.closed) throw new FormatError('io', 'the model was closed', this.files[t.file]?.path, t.name);
    if (this.byName.get(t.name) !== t && !this.owns(t)) {
      throw new FormatError('not_found', 'tensor does not belong to this model', this.path, t.name);
    }
    if (!Number.isInteger(offset) || offset < 0 || offset + length > t.byteLength) {
      throw new RangeError(`bytes ${offset}..${offset + length} are outside tensor '${t.name}' (${t.byteLength} bytes)`);
    }
  }

  /** A TensorInfo equal to one of ours (callers may rebuild it, e.g. after a worker round trip). */
  private owns(t: TensorInfo): boolean {
    const m = this.byName.get(t.name);
    return m !== undefined && m.file === t.file && m.byteOffset === t.byteOffset && m.byteLength === t.byteLength;
  }

  private async readChunk(t: TensorInfo, offset: number, into: Uint8Array, checkChange: boolean, signal?: AbortSignal): Promise<Uint8Array> {
    await this.readAt(t, offset, into, checkChange, signal);
    return into;
  }

  private async readAt(t: TensorInfo, offset: number, into: Uint8Array, checkChange: boolean, signal?: AbortSignal): Promise<void> {
    const source = this.sources[t.file];
    const path = this.files[t.file].path;
    // The change check runs beside the read, so it adds no latency.
    const [readError, changed] = await Promise.all([
      readFully(source, t.byteOffset + offset, into, path, t.name, signal).then(
        () => undefined,
        (e: unknown) => e,
      ),
      checkChange && source.changed ? source.changed() : false,
    ]);
    if (changed) throw new FormatError('file_changed', 'the file changed on disk since its header was read; reopen it', path, t.name);
    if (readError !== undefined) throw readError;
  }
}

/**
 * Opens one already-open source (a MemorySource, a workspace file) as a model. The
 * model takes the source over: closing the model closes it, and so does a failed open.
 * `path` names the file in errors; `openedAs` is the model's path (a folder, say).
 */
export async function openSource(source: ByteSource, path = source.name, openedAs = path): Promise<Model> {
  try {
    const { file, tensors } = await readFileHeader(source, 0, path);
    return new SourceModel(openedAs, [file], tensors, [source]);
  } catch (e) {
    await source.close().catch(() => undefined);
    throw e;
  }
}
