import { isSchemeName, SCHEME_NAMES } from '../pipelines/runtime';
import type { JobContext } from '../core/job';
import { preview, quantize, type PreviewResult, type QuantFormat, type QuantReport } from '../pipelines/quantize';
import { defineCommand, parseBackend, refuseRemote, UsageError, type CommandIO } from './command';
import { formatSize } from '../core/units';
import { escapeText } from '../format/escape';
import { FTYPE_NAMES, isFtypeName } from '../pipelines/llamaFtype';
import { toGguf, type ToGgufResult } from '../pipelines/toGguf';
import { quantizeGgufFtype } from '../pipelines/ftypeFromGguf';
import { FTYPE_OPTIONS, FTYPE_USAGE, ftypeOptions, ftypeReport, ftypeTensorLines } from './ftypeArgs';
import { checkTargetBpw, planTargetBpw } from '../pipelines/targetBpw';
import { planText } from '../pipelines/bpwPlan';

const USAGE = `usage: tensor-workbench quantize IN OUT --scheme ${SCHEME_NAMES.join('|')}
         [--format gguf|safetensors] [--keep GLOB]... [--only GLOB]... [--gguf-names hf|llama]
         [--backend auto|webgpu|cpu] [--allow-nonfinite] [--allow-requantize] [--json] [--verbose]
       tensor-workbench quantize IN OUT.gguf --ftype ${FTYPE_NAMES.join('|')}
         ${FTYPE_USAGE} [--allow-requantize]
       tensor-workbench quantize IN.gguf OUT.gguf --target-bpw BITS [--dry-run] [--json]
         [--imatrix FILE] [--tensor-type REGEX=TYPE]... [--output-tensor-type TYPE] [--token-embedding-type TYPE]
       tensor-workbench quantize IN --preview [--scheme S]... [--keep GLOB]... [--only GLOB]... [--json]

Quantizes 2-D weights whose row length is a multiple of the block size (32 for the
ggml schemes); norms, biases and other tensors are kept, each with its reason.
Globs match whole tensor names (* any run, ? one character).
A tensor holding NaN or ±Inf is kept in its dtype, with a line giving the count:
a block's scale comes from its largest |x|, so each block holding one would come
back all NaN. --allow-nonfinite quantizes such tensors anyway (those blocks as the
scheme computes them; their error figures are then NaN or -inf).
Quantized inputs (FP8 with scales, MXFP4, NVFP4, GPTQ, AWQ, compressed-tensors, GGUF
blocks) are quantized from their decoded values, chunk by chunk; such a tensor that is
kept is written as F32. A tensor already in a quantized GGUF type (Q8_0 …) is quantized
again only with --allow-requantize (a second rounding error), as llama-quantize.
  q8_0, q4_0, q4_1   ggml blocks, byte-identical to ggml's reference quantizer.
                     Default output GGUF v3; --format safetensors stores each weight
                     as U8 [rows, blocks × bytes per block].
  q2_k … q6_k, q5_0, q5_1, iq4_nl, iq4_xs
                     ggml's K-quants (256-value super-blocks), Q5 and IQ4 types,
                     byte-identical to ggml_quantize_chunk; stored as above.
  int8-channel       I8 weight + F32 weight_scale [rows, 1] (compressed-tensors).
  fp8-e4m3           F8_E4M3 weight + F32 weight_scale [rows, 1] (compressed-tensors).
  fp8-block          F8_E4M3 weight + F32 weight_scale_inv [⌈rows/128⌉, ⌈cols/128⌉]
                     (DeepSeek's 128×128 blocks; config.json quant_method "fp8").
  mxfp4              X.weight_blocks U8 [rows, cols/32, 16] + X.weight_scales U8 (E8M0)
                     [rows, cols/32], gpt-oss's layout (quant_method "mxfp4"); MoE
                     experts [E, in, out] (…experts.gate_up_proj) are stored transposed
                     as gpt-oss stores them, and then only the experts are quantized.
                     Both keep embeddings and lm_head unless --only names them.
--ftype picks each tensor's type as llama-quantize does for that file type (output and
embedding tables, attn_v/ffn_down with more bits in some layers, the GQA and expert rules,
32-block fallbacks for rows that are not a multiple of 256, 1-D tensors kept F32), writes
llama.cpp tensor names and Q/K row order, and sets general.file_type. IN is a Hugging Face
folder (config.json, safetensors, tokenizer) or an F32/F16/BF16 GGUF. The bytes equal
llama-quantize's from the GGUF of the weights' own float type. --tensor-type REGEX=TYPE
(first pattern found in a llama.cpp name wins), --output-tensor-type and
--token-embedding-type override as in llama-quantize; --imatrix FILE reads llama.cpp's
importance matrix (GGUF or legacy .dat) and quantizes as llama-quantize does with it
(Q4_0/Q4_1 tensors with an imatrix are refused for now); --pure gives every quantizable
tensor the file type's base type, as llama-quantize --pure. --scheme TYPE is one type for
every 2-D weight too, keeping (not demoting) those whose rows do not fit its blocks.
With --ftype or --target-bpw, --json prints the report (each tensor's type and its error,
measured while writing, and the bits per weight) and --verbose a line per tensor; without
them no error is measured.
--target-bpw BITS chooses each tensor's type (q2_k … q6_k, iq4_xs, q8_0; q4_0 … q5_1 and
iq4_nl where rows are not a multiple of 256) so that the tensor data fits BITS bits per
weight at the lowest estimated error, weighted by the importance matrix when --imatrix is
given. Errors are measured on up to 64 Ki sampled values of each tensor, quantized to each
type. 1-D tensors stay F32; the --*-type overrides are kept and counted in the budget. The
plan (tensor, type, bits, estimated relative error, total bits per weight) is printed
before the file is written; --dry-run prints it and writes nothing. IN is an F32, F16 or
BF16 GGUF with llama.cpp names (convert --ftype BF16 makes one from a folder).
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

/** `fp8-block ×2, Q8_0` */
function decodedKinds(tensors: readonly { from?: string }[]): string {
  const n = new Map<string, number>();
  for (const t of tensors) n.set(t.from!, (n.get(t.from!) ?? 0) + 1);
  return [...n].map(([k, c]) => (c > 1 ? `${escapeText(k)} ×${c}` : escapeText(k))).join(', ');
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
  const decoded = r.tensors.filter((t) => t.from !== undefined);
  if (decoded.length) {
    const kept = decoded.filter((t) => t.action === 'kept').length;
    lines.push(`note: ${decoded.length} quantized input tensor${decoded.length === 1 ? '' : 's'} (${decodedKinds(decoded)}) read as ${decoded.length === 1 ? 'its' : 'their'} decoded values${kept ? `; ${kept} kept ${kept === 1 ? 'is' : 'are'} written as F32` : ''}`);
  }
  for (const m of r.missing) lines.push(`note: missing ${escapeText(m)}`);
  lines.push(`wrote ${r.outputs.map(escapeText).join(', ')}`);
  return lines.join('\n') + '\n';
}

type Values = { 'target-bpw'?: string; 'dry-run'?: boolean; json?: boolean; verbose?: boolean; ftype?: string; format?: string; keep?: string[]; only?: string[]; 'gguf-names'?: string; 'allow-nonfinite'?: boolean; 'allow-requantize'?: boolean; 'tensor-type'?: string[]; 'output-tensor-type'?: string; 'token-embedding-type'?: string; imatrix?: string; pure?: boolean };

/** `--ftype`: llama-quantize's per-tensor types, from a Hugging Face folder or a float GGUF. */
async function runFtype(values: Values, positionals: string[], schemes: string[], io: CommandIO, ctx: JobContext): Promise<number> {
  const ftype = values.ftype!.toUpperCase();
  if (!isFtypeName(ftype)) throw new UsageError(`--ftype must be one of ${FTYPE_NAMES.join(', ')}, not '${values.ftype}'`);
  if (schemes.length) throw new UsageError('--ftype and --scheme exclude each other (--scheme is one type for every tensor)');
  const other = (['format', 'keep', 'only', 'gguf-names', 'allow-nonfinite'] as const).find((k) => values[k] !== undefined);
  if (other) throw new UsageError(`--${other} does not go with --ftype (the output is a GGUF with llama.cpp names)`);
  const [input, output] = positionals;
  if (!output.toLowerCase().endsWith('.gguf')) throw new UsageError('with --ftype OUT is a .gguf file');
  const verbose = (values.verbose || io.verbose) ?? false;
  const args = { input, output, ftype, ftypeOptions: ftypeOptions(values), imatrix: values.imatrix, report: values.json || verbose, allowRequantize: values['allow-requantize'] };
  const r = input.toLowerCase().endsWith('.gguf') ? await quantizeGgufFtype(args, ctx) : await toGguf(args, ctx);
  writeFtypeResult(r, ftype, values.json, verbose, io);
  return 0;
}

/** The file-type report: JSON (per tensor type and error, totals), or the text lines, per tensor with --verbose. */
function writeFtypeResult(r: ToGgufResult, label: string, json: boolean | undefined, verbose: boolean, io: CommandIO): void {
  if (json) return void io.stdout.write(toJson({ ...r.report, fallbacks: r.fallbacks, overrides: r.overrides }));
  if (verbose && r.report) io.stdout.write(ftypeTensorLines(r.report));
  io.stdout.write(ftypeReport(r, label));
}

/** `--target-bpw`: a plan for a bits-per-weight budget, printed, then written unless `--dry-run`. */
async function runTargetBpw(values: Values, positionals: string[], schemes: string[], io: CommandIO, ctx: JobContext): Promise<number> {
  const raw = values['target-bpw']!;
  const target = /^\s*[0-9]*\.?[0-9]+\s*$/.test(raw) ? Number(raw) : NaN;
  const bad = checkTargetBpw(target);
  if (bad) throw new UsageError(`${bad}, not '${raw}'`);
  if (values.ftype !== undefined) throw new UsageError('--target-bpw and --ftype exclude each other (the budget chooses every type)');
  if (schemes.length) throw new UsageError('--target-bpw and --scheme exclude each other (the budget chooses every type)');
  const other = (['pure', 'format', 'keep', 'only', 'gguf-names', 'allow-nonfinite'] as const).find((k) => values[k] !== undefined);
  if (other) throw new UsageError(`--${other} does not go with --target-bpw`);
  const [input, output] = positionals;
  if (!input.toLowerCase().endsWith('.gguf')) throw new UsageError('--target-bpw reads an F32, F16 or BF16 GGUF (convert IN OUT.gguf --ftype BF16 makes one from a folder)');
  if (output === undefined && !values['dry-run']) throw new UsageError('expected IN and OUT (or --dry-run)');
  if (output !== undefined && !output.toLowerCase().endsWith('.gguf')) throw new UsageError('with --target-bpw OUT is a .gguf file');
  const opts = ftypeOptions(values);
  const r = await planTargetBpw({ input, targetBpw: target, ftypeOptions: opts, imatrix: values.imatrix }, ctx);
  if (values['dry-run']) {
    io.stdout.write(values.json ? toJson({ ...r.plan, ftype: r.ftype }) : planText(r.plan, escapeText));
    return 0;
  }
  if (!values.json) io.stdout.write(planText(r.plan, escapeText));
  const verbose = (values.verbose || io.verbose) ?? false;
  const label = `target ${target} bpw`;
  const w = await quantizeGgufFtype({ input, output, ftype: r.ftype, ftypeOptions: opts, imatrix: values.imatrix, types: r.types, report: values.json || verbose, label }, ctx);
  if (values.json) io.stdout.write(toJson({ plan: { ...r.plan, ftype: r.ftype }, report: w.report }));
  else writeFtypeResult(w, label, false, verbose, io);
  return 0;
}

export const quantizeCommand = defineCommand({
  name: 'quantize',
  summary: 'Quantize to ggml types (GGUF or safetensors), llama.cpp file types (--ftype Q4_K_M …), int8 or FP8, with an error report or a preview',
  usage: USAGE,
  options: {
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
    'allow-requantize': { type: 'boolean' },
    ftype: { type: 'string' },
    'target-bpw': { type: 'string' },
    'dry-run': { type: 'boolean' },
    ...FTYPE_OPTIONS,
  },
  positionals: { min: 1, max: 2, usage: 'IN and OUT (or IN with --preview)' },
  async run({ values, positionals }, io) {
    refuseRemote('quantize', positionals);
    const schemes = values.scheme ?? [];
    for (const s of schemes) if (!isSchemeName(s)) throw new UsageError(`--scheme must be one of ${SCHEME_NAMES.join(', ')}, not '${s}'`);
    const backend = parseBackend(values.backend);
    const ctx = { signal: io.signal, progress: io.progress, notice: io.notice, backend };
    if (values.preview) {
      if (positionals.length !== 1) throw new UsageError('--preview takes IN only (nothing is written)');
      const p = await preview({ input: positionals[0], schemes: schemes.length ? (schemes as never) : undefined, keep: values.keep, only: values.only }, ctx);
      io.stdout.write(values.json ? toJson(p) : previewText(p));
      return 0;
    }
    if (values['target-bpw'] !== undefined) return runTargetBpw(values, positionals, schemes, io, ctx);
    if (values['dry-run']) throw new UsageError('--dry-run goes with --target-bpw (--preview estimates without writing)');
    if (positionals.length !== 2) throw new UsageError('expected IN and OUT');
    if (values.ftype !== undefined) return runFtype(values, positionals, schemes, io, ctx);
    if (values['tensor-type'] || values['output-tensor-type'] || values['token-embedding-type'] || values.imatrix || values.pure) throw new UsageError('--imatrix, --pure, --tensor-type, --output-tensor-type and --token-embedding-type go with --ftype');
    if (schemes.length !== 1) throw new UsageError('--scheme is required, once');
    const format = values.format as QuantFormat | undefined;
    if (format !== undefined && format !== 'gguf' && format !== 'safetensors') throw new UsageError(`--format must be gguf or safetensors, not '${format}'`);
    const names = values['gguf-names'];
    if (names !== undefined && names !== 'hf' && names !== 'llama') throw new UsageError(`--gguf-names must be hf or llama, not '${names}'`);
    const r = await quantize(
      { input: positionals[0], output: positionals[1], scheme: schemes[0] as never, format, keep: values.keep, only: values.only, ggufNames: names as 'hf' | 'llama' | undefined, allowNonfinite: values['allow-nonfinite'], allowRequantize: values['allow-requantize'] },
      ctx,
    );
    io.stdout.write(values.json ? toJson(r) : reportText(r, (values.verbose || io.verbose) ?? false));
    return 0;
  },
});
