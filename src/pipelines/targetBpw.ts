import { getBackend } from '../compute/backend';
import { CancelledError, isCancelled, type JobContext } from '../core/job';
import { FormatError } from '../format/errors';
import { readGguf, readTensorBytes } from '../format/gguf/reader';
import { readImatrix } from '../format/imatrix';
import { NodeFileSource } from '../format/source';
import { planBpw, type BpwPlan } from './bpwPlan';
import { sampleBpw, type SampleTensor } from './bpwSample';
import { fixedTypes, type ChosenType, type FtypeName, type FtypeOptions } from './llamaFtype';

/**
 * `quantize IN.gguf OUT.gguf --target-bpw B`: the plan (each tensor's type for the budget,
 * from sampled errors) of an F32/F16/BF16 GGUF with llama.cpp names. The CLI prints it and,
 * unless `--dry-run`, writes it with `quantizeGgufFtype({ types })`.
 */

// Below this no type mix exists (Q2_K, the smallest candidate, is 2.625); above it, F32 everywhere would
// still be less: a number outside is a typo, not a budget.
export const TARGET_BPW_MIN = 1;
export const TARGET_BPW_MAX = 32;

export interface TargetBpwArgs {
  readonly input: string;
  readonly targetBpw: number;
  readonly ftypeOptions?: FtypeOptions;
  readonly imatrix?: string;
}

export interface TargetBpwResult {
  readonly plan: BpwPlan;
  /** The file type recorded as general.file_type: the one whose base type holds most of the weights. */
  readonly ftype: FtypeName;
  readonly types: ReadonlyMap<string, ChosenType>;
}

// The file type named after a plan's most used type (a K-quant's medium mix, llama.cpp's usual name for it).
const FTYPE_OF: Partial<Record<ChosenType, FtypeName>> = {
  Q2_K: 'Q2_K', Q3_K: 'Q3_K_M', Q4_K: 'Q4_K_M', Q5_K: 'Q5_K_M', Q6_K: 'Q6_K', Q8_0: 'Q8_0',
  Q4_0: 'Q4_0', Q4_1: 'Q4_1', Q5_0: 'Q5_0', Q5_1: 'Q5_1', IQ4_NL: 'IQ4_NL', IQ4_XS: 'IQ4_XS',
};

function mainFtype(plan: BpwPlan): FtypeName {
  const weight = new Map<FtypeName, number>();
  for (const c of plan.choices) {
    const f = FTYPE_OF[c.type];
    if (f) weight.set(f, (weight.get(f) ?? 0) + c.numel);
  }
  let best: FtypeName = 'Q8_0';
  let most = -1;
  for (const [f, n] of weight) if (n > most) [best, most] = [f, n];
  return best;
}

export function checkTargetBpw(v: number): string | undefined {
  if (!Number.isFinite(v) || v < TARGET_BPW_MIN || v > TARGET_BPW_MAX) return `--target-bpw must be a number from ${TARGET_BPW_MIN} to ${TARGET_BPW_MAX} bits per weight`;
  return undefined;
}

export async function planTargetBpw(args: TargetBpwArgs, ctx: JobContext = {}): Promise<TargetBpwResult> {
  const bad = checkTargetBpw(args.targetBpw);
  if (bad) throw new FormatError('unsupported', bad, args.input);
  const source = await NodeFileSource.open(args.input);
  try {
    const file = await readGguf(source);
    const imatrix = args.imatrix ? await readImatrix(args.imatrix) : undefined;
    const tensors: SampleTensor[] = file.tensors.map((t) => ({
      name: t.name, ne: t.ne, type: t.type.name as ChosenType,
      read: (offset: number, into: Uint8Array) => readTensorBytes(file, t, offset, into),
    }));
    const fixed = fixedTypes(tensors, args.ftypeOptions);
    const backend = await getBackend(ctx.backend ?? 'auto');
    const sampled = await sampleBpw(tensors, fixed, imatrix, args.input, backend, ctx);
    const plan = planBpw(sampled, args.targetBpw, args.input);
    return { plan, ftype: mainFtype(plan), types: new Map(plan.choices.map((c) => [c.name, c.type])) };
  } catch (e) {
    if (isCancelled(e) || (e instanceof Error && e.name === 'AbortError')) throw new CancelledError();
    throw e;
  } finally {
    await source.close();
  }
}
