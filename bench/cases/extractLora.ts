import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { disposeBackends } from '../../src/compute/backend';
import { extractLora } from '../../src/pipelines/extractLora';
import type { BenchCase } from '../case';
import { workload } from './diff';

/** The goal: extract-lora at rank 16 of the 1 GB base and fine-tune under 15 s on 2 cores. */
const TARGET_SECONDS = 15;

export const extractLoraCases: BenchCase[] = [
  {
    name: 'extractLora.cpu.r16',
    description: 'extract-lora --rank 16 of the 1 GB BF16 base and its fine-tuned copy (28 changed weights), CPU backend: wall and CPU seconds (page cache warm)',
    async run(ctx) {
      const [base, tuned] = await workload(ctx);
      const c0 = process.cpuUsage();
      try {
        const r = await extractLora({ base, finetuned: tuned, outDir: join(ctx.workDir, 'extract-lora-r16'), rank: 16 }, { backend: 'cpu' });
        const cpu = process.cpuUsage(c0);
        const cpuSeconds = (cpu.user + cpu.system) / 1e6;
        return {
          seconds: Number(r.seconds.toFixed(3)),
          // user + system of every thread of the process (the workers included), from getrusage.
          cpuSeconds: Number(cpuSeconds.toFixed(3)),
          modules: r.modules.length,
          meanEnergy: Number((r.modules.reduce((s, m) => s + m.energy, 0) / r.modules.length).toFixed(4)),
          loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
          target: `< ${TARGET_SECONDS} s on 2 cores, wall (on an idle machine) and CPU seconds / 2`,
          pass: r.seconds < TARGET_SECONDS || cpuSeconds / 2 < TARGET_SECONDS,
        };
      } finally {
        await disposeBackends();
      }
    },
  },
];
