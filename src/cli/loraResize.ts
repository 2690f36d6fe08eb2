import { escapeText } from '../format/escape';
import { loraResize } from '../pipelines/loraResize';
import { defineCommand, refuseRemote, UsageError } from './command';

const USAGE = `usage: tensor-workbench lora-resize ADAPTER OUT_DIR (--rank R | --energy E [--rank MAX]) [--json]

Shrinks a PEFT LoRA adapter: each module's product scale·B·A is factorised exactly
(QR of B and Aᵀ, then the r × r SVD; the out × in product is never formed) and cut
to the new rank, the best approximation at that rank. lora_alpha stays as it was
(rsLoRA too): the factors carry the new scale, so the merged weights change only by
the truncation. DoRA adapters are refused.
--rank R     every module at rank R (modules already at or below R keep their rank).
--energy E   per module, the smallest rank keeping the share E of ‖scale·B·A‖² (0 < E ≤ 1),
             at most --rank when given.`;

export const loraResizeCommand = defineCommand({
  name: 'lora-resize',
  summary: 'Shrink a PEFT LoRA adapter’s rank by the exact SVD of each module’s product',
  usage: USAGE,
  options: { rank: { type: 'string' }, energy: { type: 'string' }, json: { type: 'boolean' } },
  positionals: { min: 2, max: 2, usage: 'ADAPTER and OUT_DIR' },
  async run({ values, positionals }, io) {
    const rank = values.rank !== undefined ? Number(values.rank) : undefined;
    if (rank !== undefined && !(Number.isInteger(rank) && rank >= 1)) throw new UsageError(`--rank must be a positive integer, not '${values.rank}'`);
    const energy = values.energy !== undefined ? Number(values.energy) : undefined;
    if (energy !== undefined && !(energy > 0 && energy <= 1)) throw new UsageError(`--energy must be a share in (0, 1], not '${values.energy}'`);
    if (rank === undefined && energy === undefined) throw new UsageError('give --rank R or --energy E');
    refuseRemote('lora-resize', positionals);
    const [adapter, outDir] = positionals;
    const r = await loraResize({ adapter, outDir, rank, energy }, { signal: io.signal, progress: io.progress, notice: io.notice });
    const out = (s: string) => io.stdout.write(s);
    if (values.json) {
      out(JSON.stringify(r, null, 2) + '\n');
      return 0;
    }
    out(`resized ${r.modules.length} module(s) in ${r.seconds.toFixed(2)} s\n`);
    for (const m of r.modules) out(`  ${escapeText(m.module)}  r ${m.oldRank} → ${m.rank}  alpha ${m.alpha}  energy ${(100 * m.energy).toFixed(2)}%\n`);
    out(`wrote ${r.files.join(', ')}\n`);
    return 0;
  },
});
