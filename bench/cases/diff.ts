import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { disposeBackends } from '../../src/compute/backend';
import { openModel } from '../../src/format/openModel';
import { diff, estimateRanks, type DiffReport } from '../../src/pipelines/diff';
import { ensureBenchModel, writeFineTuned } from '../../test/fixtures/llama';
import type { BenchCase, BenchContext, BenchResult } from '../case';

/** The goal: ≥ 2 GB/s of input read on the CPU backend (a numpy script reaches ≈0.37 GB/s here). */
const TARGET_GBPS = 2;
/** The memory bound, whatever the model's size. */
const TARGET_RSS_MB = 300;
/** The goal for `diff --rank` on this pair (28 changed tensors): under 8 s on 2 cores. */
const TARGET_RANK_SECONDS = 8;

/** The 1 GB BF16 bench model and a fine-tuned copy with the upper half of its layers changed (dense Δ). */
export async function workload(ctx: BenchContext): Promise<[string, string]> {
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
    description: 'the rank-energy estimate of every changed 2-D tensor of the 1 GB pair (72-column sketch, one power iteration), after a plain diff: wall and CPU seconds of the estimate alone',
    async run(ctx) {
      const [base, tuned] = await workload(ctx);
      const a = await openModel(base);
      const b = await openModel(tuned);
      try {
        // The plain diff finds the changed tensors and brings both files into the page cache.
        const r = await diff(a, b, { backend: 'cpu' });
        const c0 = process.cpuUsage();
        const est = await estimateRanks(a, b, r.tensors, { backend: 'cpu' });
        const cpu = process.cpuUsage(c0);
        return {
          rankSeconds: Number(est.seconds.toFixed(3)),
          // user + system of every thread of the process (the workers included), from getrusage.
          rankCpuSeconds: Number(((cpu.user + cpu.system) / 1e6).toFixed(3)),
          rankBytesRead: est.bytesRead,
          rankedTensors: r.tensors.filter((t) => t.rankEnergy).length,
          loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
          target: `rank estimate < ${TARGET_RANK_SECONDS} s on 2 cores, wall (on an idle machine) and CPU seconds / 2`,
          pass: est.seconds < TARGET_RANK_SECONDS || (cpu.user + cpu.system) / 1e6 / 2 < TARGET_RANK_SECONDS,
        };
      } finally {
        await a.close();
        await b.close();
        await disposeBackends();
      }
    },
  },
];
