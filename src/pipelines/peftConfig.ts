/**
 * PEFT's adapter_config.json: the fields that change a merge's arithmetic, checked
 * for shape before use (the file comes with a downloaded adapter, so anything may be
 * in it), and the per-module rank and alpha that its patterns give.
 */
import { FormatError } from '../format/errors';
import { MatchBudget, MAX_PATTERN_CHARS, MAX_PATTERN_KEYS, PatternKeys } from './peftPatterns';

/** The parts of PEFT's adapter_config.json a merge needs. */
export interface PeftConfig {
  readonly r: number;
  readonly loraAlpha: number;
  readonly useRslora: boolean;
  readonly fanInFanOut: boolean;
  readonly useDora: boolean;
  readonly rankPattern: Readonly<Record<string, number>>;
  readonly alphaPattern: Readonly<Record<string, number>>;
  readonly modulesToSave: readonly string[];
  readonly targetModules: readonly string[] | string | undefined;
  readonly peftType: string;
  /** rank_pattern's and alpha_pattern's keys, ready to match (see peftPatterns.ts). */
  readonly rankKeys: PatternKeys;
  readonly alphaKeys: PatternKeys;
}

/**
 * Bytes of an adapter_config.json. A config with the largest pattern maps allowed
 * (two of 10,000 keys of a module path and a number) is about 2 MB.
 */
export const MAX_CONFIG_BYTES = 16 << 20;

function invalid(file: string, key: string, what: string, v: unknown): FormatError {
  const shown = JSON.stringify(v) ?? String(v);
  return new FormatError('config_invalid', `key '${key}' must be ${what}, not ${shown.length > 40 ? shown.slice(0, 40) + '…' : shown}`, file);
}

const absent = (v: unknown) => v === undefined || v === null;

function finite(v: unknown, key: string, file: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw invalid(file, key, 'a finite number', v);
  return v;
}

function positiveInt(v: unknown, key: string, file: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw invalid(file, key, 'a positive integer', v);
  return v;
}

function flag(v: unknown, key: string, file: string): boolean {
  if (absent(v)) return false;
  if (typeof v !== 'boolean') throw invalid(file, key, 'true or false', v);
  return v;
}

function numberMap(v: unknown, key: string, file: string, value: (x: unknown, key: string, file: string) => number): Record<string, number> {
  if (absent(v)) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw invalid(file, key, 'an object of module patterns to numbers', v);
  const out: Record<string, number> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = value(x, `${key}['${k}']`, file);
  return out;
}

function stringList(v: unknown, key: string, file: string): string[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw invalid(file, key, 'a list of module names', v);
  if (v.length > MAX_PATTERN_KEYS) throw new FormatError('config_invalid', `key '${key}' lists ${v.length} names, above the limit of ${MAX_PATTERN_KEYS}`, file);
  return v as string[];
}

/**
 * Reads and checks the fields of adapter_config.json that change the arithmetic; refuses
 * adapter types that are not LoRA. `budget` bounds the time spent compiling patterns.
 */
export function parsePeftConfig(text: string, file: string, budget = new MatchBudget(file)): PeftConfig {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new FormatError('config_invalid', `is not JSON: ${(e as Error).message}`, file);
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new FormatError('config_invalid', `must be a JSON object, not ${j === null ? 'null' : Array.isArray(j) ? 'an array' : typeof j}`, file);
  const o = j as Record<string, unknown>;
  if (!absent(o.peft_type) && typeof o.peft_type !== 'string') throw invalid(file, 'peft_type', 'a string', o.peft_type);
  const peftType = typeof o.peft_type === 'string' ? o.peft_type : 'LORA';
  if (peftType !== 'LORA') throw new FormatError('unsupported', `peft_type ${peftType} is not LoRA; only LoRA (and DoRA) adapters can be merged`, file);
  const tm = o.target_modules;
  if (typeof tm === 'string' && tm.length > MAX_PATTERN_CHARS) throw new FormatError('config_invalid', `key 'target_modules' is ${tm.length} characters, above the limit of ${MAX_PATTERN_CHARS}`, file);
  const rankPattern = numberMap(o.rank_pattern, 'rank_pattern', file, positiveInt);
  const alphaPattern = numberMap(o.alpha_pattern, 'alpha_pattern', file, finite);
  return {
    r: absent(o.r) ? 8 : positiveInt(o.r, 'r', file),
    loraAlpha: absent(o.lora_alpha) ? 8 : finite(o.lora_alpha, 'lora_alpha', file),
    useRslora: flag(o.use_rslora, 'use_rslora', file),
    fanInFanOut: flag(o.fan_in_fan_out, 'fan_in_fan_out', file),
    useDora: flag(o.use_dora, 'use_dora', file),
    rankPattern,
    alphaPattern,
    modulesToSave: absent(o.modules_to_save) ? [] : stringList(o.modules_to_save, 'modules_to_save', file),
    targetModules: absent(tm) ? undefined : typeof tm === 'string' ? tm : stringList(tm, 'target_modules', file),
    peftType,
    rankKeys: new PatternKeys(Object.keys(rankPattern), 'rank_pattern', file).validate(budget),
    alphaKeys: new PatternKeys(Object.keys(alphaPattern), 'alpha_pattern', file).validate(budget),
  };
}

/**
 * PEFT's per-module override lookup: the first key, in the config's order, that
 * matches the whole module name or its tail after a `.` (see peftPatterns.ts).
 */
export function patternKeyFor(keys: readonly string[], module: string): string | undefined {
  return new PatternKeys(keys, 'pattern', '<pattern>').keyFor(module);
}

/** Rank, alpha and scale of a PEFT module, with rank_pattern/alpha_pattern applied. */
export function peftScaling(cfg: PeftConfig, module: string, budget?: MatchBudget): { rank: number; alpha: number; scale: number } {
  const rk = cfg.rankKeys.keyFor(module, budget);
  const ak = cfg.alphaKeys.keyFor(module, budget);
  const rank = rk !== undefined ? cfg.rankPattern[rk] : cfg.r;
  const alpha = ak !== undefined ? cfg.alphaPattern[ak] : cfg.loraAlpha;
  return { rank, alpha, scale: cfg.useRslora ? alpha / Math.sqrt(rank) : alpha / rank };
}
