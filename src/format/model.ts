import type { DType } from './dtypes';
import type { QuantizationDeclared } from './quantized/configInfo';
import type { ByteSource } from './source';
import { plainStorage, storageName, type StorageType, type TensorPart } from './storage';

/**
 * A logical tensor as its format's header describes it: a lazy view (name, shape,
 * storage, byte ranges), never its data. Every reader produces these.
 */
export interface TensorInfo {
  readonly name: string;
  /** The element dtype of its (first) data part: the stored dtype, or U8 for blocks and schemes. */
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Product of the shape (1 for rank 0, 0 when any dimension is 0). */
  readonly numel: number;
  /** Index into `Model.files`. */
  readonly file: number;
  /** Absolute offset of the tensor's first byte within its file. */
  readonly byteOffset: number;
  readonly byteLength: number;
  /** How the values are stored when not plainly `dtype` (a block type, a scheme with its parts); see `storageOf`. */
  readonly storage?: StorageType;
  /** Where the bytes are when there are several parts; absent, one `data` part at (file, byteOffset, byteLength). */
  readonly parts?: readonly TensorPart[];
}

/** How a tensor's values are stored: its `storage`, or plainly its `dtype`. */
export function storageOf(t: TensorInfo): StorageType {
  return t.storage ?? plainStorage(t.dtype);
}

/** The tensor's type as users read it: its dtype, or its block type or scheme (`Q4_K`). */
export function typeNameOf(t: TensorInfo): string {
  return t.storage ? storageName(t.storage) : t.dtype;
}

/** Every byte range of a tensor, data first. */
export function partsOf(t: TensorInfo): readonly TensorPart[] {
  return t.parts ?? [{ role: 'data', file: t.file, byteOffset: t.byteOffset, byteLength: t.byteLength }];
}

export interface ModelFile {
  readonly path: string;
  /** File size in bytes. */
  readonly bytes: number;
  /** N, the header length stored in the file's first 8 bytes (data starts at 8 + N). */
  readonly headerBytes: number;
  readonly metadata: Readonly<Record<string, string>>;
  readonly mtimeMs?: number;
}

export interface ChunkOptions {
  /** Upper bound on one chunk, rounded down to whole elements. */
  readonly chunkBytes?: number;
  readonly signal?: AbortSignal;
  /**
   * The two buffers that chunks are read into, taken in turns, instead of two
   * fresh ones per tensor: a copy of a whole model then touches the same
   * memory throughout. Each must hold a whole chunk (`chunkBytes`, or the
   * default). The caller must be done with a chunk before asking for the one
   * after the next, and must not run two streams on the same pair at once.
   */
  readonly buffers?: readonly [Uint8Array, Uint8Array];
}

/**
 * One logical model: a single .safetensors file, or the shards named by a
 * model.safetensors.index.json. Only headers are read when it opens.
 */
export interface Model {
  /** What was opened: the file, the index.json or the folder. */
  readonly path: string;
  readonly files: readonly ModelFile[];
  /** `__metadata__` of the first file (shards normally repeat it). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Header order, file by file in shard order. */
  readonly tensors: readonly TensorInfo[];
  /**
   * Lines about the model that are not tensors or metadata (a container's verdict, shared
   * storages kept once, entries left out), shown by inspect and the viewer. Optional.
   */
  readonly notes?: readonly string[];
  /**
   * For formats that can carry code (pickles): whether the file only rebuilds tensors.
   * Writers refuse a model that is not clean unless the user overrides it.
   */
  readonly safety?: { readonly clean: boolean; readonly text: string; readonly findings?: readonly string[] };
  /** What config.json's `quantization_config` declares (quantized safetensors); the tensors may disagree. */
  readonly quantization?: QuantizationDeclared;
  tensor(name: string): TensorInfo | undefined;
  /** Reads `into.length` bytes of a tensor starting `offset` bytes into it; `signal` aborts a read in flight (HTTP). */
  read(t: TensorInfo, offset: number, into: Uint8Array, signal?: AbortSignal): Promise<void>;
  /**
   * Reads from the start of `first` to the end of `last` (same file, `last` at or after `first`)
   * in one read: many small tensors cost one request instead of one each. Optional; callers
   * fall back to `read` per tensor.
   */
  readSpan?(first: TensorInfo, last: TensorInfo, into: Uint8Array, signal?: AbortSignal): Promise<void>;
  /**
   * Streams a tensor in bounded chunks that end on element boundaries (on byte
   * boundaries that are also element boundaries for sub-byte dtypes). The yielded
   * array may be reused by the next iteration: copy what must outlive it.
   */
  chunks(t: TensorInfo, opts?: ChunkOptions): AsyncIterable<Uint8Array>;
  /** Reads bytes of one of `t.parts` (a scheme's scales), `offset` bytes into that part. Models with scheme tensors have it. */
  readPart?(t: TensorInfo, part: TensorPart, offset: number, into: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** How the format core opens the files a model names; swapped for vscode.workspace.fs in the extension. */
export interface SourceOpener {
  open(path: string): Promise<ByteSource>;
  /** Reads a small text file (index.json, config.json) whole. */
  readText(path: string): Promise<string>;
  /** Lists a folder's entries (names only), for opening a folder as a model. */
  list(path: string): Promise<string[]>;
  /**
   * Opens a shard that an index in `dir` names, refusing one whose real path leaves `dir`
   * (a symlink planted in a downloaded folder). Openers without links leave it out.
   */
  openShard?(path: string, dir: string): Promise<ByteSource>;
}
