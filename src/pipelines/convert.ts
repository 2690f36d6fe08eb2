import { dirname, join, resolve } from 'node:path';
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
import { exists, stageText } from '../format/files';
import { typeNameOf } from '../format/model';
import { getBackend } from '../compute/backend';
import { valueChunks } from '../compute/decode/tensorValues';
import type { Backend } from '../compute/kernel';
import { CancelledError, isCancelled, throttle, type JobContext } from '../core/job';
import { modelDir, readConfig } from './quantizePlan';

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
  /** Its dtype, or its block type or quantization scheme (`fp8-block`), which is dequantized. */
  readonly from: string;
  readonly to: DType;
  /** Finite values that became ±Inf. */
  readonly overflow: number;
  /** Non-zero values that became ±0. */
  readonly underflow: number;
}

export interface ConvertResult {
  readonly files: readonly string[];
  readonly index?: string;
  /** config.json written beside the weights (without `quantization_config`) when quantized weights were dequantized. */
  readonly config?: string;
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

/** A tensor stored as blocks or a quantization scheme: its values are decoded, then cast. */
function isEncoded(t: TensorInfo): boolean {
  return t.storage !== undefined && t.storage.kind !== 'dtype';
}

function targetOf(t: TensorInfo, to: ConvertTarget): DType {
  return isEncoded(t) && to !== 'keep' ? to : convertedDType(t.dtype, to);
}

// Decoded values per chunk: 1 M float32 (4 MiB), the same memory as a cast chunk of F32 input.
const DECODE_CHUNK_VALUES = 1 << 20;

/** A block or scheme tensor dequantized (through the decoded value stream) and rounded once to `to`. */
async function* decodedStream(model: Model, t: TensorInfo, to: CastDType, backend: Backend, counts: CastCounts, signal?: AbortSignal): AsyncIterable<Uint8Array> {
  let out: Uint8Array | undefined;
  for await (const c of valueChunks(model, t, { chunkValues: DECODE_CHUNK_VALUES, backend, signal })) {
    const bytes = new Uint8Array(c.values.buffer, c.values.byteOffset, c.values.byteLength);
    if (to === 'F32') {
      yield bytes;
      continue;
    }
    const need = c.values.length * (DTYPE_INFO[to].bits / 8);
    if (!out || out.length < need) out = new Uint8Array(need);
    yield castBytes(bytes, 'F32', to, counts, out.subarray(0, need));
  }
}

/** The input's config.json without `quantization_config`, when the model had quantized weights that were dequantized. */
async function dequantizedConfig(model: Model, decoded: boolean): Promise<string | undefined> {
  if (!decoded) return undefined;
  const config = await readConfig(model);
  if (!config) return undefined;
  const rest = { ...config };
  delete rest.quantization_config;
  return JSON.stringify(rest, null, 2) + '\n';
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
  let staged: { commit: () => Promise<string>; discard: () => Promise<void> } | undefined;
  try {
    const encoded = model.tensors.filter(isEncoded);
    if (encoded.length > 0 && args.dtype === 'keep') {
      throw new FormatError('unsupported', `${typeNameOf(encoded[0])} cannot be kept as it is in a converted model; choose --dtype bf16, f16 or f32 to dequantize it`, args.input, encoded[0].name);
    }
    if (model.safety && !model.safety.clean && !args.allowUnsafe) {
      throw new FormatError('unsafe_globals', `this file ${model.safety.text}; nothing was executed. Run \`scan\` for the list, or convert with --allow-unsafe-globals`, args.input);
    }
    const toFile = args.maxShardBytes === undefined && args.output.endsWith('.safetensors');
    const outDir = toFile ? dirname(resolve(args.output)) : resolve(args.output);
    // A folder output may replace (or, as stale shards, delete) any of the writer's names in it.
    const configText = await dequantizedConfig(model, encoded.length > 0);
    const cfgPath = join(outDir, 'config.json');
    // Beside a single output file, config.json is only created, never replaced (nor the input's own).
    const writeConfig = configText !== undefined && (!toFile || (outDir !== resolve(modelDir(model)) && !(await exists(cfgPath))));
    const notes = [...(model.notes ?? [])];
    if (configText !== undefined && !writeConfig) notes.push(`config.json without quantization_config not written: ${cfgPath} exists or is the input's; convert to a folder to get one`);
    const outputs = toFile
      ? { files: writeConfig ? [args.output, cfgPath] : [args.output] }
      : { files: writeConfig ? [cfgPath] : [], families: [{ dir: outDir, pattern: shardedNames('model') }] };
    undo = (await prepareOutputs([...(await modelInputs(model)), join(modelDir(model), 'config.json')], outputs, ctx.notice)).undo;
    // The config is staged before the weights, so that a full disk fails before anything is in place.
    if (writeConfig) staged = await stageText(cfgPath, configText!);
    const backend = encoded.length > 0 ? await getBackend(ctx.backend ?? 'auto') : undefined;

    const counts = new Map<string, CastCounts>();
    const sources: TensorSource[] = model.tensors.map((t) => {
      const c = { overflow: 0, underflow: 0 };
      counts.set(t.name, c);
      const data = isEncoded(t) ? () => decodedStream(model, t, args.dtype as CastDType, backend!, c, ctx.signal) : () => castStream(model, t, args.dtype, c, ctx.signal);
      return { name: t.name, dtype: targetOf(t, args.dtype), shape: t.shape, data };
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
    const config = staged ? await staged.commit() : undefined;
    staged = undefined;
    undo = undefined;
    return {
      files,
      index,
      config,
      tensors: model.tensors.map((t) => ({ name: t.name, from: typeNameOf(t), to: targetOf(t, args.dtype), ...counts.get(t.name)! })),
      notes: notes.length > 0 ? notes : undefined,
    };
  } catch (e) {
    await staged?.discard();
    await undo?.();
    if (isCancelled(e)) throw new CancelledError();
    throw e;
  } finally {
    await model.close();
  }
}
