/**
 * `loraCombine`: one PEFT adapter from several, as PEFT's `add_weighted_adapter` means
 * them, with every adapter's own scale (alpha / r, or alpha / √r with rsLoRA) and
 * weight folded into the factors so that the output, read with its own config, applies
 *   cat:    Σ wᵢ·scaleᵢ·Bᵢ·Aᵢ exactly (A rows and B columns concatenated, rank Σ rᵢ);
 *   linear: (Σ ±√|cᵢ|·Bᵢ)·(Σ √|cᵢ|·Aᵢ)… as PEFT does, cᵢ = wᵢ·scaleᵢ / scale_out: a weighted
 *           sum of the factors, which is NOT the sum of the products (cross terms remain);
 *           equal ranks only;
 *   svd:    the best rank-k approximation of Σ wᵢ·scaleᵢ·Bᵢ·Aᵢ, from the stacked factors.
 * The output's config is the first adapter's, with r and lora_alpha (and per-module
 * patterns where they differ) chosen so that its scale is the first adapter's rule at the
 * new rank: a single adapter at weight 1 comes back as itself (cat and linear: the same
 * factors; svd: the same product). PEFT itself sets lora_alpha = r, which keeps the product
 * only without rsLoRA: with rsLoRA its output is scaled by √r too much.
 */
import { join } from 'node:path';
import { throwIfCancelled, type JobContext } from '../core/job';
import { encodeMerged } from '../compute/merge/gta';
import type { DType } from '../format/dtypes';
import { FormatError } from '../format/errors';
import { writeTextAtomic } from '../format/files';
import { prepareOutputs } from '../format/outputs';
import { readSmallTextFile } from '../format/source';
import { writeSafetensors, type TensorSource } from '../format/writer';
import { openAdapter, readValues, type AdapterModule, type ParsedAdapter } from './lora';
import { mat, truncatedProduct, type Mat } from './lowRank';
import { MAX_CONFIG_BYTES } from './peftConfig';

export type CombineMethod = 'linear' | 'cat' | 'svd';

export interface LoraCombineArgs {
  readonly inputs: readonly { readonly path: string; readonly weight: number }[];
  /** The output folder: adapter_config.json and adapter_model.safetensors. */
  readonly output: string;
  readonly method: CombineMethod;
  /** svd: the output rank (default: the largest input rank of each module). */
  readonly rank?: number;
}

export interface LoraCombineResult {
  readonly method: CombineMethod;
  readonly modules: number;
  readonly ranks: readonly number[];
  readonly files: readonly string[];
}

interface Plan {
  readonly name: string;
  /** The adapters holding this module, with their weights. */
  readonly parts: readonly { readonly ad: ParsedAdapter; readonly m: AdapterModule; readonly weight: number }[];
  readonly rank: number;
  readonly alpha: number;
  readonly scale: number;
}

function refuse(file: string, message: string, tensor?: string): FormatError {
  return new FormatError('unsupported', message, file, tensor);
}

/** The rank and alpha the output gives a module: the first adapter's alpha at the new rank, its rsLoRA rule. */
function outputScale(rank: number, alpha: number, rslora: boolean): number {
  return rslora ? alpha / Math.sqrt(rank) : alpha / rank;
}

function checkInputs(ads: readonly ParsedAdapter[], args: LoraCombineArgs): void {
  const single = ads.length === 1 && args.inputs[0].weight === 1 && args.method !== 'svd';
  for (const ad of ads) {
    if (ad.format !== 'peft') throw refuse(ad.path, 'lora-combine takes PEFT adapters (a folder with adapter_config.json)');
    const dora = ad.config?.useDora || ad.modules.some((m) => m.magnitude);
    // DoRA renormalises each column of W + ΔW by its own magnitude: a sum of DoRA adapters is no DoRA adapter.
    if (dora && !single) throw refuse(ad.path, 'DoRA adapters cannot be combined exactly (each one renormalises W + ΔW by its own magnitudes); only a single DoRA adapter at weight 1 with --method cat or linear is copied');
    const bias = ad.modules.find((m) => m.kind === 'bias');
    if (bias) throw refuse(ad.path, `lora_B.bias of '${bias.name}' is not a low-rank product: adapters with lora_bias cannot be combined`, bias.up.name);
    if (ad.replacements.length > 0 && !single) throw refuse(ad.path, `modules_to_save ('${ad.replacements[0].name}') are whole tensors, not low-rank factors: they cannot be combined`, ad.replacements[0].key);
    if (ad.config!.fanInFanOut !== ads[0].config!.fanInFanOut) throw refuse(ad.path, 'fan_in_fan_out differs from the first adapter: the factors are not of the same matrices');
  }
}

function planModules(ads: readonly ParsedAdapter[], args: LoraCombineArgs): Plan[] {
  const byName = new Map<string, { ad: ParsedAdapter; m: AdapterModule; weight: number }[]>();
  ads.forEach((ad, i) => {
    for (const m of ad.modules) {
      const list = byName.get(m.name) ?? [];
      list.push({ ad, m, weight: args.inputs[i].weight });
      byName.set(m.name, list);
    }
  });
  const rslora = ads[0].config!.useRslora;
  const plans: Plan[] = [];
  for (const [name, parts] of byName) {
    const first = parts[0].m;
    for (const p of parts) {
      const same = p.m.kind === first.kind && p.m.up.shape[0] === first.up.shape[0] && p.m.down.shape.slice(1).join() === first.down.shape.slice(1).join();
      if (!same) throw new FormatError('shape_invalid', `module '${name}' is ${first.up.shape[0]}×[${first.down.shape.slice(1)}] in ${parts[0].ad.path} but ${p.m.up.shape[0]}×[${p.m.down.shape.slice(1)}] here`, p.ad.path, p.m.down.name);
    }
    let rank: number;
    if (args.method === 'cat') rank = parts.reduce((s, p) => s + p.m.rank, 0);
    else if (args.method === 'linear') {
      const odd = parts.find((p) => p.m.rank !== first.rank);
      if (odd) throw refuse(odd.ad.path, `module '${name}' has rank ${odd.m.rank}, not ${first.rank}: --method linear needs equal ranks (use cat or svd)`, odd.m.down.name);
      rank = first.rank;
    } else rank = args.rank ?? Math.max(...parts.map((p) => p.m.rank));
    plans.push({ name, parts, rank, alpha: first.alpha, scale: outputScale(rank, first.alpha, rslora) });
  }
  return plans;
}

/** Factors as matrices: A r×(in·k…), B out×r (conv kernels flattened). */
async function factors(p: Plan['parts'][number]): Promise<{ a: Mat; b: Mat }> {
  const { ad, m } = p;
  const a = await readValues(ad.model, m.down);
  const b = await readValues(ad.model, m.up);
  return { a: mat(m.rank, a.length / m.rank, a), b: mat(b.length / m.rank, m.rank, b) };
}

/** One module's output factors (A k×in, B out×k) in float64, the output's scale already divided out. */
async function combineModule(plan: Plan, method: CombineMethod): Promise<{ a: Mat; b: Mat }> {
  const fs = await Promise.all(plan.parts.map(factors));
  // cᵢ = wᵢ·scaleᵢ / scale_out: the factor each product takes in the output's own scale.
  const cs = plan.parts.map((p) => (p.weight * p.m.scale) / plan.scale);
  const inDim = fs[0].a.cols;
  const outDim = fs[0].b.rows;
  if (method === 'linear') {
    const a = mat(plan.rank, inDim);
    const b = mat(outDim, plan.rank);
    fs.forEach((f, i) => {
      const root = Math.sqrt(Math.abs(cs[i]));
      const sa = cs[i] >= 0 ? root : -root;
      for (let k = 0; k < a.v.length; k++) a.v[k] += sa * f.a.v[k];
      for (let k = 0; k < b.v.length; k++) b.v[k] += root * f.b.v[k];
    });
    return { a, b };
  }
  const total = fs.reduce((s, f) => s + f.a.rows, 0);
  const a = mat(total, inDim);
  const b = mat(outDim, total);
  let at = 0;
  fs.forEach((f, i) => {
    a.v.set(f.a.v, at * inDim);
    for (let r = 0; r < outDim; r++) for (let k = 0; k < f.b.cols; k++) b.v[r * total + at + k] = cs[i] * f.b.v[r * f.b.cols + k];
    at += f.a.rows;
  });
  if (method === 'cat') return { a, b };
  const t = truncatedProduct(b, a, plan.rank);
  return { a: t.down, b: t.up };
}

function outDtype(dtypes: readonly DType[]): DType {
  return dtypes.every((d) => d === dtypes[0]) && (dtypes[0] === 'BF16' || dtypes[0] === 'F16') ? dtypes[0] : 'F32';
}

/** The output's adapter_config.json: the first adapter's, with the new ranks and alphas. */
async function outputConfig(ads: readonly ParsedAdapter[], plans: readonly Plan[]): Promise<string> {
  const first = ads[0];
  const cfgPath = join(first.file, '..', 'adapter_config.json');
  const j = JSON.parse(await readSmallTextFile(cfgPath, MAX_CONFIG_BYTES, 'adapter_config.json', 'config_invalid')) as Record<string, unknown>;
  const count = (xs: number[]) => [...xs.reduce((m, x) => m.set(x, (m.get(x) ?? 0) + 1), new Map<number, number>())].sort((x, y) => y[1] - x[1])[0]?.[0];
  const r = count(plans.map((p) => p.rank)) ?? 8;
  const alpha = count(plans.map((p) => p.alpha)) ?? r;
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  for (const p of plans) {
    // Full module paths as keys: PEFT matches a key against the end of each module's path.
    if (p.rank !== r) rankPattern[p.name] = p.rank;
    if (p.alpha !== alpha) alphaPattern[p.name] = p.alpha;
  }
  const targets = ads.map((a) => a.config!.targetModules);
  const target = targets.every((t) => Array.isArray(t)) ? [...new Set(targets.flatMap((t) => t as string[]))].sort() : targets.every((t) => typeof t === 'string') ? targets.map((t) => `(${t})`).join('|') : j.target_modules;
  return JSON.stringify({ ...j, r, lora_alpha: alpha, rank_pattern: rankPattern, alpha_pattern: alphaPattern, target_modules: target }, null, 2) + '\n';
}

/** Combines the adapters (see the module comment) into `args.output`. */
export async function loraCombine(args: LoraCombineArgs, ctx: JobContext = {}): Promise<LoraCombineResult> {
  const { signal } = ctx;
  if (args.inputs.length === 0) throw new Error('lora-combine needs at least one adapter');
  if (args.rank !== undefined && !(Number.isSafeInteger(args.rank) && args.rank > 0)) throw new Error(`--rank must be a positive integer, not ${args.rank}`);
  const ads: ParsedAdapter[] = [];
  try {
    for (const i of args.inputs) ads.push(await openAdapter(i.path));
    checkInputs(ads, args);
    const plans = planModules(ads, args);
    const files = [join(args.output, 'adapter_model.safetensors'), join(args.output, 'adapter_config.json')];
    const inputs = ads.flatMap((a) => [a.file, join(a.file, '..', 'adapter_config.json')]);
    const { undo } = await prepareOutputs(inputs, { files }, ctx.notice);
    let done = 0;
    let last: { name: string; r: Promise<{ a: Mat; b: Mat }> } | undefined;
    const result = (p: Plan) => {
      if (last?.name !== p.name) last = { name: p.name, r: combineModule(p, args.method) };
      return last.r;
    };
    const sources: TensorSource[] = plans.flatMap((p) => {
      const m = p.parts[0].m;
      const dtype = outDtype(p.parts.flatMap((x) => [x.m.down.dtype, x.m.up.dtype]));
      const tensor = (which: 'a' | 'b'): TensorSource => ({
        name: which === 'a' ? m.down.name : m.up.name,
        dtype,
        shape: which === 'a' ? [p.rank, ...m.down.shape.slice(1)] : [m.up.shape[0], p.rank, ...m.up.shape.slice(2)],
        data: async function* () {
          throwIfCancelled(signal);
          const r = await result(p);
          const x = which === 'a' ? r.a : r.b;
          if (which === 'b') ctx.progress?.({ done: ++done, total: plans.length, unit: 'tensors', message: p.name });
          yield encodeMerged(x.v, x.v.length, dtype);
        },
      });
      return [tensor('a'), tensor('b')];
    });
    try {
      const metadata = { format: 'pt', 'tensor_workbench.lora_combine': JSON.stringify({ method: args.method, inputs: args.inputs, rank: args.rank ?? null }) };
      await writeSafetensors(files[0], sources, { metadata, order: 'source', signal });
      await writeTextAtomic(files[1], await outputConfig(ads, plans));
    } catch (e) {
      await undo();
      throw e;
    }
    return { method: args.method, modules: plans.length, ranks: [...new Set(plans.map((p) => p.rank))].sort((x, y) => x - y), files };
  } finally {
    await Promise.all(ads.map((a) => a.close()));
  }
}
