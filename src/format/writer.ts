import { open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { DTYPE_INFO, isDType, type DType } from './dtypes';
import { FormatError, fromOsError } from './errors';
import { tempPathFor } from './outputs';

export { tempPathFor };

/**
 * Where a tensor's bytes come from. A function is called once, when the writer
 * reaches the tensor, so that a source can produce data lazily in whatever
 * order the writer picks (the header fixes the order before any data exists).
 */
export type TensorData =
  | Uint8Array
  | AsyncIterable<Uint8Array>
  | Iterable<Uint8Array>
  | (() => Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>);

/** One tensor to write: its header entry plus a stream of exactly `byteLengthOf(dtype, shape)` bytes. */
export interface TensorSource {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: TensorData;
}

export type TensorSourceList = Iterable<TensorSource> | AsyncIterable<TensorSource>;

export interface WriteOptions {
  /** `__metadata__`: a map of strings to strings. Omitted from the header when absent. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** `reference` (default): dtype descending then name, as the reference writer does. `source`: as given. */
  readonly order?: 'reference' | 'source';
  readonly signal?: AbortSignal;
  /** Called with bytes of tensor data written so far, of `total`. */
  readonly progress?: (done: number, total: number) => void;
}

export interface ShardedWriteOptions extends WriteOptions {
  /** Start a new shard before a tensor that would push the current one past this many data bytes. */
  readonly maxShardBytes?: number;
  /** Alternatively, split into this many shards of roughly equal size (tensor boundaries permitting). */
  readonly shardCount?: number;
  /** File name stem: `model` gives `model-00001-of-00002.safetensors` and `model.safetensors.index.json`. */
  readonly stem?: string;
  /**
   * After a successful write, delete this stem's files in `dir` that the new
   * output does not include (`model.safetensors`, old `model-*-of-*` shards, an
   * old index), as Hugging Face's save_pretrained does, so the folder holds one
   * model. Only names this writer produces are touched.
   */
  readonly removeStale?: boolean;
}

export interface PlannedTensor {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Offsets relative to the start of the data section, as stored in `data_offsets`. */
  readonly begin: number;
  readonly end: number;
}

export interface HeaderPlan {
  /** The complete prefix of the file: 8-byte little-endian length, then the space-padded JSON. */
  readonly prefix: Uint8Array;
  /** N, the padded JSON length stored in the first 8 bytes. */
  readonly headerBytes: number;
  /** Tensors in file order. */
  readonly tensors: readonly PlannedTensor[];
  /** Bytes of tensor data (the file is `prefix.length + dataBytes` long). */
  readonly dataBytes: number;
}

export interface WrittenFile {
  readonly path: string;
  readonly bytes: number;
  readonly headerBytes: number;
  readonly tensors: readonly string[];
}

export interface ShardedWriteResult {
  readonly files: readonly WrittenFile[];
  /** The index.json path, or undefined when everything fit in one file. */
  readonly index?: string;
  /** Sum of tensor data bytes (the index's `metadata.total_size`). */
  readonly totalSize: number;
}

// The spec caps the header at 100,000,000 bytes; writing a larger one would produce a file no reader accepts.
const MAX_HEADER_BYTES = 100_000_000;
// Small writes are gathered to this size before reaching the OS: one syscall per tiny norm vector is slow.
const WRITE_BATCH_BYTES = 4 << 20;
// Written data is flushed to disk in the background every this many bytes, while later data is still
// being produced, so the final fsync only waits for the tail: on a 1 GB file it cut the time from the
// first write to a durable file by about half (the disk works while the merge or cast computes).
const SYNC_EVERY_BYTES = 128 << 20;

/** Bytes a tensor of this dtype and shape occupies; throws when the size overflows or ends mid-byte. */
export function byteLengthOf(dtype: DType, shape: readonly number[], file?: string, tensor?: string): number {
  let numel = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new FormatError('shape_invalid', `shape ${JSON.stringify(shape)} is not a list of non-negative integers`, file, tensor);
    numel *= d;
    if (!Number.isSafeInteger(numel)) throw new FormatError('overflow', `element count of shape ${JSON.stringify(shape)} overflows`, file, tensor);
  }
  const bits = numel * DTYPE_INFO[dtype].bits;
  if (!Number.isSafeInteger(bits)) throw new FormatError('overflow', `byte size of shape ${JSON.stringify(shape)} overflows`, file, tensor);
  if (bits % 8 !== 0) throw new FormatError('misaligned', `${numel} × ${dtype} does not end on a byte boundary`, file, tensor);
  return bits / 8;
}

const utf8 = new TextEncoder();

function isWellFormed(s: string): boolean {
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);
}

/** Byte-wise UTF-8 order, as Rust's `str::cmp` sorts names (UTF-16 `<` differs above U+FFFF). */
function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Reference order: dtype descending by its position in the spec's enum, then name. */
export function referenceOrder<T extends { name: string; dtype: DType }>(tensors: readonly T[]): T[] {
  return [...tensors].sort((x, y) => DTYPE_INFO[y.dtype].order - DTYPE_INFO[x.dtype].order || compareNames(x.name, y.name));
}

/**
 * Lays out a file: tensor order, offsets, and the header bytes. The JSON is
 * `__metadata__` first, then the tensors in file order, padded with spaces so
 * that data starts on an 8-byte boundary (as the reference writer pads).
 */
export function planHeader(
  tensors: readonly { name: string; dtype: DType; shape: readonly number[] }[],
  opts: { metadata?: Readonly<Record<string, string>>; order?: 'reference' | 'source'; file?: string } = {},
): HeaderPlan {
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === '__metadata__') throw new FormatError('tensor_invalid', `'__metadata__' is reserved and cannot name a tensor`, opts.file, t.name);
    if (seen.has(t.name)) throw new FormatError('tensor_duplicate', 'tensor name appears twice', opts.file, t.name);
    seen.add(t.name);
    if (!isDType(t.dtype)) throw new FormatError('dtype_unknown', `unknown dtype ${String(t.dtype)}`, opts.file, t.name);
    // A lone surrogate has no UTF-8 encoding: the header would not be valid UTF-8 JSON for other readers.
    if (!isWellFormed(t.name)) throw new FormatError('tensor_invalid', 'tensor name is not valid Unicode (lone surrogate)', opts.file, t.name);
  }
  if (opts.metadata) {
    for (const [k, v] of Object.entries(opts.metadata)) {
      if (typeof v !== 'string') throw new FormatError('metadata_invalid', `metadata value for '${k}' is not a string`, opts.file);
      if (!isWellFormed(k) || !isWellFormed(v)) throw new FormatError('metadata_invalid', `metadata entry '${k}' is not valid Unicode`, opts.file);
    }
  }
  const ordered = opts.order === 'source' ? [...tensors] : referenceOrder(tensors);
  const planned: PlannedTensor[] = [];
  const parts: string[] = [];
  if (opts.metadata) parts.push(`"__metadata__":${JSON.stringify(opts.metadata)}`);
  let offset = 0;
  for (const t of ordered) {
    const n = byteLengthOf(t.dtype, t.shape, opts.file, t.name);
    const end = offset + n;
    if (!Number.isSafeInteger(end)) throw new FormatError('overflow', 'data offsets overflow', opts.file, t.name);
    planned.push({ name: t.name, dtype: t.dtype, shape: [...t.shape], begin: offset, end });
    parts.push(`${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":${JSON.stringify(t.shape)},"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  const json = utf8.encode(`{${parts.join(',')}}`);
  const headerBytes = json.length + ((8 - (json.length % 8)) % 8);
  if (headerBytes > MAX_HEADER_BYTES) throw new FormatError('header_too_large', `header would be ${headerBytes} bytes, above the spec's 100,000,000`, opts.file);
  const prefix = new Uint8Array(8 + headerBytes).fill(0x20, 8 + json.length);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(headerBytes), true);
  prefix.set(json, 8);
  return { prefix, headerBytes, tensors: planned, dataBytes: offset };
}

async function* asChunks(data: TensorData): AsyncIterable<Uint8Array> {
  const d = typeof data === 'function' ? data() : data;
  if (d instanceof Uint8Array) {
    yield d;
    return;
  }
  if (Symbol.asyncIterator in d) {
    yield* d as AsyncIterable<Uint8Array>;
    return;
  }
  yield* d as Iterable<Uint8Array>;
}

function abortError(): Error {
  const e = new Error('cancelled');
  e.name = 'AbortError';
  return e;
}

/**
 * Gathers writes into large positional writes on a handle opened by the writer (never an input),
 * and flushes them to disk in the background as it goes (see SYNC_EVERY_BYTES).
 */
class BatchedWriter {
  private buf = new Uint8Array(WRITE_BATCH_BYTES);
  private used = 0;
  private unsynced = 0;
  private syncing: Promise<void> | undefined;
  constructor(
    private readonly handle: FileHandle,
    private pos: number,
  ) {}

  async write(bytes: Uint8Array): Promise<void> {
    if (bytes.length >= WRITE_BATCH_BYTES) {
      await this.flush();
      await this.raw(bytes);
      return;
    }
    if (this.used + bytes.length > this.buf.length) await this.flush();
    this.buf.set(bytes, this.used);
    this.used += bytes.length;
  }

  async flush(): Promise<void> {
    if (this.used === 0) return;
    await this.raw(this.buf.subarray(0, this.used));
    this.used = 0;
  }

  /** Waits for the background flush, then makes everything written durable. */
  async sync(): Promise<void> {
    await this.settle();
    await this.handle.sync();
  }

  /** Waits for (and reports) a background flush still running; callers must settle before closing the handle. */
  async settle(): Promise<void> {
    const s = this.syncing;
    this.syncing = undefined;
    await s;
  }

  private async raw(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.length) {
      const { bytesWritten } = await this.handle.write(bytes, done, bytes.length - done, this.pos);
      done += bytesWritten;
      this.pos += bytesWritten;
    }
    this.unsynced += bytes.length;
    if (this.unsynced >= SYNC_EVERY_BYTES) {
      this.unsynced = 0;
      // One flush at a time: the previous one has had a whole interval to finish.
      await this.settle();
      const s = this.handle.datasync();
      // Observed by the next settle(); until then a failure must not be reported as unhandled.
      s.catch(() => {});
      this.syncing = s;
    }
  }
}

interface FileJob {
  readonly path: string;
  readonly plan: HeaderPlan;
  readonly sources: ReadonlyMap<string, TensorSource>;
}

/** Writes one planned file to `tmp`, checking every tensor's byte count, then fsyncs it. */
async function writeTemp(job: FileJob, tmp: string, opts: WriteOptions, progress: (n: number) => void): Promise<void> {
  // 'wx': a fresh file; an existing name (even a stale temp) is never reused or truncated.
  const handle = await open(tmp, 'wx');
  const out = new BatchedWriter(handle, 0);
  try {
    await out.write(job.plan.prefix);
    for (const t of job.plan.tensors) {
      if (opts.signal?.aborted) throw abortError();
      const expected = t.end - t.begin;
      let got = 0;
      for await (const chunk of asChunks(job.sources.get(t.name)!.data)) {
        if (opts.signal?.aborted) throw abortError();
        got += chunk.length;
        if (got > expected) throw new FormatError('size_mismatch', `source gave more than the ${expected} bytes that ${t.dtype} ${JSON.stringify(t.shape)} needs`, job.path, t.name);
        await out.write(chunk);
        progress(chunk.length);
      }
      if (got !== expected) throw new FormatError('size_mismatch', `source gave ${got} bytes; ${t.dtype} ${JSON.stringify(t.shape)} needs ${expected}`, job.path, t.name);
    }
    await out.flush();
    await out.sync();
  } finally {
    await out.settle().catch(() => {});
    await handle.close();
  }
}

async function removeQuietly(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch {
    // Already gone (or never created): nothing to clean up.
  }
}

async function syncDir(dir: string): Promise<void> {
  // Makes the renames durable; some file systems refuse to fsync a directory, which only weakens durability.
  try {
    const h = await open(dir, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    /* see above */
  }
}

function ioError(e: unknown, path: string): unknown {
  if (e instanceof Error && e.name === 'AbortError') return e;
  return fromOsError(e, path);
}

/**
 * Writes every job to a temp file, and renames them into place only once all
 * are complete. On any error or abort, every temp file is deleted: a failed
 * write leaves the target folder as it was.
 */
async function commitAll(jobs: readonly FileJob[], opts: WriteOptions, extra: { path: string; text: string }[] = []): Promise<void> {
  const temps: string[] = [];
  const total = jobs.reduce((s, j) => s + j.plan.dataBytes, 0);
  let done = 0;
  const progress = (n: number) => {
    done += n;
    opts.progress?.(done, total);
  };
  let current = jobs[0]?.path ?? '';
  try {
    for (const job of jobs) {
      current = job.path;
      const tmp = tempPathFor(job.path);
      temps.push(tmp);
      await writeTemp(job, tmp, opts, progress);
    }
    for (const x of extra) {
      current = x.path;
      const tmp = tempPathFor(x.path);
      temps.push(tmp);
      const h = await open(tmp, 'wx');
      try {
        await h.writeFile(x.text);
        await h.sync();
      } finally {
        await h.close();
      }
    }
    if (opts.signal?.aborted) throw abortError();
  } catch (e) {
    await Promise.all(temps.map(removeQuietly));
    throw ioError(e, current);
  }
  const targets = [...jobs.map((j) => j.path), ...extra.map((x) => x.path)];
  try {
    for (let i = 0; i < temps.length; i++) await rename(temps[i], targets[i]);
  } catch (e) {
    await Promise.all(temps.map(removeQuietly));
    throw ioError(e, current);
  }
  for (const dir of new Set(targets.map((p) => dirname(p)))) await syncDir(dir);
}

async function collect(tensors: TensorSourceList): Promise<TensorSource[]> {
  const out: TensorSource[] = [];
  for await (const t of tensors as AsyncIterable<TensorSource>) out.push(t);
  return out;
}

function sourceMap(list: readonly TensorSource[]): Map<string, TensorSource> {
  return new Map(list.map((t) => [t.name, t]));
}

/**
 * Writes one .safetensors file. The header is computed from the sources'
 * dtypes and shapes before any data is read, then each tensor's data is
 * streamed in file order; a source yielding the wrong byte count fails with
 * `size_mismatch` naming the tensor. Temp file, fsync, rename: no partial output.
 */
export async function writeSafetensors(path: string, tensors: TensorSourceList, opts: WriteOptions = {}): Promise<WrittenFile> {
  const list = await collect(tensors);
  const plan = planHeader(list, { metadata: opts.metadata, order: opts.order, file: path });
  await commitAll([{ path, plan, sources: sourceMap(list) }], opts);
  return { path, bytes: plan.prefix.length + plan.dataBytes, headerBytes: plan.headerBytes, tensors: plan.tensors.map((t) => t.name) };
}

/** `model-00001-of-00003.safetensors`: the Hugging Face shard name (1-based, five digits). */
export function shardName(stem: string, i: number, n: number): string {
  return `${stem}-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
}

/** Splits tensors (already in write order) greedily: a shard closes before the tensor that would overflow it. */
export function splitShards<T extends { dtype: DType; shape: readonly number[] }>(ordered: readonly T[], maxBytes: number): T[][] {
  const shards: T[][] = [];
  let cur: T[] = [];
  let size = 0;
  for (const t of ordered) {
    const n = byteLengthOf(t.dtype, t.shape);
    if (cur.length > 0 && size + n > maxBytes) {
      shards.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(t);
    size += n;
  }
  if (cur.length > 0 || shards.length === 0) shards.push(cur);
  return shards;
}

/**
 * Splits tensors (in write order) into at most `n` shards of roughly equal data
 * size: a tensor goes to the shard its first byte falls in. Fewer shards come
 * out when single tensors are larger than a shard's share.
 */
export function splitEven<T extends { dtype: DType; shape: readonly number[] }>(ordered: readonly T[], n: number): T[][] {
  const sizes = ordered.map((t) => byteLengthOf(t.dtype, t.shape));
  const total = sizes.reduce((a, b) => a + b, 0);
  const shards: T[][] = Array.from({ length: n }, () => []);
  let start = 0;
  ordered.forEach((t, i) => {
    shards[total === 0 ? 0 : Math.min(n - 1, Math.floor((start * n) / total))].push(t);
    start += sizes[i];
  });
  const nonEmpty = shards.filter((s) => s.length > 0);
  return nonEmpty.length > 0 ? nonEmpty : [[]];
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Every name `writeSharded` may write (or, with `removeStale`, delete) for `stem`: single file, shards, index. */
export function shardedNames(stem = 'model'): RegExp {
  const e = escapeRegExp(stem);
  return new RegExp(`^(${e}\\.safetensors|${e}-\\d{5}-of-\\d{5}\\.safetensors|${e}\\.safetensors\\.index\\.json)$`);
}

/** Deletes `stem`'s single file, shards and index in `dir` that are not in `keep`. */
async function removeStale(dir: string, stem: string, keep: readonly string[]): Promise<void> {
  const ours = shardedNames(stem);
  const kept = new Set(keep.map((p) => basename(p)));
  for (const name of await readdir(dir)) {
    if (ours.test(name) && !kept.has(name)) await removeQuietly(join(dir, name));
  }
}

/**
 * Writes a model into folder `dir`: one `<stem>.safetensors` when it fits in a
 * single shard (or `shardCount` is 1), else HF-named shards plus `<stem>.safetensors.index.json`
 * (`metadata.total_size`, `weight_map` sorted by name). No shard is renamed
 * into place until every shard is complete. `dir` must exist.
 */
export async function writeSharded(dir: string, tensors: TensorSourceList, opts: ShardedWriteOptions = {}): Promise<ShardedWriteResult> {
  const stem = opts.stem ?? 'model';
  const list = await collect(tensors);
  // Shards split in source order (as Hugging Face's save_pretrained splits its state dict: a layer's tensors stay
  // together); each shard's header is then ordered by `opts.order`.
  const ordered = list;
  const total = ordered.reduce((s, t) => s + byteLengthOf(t.dtype, t.shape, dir, t.name), 0);
  let groups: TensorSource[][];
  if (opts.shardCount !== undefined) {
    if (!Number.isInteger(opts.shardCount) || opts.shardCount < 1) throw new FormatError('unsupported', `shard count must be a positive integer, not ${opts.shardCount}`, dir);
    groups = splitEven(ordered, opts.shardCount);
  } else {
    const maxBytes = opts.maxShardBytes ?? Number.MAX_SAFE_INTEGER;
    if (!(maxBytes > 0)) throw new FormatError('unsupported', `max shard size must be positive, not ${maxBytes}`, dir);
    groups = splitShards(ordered, maxBytes);
  }
  const sources = sourceMap(list);
  if (groups.length === 1) {
    const path = join(dir, `${stem}.safetensors`);
    const plan = planHeader(groups[0], { metadata: opts.metadata, order: opts.order, file: path });
    await commitAll([{ path, plan, sources }], opts);
    if (opts.removeStale) await removeStale(dir, stem, [path]);
    return { files: [{ path, bytes: plan.prefix.length + plan.dataBytes, headerBytes: plan.headerBytes, tensors: plan.tensors.map((t) => t.name) }], totalSize: total };
  }
  const jobs: FileJob[] = groups.map((g, i) => {
    const path = join(dir, shardName(stem, i, groups.length));
    return { path, plan: planHeader(g, { metadata: opts.metadata, order: opts.order, file: path }), sources };
  });
  const weightMap: Record<string, string> = {};
  for (const name of [...list.map((t) => t.name)].sort(compareNames)) weightMap[name] = '';
  for (const j of jobs) for (const t of j.plan.tensors) weightMap[t.name] = basename(j.path);
  const index = join(dir, `${stem}.safetensors.index.json`);
  const text = JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + '\n';
  await commitAll(jobs, opts, [{ path: index, text }]);
  if (opts.removeStale) await removeStale(dir, stem, [...jobs.map((j) => j.path), index]);
  return {
    files: jobs.map((j) => ({ path: j.path, bytes: j.plan.prefix.length + j.plan.dataBytes, headerBytes: j.plan.headerBytes, tensors: j.plan.tensors.map((t) => t.name) })),
    index,
    totalSize: total,
  };
}
