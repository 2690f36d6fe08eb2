import { open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { getBackend } from '../compute/backend';
import { addSums, emptySums, reportOf, type ErrorReport, type ErrorSums, type QuantInputDType, type QuantizeResult } from '../compute/quant/common';
import { SCHEMES, SCHEME_NAMES, quantizedBytes, type Scheme, type SchemeName } from '../compute/quant/schemes';
import type { Backend } from '../compute/kernel';
import { DTYPE_INFO, type DType } from '../format/dtypes';
import { decodeToF32 } from '../format/decode';
import { FormatError } from '../format/errors';
import { GGML_TYPE, LLAMA_FAMILY, gguf, llamaCppName, llamaMetadata, writeGguf, type GgufTensor, type GgufValue } from '../format/gguf';
import type { Model, TensorInfo } from '../format/model';
import { openModel } from '../format/openModel';
import { modelInputs, prepareOutputs, type OutputSet } from '../format/outputs';
import { readSmallTextFile } from '../format/source';
import { shardedNames, tempPathFor, writeSafetensors, writeSharded, type TensorSource } from '../format/writer';
import { CancelledError, isCancelled, throttle, throwIfCancelled, type JobContext } from './job';
import { stats } from './stats';

export type QuantFormat = 'safetensors' | 'gguf';

export interface QuantizeJobArgs {
  /** A .safetensors file, an index.json or a folder. */
  readonly input: string;
  /**
   * safetensors: a `.safetensors` file, or a folder (created when missing) that gets
   * `model.safetensors` (or one shard per input shard plus an index) and config.json.
   * gguf: a `.gguf` file, or an existing folder that gets `model-<scheme>.gguf`.
   */
  readonly output: string;
  readonly scheme: SchemeName;
  /** Default: gguf for the ggml schemes (unless OUT ends in .safetensors), safetensors for int8/fp8. */
  readonly format?: QuantFormat;
  /** Tensors matching any of these globs are kept as they are. */
  readonly keep?: readonly string[];
  /** When given, only tensors matching one of these globs are quantized. */
  readonly only?: readonly string[];
  /** GGUF tensor names: `hf` (as in the input, default) or `llama` (llama.cpp's `blk.N.attn_q.weight` …). */
  readonly ggufNames?: 'hf' | 'llama';
  /**
   * Quantize tensors that hold NaN or ±Inf too. By default they are kept in their dtype: a
   * block's scale comes from its largest |x|, so one NaN or Inf there turns the whole block
   * into NaN (or zeros) and the error report into -inf dB. Forcing writes those blocks as the
   * scheme computes them; the rest of the tensor is quantized as usual.
   */
  readonly allowNonfinite?: boolean;
}

export interface TensorPlan {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly action: 'quantize' | 'keep';
  /** Why a tensor is kept. */
  readonly reason?: string;
  /** NaN and ±Inf values found in a tensor kept for holding them. */
  readonly nonFinite?: number;
  readonly rows: number;
  readonly cols: number;
}

export interface TensorReport extends Partial<ErrorReport> {
  readonly name: string;
  /** The name in the output (differs with `--gguf-names llama`); absent when the tensor is left out. */
  readonly outputName?: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly action: 'quantized' | 'kept' | 'omitted';
  readonly scheme?: SchemeName;
  readonly reason?: string;
  /** NaN and ±Inf values found in a tensor kept for holding them (see `allowNonfinite`). */
  readonly nonFinite?: number;
  readonly bytesBefore: number;
  readonly bytesAfter: number;
}

export interface QuantReport {
  readonly input: string;
  readonly outputs: readonly string[];
  readonly scheme: SchemeName;
  readonly format: QuantFormat;
  readonly backend: string;
  readonly tensors: readonly TensorReport[];
  readonly totals: {
    readonly bytesBefore: number;
    readonly bytesAfter: number;
    readonly params: number;
    readonly quantizedParams: number;
    /** Bits per weight over every tensor written (kept ones included). */
    readonly bitsPerWeight: number;
    /** Bits per weight over the quantized tensors only (scales included). */
    readonly quantizedBitsPerWeight: number;
  } & Partial<ErrorReport>;
  /** What the output lacks (GGUF: tokenizer, hyperparameters without a config.json). */
  readonly missing: readonly string[];
  readonly seconds: number;
}

// Input rows are read in chunks of about this size: a few ms of kernel work, enough to
// amortize a worker round trip (tens of µs), small enough that many fit in flight.
const CHUNK_BYTES = 1 << 20;
// On the GPU each chunk costs an upload, a dispatch and a read-back: bigger chunks amortize them.
const GPU_CHUNK_BYTES = 16 << 20;
// Enough to overlap one upload, one dispatch and one read-back.
const GPU_IN_FLIGHT = 3;
// Chunks dispatched ahead of the writer: several per worker, so that reads, kernels and
// writes overlap; at 1 MiB each this bounds the pipeline's buffers to a few tens of MB.
const IN_FLIGHT = 8;
// Kept tensors are copied through in chunks of this size (no kernel: fewer, larger reads).
const COPY_CHUNK_BYTES = 4 << 20;
// The preview reads at most this fraction of each tensor's values…
const PREVIEW_FRACTION = 0.01;
// …and at most this many: 64 Ki values already pin the error to a fraction of a dB, and a
// cap keeps a 70B-parameter model's preview to seconds (about 100 MB read in all).
const PREVIEW_MAX_VALUES = 1 << 16;

/** `*` matches any run of characters (dots included), `?` one character; the whole name must match. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (const ch of glob) {
    if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function elementBytes(d: DType): number {
  return DTYPE_INFO[d].bits / 8;
}

/** Decides, for every tensor, whether `scheme` quantizes it, and why not when it does not. */
export function planQuantization(tensors: readonly TensorInfo[], scheme: Scheme, keep: readonly string[] = [], only: readonly string[] = []): TensorPlan[] {
  const keepRe = keep.map((g) => [g, globToRegExp(g)] as const);
  const onlyRe = only.map(globToRegExp);
  return tensors.map((t) => {
    const rows = t.shape.length === 2 ? t.shape[0] : 0;
    const cols = t.shape.length === 2 ? t.shape[1] : 0;
    const base = { name: t.name, dtype: t.dtype, shape: t.shape, rows, cols };
    const kept = (reason: string): TensorPlan => ({ ...base, action: 'keep', reason });
    const k = keepRe.find(([, re]) => re.test(t.name));
    if (k) return kept(`kept by --keep ${k[0]}`);
    const forced = onlyRe.some((re) => re.test(t.name));
    if (onlyRe.length && !forced) return kept('not matched by --only');
    if (DTYPE_INFO[t.dtype].kind !== 'float') return kept(`not a float tensor (${t.dtype})`);
    if (t.shape.length === 1) return kept(/norm/i.test(t.name) ? 'a norm (1-D)' : /bias$/.test(t.name) ? 'a bias (1-D)' : '1-D');
    if (t.shape.length !== 2) return kept(`${t.shape.length}-D: only 2-D weights are quantized`);
    if (!forced && /norm/i.test(t.name)) return kept('a norm');
    if (!forced && /\.bias$/.test(t.name)) return kept('a bias');
    if (t.numel === 0) return kept('empty');
    if ((cols * DTYPE_INFO[t.dtype].bits) % 8 !== 0) return kept(`rows of ${cols} × ${t.dtype} do not end on a byte`);
    if (cols % scheme.blockSize !== 0) return kept(`row length ${cols} is not a multiple of ${scheme.blockSize}`);
    return { ...base, action: 'quantize' };
  });
}

/** The folder a model's config.json would sit in. */
function modelDir(model: Model): string {
  const p = model.path;
  return p.endsWith('.safetensors') || p.endsWith('.json') ? dirname(p) : p;
}

/** A model's config.json is a few KB; this bound only keeps a stray huge file from being read whole. */
const MAX_MODEL_CONFIG_BYTES = 16 << 20;

async function readConfig(model: Model): Promise<Record<string, unknown> | undefined> {
  try {
    const v = JSON.parse(await readSmallTextFile(join(modelDir(model), 'config.json'), MAX_MODEL_CONFIG_BYTES, 'config.json', 'unsupported')) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch (e) {
    // A missing or unreadable config only costs the GGUF its architecture keys; a FIFO or a folder there is refused.
    if (e instanceof FormatError && e.code === 'not_a_file') throw e;
    return undefined;
  }
}

/** The kernel input for a chunk: BF16/F16/F32 go as they are, other floats are decoded to F32 first. */
function kernelInput(dtype: DType, bytes: Uint8Array, count: number): { src: Uint8Array; dtype: QuantInputDType } {
  if (dtype === 'BF16' || dtype === 'F16' || dtype === 'F32') return { src: bytes, dtype };
  const f = new Float32Array(count);
  decodeToF32(dtype, bytes, f, count);
  return { src: new Uint8Array(f.buffer), dtype: 'F32' };
}

/**
 * Row order for llama.cpp's rotary layout: within each head, rows (i, j) with
 * i ∈ {0, 1} (the halves) and j < headDim/2 become rows (j, i). Returns the input
 * row of each output row of one head.
 */
function ropePermutation(headDim: number): Int32Array {
  const half = headDim / 2;
  const perm = new Int32Array(headDim);
  for (let j = 0; j < half; j++) {
    for (let i = 0; i < 2; i++) perm[j * 2 + i] = i * half + j;
  }
  return perm;
}

/** Reads a 2-D tensor in whole-row chunks (optionally permuting rows within groups) and yields kernel inputs. */
async function* rowChunks(model: Model, plan: TensorPlan, signal: AbortSignal | undefined, groupRows?: number, perm?: Int32Array, pool?: BufferPool, chunkBytes = CHUNK_BYTES): AsyncGenerator<{ src: Uint8Array; dtype: QuantInputDType; rows: number; inBytes: number }> {
  const t = model.tensor(plan.name)!;
  const rowBytes = (plan.cols * DTYPE_INFO[t.dtype].bits) / 8;
  const unit = groupRows ?? 1;
  const rowsPer = Math.max(unit, Math.floor(chunkBytes / rowBytes / unit) * unit);
  for (let r0 = 0; r0 < plan.rows; r0 += rowsPer) {
    throwIfCancelled(signal);
    const n = Math.min(rowsPer, plan.rows - r0);
    let buf = pool?.take(n * rowBytes) ?? new Uint8Array(n * rowBytes);
    await model.read(t, r0 * rowBytes, buf);
    if (perm && groupRows) {
      const out = new Uint8Array(buf.length);
      for (let g = 0; g < n; g += groupRows) {
        for (let k = 0; k < groupRows; k++) out.set(buf.subarray((g + perm[k]) * rowBytes, (g + perm[k] + 1) * rowBytes), (g + k) * rowBytes);
      }
      buf = out;
    }
    yield { ...kernelInput(t.dtype, buf, n * plan.cols), rows: n, inBytes: buf.length };
  }
}

/**
 * Input buffers handed back by the workers, reused for later chunks: fresh buffers
 * cost a page fault per 4 KiB, which at a gigabyte is a large share of the run.
 */
class BufferPool {
  private readonly free = new Map<number, Uint8Array[]>();
  // Enough for every chunk in flight plus the one being read.
  private static readonly MAX_PER_SIZE = IN_FLIGHT + 2;

  take(bytes: number): Uint8Array | undefined {
    return this.free.get(bytes)?.pop();
  }

  give(b: Uint8Array | undefined): void {
    if (!b || b.byteOffset !== 0 || b.byteLength !== b.buffer.byteLength) return;
    const list = this.free.get(b.byteLength) ?? [];
    if (list.length < BufferPool.MAX_PER_SIZE) list.push(b);
    this.free.set(b.byteLength, list);
  }
}

interface ChunkJob {
  readonly plan: TensorPlan;
  readonly chunks: AsyncGenerator<{ src: Uint8Array; dtype: QuantInputDType; rows: number; inBytes: number }>;
  readonly onChunk: (r: QuantizeResult, inBytes: number) => void;
  readonly queue: Array<{ p: Promise<QuantizeResult>; inBytes: number }>;
  /** Every chunk has been dispatched. */
  fed: boolean;
  /** Set while the consumer waits for a chunk that has not been dispatched yet. */
  wake?: () => void;
}

/**
 * Runs the scheme's kernel over every quantized tensor's row chunks, in the order the
 * writer will ask for them, keeping up to `maxInFlight` chunks dispatched ahead of the
 * writer, across tensor boundaries, so that the workers never wait for a small tensor
 * to drain. Results come back per tensor, in row order.
 */
class ChunkScheduler {
  private readonly jobs: ChunkJob[] = [];
  private next = 0;
  private outstanding = 0;
  private pumping = false;
  private error: unknown;
  private readonly pool = new BufferPool();
  // Output buffers come back once the writer has taken their bytes.
  private readonly outPool = new BufferPool();

  constructor(
    private readonly model: Model,
    private readonly scheme: Scheme,
    private readonly backend: Backend,
    private readonly signal: AbortSignal | undefined,
    // Bigger GPU chunks, fewer of them in flight: the same bound on memory.
    private readonly maxInFlight = backend.kind === 'webgpu' ? GPU_IN_FLIGHT : IN_FLIGHT,
  ) {}

  /** Registers a tensor (in consumption order) and returns the stream of its results. */
  add(plan: TensorPlan, onChunk: (r: QuantizeResult, inBytes: number) => void, groupRows?: number, perm?: Int32Array): () => AsyncGenerator<QuantizeResult> {
    const chunkBytes = this.backend.kind === 'webgpu' ? GPU_CHUNK_BYTES : CHUNK_BYTES;
    const job: ChunkJob = { plan, chunks: rowChunks(this.model, plan, this.signal, groupRows, perm, this.pool, chunkBytes), onChunk, queue: [], fed: false };
    this.jobs.push(job);
    return () => this.consume(job);
  }

  private wakeAll(): void {
    for (const j of this.jobs) {
      const w = j.wake;
      j.wake = undefined;
      w?.();
    }
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.next < this.jobs.length && this.error === undefined) {
        const job = this.jobs[this.next];
        // Past the limit only when a consumer is starved (it asked out of order): never deadlock.
        if (this.outstanding >= this.maxInFlight && !this.jobs.some((j) => j.wake && j.queue.length === 0)) break;
        const it = await job.chunks.next();
        if (it.done) {
          job.fed = true;
          this.next++;
        } else {
          const c = it.value;
          const out = this.outPool.take(quantizedDataBytes(this.scheme, c.rows, job.plan.cols));
          const p = this.backend.run(this.scheme.kernel, { src: c.src, dtype: c.dtype, rows: c.rows, cols: job.plan.cols, give: true, out }, this.signal);
          // A rejection is seen when its turn comes; until then it must not count as unhandled.
          p.catch(() => {});
          job.queue.push({ p, inBytes: c.inBytes });
          this.outstanding++;
        }
        const w = job.wake;
        job.wake = undefined;
        w?.();
      }
    } catch (e) {
      this.error = e;
    } finally {
      this.pumping = false;
    }
    if (this.error !== undefined) this.wakeAll();
  }

  private async *consume(job: ChunkJob): AsyncGenerator<QuantizeResult> {
    for (;;) {
      const item = job.queue.shift();
      if (item) {
        this.outstanding--;
        void this.pump();
        const r = await item.p;
        this.pool.give(r.src);
        job.onChunk(r, item.inBytes);
        yield r;
        // The writer has written or copied these bytes before asking for more.
        this.outPool.give(r.data);
        continue;
      }
      if (job.fed) return;
      if (this.error !== undefined) throw this.error;
      await new Promise<void>((resolve) => {
        job.wake = resolve;
        void this.pump();
      });
    }
  }
}

/** Bytes of a chunk's quantized values (scales excluded). */
function quantizedDataBytes(scheme: Scheme, rows: number, cols: number): number {
  return scheme.kind === 'ggml' ? ((rows * cols) / scheme.blockSize) * scheme.blockBytes : rows * cols;
}

function scaleName(name: string): string {
  return `${name}_scale`;
}

/** The compressed-tensors `quantization_config` for the per-channel schemes. */
function compressedTensorsConfig(scheme: Scheme, plans: readonly TensorPlan[]): Record<string, unknown> {
  const isFp8 = scheme.name === 'fp8-e4m3';
  const modules = (p: TensorPlan) => p.name.replace(/\.weight$/, '');
  const ignore = plans.filter((p) => p.action === 'keep' && p.shape.length === 2 && p.name.endsWith('.weight')).map(modules);
  const targets = plans.some((p) => p.action === 'quantize' && /embed/.test(p.name)) ? ['Linear', 'Embedding'] : ['Linear'];
  return {
    quant_method: 'compressed-tensors',
    format: isFp8 ? 'float-quantized' : 'naive-quantized',
    quantization_status: 'compressed',
    config_groups: {
      group_0: {
        targets,
        weights: { num_bits: 8, type: isFp8 ? 'float' : 'int', symmetric: true, strategy: 'channel', dynamic: false, group_size: null, observer: 'minmax' },
        input_activations: null,
        output_activations: null,
      },
    },
    ignore,
    kv_cache_scheme: null,
  };
}

/** A per-tensor `__metadata__` entry describing its layout (the README documents these keys). */
function tensorMeta(scheme: Scheme, plan: TensorPlan): string {
  if (scheme.kind === 'ggml') {
    return JSON.stringify({ scheme: scheme.name, layout: 'ggml-blocks', shape: plan.shape, dtype: plan.dtype, block_size: scheme.blockSize, block_bytes: scheme.blockBytes });
  }
  return JSON.stringify({ scheme: scheme.name, layout: 'compressed-tensors', shape: plan.shape, dtype: plan.dtype, scale: scaleName(plan.name) });
}

/** Writes `text` to a temp beside `path`; `commit` renames it into place, `discard` removes it. */
async function stageText(path: string, text: string): Promise<{ commit: () => Promise<string>; discard: () => Promise<void> }> {
  const tmp = tempPathFor(path);
  const discard = () => unlink(tmp).catch(() => {});
  try {
    const h = await open(tmp, 'wx');
    try {
      await h.writeFile(text);
      await h.sync();
    } finally {
      await h.close();
    }
  } catch (e) {
    await discard();
    throw e;
  }
  return { commit: async () => (await rename(tmp, path), path), discard };
}

async function writeTextAtomic(path: string, text: string): Promise<void> {
  const staged = await stageText(path, text);
  try {
    await staged.commit();
  } catch (e) {
    await staged.discard();
    throw e;
  }
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

export function defaultFormat(scheme: Scheme, output: string): QuantFormat {
  if (output.endsWith('.gguf')) return 'gguf';
  if (output.endsWith('.safetensors')) return 'safetensors';
  return scheme.kind === 'ggml' ? 'gguf' : 'safetensors';
}

interface TensorState {
  readonly plan: TensorPlan;
  sums: ErrorSums;
  bytesAfter: number;
  outputName?: string;
  omitted?: string;
}

/**
 * Quantizes a model: shard by shard, chunk by chunk, on the chosen backend, into
 * safetensors (ggml blocks as U8, or compressed-tensors int8/FP8 with scales) or
 * GGUF v3. Nothing is written unless the whole job succeeds; the report gives the
 * error of every quantized tensor against its original values.
 */
export async function quantize(args: QuantizeJobArgs, ctx: JobContext = {}): Promise<QuantReport> {
  const started = Date.now();
  const scheme = SCHEMES[args.scheme];
  if (!scheme) throw new FormatError('unsupported', `unknown scheme '${args.scheme}' (one of ${SCHEME_NAMES.join(', ')})`);
  const format = args.format ?? defaultFormat(scheme, args.output);
  if (format === 'gguf' && scheme.kind !== 'ggml') {
    throw new FormatError('unsupported', `${scheme.name} has no GGUF tensor type; use --format safetensors`, args.output);
  }
  const backend = await getBackend(ctx.backend ?? 'auto');
  const model = await openModel(args.input);
  let undo: (() => Promise<void>) | undefined;
  try {
    const config = await readConfig(model);
    const ggufOut = format === 'gguf' && (await isDir(args.output)) ? join(args.output, `model-${scheme.name}.gguf`) : args.output;
    const inputs = [...(await modelInputs(model)), join(modelDir(model), 'config.json')];
    undo = (await prepareOutputs(inputs, outputSetOf(format, ggufOut, config !== undefined), ctx.notice)).undo;
    const plans = await skipNonFinite(model, planQuantization(model.tensors, scheme, args.keep, args.only), args.allowNonfinite ?? false, ctx);
    const states = new Map<string, TensorState>(plans.map((p) => [p.name, { plan: p, sums: emptySums(), bytesAfter: 0 }]));
    const total = model.tensors.reduce((s, t) => s + t.byteLength, 0);
    let done = 0;
    const report = throttle(ctx.progress);
    const advance = (n: number, name: string) => {
      done += n;
      report({ done, total, unit: 'bytes', message: name });
    };
    const missing: string[] = [];
    let outputs: string[];
    if (format === 'gguf') {
      outputs = [await writeGgufOutput({ ...args, output: ggufOut }, model, config, scheme, plans, states, backend, ctx, advance, missing)];
    } else {
      outputs = await writeSafetensorsOutput(args, model, config, scheme, plans, states, backend, ctx, advance, missing);
    }
    report({ done: total, total, unit: 'bytes' }, true);
    undo = undefined;
    return buildReport(args, format, scheme, backend, model, states, outputs, missing, (Date.now() - started) / 1000);
  } catch (e) {
    await undo?.();
    throw e;
  } finally {
    await model.close();
  }
}

/** Every file a quantization may write: one file (its config.json is only ever created, never replaced), or a folder's shards and config. */
function outputSetOf(format: QuantFormat, output: string, hasConfig: boolean): OutputSet {
  if (format === 'gguf' || output.endsWith('.safetensors')) return { files: [output] };
  return { files: hasConfig ? [join(output, 'config.json')] : [], families: [{ dir: output, pattern: shardedNames('model') }] };
}

/** The tensors to quantize that hold NaN or ±Inf, kept instead (unless `allow`), with their counts. */
async function skipNonFinite(model: Model, plans: TensorPlan[], allow: boolean, ctx: JobContext): Promise<TensorPlan[]> {
  const names = plans.filter((p) => p.action === 'quantize').map((p) => p.name);
  if (allow || names.length === 0) return plans;
  const r = await stats(model, { tensors: names, histograms: false, backend: ctx.backend, signal: ctx.signal });
  const bad = new Map(r.tensors.map((t) => [t.name, t.nan + t.posInf + t.negInf]));
  return plans.map((p) => {
    const n = bad.get(p.name) ?? 0;
    return n > 0 ? { ...p, action: 'keep', nonFinite: n, reason: `holds ${n} NaN/Inf value${n === 1 ? "" : "s"}, kept in ${p.dtype}; --allow-nonfinite quantizes it anyway` } : p;
  });
}

function keptStream(model: Model, t: TensorInfo, signal: AbortSignal | undefined, advance: (n: number, name: string) => void): () => AsyncIterable<Uint8Array> {
  return async function* () {
    for await (const c of model.chunks(t, { chunkBytes: COPY_CHUNK_BYTES, signal })) {
      yield c;
      advance(c.length, t.name);
    }
  };
}

async function writeSafetensorsOutput(
  args: QuantizeJobArgs,
  model: Model,
  config: Record<string, unknown> | undefined,
  scheme: Scheme,
  plans: readonly TensorPlan[],
  states: Map<string, TensorState>,
  backend: Backend,
  ctx: JobContext,
  advance: (n: number, name: string) => void,
  missing: string[],
): Promise<string[]> {
  const signal = ctx.signal;
  const sched = new ChunkScheduler(model, scheme, backend, signal);
  const sources: TensorSource[] = [];
  // Spread copies own keys as data properties, `__proto__` included.
  const metadata: Record<string, string> = { ...model.metadata };
  metadata['quantization.scheme'] = scheme.name;
  for (const p of plans) {
    const st = states.get(p.name)!;
    const t = model.tensor(p.name)!;
    if (p.action === 'keep') {
      st.bytesAfter = t.byteLength;
      st.outputName = p.name;
      sources.push({ name: p.name, dtype: p.dtype, shape: p.shape, data: keptStream(model, t, signal, advance) });
      continue;
    }
    metadata[`quantization.${p.name}`] = tensorMeta(scheme, p);
    st.outputName = p.name;
    st.bytesAfter = quantizedBytes(scheme, p.rows, p.cols);
    const onChunk = (r: QuantizeResult, inBytes: number) => {
      addSums(st.sums, r.stats);
      advance(inBytes, p.name);
    };
    if (scheme.kind === 'ggml') {
      const results = sched.add(p, onChunk);
      const data = async function* () {
        for await (const r of results()) yield r.data;
      };
      sources.push({ name: p.name, dtype: 'U8', shape: [p.rows, (p.cols / scheme.blockSize) * scheme.blockBytes], data });
    } else {
      const scales = new Float32Array(p.rows);
      let filled = 0;
      const results = sched.add(p, onChunk);
      const data = async function* () {
        for await (const r of results()) {
          scales.set(r.scales!, filled);
          filled += r.scales!.length;
          yield r.data;
        }
      };
      const scaleData = () => {
        // The writer keeps source order, so the weight (and its scales) were produced just before.
        if (filled !== p.rows) throw new FormatError('unsupported', 'scales requested before the weight was written', args.output, scaleName(p.name));
        return new Uint8Array(scales.buffer);
      };
      sources.push({ name: p.name, dtype: scheme.name === 'fp8-e4m3' ? 'F8_E4M3' : 'I8', shape: [p.rows, p.cols], data });
      sources.push({ name: scaleName(p.name), dtype: 'F32', shape: [p.rows, 1], data: scaleData });
    }
  }
  const writeOpts = { metadata, order: 'source' as const, signal };
  const out = args.output;
  if (out.endsWith('.safetensors')) {
    await writeSafetensors(out, sources, writeOpts);
    if (config) {
      const cfgPath = join(dirname(out), 'config.json');
      if (dirname(out) !== modelDir(model) && !(await exists(cfgPath))) {
        await writeTextAtomic(cfgPath, JSON.stringify(withQuantConfig(config, scheme, plans), null, 2) + '\n');
        return [out, cfgPath];
      }
      missing.push(`config.json with quantization_config (not written: ${cfgPath} exists or is the input's; write to a folder to get one)`);
    }
    return [out];
  }
  // The config is staged before the weights, so that a full disk fails before anything is in place.
  const cfg = config ? await stageText(join(out, 'config.json'), JSON.stringify(withQuantConfig(config, scheme, plans), null, 2) + '\n') : undefined;
  let r;
  try {
    r = await writeSharded(out, sources, { ...writeOpts, shardCount: model.files.length });
  } catch (e) {
    await cfg?.discard();
    throw e;
  }
  const files = r.files.map((f) => f.path);
  if (r.index) files.push(r.index);
  if (cfg) files.push(await cfg.commit());
  return files;
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

function withQuantConfig(config: Record<string, unknown>, scheme: Scheme, plans: readonly TensorPlan[]): Record<string, unknown> {
  const quantization_config =
    scheme.kind === 'channel'
      ? compressedTensorsConfig(scheme, plans)
      : { quant_method: 'ggml', scheme: scheme.name, layout: 'ggml-blocks', block_size: scheme.blockSize, block_bytes: scheme.blockBytes };
  return { ...config, quantization_config };
}

/** ggml's tensor type for a kept dtype; undefined where GGUF has none (those are decoded to F32). */
function ggmlTypeOf(d: DType): number | undefined {
  switch (d) {
    case 'F32': return GGML_TYPE.F32;
    case 'F16': return GGML_TYPE.F16;
    case 'BF16': return GGML_TYPE.BF16;
    case 'F64': return GGML_TYPE.F64;
    case 'I8': return GGML_TYPE.I8;
    case 'I16': return GGML_TYPE.I16;
    case 'I32': return GGML_TYPE.I32;
    case 'I64': return GGML_TYPE.I64;
    default: return undefined;
  }
}

async function writeGgufOutput(
  args: QuantizeJobArgs,
  model: Model,
  config: Record<string, unknown> | undefined,
  scheme: Scheme,
  plans: readonly TensorPlan[],
  states: Map<string, TensorState>,
  backend: Backend,
  ctx: JobContext,
  advance: (n: number, name: string) => void,
  missing: string[],
): Promise<string> {
  const signal = ctx.signal;
  const out = (await isDir(args.output)) ? join(args.output, `model-${scheme.name}.gguf`) : args.output;
  const modelType = typeof config?.model_type === 'string' ? config.model_type : undefined;
  const isLlama = modelType !== undefined && LLAMA_FAMILY.includes(modelType);
  const llamaNames = args.ggufNames === 'llama';
  if (llamaNames && !isLlama) throw new FormatError('unsupported', `--gguf-names llama needs a Llama-family config.json (model_type ${modelType ?? 'missing'})`, args.input);
  const kv: Array<[string, GgufValue]> = [];
  const arch = isLlama ? 'llama' : modelType ?? 'unknown';
  kv.push(['general.architecture', gguf.str(arch)]);
  kv.push(['general.name', gguf.str(basename(modelDir(model)))]);
  kv.push(['general.file_type', gguf.u32(scheme.fileType!)]);
  kv.push(['general.quantization_version', gguf.u32(2)]);
  kv.push(['general.alignment', gguf.u32(32)]);
  if (!config) missing.push('general.architecture and every hyperparameter: no config.json beside the input');
  else if (isLlama) {
    const m = llamaMetadata(config);
    kv.push(...m.kv);
    missing.push(...m.missing);
  } else missing.push(`hyperparameters: model_type '${modelType}' is not a Llama-family model; only general.* keys are written`);
  missing.push('tokenizer (tokenizer.ggml.*): llama.cpp needs it to run the file; a complete conversion is out of scope');
  if (!llamaNames && isLlama) missing.push('llama.cpp tensor names: pass --gguf-names llama');

  const sched = new ChunkScheduler(model, scheme, backend, signal);
  const heads = typeof config?.num_attention_heads === 'number' ? config.num_attention_heads : undefined;
  const kvHeads = typeof config?.num_key_value_heads === 'number' ? config.num_key_value_heads : heads;
  const tensors: GgufTensor[] = [];
  for (const p of plans) {
    const st = states.get(p.name)!;
    const t = model.tensor(p.name)!;
    const name = llamaNames ? llamaCppName(p.name) : p.name;
    if (name === undefined) {
      st.omitted = 'llama.cpp recomputes it';
      continue;
    }
    st.outputName = name;
    const dims = p.shape.length === 0 ? [1] : [...p.shape].reverse();
    // llama.cpp's converter reorders q/k rows from HF's rotary layout to Meta's.
    let groupRows: number | undefined;
    let perm: Int32Array | undefined;
    if (llamaNames && heads && /\.self_attn\.(q|k)_proj\.weight$/.test(p.name)) {
      const nh = p.name.includes('.q_proj.') ? heads : kvHeads!;
      if (p.rows % nh === 0 && (p.rows / nh) % 2 === 0) {
        groupRows = p.rows / nh;
        perm = ropePermutation(groupRows);
      }
    }
    if (p.action === 'quantize') {
      st.bytesAfter = quantizedBytes(scheme, p.rows, p.cols);
      const onChunk = (r: QuantizeResult, inBytes: number) => {
        addSums(st.sums, r.stats);
        advance(inBytes, p.name);
      };
      const results = sched.add(p, onChunk, groupRows, perm);
      const data = async function* () {
        for await (const r of results()) yield r.data;
      };
      tensors.push({ name, dims, ggmlType: scheme.ggmlType!, byteLength: st.bytesAfter, data });
      continue;
    }
    const direct = ggmlTypeOf(p.dtype);
    if (direct === undefined && DTYPE_INFO[p.dtype].kind !== 'float') {
      st.omitted = `GGUF has no ${p.dtype} tensor type`;
      delete st.outputName;
      continue;
    }
    if (perm) {
      // A kept q/k weight still needs llama.cpp's row order: stream it through the row reader.
      const data = async function* () {
        for await (const c of rowChunks(model, p, signal, groupRows, perm)) {
          advance(c.inBytes, p.name);
          yield c.src;
        }
      };
      // rowChunks passes BF16/F16/F32 through and decodes anything else to F32.
      const asF32 = p.dtype !== 'BF16' && p.dtype !== 'F16' && p.dtype !== 'F32';
      st.bytesAfter = asF32 ? t.numel * 4 : t.byteLength;
      tensors.push({ name, dims, ggmlType: asF32 ? GGML_TYPE.F32 : direct!, byteLength: st.bytesAfter, data });
      continue;
    }
    if (direct !== undefined) {
      st.bytesAfter = t.byteLength;
      tensors.push({ name, dims, ggmlType: direct, byteLength: t.byteLength, data: keptStream(model, t, signal, advance) });
    } else {
      st.bytesAfter = t.numel * 4;
      const data = async function* () {
        for await (const c of model.chunks(t, { chunkBytes: COPY_CHUNK_BYTES, signal })) {
          const count = Math.round((c.length * 8) / DTYPE_INFO[p.dtype].bits);
          const f = new Float32Array(count);
          decodeToF32(p.dtype, c, f, count);
          advance(c.length, p.name);
          yield new Uint8Array(f.buffer);
        }
      };
      tensors.push({ name, dims, ggmlType: GGML_TYPE.F32, byteLength: st.bytesAfter, data });
    }
  }
  await writeGguf(out, kv, tensors, { signal });
  return out;
}

function buildReport(
  args: QuantizeJobArgs,
  format: QuantFormat,
  scheme: Scheme,
  backend: Backend,
  model: Model,
  states: Map<string, TensorState>,
  outputs: string[],
  missing: string[],
  seconds: number,
): QuantReport {
  const tensors: TensorReport[] = [];
  const all = emptySums();
  let bytesBefore = 0, bytesAfter = 0, params = 0, qParams = 0, qBytes = 0;
  for (const t of model.tensors) {
    const st = states.get(t.name)!;
    const p = st.plan;
    bytesBefore += t.byteLength;
    params += t.numel;
    if (st.omitted) {
      tensors.push({ name: t.name, dtype: t.dtype, shape: t.shape, action: 'omitted', reason: st.omitted, bytesBefore: t.byteLength, bytesAfter: 0 });
      continue;
    }
    bytesAfter += st.bytesAfter;
    if (p.action === 'keep') {
      tensors.push({ name: t.name, outputName: st.outputName, dtype: t.dtype, shape: t.shape, action: 'kept', reason: p.reason, ...(p.nonFinite ? { nonFinite: p.nonFinite } : {}), bytesBefore: t.byteLength, bytesAfter: st.bytesAfter });
      continue;
    }
    qParams += t.numel;
    qBytes += st.bytesAfter;
    addSums(all, st.sums);
    tensors.push({ name: t.name, outputName: st.outputName, dtype: t.dtype, shape: t.shape, action: 'quantized', scheme: scheme.name, bytesBefore: t.byteLength, bytesAfter: st.bytesAfter, ...reportOf(st.sums) });
  }
  return {
    input: args.input,
    outputs,
    scheme: scheme.name,
    format,
    backend: backend.description,
    tensors,
    totals: {
      bytesBefore,
      bytesAfter,
      params,
      quantizedParams: qParams,
      bitsPerWeight: params ? (bytesAfter * 8) / params : 0,
      quantizedBitsPerWeight: qParams ? (qBytes * 8) / qParams : 0,
      ...(qParams ? reportOf(all) : {}),
    },
    missing,
    seconds,
  };
}

export interface PreviewArgs {
  readonly input: string;
  /** Default: every scheme. */
  readonly schemes?: readonly SchemeName[];
  readonly keep?: readonly string[];
  readonly only?: readonly string[];
}

export interface PreviewRow extends Partial<ErrorReport> {
  readonly scheme: SchemeName;
  readonly description: string;
  /** Exact: sizes follow from the shapes. */
  readonly bytesAfter: number;
  readonly bitsPerWeight: number;
  readonly quantizedTensors: number;
  readonly keptTensors: number;
  /** Values the error estimate is based on. */
  readonly sampledValues: number;
}

export interface PreviewResult {
  readonly input: string;
  readonly bytesBefore: number;
  readonly params: number;
  readonly rows: readonly PreviewRow[];
  /** At most this fraction of each tensor was read. */
  readonly sampleFraction: number;
  readonly seconds: number;
}

/**
 * Where each segment of a tensor's sample starts: `count` segments of `len` values
 * spread evenly over the rows, at column offsets that vary (multiples of 32, so ggml
 * blocks stay aligned). Deterministic: the same file always gives the same preview.
 */
function sampleSegments(rows: number, cols: number, len: number, count: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const slack = Math.floor((cols - len) / 32);
  for (let k = 0; k < count; k++) {
    const r = Math.min(rows - 1, Math.floor(((k + 0.5) * rows) / count));
    const c = slack > 0 ? (Math.imul(k + 1, 0x9e3779b1) >>> 0) % (slack + 1) * 32 : 0;
    out.push([r, c]);
  }
  return out;
}

/**
 * Estimates size and error for each scheme from a deterministic sample of whole
 * 32-value blocks (at most 1% of each tensor's values and at most 64 Ki of them;
 * tensors under 3,200 values are not sampled) before anything is written. Sizes are exact; errors are estimates
 * with each tensor's sample weighted by the tensor's size.
 */
export async function preview(args: PreviewArgs, ctx: JobContext = {}): Promise<PreviewResult> {
  const started = Date.now();
  const names = args.schemes ?? SCHEME_NAMES;
  const backend = await getBackend(ctx.backend ?? 'auto');
  const model = await openModel(args.input);
  try {
    const bytesBefore = model.tensors.reduce((s, t) => s + t.byteLength, 0);
    const params = model.tensors.reduce((s, t) => s + t.numel, 0);
    const schemes = names.map((n) => SCHEMES[n]);
    const plans = schemes.map((s) => planQuantization(model.tensors, s, args.keep, args.only));
    const sums = schemes.map(() => emptySums());
    const sampled = schemes.map(() => 0);
    const maxErr = schemes.map(() => 0);
    const candidates = model.tensors.filter((_, i) => plans.some((pl) => pl[i].action === 'quantize'));
    const report = throttle(ctx.progress);
    let done = 0;
    for (const t of candidates) {
      throwIfCancelled(ctx.signal);
      const [rows, cols] = t.shape;
      const budget = Math.min(PREVIEW_MAX_VALUES, Math.floor(t.numel * PREVIEW_FRACTION));
      const len = Math.min(Math.floor(cols / 32) * 32 || cols, Math.floor(budget / 32) * 32);
      if (len >= 32) {
        const count = Math.max(1, Math.floor(budget / len));
        const segs = sampleSegments(rows, cols, len, count);
        const eb = elementBytes(t.dtype);
        const raw = new Uint8Array(count * len * eb);
        for (let k = 0; k < segs.length; k++) {
          const [r, c] = segs[k];
          await model.read(t, (r * cols + c) * eb, raw.subarray(k * len * eb, (k + 1) * len * eb));
        }
        const input = kernelInput(t.dtype, raw, count * len);
        const idx = model.tensors.indexOf(t);
        await Promise.all(
          schemes.map(async (s, si) => {
            if (plans[si][idx].action !== 'quantize') return;
            if (s.kind === 'ggml' && len % s.blockSize !== 0) return;
            const r = await backend.run(s.kernel, { src: input.src, dtype: input.dtype, rows: count, cols: len }, ctx.signal);
            // Weight the sample by the tensor's size so that big tensors dominate, as in the real file.
            const w = t.numel / r.stats.n;
            addSums(sums[si], { n: t.numel, sumX2: r.stats.sumX2 * w, sumY2: r.stats.sumY2 * w, sumXY: r.stats.sumXY * w, sumE2: r.stats.sumE2 * w, maxAbsErr: r.stats.maxAbsErr });
            sampled[si] += r.stats.n;
            maxErr[si] = Math.max(maxErr[si], r.stats.maxAbsErr);
          }),
        );
      }
      done++;
      report({ done, total: candidates.length, unit: 'tensors', message: t.name });
    }
    const rowsOut: PreviewRow[] = schemes.map((s, si) => {
      let after = 0;
      let q = 0;
      for (let i = 0; i < model.tensors.length; i++) {
        const p = plans[si][i];
        if (p.action === 'quantize') {
          after += quantizedBytes(s, p.rows, p.cols);
          q++;
        } else after += model.tensors[i].byteLength;
      }
      return {
        scheme: s.name,
        description: s.description,
        bytesAfter: after,
        bitsPerWeight: params ? (after * 8) / params : 0,
        quantizedTensors: q,
        keptTensors: model.tensors.length - q,
        sampledValues: sampled[si],
        ...(sampled[si] ? reportOf(sums[si]) : {}),
      };
    });
    return { input: args.input, bytesBefore, params, rows: rowsOut, sampleFraction: PREVIEW_FRACTION, seconds: (Date.now() - started) / 1000 };
  } catch (e) {
    if (isCancelled(e)) throw new CancelledError();
    throw e;
  } finally {
    await model.close();
  }
}
