import { dirname, join } from 'node:path';
import type { Scheme } from '../compute/quant/schemes';
import { DTYPE_INFO, type DType } from '../format/dtypes';
import { FormatError } from '../format/errors';
import { readSmallTextFile } from '../format/source';
import type { Model, TensorInfo } from '../format/model';
import type { JobContext } from '../core/job';
import type { QuantFormat, TensorPlan } from './quantizeTypes';
import { stats } from './stats';
import { shardedNames } from '../format/writer';
import type { OutputSet } from '../format/outputs';

/** `*` matches any run of characters (dots included), `?` one character; the whole name must match. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (const ch of glob) {
    if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export function elementBytes(d: DType): number {
  return DTYPE_INFO[d].bits / 8;
}

/** Decides, for every tensor, whether `scheme` quantizes it, and why not when it does not. */
// gpt-oss's expert weights: `…mlp.experts.gate_up_proj` and `…mlp.experts.down_proj`, [experts, in, out].
const EXPERTS = /\.experts\.[A-Za-z_]+_proj$/;

/** An MoE expert weight that mxfp4 stores as gpt-oss does (transposed, blocks of 32 along `in`). */
function expertsPlan(t: TensorInfo, scheme: Scheme): Pick<TensorPlan, 'rows' | 'cols' | 'experts'> | undefined {
  if (scheme.name !== 'mxfp4' || t.shape.length !== 3 || !EXPERTS.test(t.name) || DTYPE_INFO[t.dtype].kind !== 'float') return undefined;
  const [experts, inner, outer] = t.shape;
  return inner % scheme.blockSize === 0 && t.numel > 0 ? { rows: experts * outer, cols: inner, experts } : undefined;
}

export function planQuantization(tensors: readonly TensorInfo[], scheme: Scheme, keep: readonly string[] = [], only: readonly string[] = []): TensorPlan[] {
  const keepRe = keep.map((g) => [g, globToRegExp(g)] as const);
  const onlyRe = only.map(globToRegExp);
  // In an MoE model, mxfp4 quantizes only the experts, as gpt-oss does: its loaders expect the rest unquantized.
  const moe = tensors.some((t) => expertsPlan(t, scheme) !== undefined);
  return tensors.map((t) => {
    const rows = t.shape.length === 2 ? t.shape[0] : 0;
    const cols = t.shape.length === 2 ? t.shape[1] : 0;
    const base = { name: t.name, dtype: t.dtype, shape: t.shape, rows, cols };
    const kept = (reason: string): TensorPlan => ({ ...base, action: 'keep', reason });
    const k = keepRe.find(([, re]) => re.test(t.name));
    if (k) return kept(`kept by --keep ${k[0]}`);
    const forced = onlyRe.some((re) => re.test(t.name));
    if (onlyRe.length && !forced) return kept('not matched by --only');
    if (DTYPE_INFO[t.dtype].kind !== 'float') return kept(`not a float tensor (${t.dtype})`);
    const ex = expertsPlan(t, scheme);
    if (ex) return { ...base, ...ex, action: 'quantize' };
    if (moe && !forced) return kept('not an expert weight (mxfp4 quantizes only the experts of an MoE model, as gpt-oss does)');
    if (t.shape.length === 1) return kept(/norm/i.test(t.name) ? 'a norm (1-D)' : /bias$/.test(t.name) ? 'a bias (1-D)' : '1-D');
    if (t.shape.length !== 2) return kept(`${t.shape.length}-D: only 2-D weights are quantized`);
    if (!forced && /norm/i.test(t.name)) return kept('a norm');
    if (!forced && /\.bias$/.test(t.name)) return kept('a bias');
    if (scheme.kind === 'block' && !t.name.endsWith('.weight')) return kept(`${scheme.name} names its parts after a .weight (X.weight_scale_inv, X.weight_blocks)`);
    // FP8 and MXFP4 releases (DeepSeek-V3, gpt-oss) keep the embeddings and the output head in their dtype; loaders expect that.
    if (scheme.kind === 'block' && !forced && /embed|lm_head/.test(t.name)) return kept('an embedding or the output head (kept, as FP8/MXFP4 releases do; --only quantizes it)');
    if (t.numel === 0) return kept('empty');
    if ((cols * DTYPE_INFO[t.dtype].bits) % 8 !== 0) return kept(`rows of ${cols} × ${t.dtype} do not end on a byte`);
    if (cols % scheme.blockSize !== 0) return kept(`row length ${cols} is not a multiple of ${scheme.blockSize}`);
    return { ...base, action: 'quantize' };
  });
}

/** The folder a model's config.json would sit in. */
export function modelDir(model: Model): string {
  const p = model.path;
  return p.endsWith('.safetensors') || p.endsWith('.json') ? dirname(p) : p;
}

/** A model's config.json is a few KB; this bound only keeps a stray huge file from being read whole. */
const MAX_MODEL_CONFIG_BYTES = 16 << 20;

export async function readConfig(model: Model): Promise<Record<string, unknown> | undefined> {
  try {
    const v = JSON.parse(await readSmallTextFile(join(modelDir(model), 'config.json'), MAX_MODEL_CONFIG_BYTES, 'config.json', 'unsupported')) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch (e) {
    // A missing or unreadable config only costs the GGUF its architecture keys; a FIFO or a folder there is refused.
    if (e instanceof FormatError && e.code === 'not_a_file') throw e;
    return undefined;
  }
}


export function defaultFormat(scheme: Scheme, output: string): QuantFormat {
  if (output.endsWith('.gguf')) return 'gguf';
  if (output.endsWith('.safetensors')) return 'safetensors';
  return scheme.kind === 'ggml' ? 'gguf' : 'safetensors';
}

/** Every file a quantization may write: one file (its config.json is only ever created, never replaced), or a folder's shards and config. */
export function outputSetOf(format: QuantFormat, output: string, hasConfig: boolean): OutputSet {
  if (format === 'gguf' || output.endsWith('.safetensors')) return { files: [output] };
  return { files: hasConfig ? [join(output, 'config.json')] : [], families: [{ dir: output, pattern: shardedNames('model') }] };
}

/** The tensors to quantize that hold NaN or ±Inf, kept instead (unless `allow`), with their counts. */
export async function skipNonFinite(model: Model, plans: TensorPlan[], allow: boolean, ctx: JobContext): Promise<TensorPlan[]> {
  const names = plans.filter((p) => p.action === 'quantize').map((p) => p.name);
  if (allow || names.length === 0) return plans;
  const r = await stats(model, { tensors: names, histograms: false, backend: ctx.backend, signal: ctx.signal });
  const bad = new Map(r.tensors.map((t) => [t.name, t.nan + t.posInf + t.negInf]));
  return plans.map((p) => {
    const n = bad.get(p.name) ?? 0;
    return n > 0 ? { ...p, action: 'keep', nonFinite: n, reason: `holds ${n} NaN/Inf value${n === 1 ? '' : 's'}, kept in ${p.dtype}; --allow-nonfinite quantizes it anyway` } : p;
  });
}
