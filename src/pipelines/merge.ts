/**
 * `merge`: folds LoRA adapters into a base model, one tensor at a time.
 *
 * Everything is validated from headers before a byte is written: every adapter
 * key must land on a base tensor of a compatible shape (else the merge stops
 * with the list, unless `allowUnmatched`). Touched tensors are computed in row
 * slices by the matmul twin (`W ± Σ wⱼ·scaleⱼ·Bⱼ@Aⱼ`, several adapters stacked
 * into one product), untouched ones are streamed through byte for byte. The
 * writer puts everything in temp files and renames them only at the end, so a
 * failure or a cancel leaves nothing behind.
 */
import { createWriteStream } from 'node:fs';
import { rename, stat, unlink } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { basename, dirname, join } from 'node:path';
import { getBackend } from '../compute/backend';
import type { Backend } from '../compute/kernel';
import { matmulKernel, type MatmulDType, type MatmulResult } from '../compute/matmul/matmul';
import { bf16BitsOf, f16BitsOf } from '../compute/matmul/round';
import { castBytes, isCastDType, type CastDType } from '../format/cast';
import type { DType } from '../format/dtypes';
import { FormatError, fromOsError } from '../format/errors';
import type { Model, TensorInfo } from '../format/model';
import { openModel } from '../format/openModel';
import { modelInputs, prepareOutputs } from '../format/outputs';
import { openRegularFile } from '../format/source';
import { shardedNames, tempPathFor, writeSafetensors, writeSharded, type TensorSource } from '../format/writer';
import { CancelledError, throttle, throwIfCancelled, type JobContext } from './job';
import { mapAdapters, openAdapter, readValues, type AdapterMapping, type MappedModule, type ParsedAdapter, type UnmatchedKey } from './lora';

export interface MergeAdapterArg {
  readonly path: string;
  /** Coefficient of this adapter's Δ in the linear combination (default 1). */
  readonly weight?: number;
}

export interface MergeArgs {
  /** A .safetensors file, an index.json or a folder. */
  readonly base: string;
  readonly adapters: readonly MergeAdapterArg[];
  /** A `.safetensors` file, or a folder (created if needed) that gets shards, index and config files. */
  readonly output: string;
  /** Output dtype for float tensors; default: each tensor keeps its own. */
  readonly dtype?: MatmulDType;
  /** W − ΔW: takes a merged adapter back out. */
  readonly subtract?: boolean;
  readonly allowUnmatched?: boolean;
  /** Bytes per output shard; default: as many shards as the base has. */
  readonly maxShardSize?: number;
}

/** What one adapter contributes, for previews and the summary. */
export interface AdapterSummary {
  readonly path: string;
  readonly format: 'peft' | 'kohya';
  readonly weight: number;
  readonly modules: readonly { name: string; target: string; rank: number; alpha: number; scale: number; dora: boolean }[];
  readonly replacements: readonly string[];
}

export interface MergePlan {
  readonly base: Model;
  readonly adapters: readonly ParsedAdapter[];
  readonly mapping: AdapterMapping;
  readonly summaries: readonly AdapterSummary[];
  /** Target tensor → its contributions, in adapter order. */
  readonly targets: ReadonlyMap<string, readonly MappedModule[]>;
  readonly unmatched: readonly UnmatchedKey[];
  close(): Promise<void>;
}

export interface MergeResult {
  readonly files: readonly string[];
  readonly index?: string;
  readonly merged: number;
  readonly replaced: number;
  readonly copied: number;
  readonly unmatched: readonly UnmatchedKey[];
  readonly adapters: readonly AdapterSummary[];
  readonly backend: string;
  readonly bytes: number;
}

/** Refusals of a merge, before anything is written. */
export class MergeError extends Error {
  override readonly name = 'MergeError';
  constructor(
    message: string,
    readonly unmatched: readonly UnmatchedKey[] = [],
  ) {
    super(message);
  }
}

const MERGEABLE = new Set<DType>(['F32', 'BF16', 'F16']);
// Base rows per kernel call are capped at this many bytes: small enough that a few slices in
// flight stay far below the memory budget, large enough that a call's overhead is amortised.
const SLICE_BYTES = 4 << 20;
// On the GPU a call's cost is its round trip (upload, dispatch, map for reading), not its size:
// slices this large make most tensors one call, and the kernel tiles them within binding limits.
const GPU_SLICE_BYTES = 32 << 20;
// Slices in flight at once: enough to keep two CPU workers (or a GPU queue) busy while the
// writer drains finished ones in order.
const IN_FLIGHT = 4;
// Results computed ahead of the writer are capped at this many bytes: enough to keep the
// backend busy through a layer's worth of untouched tensors, small against the memory bound.
const LOOKAHEAD_BYTES = 48 << 20;
// Untouched tensors are copied through two buffers of this size, reused for the whole model: large
// reads and writes, and no fresh memory to fault in for each tensor.
const COPY_CHUNK_BYTES = 8 << 20;
// Files beside the weights that a merged folder needs to load as the same model.
const SIDE_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'tokenizer.model',
  'special_tokens_map.json',
  'added_tokens.json',
  'vocab.json',
  'merges.txt',
  'chat_template.jinja',
];
const TOOL = 'tensor-workbench 0.1.0';

function listKeys(u: readonly UnmatchedKey[], adapters: readonly { path: string }[]): string {
  // Enough lines to act on without flooding a terminal; the JSON output has them all.
  const shown = 20;
  const lines = u.slice(0, shown).map((x) => `  ${adapters[x.adapter]?.path ?? '?'}: ${x.key}: ${x.reason}`);
  if (u.length > shown) lines.push(`  … and ${u.length - shown} more`);
  return lines.join('\n');
}

/**
 * Opens the base and the adapters and maps every key, reading headers,
 * configs and scalar alphas only. The caller must `close()` the plan.
 */
export async function planMerge(args: Pick<MergeArgs, 'base' | 'adapters'>): Promise<MergePlan> {
  if (args.adapters.length === 0) throw new MergeError('no adapter to merge');
  const base = await openModel(args.base);
  const adapters: ParsedAdapter[] = [];
  const close = async () => {
    await Promise.all([base.close(), ...adapters.map((a) => a.close())]);
  };
  try {
    for (const a of args.adapters) adapters.push(await openAdapter(a.path));
    const mapping = mapAdapters(adapters, base);
    const targets = new Map<string, MappedModule[]>();
    for (const m of mapping.modules) {
      const list = targets.get(m.target);
      if (list) list.push(m);
      else targets.set(m.target, [m]);
    }
    const summaries: AdapterSummary[] = adapters.map((ad, i) => ({
      path: args.adapters[i].path,
      format: ad.format,
      weight: args.adapters[i].weight ?? 1,
      modules: mapping.modules
        .filter((m) => m.adapter === i)
        .map((m) => ({ name: m.module.name, target: m.target, rank: m.module.rank, alpha: m.module.alpha, scale: m.module.scale, dora: m.module.magnitude !== undefined })),
      replacements: mapping.replacements.filter((r) => r.adapter === i).map((r) => r.target),
    }));
    return { base, adapters, mapping, summaries, targets, unmatched: mapping.unmatched, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Refuses combinations that have no single meaning, naming the tensor. */
function checkPlan(plan: MergePlan, args: MergeArgs): void {
  const replaced = new Map<string, number>();
  for (const r of plan.mapping.replacements) {
    if (replaced.has(r.target)) throw new MergeError(`two adapters replace '${r.target}' whole (modules_to_save): the result would depend on their order`);
    replaced.set(r.target, r.adapter);
    if (plan.targets.has(r.target)) throw new MergeError(`'${r.target}' is both replaced whole and LoRA-updated`);
    if (args.subtract) throw new MergeError(`--subtract cannot undo '${r.target}', which the adapter replaces whole (modules_to_save)`);
  }
  for (const [target, list] of plan.targets) {
    const t = plan.base.tensor(target)!;
    if (!MERGEABLE.has(t.dtype)) throw new FormatError('unsupported', `a ${t.dtype} tensor cannot take a LoRA update (F32, BF16 or F16 only)`, plan.base.path, target);
    for (const m of list) {
      for (const f of [m.module.down, m.module.up, m.module.magnitude]) {
        if (f && !MERGEABLE.has(f.dtype)) throw new FormatError('unsupported', `${f.dtype} adapter factors are not supported (F32, BF16 or F16)`, plan.adapters[m.adapter].file, f.name);
      }
    }
    if (new Set(list.map((m) => m.module.transpose)).size > 1) throw new MergeError(`adapters disagree on the layout of '${target}' (fan_in_fan_out)`);
    const dora = list.filter((m) => m.module.magnitude);
    if (dora.length > 0 && list.length > 1) throw new MergeError(`'${target}' has a DoRA update and other updates: DoRA's normalisation has no linear combination`);
    if (dora.length > 0 && args.subtract) throw new MergeError(`--subtract cannot undo DoRA on '${target}': its normalisation is not a subtraction`);
  }
  for (const a of args.adapters) {
    if (a.weight !== undefined && !Number.isFinite(a.weight)) throw new MergeError(`adapter weight ${a.weight} is not a number (${a.path})`);
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

/** The file-name stem of a folder output: the base's own (`model` for `model-00001-of-00002.safetensors`). */
function shardStem(plan: MergePlan): string {
  const stem = plan.base.path.endsWith('.index.json')
    ? basename(plan.base.path).replace(/\.safetensors\.index\.json$/, '')
    : plan.base.files.length === 1
      ? basename(plan.base.files[0].path).replace(/\.safetensors$/, '')
      : 'model';
  return plan.base.files.length > 1 ? stem.replace(/-\d{5}-of-\d{5}$/, '') : stem;
}

function f32View(bytes: Uint8Array): Float32Array {
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

/** The factors of a tensor's updates stacked along the rank: one product for every adapter. */
async function stackFactors(plan: MergePlan, args: MergeArgs, list: readonly MappedModule[]): Promise<{ a: Float32Array; b: Float64Array; rank: number }> {
  const out = list[0].outFeatures;
  const inF = list[0].inFeatures;
  const rank = list.reduce((s, m) => s + (m.module.kind === 'bias' ? 1 : m.module.rank), 0);
  const a = new Float32Array(rank * inF);
  const b = new Float64Array(out * rank);
  let k0 = 0;
  for (const m of list) {
    const ad = plan.adapters[m.adapter];
    const coef = (args.adapters[m.adapter].weight ?? 1) * m.module.scale * (args.subtract ? -1 : 1);
    if (m.module.kind === 'bias') {
      // Δbias = scale · lora_B.bias: a rank-1 product with A = [1].
      const bias = await readValues(ad.model, m.module.up);
      a[k0] = 1;
      for (let o = 0; o < out; o++) b[o * rank + k0] = coef * bias[o];
      k0 += 1;
      continue;
    }
    const r = m.module.rank;
    const down = await readValues(ad.model, m.module.down);
    const up = await readValues(ad.model, m.module.up);
    a.set(down, k0 * inF);
    for (let o = 0; o < out; o++) for (let k = 0; k < r; k++) b[o * rank + k0 + k] = coef * up[o * r + k];
    k0 += r;
  }
  return { a, b, rank };
}

interface SliceJob {
  rowStart: number;
  rows: number;
}

function slices(rows: number, rowBytes: number, workers: number, sliceBytes: number): SliceJob[] {
  let per = Math.max(1, Math.floor(sliceBytes / Math.max(1, rowBytes)));
  // At least two slices per worker when the tensor allows, so no worker idles on a small tensor.
  per = Math.max(1, Math.min(per, Math.ceil(rows / (2 * workers))));
  const out: SliceJob[] = [];
  for (let r = 0; r < rows; r += per) out.push({ rowStart: r, rows: Math.min(per, rows - r) });
  return out;
}

/** Runs `jobs` with a bounded number in flight and yields their results in order. */
async function* ordered<J, R>(jobs: readonly J[], run: (j: J) => Promise<R>, width: number): AsyncGenerator<R> {
  const pending: Promise<R>[] = [];
  let next = 0;
  const fill = () => {
    while (next < jobs.length && pending.length < width) pending.push(run(jobs[next++]));
  };
  fill();
  try {
    while (pending.length > 0) {
      const r = await pending.shift()!;
      fill();
      yield r;
    }
  } finally {
    // Already-started runs must not reject unobserved when the consumer stops early.
    for (const p of pending) p.catch(() => {});
  }
}

function nonFiniteError(plan: MergePlan, t: TensorInfo, index: number): FormatError {
  const cols = t.shape.length > 1 ? t.numel / t.shape[0] : 1;
  return new FormatError('unsupported', `the merged value at [${Math.floor(index / cols)}, ${index % cols}] is not finite (NaN or ±Inf in the output dtype); nothing was written`, plan.base.path, t.name);
}

/** Rounds float64 values to `dtype` bytes, RNE; returns the first non-finite index or -1. */
function roundValues(values: Float64Array, dtype: MatmulDType, into: Uint8Array): number {
  let bad = -1;
  if (dtype === 'F32') {
    const o = f32View(into);
    for (let i = 0; i < values.length; i++) {
      o[i] = values[i];
      if (bad < 0 && !Number.isFinite(o[i])) bad = i;
    }
    return bad;
  }
  const o = new Uint16Array(into.buffer, into.byteOffset, values.length);
  const lim = dtype === 'BF16' ? 0x7f80 : 0x7c00;
  for (let i = 0; i < values.length; i++) {
    const h = dtype === 'BF16' ? bf16BitsOf(values[i]) : f16BitsOf(values[i]);
    o[i] = h;
    if (bad < 0 && (h & lim) === lim) bad = i;
  }
  return bad;
}

/** The data of one LoRA-updated tensor, streamed slice by slice. */
function mergedData(plan: MergePlan, args: MergeArgs, t: TensorInfo, list: readonly MappedModule[], outDtype: MatmulDType, backend: Backend, workers: number, signal?: AbortSignal): () => AsyncIterable<Uint8Array> {
  return async function* () {
    const m0 = list[0];
    const transpose = m0.module.transpose;
    const { a, b, rank } = await stackFactors(plan, args, list);
    const storedRows = transpose ? m0.inFeatures : m0.outFeatures;
    const cols = t.numel / storedRows;
    const eb = t.dtype === 'F32' ? 4 : 2;
    const baseDtype = t.dtype as MatmulDType;
    const magnitude = m0.module.magnitude ? await readValues(plan.adapters[m0.adapter].model, m0.module.magnitude) : undefined;
    // A slice's size counts its larger side: DoRA's unrounded (hi, lo) results take 8 bytes an element.
    const rowBytes = cols * Math.max(eb, magnitude ? 8 : outDtype === 'F32' ? 4 : 2);
    const jobs = slices(storedRows, rowBytes, workers, backend.kind === 'webgpu' ? GPU_SLICE_BYTES : SLICE_BYTES);
    const run = async (j: SliceJob, out: MatmulDType | 'PAIR'): Promise<MatmulResult> => {
      throwIfCancelled(signal);
      const bytes = new Uint8Array(j.rows * cols * eb);
      await plan.base.read(t, j.rowStart * cols * eb, bytes);
      const common = { outFeatures: m0.outFeatures, inFeatures: m0.inFeatures, rank, a, b, transpose };
      return backend.run(matmulKernel, { ...common, rowStart: j.rowStart, rows: j.rows, base: bytes, baseDtype, out }, signal);
    };
    if (!magnitude) {
      let done = 0;
      for await (const r of ordered(jobs, (j) => run(j, outDtype), IN_FLIGHT)) {
        if (r.nonFinite > 0) throw nonFiniteError(plan, t, done + r.firstNonFinite);
        done += r.bytes.length / (outDtype === 'F32' ? 4 : 2);
        yield r.bytes;
      }
      return;
    }
    // DoRA: W' = m ⊙ V / ‖V‖ with V = W + ΔW, the norm taken per output feature: along a stored
    // row for [out, in] (and conv) weights, down a stored column for transposed ones.
    let colNorm: Float64Array | undefined;
    if (transpose) {
      const sq = new Float64Array(cols);
      for await (const r of ordered(jobs, (j) => run(j, 'PAIR'), IN_FLIGHT)) {
        const p = f32View(r.bytes);
        for (let i = 0; i < p.length / 2; i++) {
          const v = p[2 * i] + p[2 * i + 1];
          sq[i % cols] += v * v;
        }
      }
      colNorm = sq.map(Math.sqrt);
    }
    let done = 0;
    for await (const r of ordered(jobs, (j) => run(j, 'PAIR'), IN_FLIGHT)) {
      const p = f32View(r.bytes);
      const n = p.length / 2;
      const v = new Float64Array(n);
      for (let i = 0; i < n; i++) v[i] = p[2 * i] + p[2 * i + 1];
      const rowsHere = n / cols;
      for (let rr = 0; rr < rowsHere; rr++) {
        let rowFactor = 0;
        if (!colNorm) {
          let s = 0;
          for (let c = 0; c < cols; c++) s += v[rr * cols + c] ** 2;
          rowFactor = magnitude[(done + rr * cols) / cols] / Math.sqrt(s);
        }
        for (let c = 0; c < cols; c++) {
          const f = colNorm ? magnitude[c] / colNorm[c] : rowFactor;
          v[rr * cols + c] *= f;
        }
      }
      const out = new Uint8Array(n * (outDtype === 'F32' ? 4 : 2));
      const bad = roundValues(v, outDtype, out);
      if (bad >= 0 || r.nonFinite > 0) throw nonFiniteError(plan, t, done + (bad >= 0 ? bad : r.firstNonFinite));
      done += n;
      yield out;
    }
  };
}

/** Streams a tensor through, cast to `to` when it differs, reading into the job's one pair of buffers. */
function copiedData(model: Model, t: TensorInfo, to: DType, buffers: readonly [Uint8Array, Uint8Array], signal?: AbortSignal): () => AsyncIterable<Uint8Array> {
  return async function* () {
    // The writer is done with a chunk before it asks for the next, and streams one tensor at a time.
    for await (const chunk of model.chunks(t, { signal, chunkBytes: COPY_CHUNK_BYTES, buffers })) {
      if (to === t.dtype) yield chunk;
      else yield castBytes(chunk, t.dtype as CastDType, to as CastDType, { overflow: 0, underflow: 0 });
    }
  };
}

function outDtypeOf(d: DType, override: MatmulDType | undefined): DType {
  return override && isCastDType(d) ? override : d;
}

/**
 * Copies the base folder's config and tokenizer files to temporaries in `outDir`
 * before the weights are written, so that a full disk fails before anything is in
 * place; `commit` renames them into place, `discard` removes them.
 */
async function stageSideFiles(baseDir: string, outDir: string): Promise<{ commit: () => Promise<string[]>; discard: () => Promise<void> }> {
  const staged: { tmp: string; dst: string }[] = [];
  const discard = async () => {
    for (const f of staged) await unlink(f.tmp).catch(() => {});
  };
  try {
    for (const name of SIDE_FILES) {
      const src = join(baseDir, name);
      if (!(await exists(src))) continue;
      const dst = join(outDir, name);
      const tmp = tempPathFor(dst);
      // Read through a handle that is known to be a regular file: a FIFO here is refused, never waited on.
      const { handle } = await openRegularFile(src);
      staged.push({ tmp, dst });
      try {
        await pipeline(handle.createReadStream({ autoClose: false }), createWriteStream(tmp, { flags: 'wx' }));
      } finally {
        await handle.close();
      }
    }
  } catch (e) {
    await discard();
    throw fromOsError(e, staged[staged.length - 1]?.dst);
  }
  const commit = async () => {
    for (const f of staged) await rename(f.tmp, f.dst);
    return staged.map((f) => f.dst);
  };
  return { commit, discard };
}

/**
 * Overlaps compute with I/O: while the writer streams tensor i, the
 * LoRA-updated tensors after it are computed on the backend into memory, in
 * order, as far ahead as LOOKAHEAD_BYTES of results allow (always at least
 * the next one, so the extra memory is bounded by the larger of the budget
 * and the largest tensor).
 */
class Lookahead {
  private readonly streams = new Map<number, () => AsyncIterable<Uint8Array>>();
  private readonly started = new Map<number, Promise<Uint8Array[]>>();
  private readonly bytes = new Map<number, number>();
  private pending = 0;
  constructor(private readonly merged: readonly boolean[]) {}

  set(i: number, stream: () => AsyncIterable<Uint8Array>, outBytes: number): void {
    this.streams.set(i, stream);
    this.bytes.set(i, outBytes);
  }

  /** Starts computing the updated tensors after `i` that fit the budget. */
  kick(i: number): void {
    for (let j = this.merged.indexOf(true, i + 1); j >= 0; j = this.merged.indexOf(true, j + 1)) {
      if (this.started.has(j)) continue;
      const size = this.bytes.get(j)!;
      if (this.pending > 0 && this.pending + size > LOOKAHEAD_BYTES) return;
      this.pending += size;
      const p = (async () => {
        const parts: Uint8Array[] = [];
        for await (const c of this.streams.get(j)!()) parts.push(c);
        return parts;
      })();
      // Observed when the writer reaches tensor j; until then a failure must not be reported as unhandled.
      p.catch(() => {});
      this.started.set(j, p);
    }
  }

  /** The data of updated tensor `i`: its precomputed parts, or a live stream. */
  take(i: number): AsyncIterable<Uint8Array> {
    const pre = this.started.get(i);
    this.started.delete(i);
    if (pre) this.pending -= this.bytes.get(i)!;
    // A tensor never started ahead is streamed live; mark it so `kick` does not start it twice.
    else this.started.set(i, Promise.resolve([]));
    const live = this.streams.get(i)!;
    this.kick(i);
    if (!pre) return live();
    return (async function* () {
      yield* await pre;
    })();
  }
}

/** Merges the adapters into the base and writes the result (see the module comment). */
export async function merge(args: MergeArgs, ctx: JobContext = {}): Promise<MergeResult> {
  const { signal } = ctx;
  throwIfCancelled(signal);
  const plan = await planMerge(args);
  try {
    if (plan.unmatched.length > 0 && !args.allowUnmatched) {
      throw new MergeError(`${plan.unmatched.length} adapter key(s) do not map onto the base; nothing was written (--allow-unmatched merges the rest):\n${listKeys(plan.unmatched, args.adapters)}`, plan.unmatched);
    }
    checkPlan(plan, args);
    const toFile = args.output.endsWith('.safetensors');
    const outDir = toFile ? dirname(args.output) : args.output;
    const baseDir = plan.base.files.length > 0 ? dirname(plan.base.files[0].path) : dirname(plan.base.path);
    const stem = shardStem(plan);
    const inputs = [
      ...(await modelInputs(plan.base)),
      ...SIDE_FILES.map((n) => join(baseDir, n)),
      ...plan.adapters.flatMap((a) => [a.path, a.file, join(dirname(a.file), 'adapter_config.json')]),
    ];
    const outputs = toFile ? { files: [args.output] } : { files: SIDE_FILES.map((n) => join(outDir, n)), families: [{ dir: outDir, pattern: shardedNames(stem) }] };

    const backend = await getBackend(ctx.backend ?? 'auto');
    const workers = backend.kind === 'cpu' ? Math.max(1, Number(/×(\d+)/.exec(backend.description)?.[1] ?? 2)) : 1;
    const replacements = new Map(plan.mapping.replacements.map((r) => [r.target, r]));
    const sources: TensorSource[] = [];
    let merged = 0;
    let replaced = 0;
    let copied = 0;
    const ahead = new Lookahead(plan.base.tensors.map((t) => plan.targets.has(t.name)));
    const buffers: [Uint8Array, Uint8Array] = [new Uint8Array(COPY_CHUNK_BYTES), new Uint8Array(COPY_CHUNK_BYTES)];
    plan.base.tensors.forEach((t, i) => {
      const list = plan.targets.get(t.name);
      const rep = replacements.get(t.name);
      const dtype = outDtypeOf(t.dtype, args.dtype);
      if (list) {
        merged++;
        const stream = mergedData(plan, args, t, list, dtype as MatmulDType, backend, workers, signal);
        ahead.set(i, stream, t.numel * (dtype === 'F32' ? 4 : 2));
        sources.push({ name: t.name, dtype, shape: t.shape, data: () => ahead.take(i) });
      } else if (rep) {
        replaced++;
        const src = plan.adapters[rep.adapter];
        const rd = rep.replacement.tensor;
        const to = isCastDType(rd.dtype) && isCastDType(t.dtype) ? outDtypeOf(t.dtype, args.dtype) : rd.dtype;
        const copy = copiedData(src.model, rd, to, buffers, signal);
        sources.push({ name: t.name, dtype: to, shape: t.shape, data: () => (ahead.kick(i), copy()) });
      } else {
        copied++;
        const copy = copiedData(plan.base, t, dtype, buffers, signal);
        sources.push({ name: t.name, dtype, shape: t.shape, data: () => (ahead.kick(i), copy()) });
      }
    });
    const metadata: Record<string, string> = {
      ...plan.base.metadata,
      format: plan.base.metadata.format ?? 'pt',
      'tensor_workbench.merge': JSON.stringify({
        tool: TOOL,
        base: basename(args.base),
        subtract: args.subtract === true,
        dtype: args.dtype ?? null,
        adapters: plan.summaries.map((s) => ({
          path: basename(s.path),
          format: s.format,
          weight: s.weight,
          modules: s.modules.length,
          scales: [...new Set(s.modules.map((m) => m.scale))],
          replaced: s.replacements,
        })),
      }),
    };
    const total = sources.reduce((s, t) => s + (t.shape.reduce((a, b) => a * b, 1) * (t.dtype === 'F32' ? 4 : t.dtype === 'BF16' || t.dtype === 'F16' ? 2 : 1)), 0);
    const report = throttle(ctx.progress);
    const progress = (done: number, all: number) => report({ done, total: all || total, unit: 'bytes', message: 'merging' });
    let files: string[];
    let index: string | undefined;
    let bytes = 0;
    // Checked (and folders made) only now, once nothing before the write can fail.
    const { undo } = await prepareOutputs(inputs, outputs, ctx.notice);
    let discardSide: (() => Promise<void>) | undefined;
    try {
      if (toFile) {
        const w = await writeSafetensors(args.output, sources, { metadata, order: 'source', signal, progress });
        files = [w.path];
        bytes = w.bytes;
      } else {
        const side = await stageSideFiles(baseDir, outDir);
        discardSide = side.discard;
        const w = await writeSharded(outDir, sources, {
          metadata,
          order: 'source',
          signal,
          progress,
          stem,
          ...(args.maxShardSize !== undefined ? { maxShardBytes: args.maxShardSize } : { shardCount: plan.base.files.length }),
        });
        files = w.files.map((f) => f.path);
        index = w.index;
        bytes = w.files.reduce((s, f) => s + f.bytes, 0);
        files.push(...(await side.commit()));
      }
    } catch (e) {
      // The writer removed its temp files; staged side files and folders this merge created go too.
      await discardSide?.();
      await undo();
      if (signal?.aborted) throw new CancelledError();
      throw e;
    }
    return { files, index, merged, replaced, copied, unmatched: plan.unmatched, adapters: plan.summaries, backend: backend.description, bytes };
  } finally {
    await plan.close();
  }
}
