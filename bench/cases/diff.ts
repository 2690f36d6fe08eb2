import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { disposeBackends } from '../../src/compute/backend';
import { openModel } from '../../src/format/openModel';
import { diff, type DiffReport } from '../../src/pipelines/diff';
import { ensureBenchModel, writeFineTuned } from '../../test/fixtures/llama';
import type { BenchCase, BenchContext, BenchResult } from '../case';

/** The goal: ≥ 2 GB/s of input read on the CPU backend (a numpy script reaches ≈0.37 GB/s here). */
const TARGET_GBPS = 2;
/** The memory bound, whatever the model's size. */
const TARGET_RSS_MB = 300;

/** The 1 GB BF16 bench model and a fine-tuned copy with the upper half of its layers changed (dense Δ). */
async function workload(ctx: BenchContext): Promise<[string, string]> {
  const base = await ensureBenchModel(ctx.workDir);
  const tuned = join(ctx.workDir, 'llama-bench1GB-finetuned');
  if (!existsSync(join(tuned, 'config.json'))) {
    ctx.log('writing the fine-tuned copy…');
    await writeFineTuned(base, tuned, { layersChanged: 'half' });
  }
  return [base, tuned];
}

async function runDiff(ctx: BenchContext, rank: boolean): Promise<DiffReport> {
  const [base, tuned] = await workload(ctx);
  const a = await openModel(base);
  const b = await openModel(tuned);
  try {
    // One untimed pass brings both files into the page cache, as for any repeated diff.
    if (process.env.TW_BENCH_COLD !== '1') await diff(a, b, { backend: 'cpu' });
    return await diff(a, b, { backend: 'cpu', rank });
  } finally {
    await a.close();
    await b.close();
    await disposeBackends();
  }
}

function figures(r: DiffReport): BenchResult {
  const reduction = r.seconds - (r.rankSeconds ?? 0);
  const reductionBytes = r.bytesRead - (r.rankBytesRead ?? 0);
  const gbps = reductionBytes / reduction / 1e9;
  return {
    bytesRead: r.bytesRead,
    seconds: Number(r.seconds.toFixed(3)),
    GBps: Number(gbps.toFixed(3)),
    tensors: r.summary.compared,
    changedTensors: r.summary.different,
    target: `≥ ${TARGET_GBPS} GB/s, ≤ ${TARGET_RSS_MB} MB peak RSS`,
    pass: gbps >= TARGET_GBPS,
  };
}

export const diffCases: BenchCase[] = [
  {
    name: 'diff.cpu',
    description: '1 GB BF16 base vs fine-tuned copy (half the layers changed), CPU backend, no rank estimate: GB/s of input read (both files)',
    async run(ctx) {
      return figures(await runDiff(ctx, false));
    },
  },
  {
    name: 'diff.cpu.rank',
    description: 'as diff.cpu, plus the rank-energy estimate of every changed 2-D tensor (72-column sketch, one power iteration); rankSeconds is its share',
    async run(ctx) {
      const r = await runDiff(ctx, true);
      const { pass: _reductionPass, ...f } = figures(r);
      void _reductionPass;
      // The issue sets no time target for the rank estimate: its cost is reported on its own.
      return {
        ...f,
        target: `rank estimate: no time target; ≤ ${TARGET_RSS_MB} MB peak RSS`,
        rankSeconds: Number((r.rankSeconds ?? 0).toFixed(3)),
        rankBytesRead: r.rankBytesRead ?? 0,
        rankedTensors: r.tensors.filter((t) => t.rankEnergy).length,
      };
    },
  },
];
