// The effective rank of each changed 2-D tensor: the singular values of deltaSvd's
// randomized subspace iteration on ΔᵀΔ.
import { getBackend } from '../compute/backend';
import { cpuPoolSize } from '../compute/cpu/pool';
import type { Backend } from '../compute/kernel';
import { throwIfCancelled, type JobContext } from '../core/job';
import type { Model, TensorInfo } from '../format/model';
import { deltaSvd } from './deltaSvd';
import { DEFAULT_CHUNK_BYTES, IN_FLIGHT_PER_WORKER, kernelDType } from './diffTensor';
import { RANK_POINTS, type RankOptions, type TensorDiff } from './diffTypes';

const DEFAULT_SKETCH = 72;
const DEFAULT_POWER_ITERATIONS = 1;

/** The changed 2-D tensors whose Δ rank can be estimated. */
export function rankCandidates(tensors: readonly TensorDiff[]): TensorDiff[] {
  return tensors.filter((t) => !t.identical && t.shape.length === 2 && t.absL2 > 0 && !t.decoded && kernelDType(t.dtype) !== undefined);
}

/**
 * Adds `rankEnergy` and `singularValues` to every changed 2-D tensor of a diff's
 * results (in place). Separate from `diff` so that a UI can show the report first
 * and refine it; `diff(…, {rank})` calls it itself.
 */
export async function estimateRanks(
  a: Model,
  b: Model,
  tensors: readonly TensorDiff[],
  opts: JobContext & { rank?: RankOptions; chunkBytes?: number },
  backend?: Backend,
): Promise<{ seconds: number; bytesRead: number }> {
  const r0 = performance.now();
  const be = backend ?? (await getBackend(opts.backend ?? 'auto'));
  // Blocks in flight: one computing and one queued per worker, as in the diff itself.
  const inFlight = (be.kind === 'cpu' ? cpuPoolSize() : 1) * IN_FLIGHT_PER_WORKER;
  const chunkBytes = Math.max(64, opts.chunkBytes ?? DEFAULT_CHUNK_BYTES);
  let rb = 0;
  const todo = rankCandidates(tensors);
  for (const [i, t] of todo.entries()) {
    throwIfCancelled(opts.signal);
    const ta = a.tensor(t.name);
    const tb = b.tensor(t.nameB ?? t.name);
    if (!ta || !tb) continue;
    opts.progress?.({ done: i, total: todo.length, unit: 'tensors', message: `rank of ${t.name}` });
    const est = await estimateRank(be, a, b, ta, tb, t.absL2 * t.absL2, opts.rank ?? {}, chunkBytes, inFlight, opts.signal, (n) => (rb += n));
    Object.assign(t, est);
  }
  opts.progress?.({ done: todo.length, total: todo.length, unit: 'tensors' });
  return { seconds: (performance.now() - r0) / 1000, bytesRead: rb };
}

/** Top singular values of Δ = B − A for one 2-D tensor pair: deltaSvd without the vectors. */
async function estimateRank(
  backend: Backend,
  a: Model,
  b: Model,
  ta: TensorInfo,
  tb: TensorInfo,
  frob2: number,
  ro: RankOptions,
  chunkBytes: number,
  inFlight: number,
  signal: AbortSignal | undefined,
  onRead: (n: number) => void,
): Promise<Pick<TensorDiff, 'rankEnergy' | 'singularValues'>> {
  const svd = await deltaSvd(
    { backend, a, b, ta, tb, chunkBytes, inFlight, signal, onRead },
    { sketch: Math.max(1, ro.sketch ?? DEFAULT_SKETCH), powerIterations: ro.powerIterations ?? DEFAULT_POWER_ITERATIONS, seed: ro.seed },
  );
  const lambda = Array.from(svd.sigma, (s) => s * s);
  const rankEnergy = {} as Record<`${(typeof RANK_POINTS)[number]}`, number>;
  for (const r of RANK_POINTS) {
    const captured = lambda.slice(0, r).reduce((s, x) => s + x, 0);
    rankEnergy[`${r}`] = frob2 > 0 ? Math.min(1, captured / frob2) : 0;
  }
  return { rankEnergy, singularValues: Array.from(svd.sigma.slice(0, Math.min(64, svd.sigma.length))) };
}
