// extract-lora: a full fine-tune turned into a PEFT LoRA adapter. The diff finds the
// changed 2-D weights and their ‖Δ‖; deltaSvd gives each one's truncated SVD
// U·diag(σ)·Vᵀ, streamed; the adapter stores B = U·√σ and A = √σ·Vᵀ with
// lora_alpha = r, so that PEFT's scale alpha / r is 1 and B·A is the truncation itself.
import { getBackend } from '../compute/backend';
import { cpuPoolSize } from '../compute/cpu/pool';
import { throwIfCancelled, type JobContext } from '../core/job';
import { FormatError } from '../format/errors';
import type { Model } from '../format/model';
import { openModel } from '../format/openModel';
import { modelInputs } from '../format/outputs';
import { diff } from './diff';
import { deltaSvd, type DeltaSvd } from './deltaSvd';
import { DEFAULT_CHUNK_BYTES, IN_FLIGHT_PER_WORKER, kernelDType } from './diffTensor';
import type { TensorDiff } from './diffTypes';
import { writePeftAdapter, type LoraFactors } from './loraWrite';
import { rankForEnergy, type RankChoice } from './loraRank';

export { rankForEnergy };

/** The rank cap of `--energy` without `--rank`: beyond it an adapter stops being small. */
export const DEFAULT_MAX_RANK = 64;
/**
 * Extra sketch columns beyond the largest rank kept: the range finder's error
 * bound falls fast with oversampling, and 16 more columns cost a quarter of a rank-64 pass.
 */
export const OVERSAMPLE = 16;
/** Passes of ΔᵀΔ before the final one: one brings a slowly decaying spectrum within a percent. */
export const DEFAULT_POWER_ITERATIONS = 1;

export interface ExtractLoraArgs {
  readonly base: string;
  readonly finetuned: string;
  readonly outDir: string;
  /** Fixed rank; with `energy`, the largest rank allowed. */
  readonly rank?: number;
  /** Share of ‖Δ‖² to keep, in (0, 1]: each module gets the smallest rank that keeps it. */
  readonly energy?: number;
  readonly powerIterations?: number;
  readonly seed?: number;
  readonly chunkBytes?: number;
}

export interface ExtractedModule extends RankChoice {
  readonly module: string;
  readonly outFeatures: number;
  readonly inFeatures: number;
  /** Computed exactly (the sketch spanned every column), not estimated. */
  readonly exact: boolean;
}

export interface ExtractLoraResult {
  readonly files: string[];
  readonly modules: ExtractedModule[];
  /** Modules short of the energy target at the largest rank allowed. */
  readonly notLowRank: ExtractedModule[];
  /** Changed tensors that are not extracted, and why. */
  readonly skipped: { name: string; reason: string }[];
  readonly maxRank: number;
  readonly energyTarget?: number;
  readonly backend: string;
  readonly seconds: number;
}

/** Names of embedding tables: PEFT stores their LoRA transposed under other keys, which this command does not write. */
const EMBEDDING = /(^|\.)(embed_tokens|wte|wpe|word_embeddings|embed_in|embed_positions)\.weight$/;

/** The changed tensors that become LoRA modules, and the rest with the reason they do not. */
export function extractionTargets(tensors: readonly TensorDiff[]): { targets: TensorDiff[]; skipped: { name: string; reason: string }[] } {
  const targets: TensorDiff[] = [];
  const skipped: { name: string; reason: string }[] = [];
  for (const t of tensors) {
    if (t.identical || t.absL2 === 0) continue;
    const why =
      t.shape.length !== 2 ? `${t.shape.length}-D (LoRA covers 2-D weights)`
      : !t.name.endsWith('.weight') ? 'not a module weight'
      : EMBEDDING.test(t.name) ? 'embedding (not extracted)'
      : t.decoded || t.dtypeB !== undefined ? 'stored differently in the two models'
      : kernelDType(t.dtype) === undefined ? `dtype ${t.dtype} (F32, F16 and BF16 are read)`
      : undefined;
    if (why) skipped.push({ name: t.name, reason: why });
    else targets.push(t);
  }
  return { targets, skipped };
}

function checkArgs(args: ExtractLoraArgs): void {
  if (args.rank === undefined && args.energy === undefined) throw new RangeError('give a rank or an energy share');
  if (args.rank !== undefined && !(Number.isInteger(args.rank) && args.rank >= 1)) throw new RangeError(`rank must be a positive integer, not ${args.rank}`);
  if (args.energy !== undefined && !(args.energy > 0 && args.energy <= 1)) throw new RangeError(`energy must be in (0, 1], not ${args.energy}`);
}

export async function extractLora(args: ExtractLoraArgs, ctx: JobContext = {}): Promise<ExtractLoraResult> {
  checkArgs(args);
  const t0 = performance.now();
  const a = await openModel(args.base);
  try {
    const b = await openModel(args.finetuned);
    try {
      return await extractOpen(a, b, args, ctx, t0);
    } finally {
      await b.close();
    }
  } finally {
    await a.close();
  }
}

async function extractOpen(a: Model, b: Model, args: ExtractLoraArgs, ctx: JobContext, t0: number): Promise<ExtractLoraResult> {
  const backend = await getBackend(ctx.backend ?? 'auto');
  const report = await diff(a, b, { backend: backend.kind, signal: ctx.signal, chunkBytes: args.chunkBytes });
  if (report.changed.length > 0) {
    const c = report.changed[0];
    throw new FormatError('shape_invalid', `tensor '${c.name}': shape [${c.shapeA.join(', ')}] in BASE but [${c.shapeB.join(', ')}] in FINETUNED (${report.changed.length} such)`, args.finetuned);
  }
  const { targets, skipped } = extractionTargets(report.tensors);
  const maxRank = args.rank ?? DEFAULT_MAX_RANK;
  const inFlight = (backend.kind === 'cpu' ? cpuPoolSize() : 1) * IN_FLIGHT_PER_WORKER;
  const factors: LoraFactors[] = [];
  const modules: ExtractedModule[] = [];
  for (const [i, t] of targets.entries()) {
    throwIfCancelled(ctx.signal);
    ctx.progress?.({ done: i, total: targets.length, unit: 'tensors', message: `SVD of ${t.name}` });
    const ta = a.tensor(t.name)!;
    const tb = b.tensor(t.nameB ?? t.name)!;
    const [rows, cols] = t.shape;
    const cap = Math.min(maxRank, rows, cols);
    const svd = await deltaSvd(
      { backend, a, b, ta, tb, chunkBytes: Math.max(64, args.chunkBytes ?? DEFAULT_CHUNK_BYTES), inFlight, signal: ctx.signal },
      { sketch: cap + OVERSAMPLE, powerIterations: args.powerIterations ?? DEFAULT_POWER_ITERATIONS, seed: args.seed, vectors: true },
    );
    const choice = rankForEnergy(svd.sigma, t.absL2 * t.absL2, cap, args.energy, Math.min(rows, cols), svd.exact);
    const module = t.name.slice(0, -'.weight'.length);
    modules.push({ module, outFeatures: rows, inFeatures: cols, exact: svd.exact, ...choice });
    factors.push(splitFactors(module, svd, choice.rank));
  }
  ctx.progress?.({ done: targets.length, total: targets.length, unit: 'tensors' });
  if (factors.length === 0) throw new FormatError('unsupported', 'no changed 2-D module weight to extract: nothing was written', args.finetuned);
  const inputs = [...(await modelInputs(a)), ...(await modelInputs(b))];
  const files = await writePeftAdapter(args.outDir, factors, inputs, {
    signal: ctx.signal,
    notice: ctx.notice,
    metadata: { 'tensor_workbench.extracted_from': 'extract-lora' },
  });
  const notLowRank = args.energy !== undefined ? modules.filter((m) => m.energy < args.energy!) : [];
  return { files, modules, notLowRank, skipped, maxRank, energyTarget: args.energy, backend: backend.description, seconds: (performance.now() - t0) / 1000 };
}

/** B = U_r·diag(√σ) (out × r) and A = diag(√σ)·V_rᵀ (r × in): B·A = U_r·diag(σ)·V_rᵀ, alpha = r. */
export function splitFactors(module: string, svd: DeltaSvd, rank: number): LoraFactors {
  const { rows, cols, k } = svd;
  const u = svd.u!;
  const v = svd.v!;
  const a = new Float32Array(rank * cols);
  const b = new Float32Array(rows * rank);
  for (let j = 0; j < rank; j++) {
    const s = Math.sqrt(svd.sigma[j]);
    for (let r = 0; r < rows; r++) b[r * rank + j] = u[r * k + j] * s;
    for (let c = 0; c < cols; c++) a[j * cols + c] = v[c * k + j] * s;
  }
  return { module, rank, alpha: rank, outFeatures: rows, inFeatures: cols, a, b };
}
