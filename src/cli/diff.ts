import type { Model } from '../format/model';
import { openModel } from '../format/openModel';
import { diff, type PrefixMapping } from '../pipelines/diff';
import { diffJsonChunks, diffToMarkdown, diffToText } from '../pipelines/diffReport';
import { defineCommand, openerFor, parseBackend, UsageError, withBackends, writer } from './command';

const USAGE = `usage: tensor-workbench diff A B [--json | --markdown] [--rank] [--map PREFIX_A=PREFIX_B] [--top N] [--backend auto|cpu|webgpu]

Compares two checkpoints tensor by tensor: what was added, removed or reshaped,
and for every common tensor whether it is byte-identical, its relative L2 change
‖b − a‖/‖a‖, cosine, largest and mean |b − a| and the share of elements changed,
aggregated per block (layers.N) and per module kind.
A and B are .safetensors files, model.safetensors.index.json files, folders, .gguf files
or split GGUF sets (any part), PyTorch checkpoints, or https:// or hf://OWNER/REPO[@REVISION][/PATH]
URLs. Tensors stored in different types (an F32 original and its Q8_0 GGUF) are compared on
their decoded values, with the SNR per tensor and the bits per weight against the error per
model. llama.cpp names (blk.N.attn_q.weight) are matched to HF Llama names, and the q/k rows
llama.cpp's converter reorders are read back in HF order.
A prefix difference such as 'model.' vs 'base_model.model.model.' is detected
and mapped; --map gives it explicitly ('--map =base_model.model.' for an empty A prefix).
--rank       also estimates how low-rank each changed 2-D tensor's Δ is: the share
             of ‖Δ‖² captured at ranks 1, 4, 16 and 64 (extra passes over those tensors).
--json       the full report as JSON; --markdown a summary for a pull request.
--top N      rows in the top-changes table (default 20).
Models that differ are not an error: the exit code is 0 unless a file is invalid.`;

export function parseMapping(text: string): PrefixMapping {
  const eq = text.indexOf('=');
  if (eq < 0) throw new UsageError(`--map takes PREFIX_A=PREFIX_B, not '${text}'`);
  return { a: text.slice(0, eq), b: text.slice(eq + 1) };
}

export const diffCommand = defineCommand({
  name: 'diff',
  summary: 'Compare two checkpoints: changed tensors, relative L2, cosine, per-layer and low-rank structure',
  usage: USAGE,
  options: {
    json: { type: 'boolean' },
    markdown: { type: 'boolean' },
    rank: { type: 'boolean' },
    map: { type: 'string' },
    top: { type: 'string' },
    backend: { type: 'string' },
  },
  positionals: { min: 2, max: 2, usage: 'two checkpoints A B' },
  async run({ values, positionals }, io) {
    if (values.json && values.markdown) throw new UsageError('--json and --markdown exclude each other');
    const backend = parseBackend(values.backend);
    const top = values.top === undefined ? undefined : Number(values.top);
    if (top !== undefined && (!Number.isInteger(top) || top < 1)) throw new UsageError(`--top must be a positive integer, not '${values.top}'`);
    const mapping = values.map === undefined ? undefined : parseMapping(values.map);
    const opened: Model[] = [];
    return withBackends(async () => {
      try {
        // Both are opened (headers only) before any comparison, so an invalid B fails fast too.
        for (const p of positionals) opened.push(await openModel(p, openerFor(p, io.signal)));
        const report = await diff(opened[0], opened[1], { mapping, rank: values.rank ?? false, backend, signal: io.signal, progress: io.progress });
        if (values.json) {
          // Written as it is made: the whole JSON of 100,000 tensors is ~60 MB of text.
          const write = writer(io.stdout);
          for (const chunk of diffJsonChunks(report)) await write(chunk);
        } else io.stdout.write(values.markdown ? diffToMarkdown(report, top) : diffToText(report, top));
        return 0;
      } finally {
        await Promise.all(opened.map((m) => m.close()));
      }
    });
  },
});
