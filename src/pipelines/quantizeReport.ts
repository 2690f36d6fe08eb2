import { addSums, emptySums, reportOf, type ErrorSums } from '../compute/quant/common';
import type { Scheme } from '../compute/quant/schemes';
import type { Backend } from '../compute/kernel';
import { partsOf, typeNameOf, type Model } from '../format/model';
import type { DecodedModel } from './decodedModel';
import type { PreviewResult, QuantFormat, QuantizeJobArgs, QuantReport, TensorReport, TensorState } from './quantizeTypes';
import { formatSize } from '../core/units';
import { escapeMarkdownCell, escapeText } from '../format/escape';

/** Markdown renderings of a quantization report and preview (the VS Code report document, `--json`'s human twin). */

function num(n: number | undefined, digits: number): string {
  if (n === undefined) return '–';
  if (!Number.isFinite(n)) return n > 0 ? '∞' : '−∞';
  return Math.abs(n) >= 1e-3 || n === 0 ? n.toFixed(digits) : n.toExponential(2);
}

function cell(s: string): string {
  return escapeMarkdownCell(s);
}

// Width of the text bars that chart error against size (characters for the largest value).
const BAR = 30;

/** The preview as a table plus a text chart of SNR (higher is better) beside size. */
export function previewMarkdown(p: PreviewResult): string {
  const out = [
    `# Quantization preview: ${cell(p.input)}`,
    '',
    `${p.params.toLocaleString('en-US')} parameters, ${formatSize(p.bytesBefore)}. Errors are estimated from at most ${p.sampleFraction * 100}% of each tensor (sizes are exact); computed in ${p.seconds.toFixed(1)} s.`,
    '',
    '| scheme | size | bits/weight | SNR (dB) | RMSE | cosine | tensors quantized / kept |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of p.rows) {
    out.push(`| ${r.scheme} | ${formatSize(r.bytesAfter)} | ${r.bitsPerWeight.toFixed(2)} | ${num(r.snrDb, 1)} | ${num(r.rmse, 6)} | ${num(r.cosine, 6)} | ${r.quantizedTensors} / ${r.keptTensors} |`);
  }
  const maxSize = Math.max(...p.rows.map((r) => r.bytesAfter), 1);
  const maxSnr = Math.max(...p.rows.map((r) => (Number.isFinite(r.snrDb ?? NaN) ? r.snrDb! : 0)), 1);
  out.push('', '## Error against size', '', '```');
  for (const r of [...p.rows].sort((a, b) => a.bytesAfter - b.bytesAfter)) {
    const s = '█'.repeat(Math.max(1, Math.round((r.bytesAfter / maxSize) * BAR)));
    const e = '▒'.repeat(Math.max(0, Math.round(((Number.isFinite(r.snrDb ?? NaN) ? r.snrDb! : maxSnr) / maxSnr) * BAR)));
    out.push(`${r.scheme.padEnd(13)} size ${s.padEnd(BAR)} ${formatSize(r.bytesAfter).padStart(10)}`);
    out.push(`${''.padEnd(13)} SNR  ${e.padEnd(BAR)} ${(num(r.snrDb, 1) + ' dB').padStart(10)}`);
  }
  out.push('```', '');
  return out.join('\n');
}

/** The report: totals, what is missing, then one row per tensor. */
export function reportMarkdown(r: QuantReport): string {
  const t = r.totals;
  const out = [
    `# Quantization report: ${r.fileType ?? r.scheme} (${r.format})`,
    '',
    `- input: ${cell(r.input)}`,
    `- output: ${r.outputs.map(cell).join(', ')}`,
    `- backend: ${r.backend}, ${r.seconds.toFixed(1)} s`,
    `- size: ${formatSize(t.bytesBefore)} → ${formatSize(t.bytesAfter)}; ${t.bitsPerWeight.toFixed(2)} bits/weight overall, ${t.quantizedBitsPerWeight.toFixed(2)} in quantized tensors`,
    `- error over quantized tensors: RMSE ${num(t.rmse, 6)}, max |error| ${num(t.maxAbsErr, 6)}, SNR ${num(t.snrDb, 1)} dB, cosine ${num(t.cosine, 6)}`,
  ];
  for (const m of r.missing) out.push(`- missing: ${cell(m)}`);
  out.push('', '| tensor | shape | action | RMSE | max abs err | SNR (dB) | cosine | size |', '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |');
  for (const x of r.tensors) {
    const action = x.action === 'quantized' ? x.scheme! : `${x.action}: ${x.reason ?? ''}`;
    const name = x.outputName && x.outputName !== x.name ? `${x.name} → ${x.outputName}` : x.name;
    out.push(
      `| ${cell(name)} | ${x.dtype} [${x.shape.join(', ')}] | ${cell(action)} | ${num(x.rmse, 6)} | ${num(x.maxAbsErr, 6)} | ${num(x.snrDb, 1)} | ${num(x.cosine, 6)} | ${formatSize(x.bytesBefore)} → ${formatSize(x.bytesAfter)} |`,
    );
  }
  return out.join('\n') + '\n';
}

/** The report of a finished run: per tensor, and totals over what was written. */
export function buildReport(
  args: QuantizeJobArgs,
  format: QuantFormat,
  scheme: Scheme,
  backend: Backend,
  model: Model,
  states: ReadonlyMap<string, TensorState>,
  outputs: string[],
  missing: string[],
  seconds: number,
): QuantReport {
  const tensors: TensorReport[] = [];
  const all = emptySums();
  let bytesBefore = 0, bytesAfter = 0, params = 0, qParams = 0, qBytes = 0;
  for (const t of model.tensors) {
    const st = states.get(t.name)!;
    const p = st.plan;
    // A quantized input tensor counts its stored parts; its dtype reads F32 (its decoded values).
    const stored = (model as Partial<DecodedModel>).storedOf?.(t.name);
    const before = stored ? partsOf(stored).reduce((a, x) => a + x.byteLength, 0) : t.byteLength;
    const head = { name: t.name, dtype: t.dtype, ...(stored ? { from: typeNameOf(stored) } : {}), shape: t.shape, bytesBefore: before };
    bytesBefore += before;
    params += t.numel;
    if (st.omitted) {
      tensors.push({ ...head, action: 'omitted', reason: st.omitted, bytesAfter: 0 });
      continue;
    }
    bytesAfter += st.bytesAfter;
    if (p.action === 'keep') {
      tensors.push({ ...head, outputName: st.outputName, action: 'kept', reason: p.reason, ...(p.nonFinite ? { nonFinite: p.nonFinite } : {}), bytesAfter: st.bytesAfter });
      continue;
    }
    qParams += t.numel;
    qBytes += st.bytesAfter;
    addSums(all, st.sums);
    tensors.push({ ...head, outputName: st.outputName, action: 'quantized', scheme: scheme.name, bytesAfter: st.bytesAfter, ...reportOf(st.sums) });
  }
  return {
    input: args.input,
    outputs,
    scheme: scheme.name,
    format,
    backend: backend.description,
    tensors,
    totals: reportTotals({ bytesBefore, bytesAfter, params, qParams, qBytes }, qParams ? all : undefined),
    missing,
    seconds,
  };
}

/** A report's totals: sizes, bits per weight overall and in the quantized tensors, and the error over `errors`. */
export function reportTotals(c: { bytesBefore: number; bytesAfter: number; params: number; qParams: number; qBytes: number }, errors: ErrorSums | undefined): QuantReport['totals'] {
  return {
    bytesBefore: c.bytesBefore,
    bytesAfter: c.bytesAfter,
    params: c.params,
    quantizedParams: c.qParams,
    bitsPerWeight: c.params ? (c.bytesAfter * 8) / c.params : 0,
    quantizedBitsPerWeight: c.qParams ? (c.qBytes * 8) / c.qParams : 0,
    ...(errors ? reportOf(errors) : {}),
  };
}

/**
 * One line per tensor kept for holding NaN or ±Inf (`name: kept (holds N NaN/Inf values; …)`):
 * the CLI prints them with its other kept tensors, the VS Code command shows them as a warning.
 */
export function nonFiniteSkipLines(r: QuantReport): string[] {
  return r.tensors.filter((t) => t.action === 'kept' && t.nonFinite).map((t) => `${escapeText(t.name)}: kept (${escapeText(t.reason ?? '')})`);
}
