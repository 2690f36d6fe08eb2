import { addSums, emptySums, reportOf, type ErrorReport, type ErrorSums } from '../compute/quant/common';
import { isSchemeName, type SchemeName } from '../compute/quant/schemes';
import { throwIfCancelled, type JobContext } from '../core/job';
import type { GgufOutType } from './ggufTensorStream';
import { typeBytes } from './ggufQuantStream';
import { FTYPE_NAMES, isFtypeName, type ChosenType, type FtypeName } from './llamaFtype';
import { preview } from './quantizePreview';
import { openFolder, tensorTypes } from './toGguf';

/**
 * Size, bits per weight and estimated error of a Hugging Face folder converted to each
 * GGUF file type, before anything is written. Sizes come from the header alone: every
 * tensor's type is the one the converter (or llama-quantize's rules) would give it.
 * Errors come from the quantization preview's samples, each tensor's taken from the
 * scheme of the type it really gets, so a Q4_K_M estimate counts its Q6_K tensors as Q6_K.
 */

/** The converter's plain types, then llama.cpp's file types (Q8_0 once: the CLI reads it as the plain one). */
export const GGUF_TARGETS: ReadonlyArray<GgufOutType | FtypeName> = ['F16', 'BF16', 'F32', 'Q8_0', ...FTYPE_NAMES.filter((f) => f !== 'Q8_0')];

export interface GgufEstimate extends Partial<ErrorReport> {
  readonly target: GgufOutType | FtypeName;
  /** Tensor data only: the metadata and vocabulary add a few MB at most. */
  readonly bytes: number;
  readonly bitsPerWeight: number;
  /** Tensor count per type, e.g. { Q4_K: 150, Q6_K: 27, F32: 65 }. */
  readonly mix: Readonly<Partial<Record<ChosenType, number>>>;
  /** Quantized tensors whose sample the error estimate rests on (tensors too small to sample are left out). */
  readonly sampledTensors: number;
}

export interface GgufEstimateResult {
  readonly input: string;
  readonly arch: string;
  readonly params: number;
  readonly estimates: readonly GgufEstimate[];
}

export interface GgufEstimateArgs {
  readonly input: string;
  readonly targets?: ReadonlyArray<GgufOutType | FtypeName>;
  /** Sample each tensor for the error estimates (a few seconds); sizes alone read only headers. */
  readonly errors?: boolean;
}

const FLOAT: ReadonlySet<ChosenType> = new Set(['F32', 'F16', 'BF16']);

/** A quantized GGUF type's twin in the preview's schemes (`Q4_K` → `q4_k`). */
function schemeFor(t: ChosenType): SchemeName | undefined {
  const s = t.toLowerCase();
  return !FLOAT.has(t) && isSchemeName(s) ? s : undefined;
}

/** Throws the folder's reason when it cannot be converted (unknown architecture or tokenizer, missing tensors). */
export async function estimateGguf(args: GgufEstimateArgs, ctx: JobContext = {}): Promise<GgufEstimateResult> {
  const targets = args.targets ?? GGUF_TARGETS;
  const folder = await openFolder(args.input);
  const plans: Array<{ target: GgufOutType | FtypeName; types: Array<{ hf: string; type: ChosenType; numel: number }> }> = [];
  let params = 0;
  try {
    for (const t of folder.model.tensors) params += t.numel;
    for (const target of targets) {
      throwIfCancelled(ctx.signal);
      const named = tensorTypes(folder.model, folder.shape, { ftype: target }).named;
      plans.push({ target, types: named.map(([t, , type]) => ({ hf: t.name, type, numel: t.numel })) });
    }
  } finally {
    await folder.model.close();
  }
  const used = new Set<SchemeName>();
  for (const p of plans) for (const t of p.types) if (schemeFor(t.type)) used.add(schemeFor(t.type)!);
  const sampled = args.errors && used.size ? await preview({ input: args.input, schemes: [...used], tensorSums: true }, ctx) : undefined;
  const sumsOf = (s: SchemeName) => sampled?.tensorSums?.[sampled.rows.findIndex((r) => r.scheme === s)];
  const estimates = plans.map(({ target, types }) => {
    let bytes = 0;
    const mix: Partial<Record<ChosenType, number>> = {};
    const sums = emptySums();
    let sampledTensors = 0;
    for (const t of types) {
      bytes += typeBytes(t.type, t.numel);
      mix[t.type] = (mix[t.type] ?? 0) + 1;
      const s = schemeFor(t.type);
      if (!s) continue;
      const got: ErrorSums | undefined = sumsOf(s)?.get(t.hf);
      if (got) {
        addSums(sums, got);
        sampledTensors++;
      }
    }
    const report = sums.n > 0 ? reportOf(sums) : {};
    return { target, bytes, bitsPerWeight: params ? (bytes * 8) / params : 0, mix, sampledTensors, ...report };
  });
  return { input: args.input, arch: folder.shape.arch, params, estimates };
}

export function isGgufTarget(s: string): s is GgufOutType | FtypeName {
  return s === 'F16' || s === 'BF16' || s === 'F32' || s === 'Q8_0' || isFtypeName(s);
}
