import { looksLikeTorchPath } from '../format/pickle/torch';
import { convertModel, type ConvertTarget } from '../pipelines/convert';
import { toGguf } from '../pipelines/toGguf';
import { FTYPE_NAMES, isFtypeName } from '../pipelines/llamaFtype';
import { dequantizedNote, FTYPE_OPTIONS, ftypeOptions, ftypeReport } from './ftypeArgs';
import { defineCommand, refuseRemote, parseSize, UsageError } from './command';
import { escapeText } from '../format/escape';

const USAGE = `usage: tensor-workbench convert IN OUT [--dtype bf16|f16|f32|keep] [--max-shard-size SIZE] [--allow-unsafe-globals] [--verbose]
       tensor-workbench convert IN_DIR OUT.gguf [--ftype F16|BF16|F32|Q8_0|Q4_K_M|Q5_K_M|Q6_K|…]
                [--imatrix FILE] [--pure] [--tensor-type REGEX=TYPE]... [--output-tensor-type TYPE] [--token-embedding-type TYPE]

Casts every floating tensor to --dtype (default bf16; keep for a PyTorch checkpoint) with
round-to-nearest-even; integer, BOOL and complex tensors are copied unchanged.
Quantized weights (FP8 with scales, MXFP4, NVFP4, compressed-tensors, GPTQ, AWQ, GGUF
blocks) are dequantized to --dtype, chunk by chunk; config.json is written beside them
without its quantization_config.
IN is a .safetensors file, an index.json, a folder, or a PyTorch checkpoint (.bin, .pt,
.pth, .ckpt), which is read without executing it: one that names functions beyond tensor
rebuilds is refused unless --allow-unsafe-globals is given (even then nothing is executed).
Tensors that share a storage are written once; the aliases are reported. OUT is a .safetensors file,
or a folder; with --max-shard-size (e.g. 5GB, 500MiB) OUT is a folder of
model-0000i-of-0000n.safetensors shards plus model.safetensors.index.json.
Reports, per tensor, values that overflowed to ±Inf or flushed to zero
(--verbose: every tensor). Nothing is written unless the whole conversion succeeds.
An OUT ending in .gguf converts a Hugging Face Llama/Mistral/Qwen2/Qwen3 folder
(config.json, safetensors, tokenizer files) to a GGUF for llama.cpp (default F16); a
quantized release (FP8 with block scales, GPTQ, AWQ …) converts from its decoded values.
--ftype also takes llama.cpp's file types (${FTYPE_NAMES.join(', ')}): each tensor gets the type
llama-quantize gives it for that file type, byte-identical to llama-quantize run on the
GGUF of the weights' own float type; the --tensor-type options are llama-quantize's.`;

const FTYPES = ['F16', 'BF16', 'F32', 'Q8_0'] as const;
const FTYPE_HELP = [...new Set<string>([...FTYPES, ...FTYPE_NAMES])].join(', ');

const TARGETS: Record<string, ConvertTarget> = { bf16: 'BF16', f16: 'F16', f32: 'F32', keep: 'keep' };

export const convertCommand = defineCommand({
  name: 'convert',
  summary: 'Cast floating tensors to bf16/f16/f32 (RNE), optionally sharded',
  usage: USAGE,
  options: { dtype: { type: 'string' }, 'max-shard-size': { type: 'string' }, verbose: { type: 'boolean' }, 'allow-unsafe-globals': { type: 'boolean' }, ftype: { type: 'string' }, ...FTYPE_OPTIONS },
  positionals: { min: 2, max: 2, usage: 'IN and OUT' },
  async run({ values, positionals }, io) {
    if (positionals[1].toLowerCase().endsWith('.gguf')) {
      refuseRemote('convert', positionals);
      const want = (values.ftype ?? 'F16').toUpperCase();
      const opts = ftypeOptions(values);
      const hasOpts = opts.tensorTypes!.length > 0 || opts.outputType !== undefined || opts.tokenEmbeddingType !== undefined || values.imatrix !== undefined || values.pure === true;
      // Q8_0 is both: the converter's plain type, or (with overrides) llama-quantize's file type.
      const plain = FTYPES.find((f) => f === want);
      if (hasOpts && !isFtypeName(want)) throw new UsageError(`--tensor-type, --output-tensor-type, --token-embedding-type, --imatrix and --pure need a llama.cpp file type (${FTYPE_NAMES.join(', ')})`);
      const ftype = (hasOpts ? undefined : plain) ?? (isFtypeName(want) ? want : undefined);
      if (!ftype) throw new UsageError(`--ftype must be one of ${FTYPE_HELP}, not '${values.ftype}'`);
      const g = await toGguf({ input: positionals[0], output: positionals[1], ftype, ftypeOptions: opts, imatrix: values.imatrix }, { signal: io.signal, progress: io.progress });
      if (isFtypeName(ftype)) io.stdout.write(ftypeReport(g, ftype));
      else io.stdout.write((dequantizedNote(g) ? dequantizedNote(g) + '\n' : '') + `wrote ${escapeText(g.file)}: ${g.arch}, ${g.tensors.length} tensors, ${ftype}, tokenizer ${g.tokenizer} (pre ${g.pre}), ${g.bytes} bytes\n`);
      return 0;
    }
    const dtype = TARGETS[(values.dtype ?? (looksLikeTorchPath(positionals[0]) ? 'keep' : 'bf16')).toLowerCase()];
    if (!dtype) throw new UsageError(`--dtype must be bf16, f16, f32 or keep, not '${values.dtype}'`);
    const maxShardBytes = values['max-shard-size'] !== undefined ? parseSize(values['max-shard-size']) : undefined;
    refuseRemote('convert', positionals);
    const r = await convertModel({ input: positionals[0], output: positionals[1], dtype, maxShardBytes, allowUnsafe: values['allow-unsafe-globals'] }, { signal: io.signal, progress: io.progress, notice: io.notice });
    let cast = 0;
    let overflow = 0;
    let underflow = 0;
    for (const t of r.tensors) {
      if (t.from !== t.to) cast++;
      overflow += t.overflow;
      underflow += t.underflow;
      if (values.verbose || io.verbose || t.overflow > 0 || t.underflow > 0) {
        io.stdout.write(`${escapeText(t.name)}: ${t.from} → ${t.to}${t.from !== t.to ? `, ${t.overflow} overflowed to ±Inf, ${t.underflow} flushed to zero` : ' (unchanged)'}\n`);
      }
    }
    io.stdout.write(
      (r.notes ?? []).map((n) => `note: ${n}\n`).join('') +
      `converted ${cast} of ${r.tensors.length} tensors${dtype === 'keep' ? ' (dtypes kept)' : ` to ${dtype}`}; ${overflow} values overflowed to ±Inf, ${underflow} flushed to zero\n` +
        `wrote ${r.files.length === 1 ? r.files[0] : `${r.files.length} shards and ${r.index}`}${r.config ? ` and ${r.config} (quantization_config removed)` : ''}\n`,
    );
    return 0;
  },
});
