import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { disposeBackends } from '../../src/compute/backend';
import { convertModel } from '../../src/pipelines/convert';
import { quantize } from '../../src/pipelines/quantize';
import { ensureBenchModel } from '../../test/fixtures/llama';
import type { BenchCase } from '../case';

/**
 * The 1 GB BF16 bench model quantized to fp8-block, then dequantized back to BF16 by convert:
 * GB/s of each (of BF16 input for quantize, of BF16 output for convert), and peak RSS, which
 * must stay bounded whatever the model's size (chunks of 128-row bands, never whole tensors).
 */
const convertFp8Case: BenchCase = {
  name: 'convert.fp8-block',
  description: '1 GB BF16 Llama-like checkpoint → quantize fp8-block → convert --dtype bf16, CPU backend: GB/s and peak RSS',
  async run(ctx) {
    const input = await ensureBenchModel(ctx.workDir);
    const fp8 = join(ctx.workDir, 'convert-fp8-block');
    const back = join(ctx.workDir, 'convert-fp8-block-bf16');
    try {
      const t0 = performance.now();
      const q = await quantize({ input, output: fp8, scheme: 'fp8-block' }, { backend: 'cpu' });
      const quantSeconds = (performance.now() - t0) / 1000;
      // One untimed pass brings the FP8 files into the page cache, as for any repeated run.
      if (process.env.TW_BENCH_COLD !== '1') await convertModel({ input: fp8, output: back, dtype: 'BF16' }, { backend: 'cpu' });
      const t1 = performance.now();
      await convertModel({ input: fp8, output: back, dtype: 'BF16' }, { backend: 'cpu' });
      const convertSeconds = (performance.now() - t1) / 1000;
      const gb = q.totals.bytesBefore / 1e9;
      return {
        inputGB: Number(gb.toFixed(3)),
        quantizeSeconds: Number(quantSeconds.toFixed(3)),
        quantizeGbPerSecond: Number((gb / quantSeconds).toFixed(3)),
        convertSeconds: Number(convertSeconds.toFixed(3)),
        convertGbPerSecondOfBf16: Number((gb / convertSeconds).toFixed(3)),
        snrDb: Number((q.totals.snrDb ?? 0).toFixed(2)),
        peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
      };
    } finally {
      await rm(fp8, { recursive: true, force: true });
      await rm(back, { recursive: true, force: true });
      await disposeBackends();
    }
  },
};

export const convertQuantizedCases: BenchCase[] = [convertFp8Case];
