/**
 * `mergeModels`: whole-model merges as mergekit defines them, streamed tensor by tensor.
 * Each output tensor is produced when the writer reaches it: its chunks are read from
 * every model through the streamer (read ahead while the previous chunk computes),
 * decoded to floats, run through the method's scans and combine, and rounded once to
 * the output dtype. Memory holds a few chunks per model, never a tensor or a model.
 */
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ByteProgress, streamJobs } from '../../core/stream';
import { CancelledError, throwIfCancelled, type JobContext } from '../../core/job';
import { encodeMerged } from '../../compute/merge/gta';
import { decodeToF32, decodeToF64 } from '../../format/decode';
import { DTYPE_INFO } from '../../format/dtypes';
import { FormatError } from '../../format/errors';
import type { Model, TensorInfo } from '../../format/model';
import { modelInputs, prepareOutputs } from '../../format/outputs';
import { shardedNames, writeSafetensors, writeSharded, type TensorSource } from '../../format/writer';
import { SIDE_FILES, stageSideFiles } from '../merge';
import type { DecodedModel } from '../decodedModel';
import { MergeConfigError, parseMergeConfig, resolveConfigPaths } from './config';
import type { ChunkInputs, Vec } from './methods';
import { pooledTakes, pooledTensor } from './pooled';
import { planMergeModels, type MergeModelsPlan, type PlannedTensor } from './plan';

export { MergeConfigError } from './config';
export { MergeModelsError } from './plan';

export interface MergeModelsArgs {
  /** The mergekit YAML config. */
  readonly config: string;
  /** A folder (shards like the base, with its config and tokenizer files), or a `.safetensors` file. */
  readonly output: string;
  /** Seeds DARE's drops (default 0): the same seed gives the same bytes. */
  readonly seed?: number;
  /** Resolve the config's relative model paths against the config's folder (default: the current folder, as mergekit does). */
  readonly pathsFromConfig?: boolean;
  /** Values per chunk (default CHUNK_ELEMS); tests make it small so that tensors span many chunks. */
  readonly chunkElements?: number;
  /** Computes every tensor on this thread, without the worker pool (tests compare the two paths). */
  readonly inThread?: boolean;
}

export interface MergeModelsResult {
  readonly method: string;
  readonly files: readonly string[];
  readonly index?: string;
  readonly tensors: number;
  /** Bytes of tensor data in the inputs the method reads (each byte once, however many passes). */
  readonly inputBytes: number;
  readonly bytes: number;
}

// Elements per chunk: 1 Mi values are 4 MB of f32 per model, large enough that the per-chunk
// overhead vanishes and small enough that a few chunks of several models stay far below a tensor.
const CHUNK_ELEMS = 1 << 20;
// Chunks read ahead of the one computing: reads (libuv threads) overlap the arithmetic.
const IN_FLIGHT = 3;
const TOOL = 'tensor-workbench 0.1.0';

interface ChunkJob {
  readonly start: number;
  readonly count: number;
}

/** Decodes `count` elements of `t` from `start` into floats (f64 only where an input is F64). */
async function readFloats(model: Model, t: TensorInfo, start: number, count: number, wide: boolean): Promise<Vec> {
  const size = DTYPE_INFO[t.dtype].bits / 8;
  const bytes = new Uint8Array(count * size);
  await model.read(t, start * size, bytes);
  if (wide) {
    const out = new Float64Array(count);
    decodeToF64(t.dtype, bytes, out, count);
    return out;
  }
  const out = new Float32Array(count);
  decodeToF32(t.dtype, bytes, out, count);
  return out;
}

/** One tensor's merged bytes, chunk by chunk: every scan streams the inputs once, then the combine does. */
async function* mergedTensor(plan: MergeModelsPlan, pt: PlannedTensor, chunk: number, progress: ByteProgress, signal: AbortSignal | undefined): AsyncGenerator<Uint8Array> {
  const kernel = plan.method.kernel(pt.ctx);
  const { name, models, infos, hasBase } = pt;
  const wide = infos.some((t) => t.dtype === 'F64');
  const jobs: ChunkJob[] = [];
  for (let s = 0; s < pt.info.numel; s += chunk) jobs.push({ start: s, count: Math.min(chunk, pt.info.numel - s) });
  const bytesPerElem = infos.reduce((s, t) => s + DTYPE_INFO[t.dtype].bits / 8, 0);
  const pass = () =>
    streamJobs(
      jobs,
      {
        read: async (j) => Promise.all(models.map((m, k) => readFloats(m, infos[k], j.start, j.count, wide))),
        run: async (j, vecs: Vec[]) => ({ job: j, x: (hasBase ? { base: vecs[0], models: vecs.slice(1) } : { models: vecs }) as ChunkInputs }),
      },
      { inFlight: IN_FLIGHT, signal },
    );
  // Progress counts the combine pass only: the scans are extra reads of the same bytes.
  for (const scan of kernel.scans) {
    for await (const { job, x } of pass()) scan.visit(x, job.count);
    scan.done();
  }
  const out = new Float64Array(chunk);
  for await (const { job, x } of pass()) {
    kernel.combine(x, job.count, out);
    progress.add(job.count * bytesPerElem, name);
    yield encodeMerged(out, job.count, pt.out);
  }
}

/** The file-name stem of the reference's shards (`model` for `model-00001-of-00002.safetensors`). */
function shardStem(m: Model): string {
  const first = basename(m.files[0]?.path ?? m.path);
  return first.replace(/\.safetensors$/, '').replace(/-\d{5}-of-\d{5}$/, '');
}

function metadataOf(plan: MergeModelsPlan, args: MergeModelsArgs): Record<string, string> {
  const c = plan.config;
  return {
    ...plan.reference.metadata,
    format: plan.reference.metadata.format ?? 'pt',
    'tensor_workbench.merge_models': JSON.stringify({ tool: TOOL, method: c.method, base_model: c.baseModel ?? null, models: c.models.map((m) => m.model), ...(c.slices ? { slices: c.slices.map((s) => ({ sources: s.sources.map((x) => ({ model: x.model, layer_range: x.layerRange })) })) } : {}), parameters: c.parameters, dtype: c.dtype ?? null, seed: args.seed ?? 0 }),
  };
}

/** config.json with the layer count keys it has set to `n` (num_hidden_layers when it has none). */
function withLayerCount(text: string, n: number): string {
  const cfg = JSON.parse(text) as Record<string, unknown>;
  const keys = ['num_hidden_layers', 'n_layer', 'num_layers'].filter((k) => typeof cfg[k] === 'number');
  for (const k of keys.length > 0 ? keys : ['num_hidden_layers']) cfg[k] = n;
  return JSON.stringify(cfg, null, 2) + '\n';
}

async function readConfig(path: string): Promise<string> {
  // The config cap is checked on the size before reading, so a huge file is never loaded.
  const s = await stat(path).catch(() => undefined);
  if (!s || !s.isFile()) throw new FormatError('not_found', 'the merge config does not exist or is not a file', path);
  if (s.size > 1 << 20) throw new MergeConfigError(path, ['larger than 1 MiB: not a merge config']);
  return readFile(path, 'utf8');
}

/** Reads the config, plans, refuses mismatches, and writes the merged model (see the module comment). */
export async function mergeModels(args: MergeModelsArgs, ctx: JobContext = {}): Promise<MergeModelsResult> {
  const { signal } = ctx;
  throwIfCancelled(signal);
  const parsed = parseMergeConfig(await readConfig(args.config), args.config);
  const config = args.pathsFromConfig ? resolveConfigPaths(parsed, dirname(args.config)) : parsed;
  const plan = await planMergeModels(config, args.seed ?? 0);
  try {
    const ref = plan.reference;
    const toFile = args.output.endsWith('.safetensors');
    const refDir = ref.files.length > 0 ? dirname(ref.files[0].path) : dirname(ref.path);
    const inputs = [args.config, ...SIDE_FILES.map((n) => join(refDir, n)), ...(await Promise.all(plan.models.map(modelInputs))).flat()];
    const stem = shardStem(ref);
    const outputs = toFile ? { files: [args.output] } : { files: SIDE_FILES.map((n) => join(args.output, n)), families: [{ dir: args.output, pattern: shardedNames(stem) }] };
    const inputBytes = plan.tensors.reduce((s, pt) => s + pt.infos.reduce((a, t) => a + t.byteLength, 0), 0);
    const chunk = Math.max(1, Math.floor(args.chunkElements ?? CHUNK_ELEMS));
    const progress = new ByteProgress(inputBytes, ctx.progress);
    const sources: TensorSource[] = plan.tensors.map((pt) => ({ name: pt.name, dtype: pt.out, shape: pt.info.shape, data: () => (!args.inThread && pooledTakes(plan, pt) ? pooledTensor(plan, pt, chunk, progress, signal) : mergedTensor(plan, pt, chunk, progress, signal)) }));
    const { undo } = await prepareOutputs(inputs, outputs, ctx.notice);
    const metadata = metadataOf(plan, args);
    try {
      if (toFile) {
        const w = await writeSafetensors(args.output, sources, { metadata, order: 'source', signal });
        return { method: config.method, files: [w.path], tensors: sources.length, inputBytes, bytes: w.bytes };
      }
      // A slices merge changes the layer count: config.json says the output's.
      const side = await stageSideFiles(refDir, args.output, (ref as Partial<DecodedModel>).decoded?.length ? true : false, config.slices ? { 'config.json': (text) => withLayerCount(text, plan.numLayers) } : undefined);
      try {
        const w = await writeSharded(args.output, sources, { metadata, order: 'source', signal, stem, shardCount: Math.max(1, ref.files.length) });
        const files = [...w.files.map((f) => f.path), ...(await side.commit())];
        return { method: config.method, files, index: w.index, tensors: sources.length, inputBytes, bytes: w.files.reduce((s, f) => s + f.bytes, 0) };
      } catch (e) {
        await side.discard();
        throw e;
      }
    } catch (e) {
      await undo();
      if (signal?.aborted) throw new CancelledError();
      throw e;
    } finally {
      progress.finish();
    }
  } finally {
    await plan.close();
  }
}
