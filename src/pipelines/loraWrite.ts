// Writing a PEFT LoRA adapter folder: adapter_model.safetensors with
// `base_model.model.<module>.lora_A.weight` [r, in] and `lora_B.weight` [out, r],
// and adapter_config.json. Both go through the atomic writers (temp file, fsync,
// rename) after every output has been checked against the inputs.
import { join } from 'node:path';
import { stageText } from '../format/files';
import { prepareOutputs } from '../format/outputs';
import { writeSafetensors, type TensorSource } from '../format/writer';

/** One module's factors, B·A = scale·Δ with scale = alpha / r (or / √r with rsLoRA). */
export interface LoraFactors {
  /** The base model's module path (`model.layers.0.self_attn.q_proj`). */
  readonly module: string;
  readonly rank: number;
  readonly alpha: number;
  readonly outFeatures: number;
  readonly inFeatures: number;
  /** r × in, row-major. */
  readonly a: Float32Array;
  /** out × r, row-major. */
  readonly b: Float32Array;
}

export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
export const ADAPTER_CONFIG = 'adapter_config.json';

/** The most common value (ties: the largest), PEFT's default `r` or `lora_alpha`. */
function mode(xs: readonly number[]): number {
  const counts = new Map<number, number>();
  for (const x of xs) counts.set(x, (counts.get(x) ?? 0) + 1);
  return [...counts].sort((p, q) => q[1] - p[1] || q[0] - p[0])[0]?.[0] ?? 0;
}

/**
 * adapter_config.json: `r` and `lora_alpha` are the most common rank and alpha;
 * modules that differ get `rank_pattern` / `alpha_pattern` entries under their full
 * path, which PEFT matches as a suffix of the module name.
 */
export function peftConfigFor(factors: readonly LoraFactors[], extra: { useRslora?: boolean; baseModel?: string; baseConfig?: Record<string, unknown> } = {}): Record<string, unknown> {
  const r = mode(factors.map((f) => f.rank));
  const alpha = mode(factors.map((f) => f.alpha));
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  for (const f of factors) {
    if (f.rank !== r) rankPattern[f.module] = f.rank;
    if (f.alpha !== alpha) alphaPattern[f.module] = f.alpha;
  }
  // A resized adapter keeps its own settings (target_modules, fan_in_fan_out, task_type…); rank and alpha are recomputed.
  if (extra.baseConfig) return { ...extra.baseConfig, r, lora_alpha: alpha, rank_pattern: rankPattern, alpha_pattern: alphaPattern };
  return {
    peft_type: 'LORA',
    base_model_name_or_path: extra.baseModel ?? null,
    task_type: null,
    r,
    lora_alpha: alpha,
    lora_dropout: 0,
    bias: 'none',
    fan_in_fan_out: false,
    use_rslora: extra.useRslora ?? false,
    use_dora: false,
    init_lora_weights: true,
    inference_mode: true,
    modules_to_save: null,
    target_modules: factors.map((f) => f.module).sort(),
    rank_pattern: rankPattern,
    alpha_pattern: alphaPattern,
  };
}

function f32Bytes(x: Float32Array): Uint8Array {
  return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
}

/** Writes the adapter folder; refuses (nothing written) when an output would replace one of `inputs`. */
export async function writePeftAdapter(
  outDir: string,
  factors: readonly LoraFactors[],
  inputs: readonly string[],
  opts: { signal?: AbortSignal; notice?: (line: string) => void; useRslora?: boolean; baseModel?: string; baseConfig?: Record<string, unknown>; metadata?: Record<string, string> } = {},
): Promise<string[]> {
  const weights = join(outDir, ADAPTER_WEIGHTS);
  const config = join(outDir, ADAPTER_CONFIG);
  const { undo } = await prepareOutputs(inputs, { files: [weights, config] }, opts.notice);
  const sources: TensorSource[] = factors.flatMap((f) => [
    { name: `base_model.model.${f.module}.lora_A.weight`, dtype: 'F32', shape: [f.rank, f.inFeatures], data: f32Bytes(f.a) },
    { name: `base_model.model.${f.module}.lora_B.weight`, dtype: 'F32', shape: [f.outFeatures, f.rank], data: f32Bytes(f.b) },
  ]);
  let staged: Awaited<ReturnType<typeof stageText>> | undefined;
  try {
    staged = await stageText(config, JSON.stringify(peftConfigFor(factors, opts), null, 2) + '\n');
    await writeSafetensors(weights, sources, { metadata: { format: 'pt', ...opts.metadata }, signal: opts.signal });
    await staged.commit();
  } catch (e) {
    await staged?.discard();
    await undo();
    throw e;
  }
  return [weights, config];
}
