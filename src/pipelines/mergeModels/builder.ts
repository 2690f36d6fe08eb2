/**
 * The mergekit YAML a merge wizard writes: the methods' needs (base model, per-model
 * weight and density, slerp's t) read from the method table, so a new method's
 * parameters reach the wizard without a second list. The text parses back through
 * `parseMergeConfig` to the same merge.
 */
import { stringify } from 'yaml';
import { METHODS, type MethodName } from './methods';

export interface MergeSpecModel {
  readonly path: string;
  readonly weight?: number;
  readonly density?: number;
}

export interface MergeSpec {
  readonly method: MethodName;
  /** The models merged, the base excluded. */
  readonly models: readonly MergeSpecModel[];
  readonly base?: string;
  /** slerp's interpolation factor. */
  readonly t?: number;
  readonly dtype?: 'bfloat16' | 'float16' | 'float32';
}

export interface MethodNeeds {
  readonly base: boolean;
  readonly weight: boolean;
  readonly density: boolean;
  readonly t: boolean;
  /** Models besides the base: the fewest and the most the method takes. */
  readonly minModels: number;
  readonly maxModels: number;
}

/** What a wizard asks for a method. */
export function methodNeeds(method: MethodName): MethodNeeds {
  const m = METHODS[method];
  const per = new Set(m.modelParams.map((p) => p.name));
  const base = m.base === 'required';
  // slerp pairs the base with exactly one model; model_stock needs two to find the angle between them.
  const [minModels, maxModels] = method === 'slerp' || method === 'passthrough' ? [1, 1] : method === 'model_stock' ? [2, Infinity] : [1, Infinity];
  return { base, weight: per.has('weight'), density: per.has('density'), t: m.globalParams.some((p) => p.name === 't'), minModels, maxModels };
}

/** The methods a wizard offers: passthrough copies one model, which only slices make useful. */
export const WIZARD_METHODS: readonly MethodName[] = (Object.keys(METHODS) as MethodName[]).filter((m) => m !== 'passthrough');

/** The YAML of `spec`: the base listed first among the models (as mergekit's examples do), parameters only where the method takes them. */
export function buildMergeYaml(spec: MergeSpec): string {
  const needs = methodNeeds(spec.method);
  const models: Record<string, unknown>[] = [];
  if (needs.base && spec.base !== undefined) models.push({ model: spec.base });
  for (const m of spec.models) {
    const parameters: Record<string, number> = {};
    if (needs.weight && m.weight !== undefined) parameters.weight = m.weight;
    if (needs.density && m.density !== undefined) parameters.density = m.density;
    models.push(Object.keys(parameters).length > 0 ? { model: m.path, parameters } : { model: m.path });
  }
  const doc: Record<string, unknown> = { merge_method: spec.method };
  if (needs.base && spec.base !== undefined) doc.base_model = spec.base;
  if (needs.t && spec.t !== undefined) doc.parameters = { t: spec.t };
  doc.models = models;
  if (spec.dtype) doc.dtype = spec.dtype;
  if (needs.base) doc.tokenizer_source = 'base';
  return stringify(doc, { lineWidth: 0 });
}

/** Whether a YAML file's text reads as a mergekit config (a top-level merge_method key): the explorer offers to run it. */
export function looksLikeMergeConfig(text: string): boolean {
  return /^merge_method\s*:/m.test(text);
}
