import type { TensorInfo } from '../model';
import { parseQuantConfig, type QuantConfig } from './config';
import { gptqRule, nvfp4Rule, packedRule } from './packedRules';
import { mxfp4Rule, scaledRule, type RuleContext, type RuleResult } from './recognize';

type Rule = (t: TensorInfo, cx: RuleContext) => RuleResult | undefined | Promise<RuleResult | undefined>;

// Most specific first: NVFP4's `weight` U8 must not be taken for anything else.
const RULES: readonly Rule[] = [mxfp4Rule, nvfp4Rule, packedRule, gptqRule, scaledRule];

// A stored tensor whose name says it belongs to a quantized weight; left raw, it gets a note.
const PART_NAME = /(\.weight_scale(_inv|_2)?|\.weight_global_scale|\.weight_zero_point|\.weight_packed|\.qweight|\.qzeros|_blocks|_scales)$/;

export interface Recognized {
  readonly tensors: TensorInfo[];
  readonly notes: string[];
}

/**
 * Turns a safetensors model's stored tensors into logical tensors: each quantized weight
 * (FP8 with scales, MXFP4, NVFP4, compressed-tensors packed integers, GPTQ, AWQ) becomes
 * one tensor named after the weight it stands for, with a scheme storage and its parts.
 * Recognition goes by names, shapes and dtypes; config.json's `quantization_config` only
 * settles what the shapes leave open, and a note says where it disagrees with them.
 * Anything not recognised stays as stored, with the reason in a note.
 */
export async function recognizeQuantized(tensors: readonly TensorInfo[], configText: string | undefined, ints: (t: TensorInfo) => Promise<number[]>): Promise<Recognized> {
  const config: QuantConfig | undefined = parseQuantConfig(configText);
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const cx: RuleContext = { byName, config, ints };
  const logicalAt = new Map<string, TensorInfo>();
  const used = new Set<string>();
  const notes: string[] = [];
  const counts = new Map<string, number>();
  for (const t of tensors) {
    if (used.has(t.name)) continue;
    for (const rule of RULES) {
      const r = await rule(t, cx);
      if (!r) continue;
      if ('raw' in r) {
        notes.push(`${t.name}: kept as stored: ${r.raw}`);
        break;
      }
      if (r.used.some((n) => used.has(n))) continue;
      for (const n of r.used) used.add(n);
      logicalAt.set(t.name, r.logical);
      if (r.note) notes.push(r.note);
      const s = r.logical.storage?.kind === 'scheme' ? r.logical.storage.scheme : '';
      counts.set(s, (counts.get(s) ?? 0) + 1);
      break;
    }
  }
  const out: TensorInfo[] = [];
  for (const t of tensors) {
    const l = logicalAt.get(t.name);
    if (l) out.push(l);
    else if (!used.has(t.name)) {
      out.push(t);
      if (PART_NAME.test(t.name) && !notes.some((n) => n.startsWith(`${t.name}:`))) notes.push(`${t.name}: kept as stored: no quantized weight it belongs to was recognised`);
    }
  }
  if (logicalAt.size === 0) return { tensors: [...tensors], notes };
  const names = out.map((t) => t.name);
  if (new Set(names).size !== names.length) return { tensors: [...tensors], notes: ['quantized weights kept as stored: their logical names would clash with stored tensors'] };
  const summary = [...counts].map(([s, n]) => `${n} ${s}`).join(', ');
  const from = config?.method ? ` (config.json: ${config.method})` : '';
  return { tensors: out, notes: [`quantized weights read as logical tensors: ${summary}${from}`, ...notes] };
}
