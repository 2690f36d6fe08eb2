import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { disposeBackends } from '../../src/compute/backend';
import { openModel } from '../../src/format/openModel';
import { diff } from '../../src/pipelines/diff';
import { stats } from '../../src/pipelines/stats';
import { writeManyTensors } from '../../test/reliability/manyTensors';
import type { BenchCase, BenchContext, BenchResult } from '../case';

/** The goal for a 100,000-tensor file (13 MB of F32 data): under 2 s and 300 MB peak RSS. */
const TARGET_SECONDS = 2;

async function files(ctx: BenchContext): Promise<[string, string]> {
  const a = join(ctx.workDir, 'many-100k-a.safetensors');
  const b = join(ctx.workDir, 'many-100k-b.safetensors');
  if (!existsSync(a)) await writeManyTensors(a, { seed: 1 });
  if (!existsSync(b)) await writeManyTensors(b, { seed: 2 });
  return [a, b];
}

/** Wall and CPU seconds (every thread) of `fn`, from opening the files to the result. */
async function timed(fn: () => Promise<void>): Promise<BenchResult> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { seconds: +seconds.toFixed(3), cpuSeconds: +((cpu.user + cpu.system) / 1e6).toFixed(3), target: `< ${TARGET_SECONDS} s, ≤ 300 MB`, pass: seconds < TARGET_SECONDS };
}

export const manyTensorsCases: BenchCase[] = [
  {
    name: 'stats.many',
    description: `stats (as the CLI table asks: no histogram counts, no top-k) of a 100,000-tensor F32 file on the CPU; target < ${TARGET_SECONDS} s and ≤ 300 MB`,
    async run(ctx) {
      const [a] = await files(ctx);
      try {
        return await timed(async () => {
          const m = await openModel(a);
          const r = await stats(m, { backend: 'cpu', histograms: false, topK: 0 });
          if (r.tensors.length !== 100_000) throw new Error(`expected 100,000 tensors, got ${r.tensors.length}`);
          await m.close();
        });
      } finally {
        await disposeBackends();
      }
    },
  },
  {
    name: 'diff.many',
    description: `diff of two 100,000-tensor F32 files (every tensor differs) on the CPU; target < ${TARGET_SECONDS} s and ≤ 300 MB`,
    async run(ctx) {
      const [a, b] = await files(ctx);
      try {
        return await timed(async () => {
          const [ma, mb] = await Promise.all([openModel(a), openModel(b)]);
          const r = await diff(ma, mb, { backend: 'cpu' });
          if (r.summary.different !== 100_000) throw new Error(`expected 100,000 changed tensors, got ${r.summary.different}`);
          await Promise.all([ma.close(), mb.close()]);
        });
      } finally {
        await disposeBackends();
      }
    },
  },
];
