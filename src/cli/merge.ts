import type { MatmulDType } from '../pipelines/runtime';
import { merge, MergeError, planMerge, type MergeAdapterArg } from '../pipelines/merge';
import { defineCommand, parseBackend, refuseRemote, parseSize, UsageError } from './command';
import { escapeText } from '../format/escape';

const USAGE = `usage: tensor-workbench merge BASE ADAPTER[:WEIGHT]... OUT [--dtype bf16|f16|f32] [--subtract]
       [--allow-unmatched] [--max-shard-size SIZE] [--backend auto|webgpu|cpu] [--dry-run] [--json]

Folds LoRA adapters into BASE (a .safetensors file, an index.json or a folder).
ADAPTER is a PEFT folder (adapter_config.json + adapter_model.safetensors) or a
kohya/diffusers .safetensors file; :WEIGHT scales its Δ (default 1), and several
adapters merge as the linear combination W + Σ weight·scale·B@A.
OUT is a .safetensors file, or a folder that gets shards like BASE (or per
--max-shard-size), an index.json, and BASE's config and tokenizer files.
--subtract computes W − ΔW (takes a merged adapter back out). --dry-run prints
the mapping (modules, r, alpha, scale, unmatched keys) and writes nothing.
Every adapter key must map onto a base tensor of a compatible shape, or nothing
is written (--allow-unmatched merges the keys that do map).
A quantized BASE (FP8 with block scales, MXFP4, NVFP4, GPTQ, AWQ, compressed-tensors,
GGUF blocks) is merged into its decoded values; those tensors are written dequantized in
BF16 (or --dtype), and config.json without its quantization_config.`;

/** `note: 3 quantized base tensors (fp8-block) were dequantized and written as BF16 …` */
function dequantizedNote(list: ReadonlyArray<{ from: string; dtype: string }>, config: boolean): string {
  const from = [...new Set(list.map((d) => d.from))].map(escapeText).join(', ');
  const to = [...new Set(list.map((d) => d.dtype))].join(', ');
  const n = list.length;
  return `note: ${n} quantized base tensor${n === 1 ? '' : 's'} (${from}) ${n === 1 ? 'was' : 'were'} dequantized and written as ${to}, not re-quantized${config ? '; config.json has no quantization_config' : ''} (quantize OUT again for a quantized model)\n`;
}

const DTYPES: Record<string, MatmulDType> = { bf16: 'BF16', f16: 'F16', f32: 'F32' };

/** `path:0.5` → weight 0.5; a suffix that is not a number belongs to the path (`C:\\x`). */
export function parseAdapterArg(s: string): MergeAdapterArg {
  const i = s.lastIndexOf(':');
  if (i > 0) {
    const w = s.slice(i + 1);
    if (/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(w)) return { path: s.slice(0, i), weight: Number(w) };
  }
  return { path: s };
}

export const mergeCommand = defineCommand({
  name: 'merge',
  summary: 'Merge LoRA adapters (PEFT, kohya) into a base model, streamed, to within 1 ulp',
  usage: USAGE,
  options: {
    dtype: { type: 'string' },
    subtract: { type: 'boolean' },
    'allow-unmatched': { type: 'boolean' },
    'max-shard-size': { type: 'string' },
    backend: { type: 'string' },
    'dry-run': { type: 'boolean' },
    json: { type: 'boolean' },
  },
  positionals: { min: 3, usage: 'BASE, at least one ADAPTER, and OUT' },
  async run({ values, positionals }, io) {
    const dtype = values.dtype !== undefined ? DTYPES[values.dtype.toLowerCase()] : undefined;
    if (values.dtype !== undefined && !dtype) throw new UsageError(`--dtype must be bf16, f16 or f32, not '${values.dtype}'`);
    const backend = parseBackend(values.backend);
    refuseRemote('merge', positionals);
    const [base, ...rest] = positionals;
    const output = rest.pop()!;
    const adapters = rest.map(parseAdapterArg);
    const out = (s: string) => io.stdout.write(s);
    try {
      if (values['dry-run']) {
        const plan = await planMerge({ base, adapters });
        try {
          if (values.json) out(JSON.stringify({ adapters: plan.summaries, unmatched: plan.unmatched }, null, 2) + '\n');
          else {
            for (const s of plan.summaries) {
              out(`${s.path} (${s.format}, weight ${s.weight}): ${s.modules.length} module(s)${s.replacements.length ? `, replaces ${s.replacements.join(', ')}` : ''}\n`);
              for (const m of s.modules) out(`  ${escapeText(m.target)}  r=${m.rank} alpha=${m.alpha} scale=${m.scale}${m.dora ? ' DoRA' : ''}\n`);
            }
            for (const u of plan.unmatched) out(`unmatched: ${escapeText(adapters[u.adapter].path)}: ${escapeText(u.key)}: ${escapeText(u.reason)}\n`);
          }
        } finally {
          await plan.close();
        }
        return plan.unmatched.length > 0 && !values['allow-unmatched'] ? 2 : 0;
      }
      const t0 = performance.now();
      const r = await merge(
        {
          base,
          adapters,
          output,
          dtype,
          subtract: values.subtract,
          allowUnmatched: values['allow-unmatched'],
          maxShardSize: values['max-shard-size'] !== undefined ? parseSize(values['max-shard-size']) : undefined,
        },
        { signal: io.signal, progress: io.progress, notice: io.notice, backend },
      );
      const seconds = (performance.now() - t0) / 1000;
      if (values.json) out(JSON.stringify({ ...r, seconds }, null, 2) + '\n');
      else {
        out(`merged ${r.merged} tensor(s), replaced ${r.replaced}, copied ${r.copied} unchanged, on ${r.backend} in ${seconds.toFixed(2)} s\n`);
        if (r.dequantized.length > 0) out(dequantizedNote(r.dequantized, r.index !== undefined || r.files.some((f) => f.endsWith('config.json'))));
        if (r.unmatched.length > 0) out(`skipped ${r.unmatched.length} unmatched adapter key(s) (--allow-unmatched)\n`);
        out(`wrote ${r.index ?? r.files.join(', ')}\n`);
      }
      return 0;
    } catch (e) {
      if (!(e instanceof MergeError)) throw e;
      if (values.json) out(JSON.stringify({ error: e.message, unmatched: e.unmatched }, null, 2) + '\n');
      // One line, as every CLI error; the JSON output carries the full list.
      io.stderr.write(`error[merge]: ${escapeText(e.message.split('\n')[0])}${e.unmatched.length ? ' ' + e.unmatched.slice(0, 5).map((u) => `${escapeText(u.key)} (${escapeText(u.reason)})`).join('; ') + (e.unmatched.length > 5 ? '; …' : '') : ''}\n`);
      return 2;
    }
  },
});
