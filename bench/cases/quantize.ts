import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { disposeBackends } from '../../src/compute/backend';
import type { SchemeName } from '../../src/compute/quant/schemes';
import { quantize } from '../../src/pipelines/quantize';
import { ensureBenchModel } from '../../test/fixtures/llama';
import type { BenchCase } from '../case';

/** The goals on this machine (2 cores), in GB/s of BF16 input. */
const TARGET_GBPS: Partial<Record<SchemeName, number>> = { q8_0: 0.5, q4_0: 0.6 };
/** Peak RSS goal, whatever the model's size. */
const RSS_TARGET_MB = 400;

function quantizeCase(scheme: SchemeName): BenchCase {
  return {
    name: `quantize.${scheme}`,
    description: `1 GB BF16 Llama-like checkpoint → ${scheme} GGUF, CPU backend: GB/s of input (≥ ${TARGET_GBPS[scheme]}), peak RSS ≤ ${RSS_TARGET_MB} MB`,
    async run(ctx) {
      const input = await ensureBenchModel(ctx.workDir);
      const out = join(ctx.workDir, `quantize-out-${scheme}.gguf`);
      try {
        // One untimed pass brings the input into the page cache, as for any repeated run.
        if (process.env.TW_BENCH_COLD !== '1') await quantize({ input, output: out, scheme }, { backend: 'cpu' });
        const t0 = performance.now();
        const r = await quantize({ input, output: out, scheme }, { backend: 'cpu' });
        const seconds = (performance.now() - t0) / 1000;
        const gbps = r.totals.bytesBefore / 1e9 / seconds;
        const rssMB = process.resourceUsage().maxRSS / 1024;
        return {
          seconds: Number(seconds.toFixed(3)),
          inputGB: Number((r.totals.bytesBefore / 1e9).toFixed(3)),
          gbPerSecond: Number(gbps.toFixed(3)),
          outputMB: Math.round(r.totals.bytesAfter / 2 ** 20),
          quantizedTensors: r.tensors.filter((t) => t.action === 'quantized').length,
          snrDb: Number((r.totals.snrDb ?? 0).toFixed(2)),
          backend: r.backend,
          target: `≥ ${TARGET_GBPS[scheme]} GB/s, peak RSS ≤ ${RSS_TARGET_MB} MB`,
          pass: gbps >= TARGET_GBPS[scheme]! && rssMB <= RSS_TARGET_MB,
        };
      } finally {
        await rm(out, { force: true });
        // A temp file only survives a crash; clean those too so the cache folder stays small.
        for (const f of await readdir(ctx.workDir)) if (f.startsWith(`.quantize-out-${scheme}.gguf.tmp-`)) await rm(join(ctx.workDir, f), { force: true });
        await disposeBackends();
      }
    },
  };
}

export const quantizeCases: BenchCase[] = [quantizeCase('q8_0'), quantizeCase('q4_0')];
