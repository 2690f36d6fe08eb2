import { escapeText } from '../format/escape';
import { DEFAULT_MAX_RANK, extractLora, type ExtractedModule } from '../pipelines/extractLora';
import { defineCommand, parseBackend, refuseRemote, UsageError } from './command';

const USAGE = `usage: tensor-workbench extract-lora BASE FINETUNED OUT_DIR (--rank R | --energy E [--rank MAX])
       [--power-iterations N] [--backend auto|webgpu|cpu] [--json]

Turns a full fine-tune into a PEFT LoRA adapter: for every changed 2-D module
weight, B·A is the truncated SVD of Δ = FINETUNED − BASE (randomized range finder
with a fixed seed, streamed; σ split as √σ into both factors, lora_alpha = r so
that PEFT's scale is 1). OUT_DIR gets adapter_model.safetensors and
adapter_config.json (rank_pattern / alpha_pattern when ranks differ).
--rank R     every module at rank R (or min(out, in) when smaller).
--energy E   per module, the smallest rank keeping the share E of ‖Δ‖² (0 < E ≤ 1),
             at most --rank (default ${DEFAULT_MAX_RANK}); modules that would need more are listed.
--power-iterations N   passes of ΔᵀΔ before the final one (default 1; each reads
             the module's weights once more, and sharpens a slowly decaying spectrum).`;

function positiveInt(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || (name === 'rank' && n < 1)) throw new UsageError(`--${name} must be a ${name === 'rank' ? 'positive' : 'non-negative'} integer, not '${text}'`);
  return n;
}

function moduleLine(m: ExtractedModule): string {
  const need = m.rankNeeded !== undefined ? `  needs rank ${m.rankNeededAtLeast ? '≥ ' : ''}${m.rankNeeded}` : '';
  return `  ${escapeText(m.module)}  [${m.outFeatures}, ${m.inFeatures}]  r=${m.rank}  energy ${(100 * m.energy).toFixed(2)}%${m.exact ? ' (exact)' : ''}${need}\n`;
}

export const extractLoraCommand = defineCommand({
  name: 'extract-lora',
  summary: 'Turn a full fine-tune into a PEFT LoRA adapter by the truncated SVD of each changed weight',
  usage: USAGE,
  options: {
    rank: { type: 'string' },
    energy: { type: 'string' },
    'power-iterations': { type: 'string' },
    backend: { type: 'string' },
    json: { type: 'boolean' },
  },
  positionals: { min: 3, max: 3, usage: 'BASE, FINETUNED and OUT_DIR' },
  async run({ values, positionals }, io) {
    const rank = positiveInt('rank', values.rank);
    const energy = values.energy !== undefined ? Number(values.energy) : undefined;
    if (energy !== undefined && !(energy > 0 && energy <= 1)) throw new UsageError(`--energy must be a share in (0, 1], not '${values.energy}'`);
    if (rank === undefined && energy === undefined) throw new UsageError('give --rank R or --energy E');
    const powerIterations = positiveInt('power-iterations', values['power-iterations']);
    const backend = parseBackend(values.backend);
    refuseRemote('extract-lora', positionals);
    const [base, finetuned, outDir] = positionals;
    const r = await extractLora({ base, finetuned, outDir, rank, energy, powerIterations }, { signal: io.signal, progress: io.progress, notice: io.notice, backend });
    const out = (s: string) => io.stdout.write(s);
    if (values.json) {
      out(JSON.stringify(r, null, 2) + '\n');
      return 0;
    }
    out(`extracted ${r.modules.length} module(s) on ${r.backend} in ${r.seconds.toFixed(2)} s\n`);
    for (const m of r.modules) out(moduleLine(m));
    if (r.notLowRank.length > 0) {
      out(`${r.notLowRank.length} module(s) are not low-rank: below ${(100 * r.energyTarget!).toFixed(1)}% of ‖Δ‖² at rank ${r.maxRank}:\n`);
      for (const m of r.notLowRank) out(moduleLine(m));
    }
    for (const s of r.skipped) out(`skipped: ${escapeText(s.name)}: ${s.reason}\n`);
    out(`wrote ${r.files.join(', ')}\n`);
    return 0;
  },
});
