import { existsSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { openModel } from '../../src/format/openModel';
import { convertModel } from '../../src/pipelines/convert';
import { ensureBenchModel } from '../../test/fixtures/llama';
import { writeTorchZip } from '../../test/fixtures/torchZip';
import type { BenchCase } from '../case';

/** The goals for converting a 1 GB BF16 pytorch_model.bin (zip format) to safetensors. */
const TARGET_GBPS = 1;
const TARGET_RSS_MB = 300;

async function ensureBin(workDir: string): Promise<string> {
  const dir = join(workDir, 'llama-bench1GB-bin');
  const bin = join(dir, 'pytorch_model.bin');
  if (existsSync(bin) && statSync(bin).size > 1e9) return bin;
  const { mkdirSync } = await import('node:fs');
  mkdirSync(dir, { recursive: true });
  const src = await openModel(await ensureBenchModel(workDir));
  try {
    await writeTorchZip(bin + '.partial', src);
  } finally {
    await src.close();
  }
  const { renameSync } = await import('node:fs');
  renameSync(bin + '.partial', bin);
  return bin;
}

export const pickleCases: BenchCase[] = [
  {
    name: 'convert.pickle',
    description: `convert a 1 GB BF16 pytorch_model.bin (zip) to safetensors, dtypes kept: ≥ ${TARGET_GBPS} GB/s, peak RSS < ${TARGET_RSS_MB} MB`,
    async run(ctx) {
      const bin = await ensureBin(ctx.workDir);
      const out = join(ctx.workDir, 'pickle-out.safetensors');
      const bytes = statSync(bin).size;
      // One warm-up run brings the input into the page cache; its output is deleted before the timed run.
      await convertModel({ input: bin, output: out, dtype: 'keep' });
      rmSync(out, { force: true });
      const t0 = performance.now();
      await convertModel({ input: bin, output: out, dtype: 'keep' });
      const s = (performance.now() - t0) / 1000;
      rmSync(out, { force: true });
      const gbps = bytes / 1e9 / s;
      return { seconds: +s.toFixed(3), gbPerS: +gbps.toFixed(2), target: `${TARGET_GBPS} GB/s`, pass: gbps >= TARGET_GBPS };
    },
  },
];
