// The truncated SVD of Δ = B − A for one 2-D tensor pair, streamed: a randomized
// range finder (subspace iteration on ΔᵀΔ from a seeded Gaussian start) whose every
// pass reads both tensors once in row blocks through the deltaSketch twins, then a
// small exact eigendecomposition of the projected k × k matrix on the host.
// `diff --rank` reads only the singular values; `extract-lora` the vectors too.
import { diffElementBytes, type DiffDType } from '../compute/diff/decodeChunk';
import { deltaSketchKernel, type DeltaSketchResult } from '../compute/diff/deltaSketch';
import type { Backend } from '../compute/kernel';
import { throwIfCancelled } from '../core/job';
import { BufferPool, streamJobs, type JobSteps } from '../core/stream';
import type { Model, TensorInfo } from '../format/model';
import { eigenSymmetricVectors, gaussianMatrix, orthonormalizeColumns } from './diffLinalg';
import { bytesEqual, kernelDType } from './diffTensor';

// Row blocks of the passes: each worker widens a block of both tensors to f32
// (2 × 4 bytes per element), so 1 MiB of BF16 costs it 8 MiB of scratch; a block is
// still hundreds of rows, so per-call overhead stays small next to its k·rows·cols work.
const BLOCK_BYTES = 1 << 20;
/** The documented seed of the Gaussian start: the same inputs give the same factors, run after run. */
export const SVD_SEED = 0x5eed;

export interface DeltaSvdOptions {
  /** Columns of the sketch (wanted rank plus oversampling). */
  readonly sketch: number;
  /** Passes of ΔᵀΔ over the sketch before the final one; each reads both tensors once more. */
  readonly powerIterations: number;
  readonly seed?: number;
  /** Keep the singular vectors (the final pass then keeps Y = ΔV, rows × k). */
  readonly vectors?: boolean;
}

/** Where the tensors are, and how to stream them. */
export interface DeltaSvdSource {
  readonly backend: Backend;
  readonly a: Model;
  readonly b: Model;
  readonly ta: TensorInfo;
  readonly tb: TensorInfo;
  readonly chunkBytes: number;
  readonly inFlight: number;
  readonly signal?: AbortSignal;
  readonly onRead?: (n: number) => void;
}

export interface DeltaSvd {
  readonly rows: number;
  readonly cols: number;
  /** Column count of the factors below. */
  readonly k: number;
  /** Estimated singular values of Δ, largest first (k of them; exact when `exact`). */
  readonly sigma: Float64Array;
  /** Left singular vectors, rows × k row-major (with `vectors`). */
  readonly u?: Float64Array;
  /** Right singular vectors, cols × k row-major (with `vectors`). */
  readonly v?: Float64Array;
  /** True when the sketch spans all of Δ's columns: the factorisation is exact, not estimated. */
  readonly exact: boolean;
}

/**
 * Δ ≈ U·diag(σ)·Vᵀ. Subspace iteration: V ← orth(ΔᵀΔ·V) `powerIterations` times
 * from an orthonormalised Gaussian start, then Y = ΔV and the eigendecomposition
 * G = YᵀY = E·Λ·Eᵀ give σ = √λ, V·E and Y·E·Λ^-½: the best rank-k approximation
 * of Δ whose rows lie in span(V), which the iteration steers to the top rows.
 * Blocks whose bytes are equal hold Δ = 0 and are skipped.
 */
export async function deltaSvd(src: DeltaSvdSource, o: DeltaSvdOptions): Promise<DeltaSvd> {
  const [rows, cols] = src.ta.shape;
  // With at least as many columns as Δ has, the identity spans everything: exact, and one pass.
  const exact = cols <= o.sketch;
  const k = exact ? cols : Math.max(1, o.sketch);
  let v: Float64Array;
  if (exact) {
    v = new Float64Array(cols * k);
    for (let i = 0; i < cols; i++) v[i * k + i] = 1;
  } else {
    v = orthonormalizeColumns(gaussianMatrix(cols, k, o.seed ?? SVD_SEED), cols, k);
  }
  const pass = passRunner(src, k);
  for (let it = 0; it < (exact ? 0 : Math.max(0, o.powerIterations)); it++) {
    throwIfCancelled(src.signal);
    const z = new Float64Array(cols * k);
    await pass(v, true, (_r0, _y, zb) => {
      for (let i = 0; i < z.length; i++) z[i] += zb![i];
    });
    v = orthonormalizeColumns(z, cols, k);
  }
  // G = YᵀY block by block; Y itself only when the vectors are wanted.
  const g = new Float64Array(k * k);
  const y = o.vectors ? new Float64Array(rows * k) : undefined;
  await pass(v, false, (r0, yb) => {
    const nr = yb.length / k;
    if (y) for (let i = 0; i < yb.length; i++) y[r0 * k + i] = yb[i];
    for (let r = 0; r < nr; r++) {
      const off = r * k;
      for (let i = 0; i < k; i++) {
        const yi = yb[off + i];
        if (yi === 0) continue;
        for (let j = i; j < k; j++) g[i * k + j] += yi * yb[off + j];
      }
    }
  });
  for (let i = 0; i < k; i++) for (let j = 0; j < i; j++) g[i * k + j] = g[j * k + i];
  const { values, vectors: e } = eigenSymmetricVectors(g, k);
  const sigma = Float64Array.from(values, (x) => Math.sqrt(Math.max(0, x)));
  if (!y) return { rows, cols, k, sigma, exact };
  return { rows, cols, k, sigma, exact, u: leftVectors(y, e, sigma, rows, k), v: matMul(v, e, cols, k, k) };
}

/** U = Y·E·diag(1/σ); columns with σ = 0 stay zero (Δ has no component there). */
function leftVectors(y: Float64Array, e: Float64Array, sigma: Float64Array, rows: number, k: number): Float64Array {
  const u = matMul(y, e, rows, k, k);
  for (let j = 0; j < k; j++) {
    const s = sigma[j] > 0 ? 1 / sigma[j] : 0;
    for (let r = 0; r < rows; r++) u[r * k + j] *= s;
  }
  return u;
}

/** (n × m)·(m × p), row-major, in f64. */
export function matMul(x: Float64Array, w: Float64Array, n: number, m: number, p: number): Float64Array {
  const out = new Float64Array(n * p);
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < m; i++) {
      const xi = x[r * m + i];
      if (xi === 0) continue;
      for (let j = 0; j < p; j++) out[r * p + j] += xi * w[i * p + j];
    }
  }
  return out;
}

type Pass = (x: Float64Array, back: boolean, onBlock: (r0: number, y: Float32Array, z?: Float32Array) => void) => Promise<void>;

/** One pass over both tensors' row blocks: y = Δ·x per block (and z = Δᵀy when `back`). */
function passRunner(src: DeltaSvdSource, k: number): Pass {
  const { a, b, ta, tb } = src;
  const kd: DiffDType = kernelDType(ta.dtype)!;
  const eb = diffElementBytes(kd);
  const [rows, cols] = ta.shape;
  // Rows per block: one chunk of each tensor, at least one row.
  const blockRows = Math.max(1, Math.floor(Math.min(src.chunkBytes, BLOCK_BYTES) / (cols * eb)));
  const blocks: { r0: number; nr: number }[] = [];
  for (let r0 = 0; r0 < rows; r0 += blockRows) blocks.push({ r0, nr: Math.min(blockRows, rows - r0) });
  // A handful of spare blocks covers every block in flight; more would only hold memory.
  const pool = new BufferPool(8);
  // Copies of x and output buffers circulate with the blocks (see DeltaSketchArgs.yOut):
  // enough for every block in flight to hold x, y and z.
  const f32 = new BufferPool<Float32Array>(24, (n) => new Float32Array(n));
  const xLen = cols * k;
  return async (x, back, onBlock) => {
    const xs = Float32Array.from(x);
    const steps: JobSteps<{ r0: number; nr: number }, [Uint8Array, Uint8Array], { r0: number; r?: DeltaSketchResult }> = {
      read: async ({ r0, nr }) => {
        const len = nr * cols * eb;
        const ba = pool.take(len);
        const bb = pool.take(len);
        await Promise.all([a.read(ta, r0 * cols * eb, ba), b.read(tb, r0 * cols * eb, bb)]);
        src.onRead?.(2 * len);
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
        const r = await src.backend.run(deltaSketchKernel, { dtype: kd, rows: nr, cols, a: ba, b: bb, k, x: xf, back, yOut: f32.take(nr * k), zOut: back ? f32.take(xLen) : undefined }, signal);
        return { r0, r };
      },
    };
    for await (const { r0, r } of streamJobs(blocks, steps, { inFlight: src.inFlight, signal: src.signal })) {
      if (!r) continue;
      onBlock(r0, r.y, r.z);
      pool.give(...r.chunks);
      f32.give(r.x, r.y, r.z);
    }
  };
}
