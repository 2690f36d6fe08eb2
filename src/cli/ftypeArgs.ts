import { parseChosenType, type ChosenType, type FtypeOptions } from '../pipelines/llamaFtype';
import type { ToGgufResult } from '../pipelines/toGguf';
import { escapeText } from '../format/escape';
import { UsageError } from './command';
import type { QuantReport } from '../pipelines/quantizeTypes';

/** The llama-quantize options `quantize --ftype` and `convert --ftype` share. */
export const FTYPE_OPTIONS = {
  'tensor-type': { type: 'string', multiple: true },
  'output-tensor-type': { type: 'string' },
  'token-embedding-type': { type: 'string' },
  imatrix: { type: 'string' },
  pure: { type: 'boolean' },
} as const;

export const FTYPE_USAGE = `[--imatrix FILE] [--pure] [--tensor-type REGEX=TYPE]... [--output-tensor-type TYPE] [--token-embedding-type TYPE]`;

// A pattern longer than this is not a tensor-name pattern; RE2 keeps even long ones linear, this keeps them short.
const MAX_PATTERN_CHARS = 1000;

function typeArg(flag: string, s: string): ChosenType {
  const t = parseChosenType(s);
  if (!t) throw new UsageError(`${flag}: unknown type '${s}' (f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k … q6_k, iq4_nl, iq4_xs)`);
  return t;
}

export function ftypeOptions(values: { 'tensor-type'?: string[]; 'output-tensor-type'?: string; 'token-embedding-type'?: string; pure?: boolean }): FtypeOptions {
  const tensorTypes = (values['tensor-type'] ?? []).map((arg) => {
    const at = arg.lastIndexOf('=');
    if (at <= 0) throw new UsageError(`--tensor-type takes REGEX=TYPE, not '${arg}'`);
    const pattern = arg.slice(0, at);
    if (pattern.length > MAX_PATTERN_CHARS) throw new UsageError(`--tensor-type: a pattern of ${pattern.length} characters is over the limit of ${MAX_PATTERN_CHARS}`);
    return { pattern, type: typeArg('--tensor-type', arg.slice(at + 1)) };
  });
  const out = values['output-tensor-type'];
  const emb = values['token-embedding-type'];
  return {
    tensorTypes,
    outputType: out !== undefined ? typeArg('--output-tensor-type', out) : undefined,
    tokenEmbeddingType: emb !== undefined ? typeArg('--token-embedding-type', emb) : undefined,
    pure: values.pure,
  };
}

/** The lines a file-type run prints: overrides, fallbacks (with llama.cpp's counter), types used, the file. */
/** `note: 28 quantized input tensors (fp8-block) converted from their decoded values`, or undefined. */
export function dequantizedNote(r: ToGgufResult): string | undefined {
  const d = r.dequantized ?? [];
  if (d.length === 0) return undefined;
  const kinds = [...new Set(d.map((x) => x.from))].map(escapeText).join(', ');
  return `note: ${d.length} quantized input tensor${d.length === 1 ? '' : 's'} (${kinds}) converted from ${d.length === 1 ? 'its' : 'their'} decoded values`;
}

export function ftypeReport(r: ToGgufResult, ftype: string): string {
  const lines = r.overrides.map((o) => `override: ${escapeText(o)}`);
  lines.push(...r.fallbacks.map((f) => `warning: ${escapeText(f)}`));
  lines.push(...(r.imatrixNotes ?? []).map((n) => `note: ${escapeText(n)}`));
  if (r.fallbacks.length) lines.push(`warning: ${r.fallbacks.length} of ${r.tensors.length} tensor(s) required fallback quantization`);
  const counts = new Map<string, number>();
  for (const t of r.tensors) counts.set(t.type, (counts.get(t.type) ?? 0) + 1);
  const mix = [...counts].map(([t, n]) => `${n} ${t.toLowerCase()}`).join(', ');
  const dq = dequantizedNote(r);
  if (dq) lines.push(dq);
  lines.push(`wrote ${escapeText(r.file)}: ${r.arch}, ${r.tensors.length} tensors (${mix}), ${ftype}, ${r.bitsPerWeight.toFixed(4)} bits per weight, ${r.bytes} bytes`);
  return lines.join('\n') + '\n';
}

function metric(n: number | undefined, digits: number): string {
  if (n === undefined) return '-';
  if (!Number.isFinite(n)) return n > 0 ? 'inf' : '-inf';
  return Math.abs(n) >= 1e-3 || n === 0 ? n.toFixed(digits) : n.toExponential(2);
}

/** `--verbose`: per tensor the type it got and its measured error, then the error over all quantized tensors. */
export function ftypeTensorLines(q: QuantReport): string {
  const lines = q.tensors.map((t) => {
    const name = escapeText(t.outputName ?? t.name);
    if (t.action !== 'quantized') return `${name}: ${escapeText(t.reason ?? t.action)}`;
    return `${name}: ${t.scheme}, RMSE ${metric(t.rmse, 6)}, max|err| ${metric(t.maxAbsErr, 6)}, SNR ${metric(t.snrDb, 1)} dB, cosine ${metric(t.cosine, 6)}`;
  });
  const x = q.totals;
  lines.push(
    `error over quantized tensors: RMSE ${metric(x.rmse, 6)}, max|err| ${metric(x.maxAbsErr, 6)}, SNR ${metric(x.snrDb, 1)} dB, cosine ${metric(x.cosine, 6)}; ` +
      `${x.bitsPerWeight.toFixed(4)} bits per weight overall, ${x.quantizedBitsPerWeight.toFixed(4)} in quantized tensors`,
  );
  return lines.join('\n') + '\n';
}
