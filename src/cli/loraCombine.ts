import { loraCombine, type CombineMethod } from '../pipelines/loraCombine';
import { defineCommand, UsageError } from './command';

const USAGE = `usage: tensor-workbench lora-combine ADAPTER[:WEIGHT]... OUT_DIR --method linear|cat|svd [--rank K] [--json]

Combines PEFT LoRA adapters into one, each product taken with its own scale
(lora_alpha / r, or / √r with use_rslora) times its weight (default 1):
  cat     A rows and B columns concatenated, rank Σ rᵢ: exactly Σ wᵢ·scaleᵢ·Bᵢ·Aᵢ.
  linear  weighted sums of the A factors and of the B factors, as PEFT's
          add_weighted_adapter does (equal ranks only). This is not the sum of
          the products: the cross terms Bᵢ·Aⱼ remain.
  svd     the best rank-K approximation of Σ wᵢ·scaleᵢ·Bᵢ·Aᵢ (K: --rank, else
          the largest input rank), from the factors, never the full matrix.
The output keeps the first adapter's config, with r and lora_alpha chosen so that
its own scale applies the combined product: one adapter at weight 1 comes back
as itself. DoRA adapters, lora_bias and modules_to_save are refused (their sum is
not a low-rank product). OUT_DIR gets adapter_config.json and adapter_model.safetensors.`;

/** `path:weight`, the weight after the last colon when it parses as a number (a path may hold colons). */
function inputOf(arg: string): { path: string; weight: number } {
  const at = arg.lastIndexOf(':');
  if (at > 0) {
    const w = Number(arg.slice(at + 1));
    if (arg.slice(at + 1).trim() !== '' && Number.isFinite(w)) return { path: arg.slice(0, at), weight: w };
  }
  return { path: arg, weight: 1 };
}

export const loraCombineCommand = defineCommand({
  name: 'lora-combine',
  summary: 'Combine PEFT LoRA adapters into one (cat, linear, svd), scales and weights folded exactly',
  usage: USAGE,
  options: { method: { type: 'string' }, rank: { type: 'string' }, json: { type: 'boolean' } },
  positionals: { min: 2, usage: 'one or more ADAPTER[:WEIGHT] and OUT_DIR' },
  async run({ values, positionals }, io) {
    const method = values.method as CombineMethod | undefined;
    if (method !== 'linear' && method !== 'cat' && method !== 'svd') throw new UsageError(`--method must be linear, cat or svd, not '${values.method ?? ''}'`);
    const rank = values.rank === undefined ? undefined : Number(values.rank);
    if (rank !== undefined && !(Number.isSafeInteger(rank) && rank > 0)) throw new UsageError(`--rank must be a positive integer, not '${values.rank}'`);
    if (rank !== undefined && method !== 'svd') throw new UsageError('--rank applies to --method svd only');
    const output = positionals[positionals.length - 1];
    const inputs = positionals.slice(0, -1).map(inputOf);
    const t0 = performance.now();
    const r = await loraCombine({ inputs, output, method, rank }, { signal: io.signal, progress: io.progress, notice: io.notice });
    const seconds = (performance.now() - t0) / 1000;
    if (values.json) io.stdout.write(JSON.stringify({ ...r, seconds }, null, 2) + '\n');
    else io.stdout.write(`${method}: combined ${inputs.length} adapter(s) into ${r.modules} module(s), rank ${r.ranks.join('/')}, in ${seconds.toFixed(2)} s\nwrote ${r.files.join(', ')}\n`);
    return 0;
  },
});
