/**
 * mergekit's YAML merge configuration, read and checked before any model is opened.
 * The keys keep mergekit's meaning: `models` (each a `model` path and its `parameters`),
 * `merge_method`, `base_model`, global `parameters`, `dtype` (or `out_dtype`) and
 * `tokenizer_source`; or, instead of `models`, `slices`: each a list of `sources`
 * (`model`, `layer_range: [start, end)`, `parameters`) of equal-length layer ranges
 * merged into the next layers of the output, with the slice's own `parameters` over the
 * global ones. Every problem found is reported, each on its own line, so a user fixes a
 * config in one round.
 */
import { resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { DType } from '../../format/dtypes';
import { METHODS, type MergeMethod, type MethodName } from './methods';
import { checkSetting, type Setting } from './params';

/** One problem per entry; `file` is the config's path. */
export class MergeConfigError extends Error {
  override readonly name = 'MergeConfigError';
  constructor(
    readonly file: string,
    readonly problems: readonly string[],
  ) {
    super(`${file}: ${problems.join('; ')}`);
  }
}

export interface ModelEntry {
  readonly model: string;
  readonly parameters: Readonly<Record<string, Setting>>;
}

export interface SliceSource extends ModelEntry {
  /** Layers [start, end) of the source model. */
  readonly layerRange: readonly [number, number];
}

export interface SliceConfig {
  readonly sources: readonly SliceSource[];
  readonly parameters: Readonly<Record<string, Setting>>;
}

export interface MergeConfig {
  readonly method: MethodName;
  /** With `slices`: each model the slices name, once, in order of first use, without parameters. */
  readonly models: readonly ModelEntry[];
  readonly slices?: readonly SliceConfig[];
  readonly baseModel?: string;
  readonly parameters: Readonly<Record<string, Setting>>;
  /** Output dtype; absent: each tensor keeps the base's (or first model's) dtype. */
  readonly dtype?: DType;
}

// A merge config is a page of text; anything larger is not one (and would cost time to parse).
const MAX_CONFIG_BYTES = 1 << 20;
// mergekit's dtype names (torch's), and their safetensors dtypes.
const DTYPES: Record<string, DType> = { bfloat16: 'BF16', float16: 'F16', float32: 'F32', bf16: 'BF16', fp16: 'F16', half: 'F16', float: 'F32', fp32: 'F32' };
const TOP_KEYS = new Set(['models', 'slices', 'merge_method', 'base_model', 'parameters', 'dtype', 'out_dtype', 'tokenizer_source', 'tokenizer', 'chat_template', 'name']);

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Checks a `parameters` map against the names `allowed`; `where` prefixes each problem. */
function readParameters(v: unknown, where: string, allowed: ReadonlySet<string>, problems: string[]): Record<string, Setting> {
  if (v === undefined || v === null) return {};
  if (!isRecord(v)) {
    problems.push(`${where}: expected a map of parameter names to values`);
    return {};
  }
  const out: Record<string, Setting> = {};
  for (const [k, val] of Object.entries(v)) {
    if (!allowed.has(k)) {
      problems.push(`${where}.${k}: not a parameter of this method (it takes ${[...allowed].sort().join(', ') || 'none'})`);
      continue;
    }
    const bad = checkSetting(val);
    if (bad) problems.push(`${where}.${k}: ${bad}`);
    else out[k] = val as Setting;
  }
  return out;
}

function readModels(v: unknown, allowed: ReadonlySet<string>, problems: string[]): ModelEntry[] {
  if (!Array.isArray(v) || v.length === 0) {
    problems.push('models: expected a list of {model, parameters}');
    return [];
  }
  const out: ModelEntry[] = [];
  v.forEach((m, i) => {
    const where = `models[${i}]`;
    if (!isRecord(m) || typeof m.model !== 'string' || m.model === '') {
      problems.push(`${where}: expected {model: PATH, parameters: {...}}`);
      return;
    }
    for (const k of Object.keys(m)) if (k !== 'model' && k !== 'parameters') problems.push(`${where}.${k}: unknown key (expected model, parameters)`);
    out.push({ model: m.model, parameters: readParameters(m.parameters, `${where}.parameters`, allowed, problems) });
  });
  const seen = new Set<string>();
  for (const m of out) {
    if (seen.has(m.model)) problems.push(`models: '${m.model}' is listed twice`);
    seen.add(m.model);
  }
  return out;
}

// A decoder with more layers than this is not a model anyone merges; the bound keeps plans small.
const MAX_LAYER = 1 << 16;

function readRange(v: unknown, where: string, problems: string[]): [number, number] | undefined {
  const ok = Array.isArray(v) && v.length === 2 && v.every((x) => Number.isSafeInteger(x) && x >= 0 && x <= MAX_LAYER) && v[0] < v[1];
  if (!ok) problems.push(`${where}: expected [start, end] with 0 <= start < end <= ${MAX_LAYER}, not ${JSON.stringify(v)}`);
  return ok ? [v[0] as number, v[1] as number] : undefined;
}

function readSlice(s: unknown, i: number, allowed: ReadonlySet<string>, globalNames: ReadonlySet<string>, problems: string[]): SliceConfig | undefined {
  const where = `slices[${i}]`;
  if (!isRecord(s) || !Array.isArray(s.sources) || s.sources.length === 0) {
    problems.push(`${where}: expected {sources: [{model, layer_range}, ...]}`);
    return undefined;
  }
  for (const k of Object.keys(s)) if (k !== 'sources' && k !== 'parameters') problems.push(`${where}.${k}: unknown key (expected sources, parameters)`);
  const sources: SliceSource[] = [];
  s.sources.forEach((src: unknown, j: number) => {
    const w = `${where}.sources[${j}]`;
    if (!isRecord(src) || typeof src.model !== 'string' || src.model === '') return void problems.push(`${w}: expected {model: PATH, layer_range: [start, end]}`);
    for (const k of Object.keys(src)) if (!['model', 'layer_range', 'parameters'].includes(k)) problems.push(`${w}.${k}: unknown key (expected model, layer_range, parameters)`);
    const range = readRange(src.layer_range, `${w}.layer_range`, problems);
    const parameters = readParameters(src.parameters, `${w}.parameters`, allowed, problems);
    if (range) sources.push({ model: src.model, layerRange: range, parameters });
  });
  const lengths = new Set(sources.map((x) => x.layerRange[1] - x.layerRange[0]));
  if (lengths.size > 1) problems.push(`${where}: every source's layer_range must span as many layers, got ${sources.map((x) => `[${x.layerRange.join(', ')}]`).join(', ')}`);
  if (new Set(sources.map((x) => x.model)).size < sources.length) problems.push(`${where}: a model is listed twice`);
  return { sources, parameters: readParameters(s.parameters, `${where}.parameters`, globalNames, problems) };
}

function readSlices(v: unknown, allowed: ReadonlySet<string>, globalNames: ReadonlySet<string>, problems: string[]): SliceConfig[] {
  if (!Array.isArray(v) || v.length === 0) {
    problems.push('slices: expected a list of {sources: [...]}');
    return [];
  }
  return v.map((s, i) => readSlice(s, i, allowed, globalNames, problems)).filter((s): s is SliceConfig => s !== undefined);
}

function readDtype(doc: Record<string, unknown>, problems: string[]): DType | undefined {
  const key = doc.out_dtype !== undefined ? 'out_dtype' : 'dtype';
  const v = doc[key];
  if (v === undefined || v === null) return undefined;
  const d = typeof v === 'string' ? DTYPES[v.toLowerCase()] : undefined;
  if (!d) problems.push(`${key}: expected bfloat16, float16 or float32, not ${JSON.stringify(v)}`);
  return d;
}

/** The config with its model paths resolved against `dir` (a config file's folder) instead of the current folder. */
export function resolveConfigPaths(c: MergeConfig, dir: string): MergeConfig {
  const r = (p: string) => resolve(dir, p);
  return {
    ...c,
    models: c.models.map((m) => ({ ...m, model: r(m.model) })),
    ...(c.slices ? { slices: c.slices.map((s) => ({ ...s, sources: s.sources.map((x) => ({ ...x, model: r(x.model) })) })) } : {}),
    ...(c.baseModel !== undefined ? { baseModel: r(c.baseModel) } : {}),
  };
}

/** Parses and checks a config's text; throws `MergeConfigError` listing every problem. */
export function parseMergeConfig(text: string, file: string): MergeConfig {
  if (text.length > MAX_CONFIG_BYTES) throw new MergeConfigError(file, [`larger than ${MAX_CONFIG_BYTES} bytes: not a merge config`]);
  // Aliases are capped so that a small file cannot expand into a huge document.
  const parsed = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  if (parsed.errors.length > 0) throw new MergeConfigError(file, parsed.errors.map((e) => `YAML: ${e.message.split('\n')[0]}`));
  const doc: unknown = parsed.toJS({ maxAliasCount: 100 });
  if (!isRecord(doc)) throw new MergeConfigError(file, ['expected a map with models and merge_method']);
  const problems: string[] = [];
  for (const k of Object.keys(doc)) if (!TOP_KEYS.has(k)) problems.push(`${k}: unknown key`);
  if ((doc.slices === undefined) === (doc.models === undefined)) problems.push('models / slices: give exactly one of them');
  const methodName = doc.merge_method;
  const method: MergeMethod | undefined = typeof methodName === 'string' && Object.hasOwn(METHODS, methodName) ? METHODS[methodName as MethodName] : undefined;
  if (!method) problems.push(`merge_method: expected one of ${Object.keys(METHODS).join(', ')}, not ${JSON.stringify(methodName)}`);
  const globalNames = new Set([...(method?.globalParams ?? []), ...(method?.modelParams ?? [])].map((p) => p.name));
  const modelNames = new Set((method?.modelParams ?? []).map((p) => p.name));
  const slices = doc.slices !== undefined ? readSlices(doc.slices, modelNames, globalNames, problems) : undefined;
  const listed = doc.models !== undefined ? readModels(doc.models, modelNames, problems) : [];
  const models = slices ? [...new Set(slices.flatMap((sl) => sl.sources.map((x) => x.model)))].map((model) => ({ model, parameters: {} })) : listed;
  const parameters = readParameters(doc.parameters, 'parameters', globalNames, problems);
  const base = doc.base_model;
  if (base !== undefined && (typeof base !== 'string' || base === '')) problems.push('base_model: expected a path');
  const baseModel = typeof base === 'string' && base !== '' ? base : undefined;
  const tok = doc.tokenizer_source;
  if (tok !== undefined && tok !== null && tok !== 'base') problems.push(`tokenizer_source: only 'base' is supported (the base's tokenizer files are copied), not ${JSON.stringify(tok)}`);
  if (doc.tokenizer !== undefined || doc.chat_template !== undefined) problems.push('tokenizer / chat_template: not supported (the base\'s tokenizer files are copied)');
  const dtype = readDtype(doc, problems);
  if (method && slices) slices.forEach((sl, i) => problems.push(...checkGroup(method, sl.sources, baseModel, { ...parameters, ...sl.parameters }, `slices[${i}]`, `slices[${i}].sources`)));
  if (method && listed.length > 0) problems.push(...checkGroup(method, listed, baseModel, parameters, '', 'models'));
  if (problems.length > 0) throw new MergeConfigError(file, problems);
  return { method: method!.name as MethodName, models, ...(slices ? { slices } : {}), baseModel, parameters, dtype };
}

/** The method's checks of one list of models (the config's, or a slice's sources) with the parameters in force. */
function checkGroup(method: MergeMethod, models: readonly ModelEntry[], baseModel: string | undefined, parameters: Readonly<Record<string, Setting>>, where: string, listWhere: string): string[] {
  const problems = method.checkModels(models.map((m) => m.model), baseModel).map((p) => (where ? `${where}: ${p}` : p));
  if (where && method.base === 'required' && baseModel !== undefined && !models.some((m) => m.model === baseModel)) problems.push(`${where}: base_model '${baseModel}' must be one of the slice's sources`);
  for (const p of method.modelParams.filter((x) => x.required)) {
    models.forEach((m, i) => {
      if (m.model !== baseModel && !(p.name in m.parameters) && !(p.name in parameters)) problems.push(`${listWhere}[${i}].parameters.${p.name}: required by ${method.name}`);
    });
  }
  for (const p of method.globalParams.filter((x) => x.required)) if (!(p.name in parameters)) problems.push(`${where ? `${where}.` : ''}parameters.${p.name}: required by ${method.name}`);
  return problems;
}
