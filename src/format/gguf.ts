import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { FormatError, fromOsError } from './errors';
import { tempPathFor, type TensorData } from './writer';

/**
 * A streaming GGUF v3 writer: the header (key/values and tensor infos) is computed
 * from the tensor list before any data exists, then each tensor's bytes are streamed
 * in order, each padded to the alignment. Temp file in the target folder, fsync,
 * rename: a failed or cancelled write leaves nothing behind.
 */

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
/** GGUF's default `general.alignment`. */
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** `enum ggml_type` values for the tensor types this writer emits. */
export const GGML_TYPE = {
  F32: 0,
  F16: 1,
  Q4_0: 2,
  Q4_1: 3,
  Q8_0: 8,
  I8: 24,
  I16: 25,
  I32: 26,
  I64: 27,
  F64: 28,
  BF16: 30,
} as const;

/** `enum gguf_type`: how a metadata value is encoded. */
const VT = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12 } as const;

export type GgufScalarType = Exclude<keyof typeof VT, 'array'>;

export type GgufValue =
  | { readonly type: Exclude<GgufScalarType, 'string' | 'bool' | 'u64' | 'i64'>; readonly value: number }
  | { readonly type: 'u64' | 'i64'; readonly value: bigint | number }
  | { readonly type: 'bool'; readonly value: boolean }
  | { readonly type: 'string'; readonly value: string }
  | { readonly type: 'array'; readonly itemType: GgufScalarType; readonly value: readonly (number | bigint | boolean | string)[] };

/** Shorthands for metadata values. */
export const gguf = {
  u32: (value: number): GgufValue => ({ type: 'u32', value }),
  i32: (value: number): GgufValue => ({ type: 'i32', value }),
  f32: (value: number): GgufValue => ({ type: 'f32', value }),
  u64: (value: number | bigint): GgufValue => ({ type: 'u64', value }),
  bool: (value: boolean): GgufValue => ({ type: 'bool', value }),
  str: (value: string): GgufValue => ({ type: 'string', value }),
  arr: (itemType: GgufScalarType, value: readonly (number | bigint | boolean | string)[]): GgufValue => ({ type: 'array', itemType, value }),
};

export interface GgufTensor {
  readonly name: string;
  /** ggml order: ne[0] is the innermost (contiguous) dimension, the reverse of a row-major shape. */
  readonly dims: readonly number[];
  readonly ggmlType: number;
  /** Exact bytes the data stream yields. */
  readonly byteLength: number;
  readonly data: TensorData;
}

export interface GgufWriteOptions {
  readonly alignment?: number;
  readonly signal?: AbortSignal;
  /** Bytes of tensor data written so far, of `total`. */
  readonly progress?: (done: number, total: number) => void;
}

const utf8 = new TextEncoder();

/** A growable little-endian byte buffer for the header. */
class HeaderBuf {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number) { this.room(1); this.view.setUint8(this.length, v); this.length += 1; }
  i8(v: number) { this.room(1); this.view.setInt8(this.length, v); this.length += 1; }
  u16(v: number) { this.room(2); this.view.setUint16(this.length, v, true); this.length += 2; }
  i16(v: number) { this.room(2); this.view.setInt16(this.length, v, true); this.length += 2; }
  u32(v: number) { this.room(4); this.view.setUint32(this.length, v, true); this.length += 4; }
  i32(v: number) { this.room(4); this.view.setInt32(this.length, v, true); this.length += 4; }
  f32(v: number) { this.room(4); this.view.setFloat32(this.length, v, true); this.length += 4; }
  f64(v: number) { this.room(8); this.view.setFloat64(this.length, v, true); this.length += 8; }
  u64(v: number | bigint) { this.room(8); this.view.setBigUint64(this.length, BigInt(v), true); this.length += 8; }
  i64(v: number | bigint) { this.room(8); this.view.setBigInt64(this.length, BigInt(v), true); this.length += 8; }
  str(s: string) {
    const b = utf8.encode(s);
    this.u64(b.length);
    this.room(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  pad(alignment: number) {
    const n = (alignment - (this.length % alignment)) % alignment;
    this.room(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

function writeScalar(h: HeaderBuf, type: GgufScalarType, v: number | bigint | boolean | string, key: string): void {
  switch (type) {
    case 'string':
      if (typeof v !== 'string') throw new FormatError('unsupported', `GGUF key '${key}': expected a string`);
      return h.str(v);
    case 'bool':
      return h.u8(v ? 1 : 0);
    case 'u64':
      return h.u64(v as number | bigint);
    case 'i64':
      return h.i64(v as number | bigint);
    default: {
      if (typeof v !== 'number') throw new FormatError('unsupported', `GGUF key '${key}': expected a number`);
      (h[type] as (x: number) => void).call(h, v);
    }
  }
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** Builds the whole header (padded to the alignment) and each tensor's data offset. */
export function ggufHeader(metadata: ReadonlyArray<readonly [string, GgufValue]>, tensors: readonly GgufTensor[], alignment = GGUF_DEFAULT_ALIGNMENT): { header: Uint8Array; offsets: number[]; dataBytes: number } {
  const seen = new Set<string>();
  for (const [k] of metadata) {
    if (seen.has(k)) throw new FormatError('duplicate_key', `GGUF metadata key '${k}' appears twice`);
    seen.add(k);
  }
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new FormatError('tensor_duplicate', `GGUF tensor name appears twice`, undefined, t.name);
    names.add(t.name);
  }
  const h = new HeaderBuf();
  h.u32(GGUF_MAGIC);
  h.u32(GGUF_VERSION);
  h.u64(tensors.length);
  h.u64(metadata.length);
  for (const [key, v] of metadata) {
    h.str(key);
    h.u32(VT[v.type]);
    if (v.type === 'array') {
      h.u32(VT[v.itemType]);
      h.u64(v.value.length);
      for (const x of v.value) writeScalar(h, v.itemType, x, key);
    } else {
      writeScalar(h, v.type, v.value, key);
    }
  }
  const offsets: number[] = [];
  let off = 0;
  for (const t of tensors) {
    h.str(t.name);
    h.u32(t.dims.length);
    for (const d of t.dims) h.u64(d);
    h.u32(t.ggmlType);
    h.u64(off);
    offsets.push(off);
    off = alignUp(off + t.byteLength, alignment);
  }
  h.pad(alignment);
  return { header: h.bytes().slice(), offsets, dataBytes: off };
}

// Small chunks are gathered to this size before a write: one syscall per norm vector is slow.
const WRITE_BATCH_BYTES = 4 << 20;
// Chunks at least this big go straight to the file: copying them into the batch first
// would only add a memcpy per byte.
const DIRECT_WRITE_BYTES = 256 << 10;
// Dirty data since the last background sync that starts another: big enough to be a few
// syscalls per GB, small enough that the final fsync has little left to write.
const EARLY_SYNC_BYTES = 64 << 20;

async function writeAll(handle: FileHandle, bytes: Uint8Array, pos: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, pos + done);
    done += bytesWritten;
  }
}

async function* asChunks(data: TensorData): AsyncIterable<Uint8Array> {
  const d = typeof data === 'function' ? data() : data;
  if (d instanceof Uint8Array) {
    yield d;
    return;
  }
  yield* d as AsyncIterable<Uint8Array>;
}

function abortError(): Error {
  const e = new Error('cancelled');
  e.name = 'AbortError';
  return e;
}

/** Writes a GGUF v3 file at `path` (temp, fsync, rename). Returns the file size. */
export async function writeGguf(path: string, metadata: ReadonlyArray<readonly [string, GgufValue]>, tensors: readonly GgufTensor[], opts: GgufWriteOptions = {}): Promise<number> {
  const alignment = opts.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  const { header, offsets, dataBytes } = ggufHeader(metadata, tensors, alignment);
  const tmp = tempPathFor(path);
  let handle: FileHandle | undefined;
  try {
    handle = await open(tmp, 'wx');
    await writeAll(handle, header, 0);
    const base = header.length;
    const batch = new Uint8Array(WRITE_BATCH_BYTES);
    let used = 0;
    let batchPos = base;
    let written = 0;
    // Written-back data makes the final fsync short: start a data sync every few tens of
    // MB, in the background, so the disk works while the next tensors are computed.
    let unsynced = 0;
    let syncing: Promise<void> | undefined;
    const wrote = (n: number) => {
      unsynced += n;
      if (unsynced >= EARLY_SYNC_BYTES && !syncing) {
        unsynced = 0;
        syncing = handle!.datasync().finally(() => {
          syncing = undefined;
        });
        syncing.catch(() => {});
      }
    };
    const flush = async () => {
      if (used) await writeAll(handle!, batch.subarray(0, used), batchPos);
      batchPos += used;
      wrote(used);
      used = 0;
    };
    const put = async (b: Uint8Array) => {
      if (b.length >= DIRECT_WRITE_BYTES) {
        await flush();
        await writeAll(handle!, b, batchPos);
        batchPos += b.length;
        wrote(b.length);
        return;
      }
      if (used + b.length > batch.length) await flush();
      batch.set(b, used);
      used += b.length;
    };
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i];
      if (opts.signal?.aborted) throw abortError();
      let got = 0;
      for await (const chunk of asChunks(t.data)) {
        if (opts.signal?.aborted) throw abortError();
        got += chunk.length;
        if (got > t.byteLength) throw new FormatError('size_mismatch', `source gave more than ${t.byteLength} bytes`, path, t.name);
        await put(chunk);
        written += chunk.length;
        opts.progress?.(written, dataBytes);
      }
      if (got !== t.byteLength) throw new FormatError('size_mismatch', `source gave ${got} bytes; expected ${t.byteLength}`, path, t.name);
      const end = i + 1 < tensors.length ? offsets[i + 1] : dataBytes;
      const padding = end - (offsets[i] + t.byteLength);
      if (padding > 0) await put(new Uint8Array(padding));
    }
    await flush();
    await syncing;
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(tmp, path);
    return header.length + dataBytes;
  } catch (e) {
    if (handle) await handle.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    if (e instanceof Error && e.name === 'AbortError') throw e;
    throw fromOsError(e, path);
  }
}

/** HF → llama.cpp tensor names for Llama-family checkpoints (`blk.N.attn_q.weight` …). */
const LLAMA_LAYER_NAMES: Record<string, string> = {
  'self_attn.q_proj': 'attn_q',
  'self_attn.k_proj': 'attn_k',
  'self_attn.v_proj': 'attn_v',
  'self_attn.o_proj': 'attn_output',
  'mlp.gate_proj': 'ffn_gate',
  'mlp.up_proj': 'ffn_up',
  'mlp.down_proj': 'ffn_down',
  input_layernorm: 'attn_norm',
  post_attention_layernorm: 'ffn_norm',
};

/**
 * The llama.cpp name of an HF Llama tensor, or undefined when it has none (rotary
 * `inv_freq` buffers, which llama.cpp recomputes).
 */
export function llamaCppName(hf: string): string | undefined {
  if (hf === 'model.embed_tokens.weight') return 'token_embd.weight';
  if (hf === 'model.norm.weight') return 'output_norm.weight';
  if (hf === 'lm_head.weight') return 'output.weight';
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hf);
  if (m) {
    const mapped = LLAMA_LAYER_NAMES[m[2]];
    if (mapped) return `blk.${m[1]}.${mapped}.${m[3]}`;
  }
  if (hf.endsWith('rotary_emb.inv_freq')) return undefined;
  return hf;
}

/** Model types llama.cpp converts with the `llama` architecture. */
export const LLAMA_FAMILY: readonly string[] = ['llama', 'mistral'];

/**
 * `llama.*` hyperparameters from an HF config.json, plus the names of the ones the
 * config lacks (a GGUF without them does not load in llama.cpp).
 */
export function llamaMetadata(config: Record<string, unknown>): { kv: Array<[string, GgufValue]>; missing: string[] } {
  const kv: Array<[string, GgufValue]> = [];
  const missing: string[] = [];
  const num = (k: string): number | undefined => (typeof config[k] === 'number' ? (config[k] as number) : undefined);
  const u32 = (gk: string, hk: string, fallback?: number) => {
    const v = num(hk) ?? fallback;
    if (v === undefined) missing.push(`${gk} (config.json has no ${hk})`);
    else kv.push([gk, gguf.u32(v)]);
  };
  u32('llama.context_length', 'max_position_embeddings');
  u32('llama.embedding_length', 'hidden_size');
  u32('llama.block_count', 'num_hidden_layers');
  u32('llama.feed_forward_length', 'intermediate_size');
  u32('llama.attention.head_count', 'num_attention_heads');
  u32('llama.attention.head_count_kv', 'num_key_value_heads', num('num_attention_heads'));
  const hidden = num('hidden_size');
  const heads = num('num_attention_heads');
  const headDim = num('head_dim') ?? (hidden && heads ? hidden / heads : undefined);
  if (headDim !== undefined) kv.push(['llama.rope.dimension_count', gguf.u32(headDim)]);
  else missing.push('llama.rope.dimension_count (no head_dim, hidden_size or num_attention_heads)');
  // Llama's defaults when the config omits them (transformers' LlamaConfig).
  kv.push(['llama.rope.freq_base', gguf.f32(num('rope_theta') ?? 10000)]);
  kv.push(['llama.attention.layer_norm_rms_epsilon', gguf.f32(num('rms_norm_eps') ?? 1e-6)]);
  const vocab = num('vocab_size');
  if (vocab !== undefined) kv.push(['llama.vocab_size', gguf.u32(vocab)]);
  const scaling = config.rope_scaling as Record<string, unknown> | null | undefined;
  if (scaling && typeof scaling === 'object') {
    const type = String(scaling.rope_type ?? scaling.type ?? '');
    if (type === 'linear' || type === 'yarn') {
      kv.push(['llama.rope.scaling.type', gguf.str(type)]);
      if (typeof scaling.factor === 'number') kv.push(['llama.rope.scaling.factor', gguf.f32(scaling.factor)]);
    } else if (type) {
      missing.push(`llama.rope.scaling (rope_scaling type '${type}' is not written)`);
    }
  }
  return { kv, missing };
}
