/**
 * The plan of a `slices` merge: the output's decoder layers are the slices' layers in
 * order, renumbered from 0; layer i of a slice merges layer start+i of each of its
 * sources. The tensors outside the layers follow mergekit: those before the layers
 * (embeddings) merge the first slice's sources, the rest (final norm, lm_head) the last
 * slice's. Names and order come from the reference model (base_model, else the first
 * slice's first source); parameters evaluate at the output layer's position.
 */
import { storageOf, type Model, type TensorInfo } from '../../format/model';
import type { DType } from '../../format/dtypes';
import type { DecodedModel } from '../decodedModel';
import type { MergeConfig, SliceConfig, SliceSource } from './config';
import type { KernelContext, MergeMethod } from './methods';
import { layerOf, layerT, ParamError, renameLayer, resolveParam, type Setting } from './params';
import { layerCount, MergeModelsError, type PlannedTensor } from './plan';

// The dtypes a merge reads: float values that f64 holds exactly.
const READABLE = new Set<DType>(['F64', 'F32', 'BF16', 'F16']);

interface Input {
  readonly model: Model;
  readonly source: SliceSource;
  /** Position in the slice's sources: seeds DARE's draws. */
  readonly index: number;
}

interface SlicePlanner {
  readonly config: MergeConfig;
  readonly method: MergeMethod;
  readonly numLayers: number;
  readonly seed: number;
  readonly problems: string[];
  readonly paramProblems: string[];
  readonly out: PlannedTensor[];
}

function shapeText(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

/** The base first (methods that take one), then the other sources in order. */
function orderInputs(p: SlicePlanner, inputs: readonly Input[]): Input[] {
  if (p.method.base !== 'required') return [...inputs];
  const base = inputs.filter((x) => x.source.model === p.config.baseModel);
  return [...base, ...inputs.filter((x) => x.source.model !== p.config.baseModel)];
}

/** Plans one output tensor from the inputs' tensors `names[k]`, after checking that they exist and match. */
function planOne(p: SlicePlanner, outName: string, inputs: readonly Input[], names: readonly string[], slice: SliceConfig): void {
  const infos: TensorInfo[] = [];
  inputs.forEach((x, k) => {
    const t = x.model.tensor(names[k]);
    if (!t) p.problems.push(`${x.model.path}: tensor '${names[k]}': missing (needed for the output's '${outName}')`);
    else if (!READABLE.has(t.dtype) || storageOf(t).kind !== 'dtype') p.problems.push(`${x.model.path}: tensor '${t.name}': ${t.dtype} cannot be merged (F64, F32, BF16 or F16)`);
    else if (infos.length > 0 && (t.shape.length !== infos[0].shape.length || t.shape.some((d, i) => d !== infos[0].shape[i]))) p.problems.push(`${x.model.path}: tensor '${t.name}': shape ${shapeText(t.shape)}, but ${shapeText(infos[0].shape)} in ${inputs[0].model.path}`);
    else infos.push(t);
  });
  if (infos.length !== inputs.length) return;
  const hasBase = p.method.base === 'required';
  const operands = hasBase ? inputs.slice(1) : inputs;
  const global: Record<string, Setting> = { ...p.config.parameters, ...slice.parameters };
  const t = layerT(outName, p.numLayers);
  try {
    const ctx: KernelContext = {
      tensor: outName,
      shape: infos[0].shape,
      numel: infos[0].numel,
      global: Object.fromEntries(p.method.globalParams.map((d) => [d.name, resolveParam(d, outName, t, undefined, global)])),
      perModel: operands.map((x) => Object.fromEntries(p.method.modelParams.map((d) => [d.name, resolveParam(d, outName, t, x.source.parameters, global)]))),
      modelIndex: operands.map((x) => x.index),
      seed: p.seed,
    };
    p.method.kernel(ctx);
    // A quantized input tensor is written dequantized, in BF16, as the plain merges write it.
    const stored = (inputs[0].model as Partial<DecodedModel>).storedOf?.(infos[0].name);
    const out = p.config.dtype ?? (stored ? 'BF16' : infos[0].dtype === 'F64' ? 'F32' : infos[0].dtype);
    p.out.push({ name: outName, info: infos[0], out, ctx, models: inputs.map((x) => x.model), infos, hasBase });
  } catch (e) {
    if (!(e instanceof ParamError)) throw e;
    p.paramProblems.push(e.message);
  }
}

/** The tensors of each layer of a model, in file order. */
function byLayer(m: Model): Map<number, TensorInfo[]> {
  const out = new Map<number, TensorInfo[]>();
  for (const t of m.tensors) {
    const l = layerOf(t.name);
    if (l === undefined) continue;
    let list = out.get(l);
    if (!list) out.set(l, (list = []));
    list.push(t);
  }
  return out;
}

/** Plans the output layers `first`… of one slice, from the first source's tensor names. */
function planSlice(p: SlicePlanner, slice: SliceConfig, inputs: readonly Input[], first: number): void {
  const [start, end] = inputs[0].source.layerRange;
  const layers = inputs.map((x) => byLayer(x.model));
  for (let i = 0; i < end - start; i++) {
    const own = layers[0].get(start + i) ?? [];
    inputs.forEach((x, k) => {
      const n = (layers[k].get(x.source.layerRange[0] + i) ?? []).length;
      if (k > 0 && n > own.length) p.problems.push(`${x.model.path}: layer ${x.source.layerRange[0] + i} has ${n} tensors, ${own.length} in layer ${start + i} of ${inputs[0].model.path}`);
    });
    for (const t of own) {
      planOne(p, renameLayer(t.name, first + i), inputs, inputs.map((x) => renameLayer(t.name, x.source.layerRange[0] + i)), slice);
    }
  }
}

async function inputsOf(slice: SliceConfig, where: string, open: (path: string) => Promise<Model>, problems: string[]): Promise<Input[]> {
  const inputs: Input[] = [];
  for (const [index, source] of slice.sources.entries()) {
    const model = await open(source.model);
    const n = await layerCount(model);
    if (source.layerRange[1] > n) problems.push(`${where}.sources[${index}].layer_range: [${source.layerRange.join(', ')}] goes past the ${n} layers of ${model.path}`);
    inputs.push({ model, source, index });
  }
  return inputs;
}

/** Plans every output tensor of a slices config; refuses every problem at once, before anything is written. */
export async function planSlices(config: MergeConfig, slices: readonly SliceConfig[], method: MergeMethod, open: (path: string) => Promise<Model>, reference: Model, seed: number): Promise<{ tensors: PlannedTensor[]; numLayers: number }> {
  const numLayers = slices.reduce((s, sl) => s + sl.sources[0].layerRange[1] - sl.sources[0].layerRange[0], 0);
  const p: SlicePlanner = { config, method, numLayers, seed, problems: [], paramProblems: [], out: [] };
  const all: Input[][] = [];
  for (const [i, sl] of slices.entries()) all.push(await inputsOf(sl, `slices[${i}]`, open, p.problems));
  if (p.problems.length > 0) throw new MergeModelsError('mismatch', p.problems);
  const outside = reference.tensors.filter((t) => layerOf(t.name) === undefined);
  const pre = outside.filter((t) => layerT(t.name, 1) === 0);
  const post = outside.filter((t) => layerT(t.name, 1) !== 0);
  const first = orderInputs(p, all[0]);
  for (const t of pre) planOne(p, t.name, first, first.map(() => t.name), slices[0]);
  let next = 0;
  slices.forEach((sl, i) => {
    planSlice(p, sl, orderInputs(p, all[i]), next);
    next += sl.sources[0].layerRange[1] - sl.sources[0].layerRange[0];
  });
  const last = orderInputs(p, all[all.length - 1]);
  for (const t of post) planOne(p, t.name, last, last.map(() => t.name), slices[slices.length - 1]);
  if (p.problems.length > 0) throw new MergeModelsError('mismatch', p.problems);
  if (p.paramProblems.length > 0) throw new MergeModelsError('parameter', p.paramProblems);
  return { tensors: p.out, numLayers };
}
