/**
 * mergekit's YAML merge configuration, read and checked before any model is opened.
 * The keys keep mergekit's meaning: `models` (each a `model` path and its `parameters`),
 * `merge_method`, `base_model`, global `parameters`, `dtype` (or `out_dtype`) and
 * `tokenizer_source`. Every problem found is reported, each on its own line, so a user
 * fixes a config in one round.
 */
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

export interface MergeConfig {
  readonly method: MethodName;
  readonly models: readonly ModelEntry[];
  readonly baseModel?: string;
  readonly parameters: Readonly<Record<string, Setting>>;
  /** Output dtype; absent: each tensor keeps the base's (or first model's) dtype. */
  readonly dtype?: DType;
}

// A merge config is a page of text; anything larger is not one (and would cost time to parse).
const MAX_CONFIG_BYTES = 1 << 20;
// mergekit's dtype names (torch's), and their safetensors dtypes.
const DTYPES: Record<string, DType> = { bfloat16: 'BF16', float16: 'F16', float32: 'F32', bf16: 'BF16', fp16: 'F16', half: 'F16', float: 'F32', fp32: 'F32' };
const TOP_KEYS = new Set(['models', 'merge_method', 'base_model', 'parameters', 'dtype', 'out_dtype', 'tokenizer_source', 'tokenizer', 'chat_template', 'name']);

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

function readDtype(doc: Record<string, unknown>, problems: string[]): DType | undefined {
  const key = doc.out_dtype !== undefined ? 'out_dtype' : 'dtype';
  const v = doc[key];
  if (v === undefined || v === null) return undefined;
  const d = typeof v === 'string' ? DTYPES[v.toLowerCase()] : undefined;
  if (!d) problems.push(`${key}: expected bfloat16, float16 or float32, not ${JSON.stringify(v)}`);
  return d;
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
  for (const k of Object.keys(doc)) {
    if (k === 'slices') problems.push('slices: not supported yet (use models)');
    else if (!TOP_KEYS.has(k)) problems.push(`${k}: unknown key`);
  }
  const methodName = doc.merge_method;
  const method: MergeMethod | undefined = typeof methodName === 'string' && Object.hasOwn(METHODS, methodName) ? METHODS[methodName as MethodName] : undefined;
  if (!method) problems.push(`merge_method: expected one of ${Object.keys(METHODS).join(', ')}, not ${JSON.stringify(methodName)}`);
  const globalNames = new Set([...(method?.globalParams ?? []), ...(method?.modelParams ?? [])].map((p) => p.name));
  const modelNames = new Set((method?.modelParams ?? []).map((p) => p.name));
  const models = readModels(doc.models, modelNames, problems);
  const parameters = readParameters(doc.parameters, 'parameters', globalNames, problems);
  const base = doc.base_model;
  if (base !== undefined && (typeof base !== 'string' || base === '')) problems.push('base_model: expected a path');
  const baseModel = typeof base === 'string' && base !== '' ? base : undefined;
  const tok = doc.tokenizer_source;
  if (tok !== undefined && tok !== null && tok !== 'base') problems.push(`tokenizer_source: only 'base' is supported (the base's tokenizer files are copied), not ${JSON.stringify(tok)}`);
  if (doc.tokenizer !== undefined || doc.chat_template !== undefined) problems.push('tokenizer / chat_template: not supported (the base\'s tokenizer files are copied)');
  const dtype = readDtype(doc, problems);
  if (method && models.length > 0) problems.push(...method.checkModels(models.map((m) => m.model), baseModel));
  if (method && models.length > 0) {
    for (const p of method.modelParams.filter((x) => x.required)) {
      models.forEach((m, i) => {
        if (m.model !== baseModel && !(p.name in m.parameters) && !(p.name in parameters)) problems.push(`models[${i}].parameters.${p.name}: required by ${method.name}`);
      });
    }
    for (const p of method.globalParams.filter((x) => x.required)) if (!(p.name in parameters)) problems.push(`parameters.${p.name}: required by ${method.name}`);
  }
  if (problems.length > 0) throw new MergeConfigError(file, problems);
  return { method: method!.name as MethodName, models, baseModel, parameters, dtype };
}
