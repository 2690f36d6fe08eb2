import { inspectModel, renderInspectText } from '../pipelines/inspect';
import { defineCommand, openerFor } from './command';

const USAGE = `usage: tensor-workbench inspect PATH [--json]

PATH is a .safetensors file, a model.safetensors.index.json, a folder holding either, a .gguf
file or one part of a split GGUF set (NAME-00001-of-00003.gguf), or a PyTorch checkpoint; or the
same over HTTP: an https:// URL, or hf://OWNER/REPO[@REVISION][/PATH] on the Hugging Face Hub
(HF_TOKEN for gated or private repositories). Reads headers only. --json prints {path, files,
metadata, tensors, parameters, bytes, bitsPerWeight}; a tensor's dtype is its stored type (BF16,
or a ggml type such as Q4_K) and its shape is row-major.`;

export const inspectCommand = defineCommand({
  name: 'inspect',
  summary: 'Summarise a model from its headers: tensors, dtypes, memory, module tree',
  usage: USAGE,
  options: { json: { type: 'boolean' } },
  positionals: { min: 1, max: 1, usage: 'one PATH' },
  async run({ values, positionals }, io) {
    const report = await inspectModel({ path: positionals[0], opener: openerFor(positionals[0], io.signal) }, { signal: io.signal });
    io.stdout.write(values.json ? JSON.stringify(report) + '\n' : renderInspectText(report));
    return 0;
  },
});
