/**
 * The plan of a whole-model merge, made from headers and the config alone: the models
 * opened, every tensor's parameter values evaluated, and every mismatch between the
 * models found, so that a merge that cannot run stops before anything is written.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { DType } from '../../format/dtypes';
import { storageOf, type Model, type TensorInfo } from '../../format/model';
import { openModel } from '../../format/openModel';
import { decodedModel, storedPartReason, type DecodedModel } from '../decodedModel';
import type { MergeConfig } from './config';
import { METHODS, type KernelContext, type MergeMethod } from './methods';
import { layerOf, layerT, ParamError, resolveParam } from './params';
import { planSlices } from './slices';

/** Refusals of a whole-model merge, each problem a line. */
export class MergeModelsError extends Error {
  override readonly name = 'MergeModelsError';
  constructor(
    readonly code: 'mismatch' | 'parameter' | 'dtype',
    readonly problems: readonly string[],
  ) {
    super(problems.length === 1 ? problems[0] : `${problems.length} problems: ${problems.slice(0, SHOWN).join('; ')}${problems.length > SHOWN ? '; …' : ''}`);
  }
}

// Enough lines to act on without flooding a terminal; `problems` holds them all.
const SHOWN = 20;
// The dtypes a merge reads: float values that f64 holds exactly.
const READABLE = new Set<DType>(['F64', 'F32', 'BF16', 'F16']);

export interface PlannedTensor {
  /** The output tensor's name (a slice renumbers layers, so it may differ from its inputs'). */
  readonly name: string;
  /** The first input's header: shape, element count and default output dtype. */
  readonly info: TensorInfo;
  readonly out: DType;
  readonly ctx: KernelContext;
  /** The models read, the base first when `hasBase`, then the method's operands in config order. */
  readonly models: readonly Model[];
  readonly infos: readonly TensorInfo[];
  readonly hasBase: boolean;
}

export interface MergeModelsPlan {
  readonly config: MergeConfig;
  readonly method: MergeMethod;
  /** The model whose names, order, sharding and side files the output follows: base_model, else the first model. */
  readonly reference: Model;
  /** Every model opened, each once. */
  readonly models: readonly Model[];
  readonly tensors: readonly PlannedTensor[];
  /** The output's decoder-layer count (a slices config changes it). */
  readonly numLayers: number;
  close(): Promise<void>;
}

/** The decoder layer count: config.json's, else one past the highest layer index in the names. */
export async function layerCount(model: Model): Promise<number> {
  const dir = model.files.length > 0 ? dirname(model.files[0].path) : dirname(model.path);
  try {
    const cfg = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    for (const k of ['num_hidden_layers', 'n_layer', 'num_layers']) if (typeof cfg[k] === 'number' && (cfg[k] as number) > 0) return cfg[k] as number;
  } catch {
    /* no readable config: count from the names */
  }
  return model.tensors.reduce((n, t) => Math.max(n, (layerOf(t.name) ?? -1) + 1), 0);
}

function shapeText(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

/** Every tensor missing, extra, of another shape or of an unreadable dtype, across the models. */
export function findMismatches(reference: Model, others: readonly Model[]): string[] {
  const out: string[] = [];
  for (const m of [reference, ...others]) {
    for (const t of m.tensors) if (storedPartReason(m, t) !== undefined) out.push(`${m.path}: tensor '${t.name}': a quantized part left as stored (${storedPartReason(m, t)}) cannot be merged`);
  }
  for (const t of reference.tensors) if (!READABLE.has(t.dtype) || storageOf(t).kind !== 'dtype') out.push(`${reference.path}: tensor '${t.name}': ${t.dtype} cannot be merged (F64, F32, BF16 or F16)`);
  for (const m of others) {
    for (const t of reference.tensors) {
      const o = m.tensor(t.name);
      if (!o) out.push(`${m.path}: tensor '${t.name}': missing (present in ${reference.path})`);
      else if (o.shape.length !== t.shape.length || o.shape.some((d, i) => d !== t.shape[i])) out.push(`${m.path}: tensor '${t.name}': shape ${shapeText(o.shape)}, but ${shapeText(t.shape)} in ${reference.path}`);
      else if (!READABLE.has(o.dtype) || storageOf(o).kind !== 'dtype') out.push(`${m.path}: tensor '${t.name}': ${o.dtype} cannot be merged (F64, F32, BF16 or F16)`);
    }
    for (const o of m.tensors) if (!reference.tensor(o.name)) out.push(`${m.path}: tensor '${o.name}': not in ${reference.path}`);
  }
  return out;
}

/** Evaluates each tensor's parameters (gradients, filters) and makes its kernel once, so that bad values stop the merge now. */
function planTensors(config: MergeConfig, method: MergeMethod, reference: Model, read: readonly Model[], operandEntries: readonly number[], numLayers: number, seed: number): PlannedTensor[] {
  const problems: string[] = [];
  const out: PlannedTensor[] = [];
  for (const info of reference.tensors) {
    const t = layerT(info.name, numLayers);
    try {
      const global = Object.fromEntries(method.globalParams.map((p) => [p.name, resolveParam(p, info.name, t, undefined, config.parameters)]));
      const perModel = operandEntries.map((e) => Object.fromEntries(method.modelParams.map((p) => [p.name, resolveParam(p, info.name, t, config.models[e].parameters, config.parameters)])));
      const ctx: KernelContext = { tensor: info.name, shape: info.shape, numel: info.numel, global, perModel, modelIndex: operandEntries, seed };
      method.kernel(ctx);
      // A quantized reference tensor is written dequantized, in BF16, as a LoRA merge writes it.
      const outDtype = config.dtype ?? ((reference as Partial<DecodedModel>).storedOf?.(info.name) ? 'BF16' : info.dtype === 'F64' ? 'F32' : info.dtype);
      out.push({ name: info.name, info, out: outDtype, ctx, models: read, infos: read.map((m) => m.tensor(info.name)!), hasBase: method.base === 'required' });
    } catch (e) {
      if (!(e instanceof ParamError)) throw e;
      problems.push(e.message);
    }
  }
  if (problems.length > 0) throw new MergeModelsError('parameter', problems);
  return out;
}

/**
 * Opens the models a config names (paths relative to the current folder, as mergekit
 * reads them), checks that they match, and plans every tensor. The caller closes it.
 */
export async function planMergeModels(config: MergeConfig, seed: number): Promise<MergeModelsPlan> {
  const method: MergeMethod = METHODS[config.method];
  const opened = new Map<string, DecodedModel>();
  const close = async () => {
    await Promise.all([...opened.values()].map((m) => m.close()));
  };
  try {
    const open = async (p: string) => {
      const key = resolve(p);
      let m = opened.get(key);
      if (!m) {
        // Quantized models (FP8, GPTQ, GGUF blocks …) merge through their decoded values.
        const stored = await openModel(p);
        try {
          m = decodedModel(stored);
        } catch (e) {
          await stored.close();
          throw e;
        }
        opened.set(key, m);
      }
      return m;
    };
    const base = config.baseModel !== undefined ? await open(config.baseModel) : undefined;
    if (config.slices) {
      for (const m of config.models) await open(m.model);
      const reference = base ?? (await open(config.slices[0].sources[0].model));
      const { tensors, numLayers } = await planSlices(config, config.slices, method, open, reference, seed);
      return { config, method, reference, models: [...opened.values()], tensors, numLayers, close };
    }
    const operandEntries: number[] = [];
    config.models.forEach((m, i) => {
      if (method.base === 'none' || m.model !== config.baseModel) operandEntries.push(i);
    });
    const operands: Model[] = [];
    for (const e of operandEntries) operands.push(await open(config.models[e].model));
    const reference = base ?? operands[0];
    const mismatches = findMismatches(reference, [...opened.values()].filter((m) => m !== reference));
    if (mismatches.length > 0) throw new MergeModelsError('mismatch', mismatches);
    const numLayers = await layerCount(reference);
    const read = [...(method.base === 'required' && base ? [base] : []), ...operands];
    const tensors = planTensors(config, method, reference, read, operandEntries, numLayers, seed);
    return { config, method, reference, models: [...opened.values()], tensors, numLayers, close };
  } catch (e) {
    await close();
    throw e;
  }
}
