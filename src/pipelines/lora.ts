/**
 * LoRA adapters: parsing (PEFT folders, kohya/diffusers single files) and the
 * mapping of every adapter key onto a tensor of the base model. Nothing here
 * reads more than headers, configs and scalar `alpha`s; the factors themselves
 * are read by `readFactors` when the merge reaches their tensor.
 */
import { stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { decodeToF64, decodeValue } from '../format/decode';
import { FormatError } from '../format/errors';
import type { Model, TensorInfo } from '../format/model';
import { openModel } from '../format/openModel';
import { readSmallTextFile } from '../format/source';
import { MAX_CONFIG_BYTES, parsePeftConfig, peftScaling, type PeftConfig } from './peftConfig';
import { MatchBudget } from './peftPatterns';

export { parsePeftConfig, patternKeyFor, peftScaling, type PeftConfig } from './peftConfig';

export type AdapterFormat = 'peft' | 'kohya';

/** One LoRA module as the adapter file names it, before it is matched to the base. */
export interface AdapterModule {
  /** PEFT: the module path (`model.layers.0.self_attn.q_proj`); kohya: the key stem (`lora_unet_…_to_q`). */
  readonly name: string;
  readonly keys: readonly string[];
  /** `linear` covers conv too (the factors' trailing dims say which); `embedding` is PEFT's transposed pair. */
  readonly kind: 'linear' | 'embedding' | 'bias';
  /** A / lora_down / lora_embedding_A: `[r, in, …]` (`[r, vocab]` for embeddings). */
  readonly down: TensorInfo;
  /** B / lora_up / lora_embedding_B: `[out, r, 1, 1…]` (`[hidden, r]`); for `bias`, lora_B.bias `[out]`. */
  readonly up: TensorInfo;
  /** DoRA's magnitude vector, when present. */
  readonly magnitude?: TensorInfo;
  readonly rank: number;
  readonly alpha: number;
  /** alpha / r, or alpha / √r with rsLoRA. */
  readonly scale: number;
  /** Δ is stored transposed relative to `B @ A`: PEFT's fan_in_fan_out, and every embedding. */
  readonly transpose: boolean;
}

/** A tensor an adapter carries whole (PEFT `modules_to_save`): it replaces the base tensor. */
export interface AdapterReplacement {
  readonly name: string;
  readonly key: string;
  readonly tensor: TensorInfo;
}

export interface ParsedAdapter {
  readonly path: string;
  /** The .safetensors file holding the factors. */
  readonly file: string;
  readonly format: AdapterFormat;
  readonly model: Model;
  readonly config?: PeftConfig;
  readonly modules: readonly AdapterModule[];
  readonly replacements: readonly AdapterReplacement[];
  /** Keys this parser does not understand (LoHa/LoKr factors, stray tensors), with the reason. */
  readonly unknown: readonly { key: string; reason: string }[];
  close(): Promise<void>;
}

const PEFT_PREFIX = 'base_model.model.';

interface Parts {
  down?: TensorInfo;
  up?: TensorInfo;
  alpha?: TensorInfo;
  magnitude?: TensorInfo;
  embedding?: boolean;
  keys: string[];
}

function partsOf(map: Map<string, Parts>, name: string): Parts {
  let p = map.get(name);
  if (!p) map.set(name, (p = { keys: [] }));
  return p;
}

// PEFT keys after `base_model.model.`: the module path, then what the tensor is.
const PEFT_KEY = /^(.*)\.(lora_A\.weight|lora_B\.weight|lora_B\.bias|lora_embedding_A(?:\.weight)?|lora_embedding_B(?:\.weight)?|lora_magnitude_vector(?:\.weight)?)$/;
// kohya / diffusers keys: `<stem>.lora_down.weight`, `.lora_up.weight`, `.alpha`; also `.lora.down.weight`.
const KOHYA_KEY = /^(.*?)\.(lora_down\.weight|lora_up\.weight|lora\.down\.weight|lora\.up\.weight|lora_A\.weight|lora_B\.weight|alpha)$/;
const KOHYA_OTHER = /\.(hada_|lokr_|dora_scale|diff|diff_b|on_input)/;

/** The element count after the first dimension. */
function tail(shape: readonly number[]): number {
  return shape.slice(1).reduce((a, b) => a * b, 1);
}

async function scalarOf(model: Model, t: TensorInfo): Promise<number> {
  if (t.numel !== 1) throw new FormatError('shape_invalid', `alpha must hold one value, not ${JSON.stringify(t.shape)}`, model.path, t.name);
  const bytes = new Uint8Array(t.byteLength);
  await model.read(t, 0, bytes);
  return decodeValue(t.dtype, bytes, 0);
}

function rankOf(file: string, p: Parts, name: string): number {
  const { down, up } = p;
  if (!down || !up) throw new FormatError('tensor_missing', `LoRA module '${name}' has ${down ? 'no up/B' : 'no down/A'} factor`, file, p.keys[0]);
  const r = down.shape[0];
  // Linear factors are both 2-D, conv factors both 3- to 5-D ([r, in, k…] and [out, r, 1…]).
  if (down.shape.length < 2 || up.shape.length !== down.shape.length || up.shape[1] !== r || tail(up.shape) !== r) {
    throw new FormatError('shape_invalid', `LoRA factors of '${name}' do not chain: down ${JSON.stringify(down.shape)}, up ${JSON.stringify(up.shape)}`, file, down.name);
  }
  return r;
}

/** What is at a path, without following it into a FIFO's open: a folder, something else, or nothing. */
async function kindAt(path: string): Promise<'dir' | 'other' | 'none'> {
  try {
    return (await stat(path)).isDirectory() ? 'dir' : 'other';
  } catch {
    return 'none';
  }
}

/** The adapter's .safetensors file: the path itself, or adapter_model.safetensors in a folder. */
async function adapterFile(path: string): Promise<{ file: string; dir?: string }> {
  if ((await kindAt(path)) === 'dir') return { file: join(path, 'adapter_model.safetensors'), dir: path };
  return { file: path };
}

/**
 * Opens an adapter: a PEFT folder (adapter_config.json + adapter_model.safetensors,
 * or the .safetensors file inside one), or a kohya/diffusers .safetensors file.
 * Reads headers, the config and scalar alphas only.
 */
export interface OpenAdapterOptions {
  /** The time bound for the config's patterns (see PATTERN_TIME_LIMIT_MS); the viewer, on the extension host, passes less. */
  readonly patternTimeLimitMs?: number;
}

export async function openAdapter(path: string, opts: OpenAdapterOptions = {}): Promise<ParsedAdapter> {
  const { file, dir } = await adapterFile(path);
  const cfgPath = join(dir ?? join(file, '..'), 'adapter_config.json');
  // A config that is a folder or a FIFO counts as present, so that reading it gives not_a_file.
  const hasConfig = (await kindAt(cfgPath)) !== 'none' && (dir !== undefined || basename(file) === 'adapter_model.safetensors');
  if (dir && (await kindAt(file)) === 'none') throw new FormatError('not_found', 'the adapter folder holds no adapter_model.safetensors', dir);
  const model = await openModel(file);
  try {
    if (hasConfig) {
      // One time bound for compiling the config's patterns and matching every module.
      const budget = new MatchBudget(cfgPath, opts.patternTimeLimitMs);
      const config = parsePeftConfig(await readSmallTextFile(cfgPath, MAX_CONFIG_BYTES, 'adapter_config.json', 'config_invalid'), cfgPath, budget);
      return { ...parsePeft(model, config, budget), path, file, format: 'peft', model, config, close: () => model.close() };
    }
    return { ...(await parseKohya(model)), path, file, format: 'kohya', model, close: () => model.close() };
  } catch (e) {
    await model.close();
    throw e;
  }
}

function parsePeft(model: Model, cfg: PeftConfig, budget: MatchBudget): Pick<ParsedAdapter, 'modules' | 'replacements' | 'unknown'> {
  const groups = new Map<string, Parts>();
  const biases: { name: string; t: TensorInfo }[] = [];
  const replacements: AdapterReplacement[] = [];
  const unknown: { key: string; reason: string }[] = [];
  for (const t of model.tensors) {
    if (!t.name.startsWith(PEFT_PREFIX)) {
      unknown.push({ key: t.name, reason: `does not start with '${PEFT_PREFIX}'` });
      continue;
    }
    const rest = t.name.slice(PEFT_PREFIX.length);
    const m = PEFT_KEY.exec(rest);
    if (!m) {
      // Whole tensors (modules_to_save): `lm_head.weight`, or with the wrapper's path left in.
      if (rest.includes('.original_module.')) continue; // the frozen copy of the base tensor
      const name = rest.replace(/\.modules_to_save(\.default)?\./, '.');
      replacements.push({ name, key: t.name, tensor: t });
      continue;
    }
    const [, mod, what] = m;
    if (what === 'lora_B.bias') {
      biases.push({ name: mod, t });
      continue;
    }
    const p = partsOf(groups, mod);
    p.keys.push(t.name);
    if (what === 'lora_A.weight') p.down = t;
    else if (what === 'lora_B.weight') p.up = t;
    else if (what.startsWith('lora_embedding_A')) {
      p.down = t;
      p.embedding = true;
    } else if (what.startsWith('lora_embedding_B')) {
      p.up = t;
      p.embedding = true;
    } else p.magnitude = t;
  }
  const modules: AdapterModule[] = [];
  for (const [name, p] of groups) {
    const rank = rankOf(model.path, p, name);
    const s = peftScaling(cfg, name, budget);
    if (s.rank !== rank) {
      throw new FormatError('shape_invalid', `LoRA module '${name}' has rank ${rank} but the config (r / rank_pattern) says ${s.rank}`, model.path, p.down!.name);
    }
    modules.push({
      name, keys: p.keys, kind: p.embedding ? 'embedding' : 'linear', down: p.down!, up: p.up!, magnitude: p.magnitude,
      rank, alpha: s.alpha, scale: s.scale, transpose: p.embedding === true || cfg.fanInFanOut,
    });
  }
  for (const b of biases) {
    const lin = modules.find((m) => m.name === b.name);
    if (!lin) throw new FormatError('tensor_missing', `lora_B.bias of '${b.name}' has no LoRA factors`, model.path, b.t.name);
    modules.push({ ...lin, name: b.name, keys: [b.t.name], kind: 'bias', up: b.t, magnitude: undefined, transpose: false });
  }
  return { modules, replacements, unknown };
}

async function parseKohya(model: Model): Promise<Pick<ParsedAdapter, 'modules' | 'replacements' | 'unknown'>> {
  const groups = new Map<string, Parts>();
  const unknown: { key: string; reason: string }[] = [];
  for (const t of model.tensors) {
    const m = KOHYA_KEY.exec(t.name);
    if (!m || KOHYA_OTHER.test(t.name)) {
      unknown.push({ key: t.name, reason: KOHYA_OTHER.test(t.name) ? 'not a LoRA factor (LoHa, LoKr, DoRA scale or full diff): unsupported' : 'not a LoRA key' });
      continue;
    }
    const [, stem, what] = m;
    const p = partsOf(groups, stem);
    p.keys.push(t.name);
    if (what === 'alpha') p.alpha = t;
    else if (what.includes('down') || what === 'lora_A.weight') p.down = t;
    else p.up = t;
  }
  const modules: AdapterModule[] = [];
  for (const [name, p] of groups) {
    if (!p.down && !p.up) {
      unknown.push({ key: p.keys[0], reason: 'an alpha without LoRA factors' });
      continue;
    }
    const rank = rankOf(model.path, p, name);
    let alpha = p.alpha ? await scalarOf(model, p.alpha) : rank;
    // kohya's convention: an alpha of 0 (or none) means "no scaling", i.e. alpha = r.
    if (alpha === 0 || !Number.isFinite(alpha)) alpha = rank;
    modules.push({ name, keys: p.keys, kind: 'linear', down: p.down!, up: p.up!, rank, alpha, scale: alpha / rank, transpose: false });
  }
  return { modules, replacements: [], unknown };
}

// ---------------------------------------------------------------------------
// Mapping onto the base model.

/** The base-model side of a kohya prefix: where that component's modules may live in a combined checkpoint. */
const KOHYA_PREFIXES: Record<string, readonly string[]> = {
  lora_unet_: ['', 'unet.', 'model.diffusion_model.', 'transformer.'],
  lora_te_: ['', 'text_encoder.', 'cond_stage_model.transformer.'],
  lora_te1_: ['', 'text_encoder.', 'conditioner.embedders.0.transformer.'],
  lora_te2_: ['', 'text_encoder_2.', 'conditioner.embedders.1.model.'],
  lora_transformer_: ['', 'transformer.'],
};

/** A module of the base model that an adapter module resolved to. */
export interface MappedModule {
  readonly adapter: number;
  readonly module: AdapterModule;
  /** The base tensor Δ is added to. */
  readonly target: string;
  readonly outFeatures: number;
  readonly inFeatures: number;
}

export interface MappedReplacement {
  readonly adapter: number;
  readonly replacement: AdapterReplacement;
  readonly target: string;
}

export interface UnmatchedKey {
  readonly adapter: number;
  readonly key: string;
  readonly reason: string;
  /** For an ambiguous kohya name: every base module it could be. */
  readonly candidates?: readonly string[];
}

export interface AdapterMapping {
  readonly modules: readonly MappedModule[];
  readonly replacements: readonly MappedReplacement[];
  readonly unmatched: readonly UnmatchedKey[];
}

/** Base modules by their kohya spelling (every `.` as `_`): several when the spelling is ambiguous. */
export function underscoreIndex(base: Model): Map<string, string[]> {
  const idx = new Map<string, string[]>();
  for (const t of base.tensors) {
    if (!t.name.endsWith('.weight')) continue;
    const mod = t.name.slice(0, -'.weight'.length);
    const key = mod.replace(/\./g, '_');
    const list = idx.get(key);
    if (list) list.push(mod);
    else idx.set(key, [mod]);
  }
  return idx;
}

/** Candidate base modules for a kohya stem (`lora_unet_down_blocks_0_…`), or for a dotted diffusers name. */
function kohyaCandidates(stem: string, base: Model, idx: Map<string, string[]>): string[] {
  const out = new Set<string>();
  const prefix = Object.keys(KOHYA_PREFIXES)
    .sort((a, b) => b.length - a.length)
    .find((p) => stem.startsWith(p));
  if (prefix) {
    const rest = stem.slice(prefix.length);
    for (const side of KOHYA_PREFIXES[prefix]) for (const m of idx.get(side.replace(/\./g, '_') + rest) ?? []) out.add(m);
    return [...out];
  }
  // A dotted name (diffusers): exact, else without its first component (`unet.`, `text_encoder.`).
  if (base.tensor(`${stem}.weight`)) return [stem];
  const dot = stem.indexOf('.');
  if (dot > 0 && base.tensor(`${stem.slice(dot + 1)}.weight`)) return [stem.slice(dot + 1)];
  return [];
}

function shapeText(s: readonly number[]): string {
  return JSON.stringify(s);
}

/**
 * Checks an adapter module against its base tensor and returns Δ's logical
 * `[out, in]`, or the reason it does not fit.
 */
function fit(m: AdapterModule, target: TensorInfo): { out: number; in: number } | string {
  const ws = target.shape;
  if (m.kind === 'bias') {
    return ws.length === 1 && ws[0] === m.up.shape[0] ? { out: ws[0], in: 1 } : `bias ${shapeText(m.up.shape)} does not fit ${shapeText(ws)}`;
  }
  const out = m.up.shape[0];
  const inF = tail(m.down.shape);
  const desc = `Δ [${out}, ${m.down.shape.slice(1).join('×')}] (down ${shapeText(m.down.shape)}, up ${shapeText(m.up.shape)})`;
  const dims = m.down.shape.length;
  if (m.transpose) {
    // Stored as Δᵀ: [in, out] (fan_in_fan_out weights, embeddings [vocab, hidden]).
    return dims === 2 && ws.length === 2 && ws[0] === inF && ws[1] === out ? { out, in: inF } : `${desc} transposed does not fit ${shapeText(ws)}`;
  }
  // 2-D factors fit a 2-D weight or a 1×1 conv; conv factors only a conv weight of their own rank.
  const ranksFit = dims === 2 ? ws.slice(2).every((d) => d === 1) : dims === ws.length;
  if (!ranksFit || ws.length < 2 || ws[0] !== out || tail(ws) !== inF) return `${desc} does not fit ${shapeText(ws)}`;
  // A conv delta must match the kernel's own dims (a 3×3 down onto a 3×3 weight), not merely the count.
  if (m.down.shape.length > 2 && ws.length > 2 && shapeText(m.down.shape.slice(1)) !== shapeText(ws.slice(1))) return `${desc} does not fit ${shapeText(ws)}`;
  return { out, in: inF };
}

/**
 * Maps every module and replacement of each adapter onto the base. Keys that
 * name no base tensor, fit no base shape, or could be several base modules
 * come back in `unmatched` with the reason (and the candidates).
 */
export function mapAdapters(adapters: readonly ParsedAdapter[], base: Model): AdapterMapping {
  const modules: MappedModule[] = [];
  const replacements: MappedReplacement[] = [];
  const unmatched: UnmatchedKey[] = [];
  let idx: Map<string, string[]> | undefined;
  adapters.forEach((ad, ai) => {
    for (const u of ad.unknown) unmatched.push({ adapter: ai, key: u.key, reason: u.reason });
    for (const m of ad.modules) {
      let target: string;
      if (ad.format === 'peft') {
        target = `${m.name}.${m.kind === 'bias' ? 'bias' : 'weight'}`;
      } else {
        idx ??= underscoreIndex(base);
        const cands = kohyaCandidates(m.name, base, idx);
        if (cands.length !== 1) {
          for (const key of m.keys)
            unmatched.push(
              cands.length === 0
                ? { adapter: ai, key, reason: 'no base module has this name' }
                : { adapter: ai, key, reason: `ambiguous: it could be ${cands.join(' or ')}`, candidates: cands },
            );
          continue;
        }
        target = `${cands[0]}.weight`;
      }
      const t = base.tensor(target);
      if (!t) {
        for (const key of m.keys) unmatched.push({ adapter: ai, key, reason: `the base has no tensor '${target}'` });
        continue;
      }
      const f = fit(m, t);
      if (typeof f === 'string') {
        for (const key of m.keys) unmatched.push({ adapter: ai, key, reason: `shape mismatch with '${target}': ${f}` });
        continue;
      }
      if (m.magnitude) {
        const perRow = m.transpose ? f.out : t.shape[0];
        if (m.magnitude.numel !== perRow) {
          unmatched.push({ adapter: ai, key: m.magnitude.name, reason: `DoRA magnitude ${shapeText(m.magnitude.shape)} does not fit '${target}' ${shapeText(t.shape)}` });
          continue;
        }
      }
      modules.push({ adapter: ai, module: m, target, outFeatures: f.out, inFeatures: f.in });
    }
    for (const r of ad.replacements) {
      const t = base.tensor(r.name);
      if (!t) unmatched.push({ adapter: ai, key: r.key, reason: `the base has no tensor '${r.name}' to replace` });
      else if (shapeText(t.shape) !== shapeText(r.tensor.shape)) unmatched.push({ adapter: ai, key: r.key, reason: `shape mismatch: ${shapeText(r.tensor.shape)} cannot replace '${r.name}' ${shapeText(t.shape)}` });
      else replacements.push({ adapter: ai, replacement: r, target: r.name });
    }
  });
  return { modules, replacements, unmatched };
}

// ---------------------------------------------------------------------------
// Reading factors.

const FACTOR_DTYPES = new Set(['F32', 'BF16', 'F16']);

/** Reads a whole (small) adapter tensor as float64 values; F32/BF16/F16 only, which are exact in f32. */
export async function readValues(model: Model, t: TensorInfo): Promise<Float64Array> {
  if (!FACTOR_DTYPES.has(t.dtype)) {
    throw new FormatError('unsupported', `${t.dtype} factors cannot be merged exactly on both backends; convert the adapter to F32, BF16 or F16`, model.path, t.name);
  }
  const bytes = new Uint8Array(t.byteLength);
  await model.read(t, 0, bytes);
  const out = new Float64Array(t.numel);
  decodeToF64(t.dtype, bytes, out, t.numel);
  return out;
}

/** What a viewer shows for an adapter file: format, ranks, alphas, scales and target modules. */
export interface AdapterDescription {
  readonly format: AdapterFormat;
  readonly modules: readonly { name: string; kind: AdapterModule['kind']; rank: number; alpha: number; scale: number; dora: boolean; shape: readonly number[] }[];
  /** Distinct leaf names of the targeted modules (`q_proj`, `to_k`, …). */
  readonly targets: readonly string[];
  readonly ranks: readonly number[];
  readonly alphas: readonly number[];
  readonly scales: readonly number[];
  readonly replacements: readonly string[];
  readonly useRslora: boolean;
  readonly unknownKeys: number;
}

/**
 * Describes an adapter (a PEFT folder, its adapter_model.safetensors, or a
 * kohya file) from its headers, config and scalar alphas, without a base model.
 */
export async function describeAdapter(path: string, opts: OpenAdapterOptions = {}): Promise<AdapterDescription> {
  const ad = await openAdapter(path, opts);
  try {
    const mods = ad.modules.filter((m) => m.kind !== 'bias');
    const uniq = (xs: number[]) => [...new Set(xs)].sort((a, b) => a - b);
    const leaf = (n: string) => {
      if (ad.format === 'peft') return n.slice(n.lastIndexOf('.') + 1);
      // kohya stems lose their dots: keep the last two underscore parts (`q_proj`, `to_k`, `proj_in`).
      const parts = n.split('_');
      return parts.slice(-2).join('_');
    };
    return {
      format: ad.format,
      modules: mods.map((m) => ({ name: m.name, kind: m.kind, rank: m.rank, alpha: m.alpha, scale: m.scale, dora: m.magnitude !== undefined, shape: [m.up.shape[0], ...m.down.shape.slice(1)] })),
      targets: [...new Set(mods.map((m) => leaf(m.name)))].sort(),
      ranks: uniq(mods.map((m) => m.rank)),
      alphas: uniq(mods.map((m) => m.alpha)),
      scales: uniq(mods.map((m) => m.scale)),
      replacements: ad.replacements.map((r) => r.name),
      useRslora: ad.config?.useRslora === true,
      unknownKeys: ad.unknown.length,
    };
  } finally {
    await ad.close();
  }
}
