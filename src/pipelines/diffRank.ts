// The effective rank of each changed 2-D tensor: a randomized subspace iteration on
// ΔᵀΔ, each pass one stream of both tensors' row blocks through the sketch kernel.
import { getBackend } from '../compute/backend';
import { cpuPoolSize } from '../compute/cpu/pool';
import { diffElementBytes, type DiffDType } from '../compute/diff/decodeChunk';
import { deltaSketchKernel, type DeltaSketchResult } from '../compute/diff/deltaSketch';
import type { Backend } from '../compute/kernel';
import { throwIfCancelled, type JobContext } from '../core/job';
import { BufferPool, streamJobs, type JobSteps } from '../core/stream';
import type { Model, TensorInfo } from '../format/model';
import { eigenSymmetric, gaussianMatrix, orthonormalizeColumns } from './diffLinalg';
import { bytesEqual, DEFAULT_CHUNK_BYTES, IN_FLIGHT_PER_WORKER, kernelDType } from './diffTensor';
import { RANK_POINTS, type RankOptions, type TensorDiff } from './diffTypes';

// Row blocks of the rank passes: each worker widens a block of both tensors to f32
// (2 × 4 bytes per element), so 1 MiB of BF16 costs it 8 MiB of scratch; a block is
// still hundreds of rows, so per-call overhead stays small next to its k·rows·cols work.
const RANK_BLOCK_BYTES = 1 << 20;
const DEFAULT_SKETCH = 72;
const DEFAULT_POWER_ITERATIONS = 1;
const DEFAULT_SEED = 0x5eed;

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

/**
 * Top singular values of Δ = B − A for one 2-D tensor pair by subspace iteration
 * on ΔᵀΔ: V ← orth(ΔᵀΔ·V) from a Gaussian start, then the Ritz values of
 * (ΔV)ᵀ(ΔV). Each pass streams both tensors once, in row blocks; blocks whose
 * bytes are equal hold Δ = 0 and are skipped.
 */
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
  const kd = kernelDType(ta.dtype)!;
  const eb = diffElementBytes(kd);
  const [rows, cols] = ta.shape;
  const sketch = Math.max(1, ro.sketch ?? DEFAULT_SKETCH);
  // With at least as many columns as Δ has, the identity spans everything: exact, and one pass.
  const exact = cols <= sketch;
  const k = exact ? cols : sketch;
  let v: Float64Array;
  if (exact) {
    v = new Float64Array(cols * k);
    for (let i = 0; i < cols; i++) v[i * k + i] = 1;
  } else {
    v = gaussianMatrix(cols, k, ro.seed ?? DEFAULT_SEED);
  }
  // Rows per block: one chunk of each tensor, at least one row.
  const blockRows = Math.max(1, Math.floor(Math.min(chunkBytes, RANK_BLOCK_BYTES) / (cols * eb)));
  // A handful of spare blocks covers every block in flight; more would only hold memory.
  const pool = new BufferPool(8);
  // Per pass, copies of x and output buffers circulate with the blocks (see DeltaSketchArgs.yOut):
  // enough for every block in flight to hold x, y and z.
  const f32 = new BufferPool<Float32Array>(24, (n) => new Float32Array(n));
  const blocks: { r0: number; nr: number }[] = [];
  for (let r0 = 0; r0 < rows; r0 += blockRows) blocks.push({ r0, nr: Math.min(blockRows, rows - r0) });
  const ctx: RankPass = { backend, a, b, ta, tb, kd, eb, cols, k, blocks, pool, f32, inFlight, signal, onRead };
  const pass = (x: Float64Array, back: boolean, onBlock: (r0: number, y: Float32Array, z?: Float32Array) => void) => sketchPass(ctx, x, back, onBlock);
  const iterations = exact ? 0 : Math.max(0, ro.powerIterations ?? DEFAULT_POWER_ITERATIONS);
  for (let it = 0; it < iterations; it++) {
    const z = new Float64Array(cols * k);
    await pass(v, true, (_r0, _y, zb) => {
      for (let i = 0; i < z.length; i++) z[i] += zb![i];
    });
    v = orthonormalizeColumns(z, cols, k);
  }
  // Ritz values: eigenvalues of G = (ΔV)ᵀ(ΔV), accumulated block by block.
  const g = new Float64Array(k * k);
  await pass(v, false, (_r0, y) => {
    const nr = y.length / k;
    for (let r = 0; r < nr; r++) {
      const o = r * k;
      for (let i = 0; i < k; i++) {
        const yi = y[o + i];
        if (yi === 0) continue;
        for (let j = i; j < k; j++) g[i * k + j] += yi * y[o + j];
      }
    }
  });
  for (let i = 0; i < k; i++) for (let j = 0; j < i; j++) g[i * k + j] = g[j * k + i];
  const lambda = eigenSymmetric(g, k)
    .map((x) => Math.max(0, x))
    .sort((x, y) => y - x);
  const rankEnergy = {} as Record<`${(typeof RANK_POINTS)[number]}`, number>;
  for (const r of RANK_POINTS) {
    const captured = lambda.slice(0, r).reduce((s, x) => s + x, 0);
    rankEnergy[`${r}`] = frob2 > 0 ? Math.min(1, captured / frob2) : 0;
  }
  return { rankEnergy, singularValues: lambda.slice(0, Math.min(64, lambda.length)).map(Math.sqrt) };
}

/** What every pass of one tensor pair's rank estimate shares. */
interface RankPass {
  readonly backend: Backend;
  readonly a: Model;
  readonly b: Model;
  readonly ta: TensorInfo;
  readonly tb: TensorInfo;
  readonly kd: DiffDType;
  readonly eb: number;
  readonly cols: number;
  readonly k: number;
  readonly blocks: readonly { r0: number; nr: number }[];
  readonly pool: BufferPool;
  readonly f32: BufferPool<Float32Array>;
  readonly inFlight: number;
  readonly signal: AbortSignal | undefined;
  readonly onRead: (n: number) => void;
}

/** One pass over both tensors' row blocks: y = Δ·x per block (and z = Δᵀy summed when `back`). */
async function sketchPass(c: RankPass, x: Float64Array, back: boolean, onBlock: (r0: number, y: Float32Array, z?: Float32Array) => void): Promise<void> {
  const { a, b, ta, tb, cols, eb, k, pool, f32 } = c;
  const xLen = cols * k;
  const xs = Float32Array.from(x);
  const steps: JobSteps<{ r0: number; nr: number }, [Uint8Array, Uint8Array], { r0: number; r?: DeltaSketchResult }> = {
    read: async ({ r0, nr }) => {
      const len = nr * cols * eb;
      const ba = pool.take(len);
      const bb = pool.take(len);
      await Promise.all([a.read(ta, r0 * cols * eb, ba), b.read(tb, r0 * cols * eb, bb)]);
      c.onRead(2 * len);
      return [ba, bb];
    },
    run: async ({ r0, nr }, [ba, bb], signal) => {
      // Equal bytes hold Δ = 0: nothing to add.
      if (bytesEqual(ba, bb)) {
        pool.give(ba, bb);
        return { r0 };
      }
      const xf = f32.take(xLen);
      xf.set(xs);
      const r = await c.backend.run(deltaSketchKernel, { dtype: c.kd, rows: nr, cols, a: ba, b: bb, k, x: xf, back, yOut: f32.take(nr * k), zOut: back ? f32.take(xLen) : undefined }, signal);
      return { r0, r };
    },
  };
  for await (const { r0, r } of streamJobs(c.blocks, steps, { inFlight: c.inFlight, signal: c.signal })) {
    if (!r) continue;
    onBlock(r0, r.y, r.z);
    pool.give(...r.chunks);
    f32.give(r.x, r.y, r.z);
  }
}
