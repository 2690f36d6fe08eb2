import { addSums, emptySums, reportOf, type ErrorSums } from '../compute/quant/common';
import { isSchemeName, type SchemeName } from '../compute/quant/schemes';
import type { DType } from '../format/dtypes';
import type { ChosenType } from './llamaFtype';
import type { QuantReport, TensorReport } from './quantizeTypes';
import { reportTotals } from './quantizeReport';

/**
 * The quantization report of a llama.cpp file type or a `--target-bpw` plan, in the shape of
 * a `--scheme` run's report (so that `--json`, the Markdown and the VS Code report page show
 * it the same way): per tensor the type it got and its error, measured while it was written,
 * and the totals, bits per weight among them.
 */

export interface FtypeTensorOut {
  /** The name in the input. */
  readonly name: string;
  /** The llama.cpp name written. */
  readonly outputName: string;
  readonly dtype: DType;
  /** Row-major. */
  readonly shape: readonly number[];
  readonly type: ChosenType;
  readonly bytesBefore: number;
  readonly bytesAfter: number;
  /** The error sums filled while the tensor was quantized (none for a copy or a cast). */
  readonly sums?: ErrorSums;
}

export interface FtypeReportArgs {
  readonly input: string;
  readonly output: string;
  /** The file type (`Q4_K_M`) or plan (`target 4.8 bpw`) the types come from. */
  readonly fileType: string;
  readonly backend: string;
  readonly seconds: number;
  readonly tensors: readonly FtypeTensorOut[];
  readonly missing?: readonly string[];
}

const FLOAT = new Set<ChosenType>(['F32', 'F16', 'BF16']);

function tensorReport(t: FtypeTensorOut): TensorReport {
  const base = { name: t.name, outputName: t.outputName, dtype: t.dtype, shape: t.shape, bytesBefore: t.bytesBefore, bytesAfter: t.bytesAfter };
  if (FLOAT.has(t.type)) return { ...base, action: 'kept', reason: t.type === t.dtype ? `${t.type}, not quantized` : `cast to ${t.type}` };
  const scheme = t.type.toLowerCase();
  return { ...base, action: 'quantized', scheme: (isSchemeName(scheme) ? scheme : undefined) as SchemeName, ...(t.sums && t.sums.n ? reportOf(t.sums) : {}) };
}

export function ftypeQuantReport(a: FtypeReportArgs): QuantReport {
  const all = emptySums();
  let bytesBefore = 0, bytesAfter = 0, params = 0, qParams = 0, qBytes = 0;
  const counts = new Map<string, number>();
  for (const t of a.tensors) {
    const n = t.shape.reduce((x, y) => x * y, 1);
    bytesBefore += t.bytesBefore;
    bytesAfter += t.bytesAfter;
    params += n;
    if (FLOAT.has(t.type)) continue;
    qParams += n;
    qBytes += t.bytesAfter;
    counts.set(t.type, (counts.get(t.type) ?? 0) + n);
    if (t.sums) addSums(all, t.sums);
  }
  // The report's scheme is the type most weights got (the file type's base for --ftype).
  const main = [...counts].sort((x, y) => y[1] - x[1])[0]?.[0].toLowerCase() ?? 'q8_0';
  return {
    input: a.input,
    outputs: [a.output],
    scheme: (isSchemeName(main) ? main : 'q8_0') as SchemeName,
    fileType: a.fileType,
    format: 'gguf',
    backend: a.backend,
    tensors: a.tensors.map(tensorReport),
    totals: reportTotals({ bytesBefore, bytesAfter, params, qParams, qBytes }, all.n ? all : undefined),
    missing: a.missing ?? [],
    seconds: a.seconds,
  };
}

/** Tensor-data bits per weight of what is written (the metadata and vocabulary not counted). */
export function bitsPerWeightOf(tensors: ReadonlyArray<{ readonly dims: readonly number[]; readonly byteLength: number }>): number {
  let bits = 0;
  let n = 0;
  for (const t of tensors) {
    bits += t.byteLength * 8;
    n += t.dims.reduce((a, b) => a * b, 1);
  }
  return n ? bits / n : 0;
}
