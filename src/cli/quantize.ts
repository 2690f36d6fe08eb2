import { isSchemeName, SCHEME_NAMES } from '../pipelines/runtime';
import type { BackendChoice } from '../core/job';
import { preview, quantize, type PreviewResult, type QuantFormat, type QuantReport } from '../pipelines/quantize';
import { parseCommandArgs, refuseRemote, UsageError, type Command } from './command';
import { formatSize } from '../core/units';
import { escapeText } from '../format/escape';

const USAGE = `usage: tensor-workbench quantize IN OUT --scheme ${SCHEME_NAMES.join('|')}
         [--format gguf|safetensors] [--keep GLOB]... [--only GLOB]... [--gguf-names hf|llama]
         [--backend auto|webgpu|cpu] [--allow-nonfinite] [--json] [--verbose]
       tensor-workbench quantize IN --preview [--scheme S]... [--keep GLOB]... [--only GLOB]... [--json]

Quantizes 2-D weights whose row length is a multiple of the block size (32 for the
ggml schemes); norms, biases and other tensors are kept, each with its reason.
Globs match whole tensor names (* any run, ? one character).
A tensor holding NaN or ±Inf is kept in its dtype, with a line giving the count:
a block's scale comes from its largest |x|, so each block holding one would come
back all NaN. --allow-nonfinite quantizes such tensors anyway (those blocks as the
scheme computes them; their error figures are then NaN or -inf).
  q8_0, q4_0, q4_1   ggml blocks, byte-identical to ggml's reference quantizer.
                     Default output GGUF v3; --format safetensors stores each weight
                     as U8 [rows, blocks × bytes per block].
  int8-channel       I8 weight + F32 weight_scale [rows, 1] (compressed-tensors).
  fp8-e4m3           F8_E4M3 weight + F32 weight_scale [rows, 1] (compressed-tensors).
  fp8-block          F8_E4M3 weight + F32 weight_scale_inv [⌈rows/128⌉, ⌈cols/128⌉]
                     (DeepSeek's 128×128 blocks; config.json quant_method "fp8").
  mxfp4              X.weight_blocks U8 [rows, cols/32, 16] + X.weight_scales U8 (E8M0)
                     [rows, cols/32], gpt-oss's layout (quant_method "mxfp4"); MoE
                     experts [E, in, out] (…experts.gate_up_proj) are stored transposed
                     as gpt-oss stores them, and then only the experts are quantized.
                     Both keep embeddings and lm_head unless --only names them.
--preview estimates size and error of each scheme from ≤1% of every tensor and
writes nothing. --json prints the report (or the preview) as JSON.`;

function fmt(n: number | undefined, digits = 4): string {
  if (n === undefined) return '-';
  if (!Number.isFinite(n)) return n > 0 ? 'inf' : '-inf';
  return Math.abs(n) >= 1e-3 || n === 0 ? n.toFixed(digits) : n.toExponential(2);
}

/** JSON without losing ±Infinity (an exact quantization has infinite SNR). */
function toJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'number' && !Number.isFinite(x) ? String(x) : x), 2) + '\n';
}

export function previewText(p: PreviewResult): string {
  const lines = [`${escapeText(p.input)}: ${p.params.toLocaleString('en-US')} parameters, ${formatSize(p.bytesBefore)}; sampled ≤${p.sampleFraction * 100}% of each tensor in ${p.seconds.toFixed(1)} s`];
  lines.push(`${'scheme'.padEnd(13)} ${'size'.padStart(11)} ${'bits/w'.padStart(7)} ${'SNR dB'.padStart(8)} ${'RMSE'.padStart(10)} ${'cosine'.padStart(9)}  tensors`);
  for (const r of p.rows) {
    lines.push(
      `${r.scheme.padEnd(13)} ${formatSize(r.bytesAfter).padStart(11)} ${r.bitsPerWeight.toFixed(2).padStart(7)} ${fmt(r.snrDb, 1).padStart(8)} ${fmt(r.rmse, 6).padStart(10)} ${fmt(r.cosine, 6).padStart(9)}  ${r.quantizedTensors} quantized, ${r.keptTensors} kept`,
    );
  }
  return lines.join('\n') + '\n';
}

export function reportText(r: QuantReport, verbose: boolean): string {
  const lines: string[] = [];
  for (const t of r.tensors) {
    if (t.action === 'quantized') {
      if (verbose) lines.push(`${escapeText(t.name)}: ${t.scheme}, RMSE ${fmt(t.rmse, 6)}, max|err| ${fmt(t.maxAbsErr, 6)}, SNR ${fmt(t.snrDb, 1)} dB, cosine ${fmt(t.cosine, 6)}`);
    } else {
      lines.push(`${escapeText(t.name)}: ${t.action} (${escapeText(t.reason ?? '')})`);
    }
  }
  const q = r.tensors.filter((t) => t.action === 'quantized').length;
  const tt = r.totals;
  lines.push(
    `quantized ${q} of ${r.tensors.length} tensors to ${r.scheme} (${r.format}, ${r.backend}) in ${r.seconds.toFixed(1)} s`,
    `size ${formatSize(tt.bytesBefore)} → ${formatSize(tt.bytesAfter)}, ${tt.bitsPerWeight.toFixed(2)} bits/weight overall (${tt.quantizedBitsPerWeight.toFixed(2)} in quantized tensors)`,
    `error over quantized tensors: RMSE ${fmt(tt.rmse, 6)}, max|err| ${fmt(tt.maxAbsErr, 6)}, SNR ${fmt(tt.snrDb, 1)} dB, cosine ${fmt(tt.cosine, 6)}`,
  );
  for (const m of r.missing) lines.push(`note: missing ${escapeText(m)}`);
  lines.push(`wrote ${r.outputs.map(escapeText).join(', ')}`);
  return lines.join('\n') + '\n';
}

export const quantizeCommand: Command = {
  name: 'quantize',
  summary: 'Quantize to q8_0/q4_0/q4_1 (GGUF or safetensors), int8 or FP8, with an error report or a preview',
  usage: USAGE,
  async run(argv, io) {
    const { values, positionals } = parseCommandArgs(
      argv,
      {
        scheme: { type: 'string', multiple: true },
        format: { type: 'string' },
        keep: { type: 'string', multiple: true },
        only: { type: 'string', multiple: true },
        preview: { type: 'boolean' },
        backend: { type: 'string' },
        json: { type: 'boolean' },
        verbose: { type: 'boolean' },
        'gguf-names': { type: 'string' },
        'allow-nonfinite': { type: 'boolean' },
      },
      { minPositionals: 1, maxPositionals: 2, usage: 'IN and OUT (or IN with --preview)' },
    );
    refuseRemote('quantize', positionals);
    const schemes = values.scheme ?? [];
    for (const s of schemes) if (!isSchemeName(s)) throw new UsageError(`--scheme must be one of ${SCHEME_NAMES.join(', ')}, not '${s}'`);
    const backend = (values.backend ?? 'auto') as BackendChoice;
    if (!['auto', 'webgpu', 'cpu'].includes(backend)) throw new UsageError(`--backend must be auto, webgpu or cpu, not '${values.backend}'`);
    const ctx = { signal: io.signal, progress: io.progress, notice: io.notice, backend };
    if (values.preview) {
      if (positionals.length !== 1) throw new UsageError('--preview takes IN only (nothing is written)');
      const p = await preview({ input: positionals[0], schemes: schemes.length ? (schemes as never) : undefined, keep: values.keep, only: values.only }, ctx);
      io.stdout.write(values.json ? toJson(p) : previewText(p));
      return 0;
    }
    if (positionals.length !== 2) throw new UsageError('expected IN and OUT');
    if (schemes.length !== 1) throw new UsageError('--scheme is required, once');
    const format = values.format as QuantFormat | undefined;
    if (format !== undefined && format !== 'gguf' && format !== 'safetensors') throw new UsageError(`--format must be gguf or safetensors, not '${format}'`);
    const names = values['gguf-names'];
    if (names !== undefined && names !== 'hf' && names !== 'llama') throw new UsageError(`--gguf-names must be hf or llama, not '${names}'`);
    const r = await quantize(
      { input: positionals[0], output: positionals[1], scheme: schemes[0] as never, format, keep: values.keep, only: values.only, ggufNames: names as 'hf' | 'llama' | undefined, allowNonfinite: values['allow-nonfinite'] },
      ctx,
    );
    io.stdout.write(values.json ? toJson(r) : reportText(r, (values.verbose || io.verbose) ?? false));
    return 0;
  },
};
