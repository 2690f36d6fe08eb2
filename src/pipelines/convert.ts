import { dirname, resolve } from 'node:path';
import {
  DTYPE_INFO,
  FormatError,
  castBytes,
  decodeToF64,
  isCastDType,
  modelInputs,
  openModel,
  prepareOutputs,
  shardedNames,
  writeSafetensors,
  writeSharded,
  type CastCounts,
  type CastDType,
  type DType,
  type Model,
  type SourceOpener,
  type TensorInfo,
  type TensorSource,
} from '../format';
import { CancelledError, isCancelled, throttle, type JobContext } from './job';

/** 'keep' writes every tensor in its own dtype (a pickle or another format turned into safetensors as it is). */
export type ConvertTarget = 'F32' | 'F16' | 'BF16' | 'keep';

export interface ConvertArgs {
  /** A .safetensors file, an index.json or a folder. */
  readonly input: string;
  /**
   * A `.safetensors` file (its folder created when missing), or a folder (created when missing) that receives
   * `model.safetensors`, or HF-named shards and an index when `maxShardBytes` splits it.
   */
  readonly output: string;
  readonly dtype: ConvertTarget;
  readonly maxShardBytes?: number;
  readonly opener?: SourceOpener;
  /** Convert a model whose format reports code beyond tensor rebuilds (nothing is executed either way). */
  readonly allowUnsafe?: boolean;
}

export interface ConvertedTensor {
  readonly name: string;
  readonly from: DType;
  readonly to: DType;
  /** Finite values that became ±Inf. */
  readonly overflow: number;
  /** Non-zero values that became ±0. */
  readonly underflow: number;
}

export interface ConvertResult {
  readonly files: readonly string[];
  readonly index?: string;
  /** Every tensor, in input header order; `from === to` for the ones left as they were. */
  readonly tensors: readonly ConvertedTensor[];
  /** What the input's reader noted (for a pickle: shared storages written once, entries left out). */
  readonly notes?: readonly string[];
}

// Input is read in chunks of this size: the cast buffers stay small while reads stay large enough to be fast.
const CHUNK_BYTES = 4 << 20;

/** Which dtype a tensor becomes: floating tensors are cast, everything else (ints, BOOL, C64) is copied. */
export function convertedDType(d: DType, to: ConvertTarget): DType {
  return to !== 'keep' && DTYPE_INFO[d].kind === 'float' ? to : d;
}

async function* castStream(model: Model, t: TensorInfo, to: ConvertTarget, counts: CastCounts, signal?: AbortSignal): AsyncIterable<Uint8Array> {
  const from = t.dtype;
  const target = convertedDType(from, to);
  if (target === from) {
    yield* model.chunks(t, { chunkBytes: CHUNK_BYTES, signal });
    return;
  }
  let out: Uint8Array | undefined;
  let wide: Float64Array | undefined;
  for await (const chunk of model.chunks(t, { chunkBytes: CHUNK_BYTES, signal })) {
    if (isCastDType(from)) {
      const n = (chunk.length * 8) / DTYPE_INFO[from].bits;
      const need = (n * DTYPE_INFO[target].bits) / 8;
      if (!out || out.length < need) out = new Uint8Array(need);
      yield castBytes(chunk, from, target as CastDType, counts, out.subarray(0, need));
    } else {
      // 4-, 6- and 8-bit floats: decoded exactly to f64, then rounded once to the target.
      const n = Math.round((chunk.length * 8) / DTYPE_INFO[from].bits);
      if (!wide || wide.length < n) wide = new Float64Array(n);
      decodeToF64(from, chunk, wide, n);
      const need = (n * DTYPE_INFO[target].bits) / 8;
      if (!out || out.length < need) out = new Uint8Array(need);
      yield castBytes(new Uint8Array(wide.buffer, 0, n * 8), 'F64', target as CastDType, counts, out.subarray(0, need));
    }
  }
}

/**
 * Converts a model's floating tensors to `dtype` with round-to-nearest-even,
 * streaming tensor by tensor; other tensors are copied byte for byte. The
 * input is only read. Output goes through the writer (temp files, fsync,
 * rename), so a failed or cancelled conversion leaves nothing behind.
 */
export async function convertModel(args: ConvertArgs, ctx: JobContext = {}): Promise<ConvertResult> {
  if (!(['F32', 'F16', 'BF16', 'keep'] as const).includes(args.dtype)) throw new FormatError('unsupported', `cannot convert to ${String(args.dtype)}; choose F32, F16 or BF16`);
  if (args.maxShardBytes !== undefined && !(Number.isSafeInteger(args.maxShardBytes) && args.maxShardBytes > 0)) {
    throw new FormatError('unsupported', `max shard size must be a positive number of bytes, not ${args.maxShardBytes}`);
  }
  if (args.maxShardBytes !== undefined && args.output.endsWith('.safetensors')) {
    throw new FormatError('unsupported', 'sharded output goes to a folder: give a folder, not a .safetensors file, with a max shard size', args.output);
  }
  const model = await openModel(args.input, args.opener);
  let undo: (() => Promise<void>) | undefined;
  try {
    if (model.safety && !model.safety.clean && !args.allowUnsafe) {
      throw new FormatError('unsafe_globals', `this file ${model.safety.text}; nothing was executed. Run \`scan\` for the list, or convert with --allow-unsafe-globals`, args.input);
    }
    const toFile = args.maxShardBytes === undefined && args.output.endsWith('.safetensors');
    const outDir = toFile ? dirname(resolve(args.output)) : resolve(args.output);
    // A folder output may replace (or, as stale shards, delete) any of the writer's names in it.
    const outputs = toFile ? { files: [args.output] } : { files: [], families: [{ dir: outDir, pattern: shardedNames('model') }] };
    undo = (await prepareOutputs(await modelInputs(model), outputs, ctx.notice)).undo;

    const counts = new Map<string, CastCounts>();
    const sources: TensorSource[] = model.tensors.map((t) => {
      const c = { overflow: 0, underflow: 0 };
      counts.set(t.name, c);
      return { name: t.name, dtype: convertedDType(t.dtype, args.dtype), shape: t.shape, data: () => castStream(model, t, args.dtype, c, ctx.signal) };
    });
    const report = throttle(ctx.progress);
    const opts = {
      // An input without `__metadata__` gets an output without one (not an empty map).
      metadata: Object.keys(model.metadata).length > 0 ? model.metadata : undefined,
      signal: ctx.signal,
      progress: (done: number, total: number) => report({ done, total, unit: 'bytes', message: 'converting' }),
    };
    let files: string[];
    let index: string | undefined;
    if (toFile) {
      files = [(await writeSafetensors(resolve(args.output), sources, opts)).path];
    } else {
      const r = await writeSharded(outDir, sources, { ...opts, maxShardBytes: args.maxShardBytes, removeStale: true });
      files = r.files.map((f) => f.path);
      index = r.index;
    }
    undo = undefined;
    return {
      files,
      index,
      tensors: model.tensors.map((t) => ({ name: t.name, from: t.dtype, to: convertedDType(t.dtype, args.dtype), ...counts.get(t.name)! })),
      notes: model.notes,
    };
  } catch (e) {
    await undo?.();
    if (isCancelled(e)) throw new CancelledError();
    throw e;
  } finally {
    await model.close();
  }
}
