/**
 * Parameter values as mergekit reads them: a scalar; a gradient (a list of numbers,
 * interpolated linearly across the layers); or a list of `{filter, value}` conditions,
 * the first whose filter is a substring of the tensor's name (or is absent or `*`)
 * giving the value. A layer's position `t` runs from 0 (first layer) to 1 (last);
 * tensors before the layers (embeddings) take t = 0 and those after (final norm,
 * head) t = 1, as mergekit plans them.
 */
export type Scalar = number | boolean | string;
export interface Condition {
  readonly filter?: string;
  readonly value: Setting;
}
export type Setting = Scalar | readonly Scalar[] | readonly Condition[];

// Conditions nest (a condition's value may be a list of conditions); deeper than this is a mistake, not a config.
const MAX_DEPTH = 8;

/** Why `v` is not a setting, or undefined when it is one. */
export function checkSetting(v: unknown, depth = 0): string | undefined {
  if (depth > MAX_DEPTH) return 'conditions nested too deeply';
  if (typeof v === 'number') return Number.isFinite(v) ? undefined : 'expected a finite number';
  if (typeof v === 'boolean' || typeof v === 'string') return undefined;
  if (!Array.isArray(v) || v.length === 0) return 'expected a number, a gradient list of numbers, or a list of {filter, value}';
  if (v.every((e) => typeof e === 'number' || typeof e === 'boolean' || typeof e === 'string')) {
    const bad = v.find((e) => typeof e === 'number' && !Number.isFinite(e));
    return bad === undefined ? undefined : 'gradient values must be finite numbers';
  }
  for (const c of v) {
    if (typeof c !== 'object' || c === null || Array.isArray(c) || !('value' in c)) return 'a list mixing conditions and values: each entry must be {filter, value}';
    const keys = Object.keys(c).filter((k) => k !== 'filter' && k !== 'value');
    if (keys.length > 0) return `condition has unknown key '${keys[0]}' (expected filter, value)`;
    if ('filter' in c && typeof c.filter !== 'string' && c.filter !== null) return 'a condition\'s filter must be a string';
    const inner = checkSetting(c.value, depth + 1);
    if (inner) return inner;
  }
  return undefined;
}

/** The setting's value for a tensor at layer position `t` (undefined: no condition matched). */
export function evaluateSetting(s: Setting, tensorName: string, t: number): Scalar | undefined {
  if (!Array.isArray(s)) return s as Scalar;
  const list = s as readonly (Scalar | Condition)[];
  if (list.every((e) => typeof e === 'number')) {
    const g = list as readonly number[];
    const scaled = t * (g.length - 1);
    const i0 = Math.floor(scaled);
    const i1 = Math.min(g.length - 1, i0 + 1);
    const frac = scaled - i0;
    return (1 - frac) * g[i0] + frac * g[i1];
  }
  if (list.every((e) => typeof e !== 'object')) return list[Math.trunc(t * (list.length - 1))] as Scalar;
  for (const c of list as readonly Condition[]) {
    if (c.filter === undefined || c.filter === null || c.filter === '*' || tensorName.includes(c.filter)) return evaluateSetting(c.value, tensorName, t);
  }
  return undefined;
}

// `model.layers.3.`, `transformer.h.3.`, `blocks.3.`: the decoder-layer index in the usual naming schemes.
const LAYER_RE = /(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\./;

export function layerOf(name: string): number | undefined {
  const m = LAYER_RE.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** `name` with its decoder-layer index replaced by `layer` (the name has one: `layerOf` is defined). */
export function renameLayer(name: string, layer: number): string {
  return name.replace(LAYER_RE, (m, i: string) => m.slice(0, m.length - i.length - 1) + String(layer) + '.');
}

/** The layer position of a tensor: i / (n − 1) in the layers; 0 before them (embeddings), 1 after. */
export function layerT(name: string, numLayers: number): number {
  const i = layerOf(name);
  if (i === undefined) return /embed|wte|wpe/.test(name) ? 0 : 1;
  return numLayers > 1 ? i / (numLayers - 1) : 1;
}

/** One parameter a method declares: its name, whether it is per model, and its default. */
export interface ParamDef {
  readonly name: string;
  readonly kind: 'number' | 'boolean';
  readonly default?: number | boolean;
  readonly required?: boolean;
}

/** Reads parameter `p` for a tensor: the model's own setting first, then the global one, then the default. */
export function resolveParam(p: ParamDef, tensorName: string, t: number, own: Readonly<Record<string, Setting>> | undefined, global: Readonly<Record<string, Setting>>): number | boolean {
  for (const src of [own, global]) {
    const s = src?.[p.name];
    if (s === undefined) continue;
    const v = evaluateSetting(s, tensorName, t);
    if (v === undefined) continue;
    if (p.kind === 'boolean') {
      if (typeof v === 'boolean') return v;
      if (typeof v === 'number') return v !== 0;
    } else if (typeof v === 'number') return v;
    else if (typeof v === 'boolean') return v ? 1 : 0;
    throw new ParamError(`parameter ${p.name} for '${tensorName}' is ${JSON.stringify(v)}, not a ${p.kind}`);
  }
  if (p.default !== undefined) return p.default;
  throw new ParamError(`parameter ${p.name} has no value for '${tensorName}' (no condition matched, and it has no default)`);
}

export class ParamError extends Error {
  override readonly name = 'ParamError';
}
