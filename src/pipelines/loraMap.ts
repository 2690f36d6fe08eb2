// The mapping of every adapter key onto a tensor of the base model: exact names for
// PEFT, the underscore spellings for kohya, and the shape checks that decide a fit.
import type { Model, TensorInfo } from '../format/model';
import { tail, type AdapterModule, type AdapterReplacement, type ParsedAdapter } from './lora';

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

