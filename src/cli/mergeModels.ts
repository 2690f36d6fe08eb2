import { mergeModels, MergeConfigError, MergeModelsError } from '../pipelines/mergeModels/mergeModels';
import { defineCommand, UsageError } from './command';

const USAGE = `usage: tensor-workbench merge-models CONFIG.yml OUT [--seed N] [--json]

Merges whole models as a mergekit YAML config describes: models (each a model
path with its parameters), merge_method, base_model, parameters, dtype and
tokenizer_source: base. Methods: linear, task_arithmetic, ties, dare_linear,
dare_ties, breadcrumbs, breadcrumbs_ties, slerp, model_stock, passthrough.
Instead of models, slices: [{sources: [{model, layer_range: [start, end],
parameters}], parameters}] builds the output's layers from the slices in order
(the sources of a slice span as many layers; passthrough takes one source a
slice); embeddings come from the first slice's sources, the final norm and
lm_head from the last's, and config.json's layer count follows. A parameter may be
a number, a gradient list interpolated across the layers, or a list of
{filter, value} matched against tensor names. Paths are relative to the current
folder. Arithmetic is float64, rounded once to dtype (default: the base's).
OUT is a folder (shards like the base, with the base's config and tokenizer
files) or a .safetensors file. Models whose tensors, shapes or dtypes do not
match are refused, with the list, before anything is written.
--seed N seeds the DARE drops (default 0): each element's draw depends only on
the seed, the tensor's name, the model's place in models and its index, so the
same seed gives the same bytes.`;

export const mergeModelsCommand = defineCommand({
  name: 'merge-models',
  summary: 'Merge whole models from a mergekit config (linear, task_arithmetic, ties, dare, breadcrumbs, slerp, model_stock, passthrough; models or slices)',
  usage: USAGE,
  options: { seed: { type: 'string' }, json: { type: 'boolean' } },
  positionals: { min: 2, max: 2, usage: 'CONFIG.yml and OUT' },
  async run({ values, positionals }, io) {
    const seed = values.seed === undefined ? 0 : Number(values.seed);
    if (!Number.isSafeInteger(seed) || seed < 0 || seed > 0xffffffff) throw new UsageError(`--seed must be an integer from 0 to 4294967295, not '${values.seed}'`);
    const [config, output] = positionals;
    const out = (s: string) => io.stdout.write(s);
    try {
      const t0 = performance.now();
      const r = await mergeModels({ config, output, seed }, { signal: io.signal, progress: io.progress, notice: io.notice });
      const seconds = (performance.now() - t0) / 1000;
      if (values.json) out(JSON.stringify({ ...r, seconds }, null, 2) + '\n');
      else out(`${r.method}: merged ${r.tensors} tensor(s), ${(r.inputBytes / 1e9).toFixed(2)} GB read, in ${seconds.toFixed(2)} s\nwrote ${r.index ?? r.files.join(', ')}\n`);
      return 0;
    } catch (e) {
      if (e instanceof MergeConfigError) {
        if (values.json) out(JSON.stringify({ error: 'config', file: e.file, problems: e.problems }, null, 2) + '\n');
        for (const p of e.problems) io.stderr.write(`error[merge_config]: ${e.file}: ${p}\n`);
        return 2;
      }
      if (e instanceof MergeModelsError) {
        if (values.json) out(JSON.stringify({ error: e.code, problems: e.problems }, null, 2) + '\n');
        for (const p of e.problems) io.stderr.write(`error[merge_${e.code}]: ${p}\n`);
        return 2;
      }
      throw e;
    }
  },
});
