// `node dist/sample.js OUTDIR`: the demo workspace. A small BF16 Llama-like base
// sharded in two files with its index, a fine-tuned copy, a PEFT LoRA adapter
// for it, and a corrupt .safetensors to show how errors look.
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { PRESETS, writeFineTuned, writeLlama, writePeftAdapter } from '../test/fixtures/llama';

/** A small but not trivial model: folds, histograms and diffs have something to show. */
const SAMPLE = { ...PRESETS.tiny, hidden: 256, intermediate: 688, layers: 6, vocab: 1024, heads: 8, kvHeads: 4 };

async function main(): Promise<void> {
  const outArg = process.argv[2];
  if (!outArg) {
    process.stderr.write('usage: node dist/sample.js OUTDIR\n');
    process.exit(2);
  }
  const out = resolve(outArg);
  await mkdir(out, { recursive: true });
  const base = await writeLlama(join(out, 'base'), { ...SAMPLE, shards: 2 });
  const ft = await writeFineTuned(base.dir, join(out, 'finetuned'), { layersChanged: 'half' });
  const adapter = await writePeftAdapter(join(out, 'adapter'), { r: 16, alpha: 32, targets: ['q_proj', 'v_proj'], base: base.dir });
  // A header that promises 64 bytes of data the file does not have: the reader reports `truncated`.
  const json = Buffer.from(JSON.stringify({ 'model.norm.weight': { dtype: 'BF16', shape: [32], data_offsets: [0, 64] } }).padEnd(80, ' '));
  const corrupt = Buffer.alloc(8 + json.length + 16);
  corrupt.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(corrupt, 8);
  await writeFile(join(out, 'corrupt.safetensors'), corrupt);
  process.stdout.write(
    [
      `${out}/base: ${base.files.length} shards + model.safetensors.index.json (${base.totalSize} bytes of BF16)`,
      `${out}/finetuned: layers ${ft.layers.join(',')} changed (${ft.changed.length} tensors)`,
      `${out}/adapter: LoRA r=16 on ${adapter.modules.length} modules`,
      `${out}/corrupt.safetensors: truncated data section`,
    ].join('\n') + '\n',
  );
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exit(1);
});
