// The data of a merged model's tensors: LoRA-updated ones computed in row slices by the
// matmul twin (DoRA normalised after), the rest streamed through (cast when asked).
import type { Backend } from '../compute/kernel';
import { matmulKernel, type MatmulDType, type MatmulResult } from '../compute/matmul/matmul';
import { bf16BitsOf, f16BitsOf } from '../compute/matmul/round';
import { streamJobs } from '../core/stream';
import { castBytes, isCastDType, type CastDType } from '../format/cast';
import type { DType } from '../format/dtypes';
import { FormatError } from '../format/errors';
import type { Model, TensorInfo } from '../format/model';
import { readValues, type MappedModule } from './lora';
import type { MergeArgs, MergePlan } from './mergeTypes';

// Base rows per kernel call are capped at this many bytes: small enough that a few slices in
// flight stay far below the memory budget, large enough that a call's overhead is amortised.
const SLICE_BYTES = 4 << 20;
// On the GPU a call's cost is its round trip (upload, dispatch, map for reading), not its size:
// slices this large make most tensors one call, and the kernel tiles them within binding limits.
const GPU_SLICE_BYTES = 32 << 20;
// Slices in flight at once: enough to keep two CPU workers (or a GPU queue) busy while the
// writer drains finished ones in order.
const IN_FLIGHT = 4;
// Results computed ahead of the writer are capped at this many bytes: enough to keep the
// backend busy through a layer's worth of untouched tensors, small against the memory bound.
const LOOKAHEAD_BYTES = 48 << 20;
// Untouched tensors are copied through two buffers of this size, reused for the whole model: large
// reads and writes, and no fresh memory to fault in for each tensor.
export const COPY_CHUNK_BYTES = 8 << 20;

function f32View(bytes: Uint8Array): Float32Array {
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

/** The factors of a tensor's updates stacked along the rank: one product for every adapter. */
async function stackFactors(plan: MergePlan, args: MergeArgs, list: readonly MappedModule[]): Promise<{ a: Float32Array; b: Float64Array; rank: number }> {
  const out = list[0].outFeatures;
  const inF = list[0].inFeatures;
  const rank = list.reduce((s, m) => s + (m.module.kind === 'bias' ? 1 : m.module.rank), 0);
  const a = new Float32Array(rank * inF);
  const b = new Float64Array(out * rank);
  let k0 = 0;
  for (const m of list) {
    const ad = plan.adapters[m.adapter];
    const coef = (args.adapters[m.adapter].weight ?? 1) * m.module.scale * (args.subtract ? -1 : 1);
    if (m.module.kind === 'bias') {
      // Δbias = scale · lora_B.bias: a rank-1 product with A = [1].
      const bias = await readValues(ad.model, m.module.up);
      a[k0] = 1;
      for (let o = 0; o < out; o++) b[o * rank + k0] = coef * bias[o];
      k0 += 1;
      continue;
    }
    const r = m.module.rank;
    const down = await readValues(ad.model, m.module.down);
    const up = await readValues(ad.model, m.module.up);
    a.set(down, k0 * inF);
    for (let o = 0; o < out; o++) for (let k = 0; k < r; k++) b[o * rank + k0 + k] = coef * up[o * r + k];
    k0 += r;
  }
  return { a, b, rank };
}

interface SliceJob {
  rowStart: number;
  rows: number;
}

function slices(rows: number, rowBytes: number, workers: number, sliceBytes: number): SliceJob[] {
  let per = Math.max(1, Math.floor(sliceBytes / Math.max(1, rowBytes)));
  // At least two slices per worker when the tensor allows, so no worker idles on a small tensor.
  per = Math.max(1, Math.min(per, Math.ceil(rows / (2 * workers))));
  const out: SliceJob[] = [];
  for (let r = 0; r < rows; r += per) out.push({ rowStart: r, rows: Math.min(per, rows - r) });
  return out;
}

function nonFiniteError(plan: MergePlan, t: TensorInfo, index: number): FormatError {
  const cols = t.shape.length > 1 ? t.numel / t.shape[0] : 1;
  return new FormatError('unsupported', `the merged value at [${Math.floor(index / cols)}, ${index % cols}] is not finite (NaN or ±Inf in the output dtype); nothing was written`, plan.base.path, t.name);
}

/** Rounds float64 values to `dtype` bytes, RNE; returns the first non-finite index or -1. */
function roundValues(values: Float64Array, dtype: MatmulDType, into: Uint8Array): number {
  let bad = -1;
  if (dtype === 'F32') {
    const o = f32View(into);
    for (let i = 0; i < values.length; i++) {
      o[i] = values[i];
      if (bad < 0 && !Number.isFinite(o[i])) bad = i;
    }
    return bad;
  }
  const o = new Uint16Array(into.buffer, into.byteOffset, values.length);
  const lim = dtype === 'BF16' ? 0x7f80 : 0x7c00;
  for (let i = 0; i < values.length; i++) {
    const h = dtype === 'BF16' ? bf16BitsOf(values[i]) : f16BitsOf(values[i]);
    o[i] = h;
    if (bad < 0 && (h & lim) === lim) bad = i;
  }
  return bad;
}

/** The data of one LoRA-updated tensor, streamed slice by slice. */
export function mergedData(plan: MergePlan, args: MergeArgs, t: TensorInfo, list: readonly MappedModule[], outDtype: MatmulDType, backend: Backend, workers: number, signal?: AbortSignal): () => AsyncIterable<Uint8Array> {
  return async function* () {
    const m0 = list[0];
    const transpose = m0.module.transpose;
    const { a, b, rank } = await stackFactors(plan, args, list);
    const storedRows = transpose ? m0.inFeatures : m0.outFeatures;
    const cols = t.numel / storedRows;
    const eb = t.dtype === 'F32' ? 4 : 2;
    const baseDtype = t.dtype as MatmulDType;
    const magnitude = m0.module.magnitude ? await readValues(plan.adapters[m0.adapter].model, m0.module.magnitude) : undefined;
    // A slice's size counts its larger side: DoRA's unrounded (hi, lo) results take 8 bytes an element.
    const rowBytes = cols * Math.max(eb, magnitude ? 8 : outDtype === 'F32' ? 4 : 2);
    const jobs = slices(storedRows, rowBytes, workers, backend.kind === 'webgpu' ? GPU_SLICE_BYTES : SLICE_BYTES);
    const common = { outFeatures: m0.outFeatures, inFeatures: m0.inFeatures, rank, a, b, transpose };
    const results = (out: MatmulDType | 'PAIR'): AsyncGenerator<MatmulResult> =>
      streamJobs(
        jobs,
        {
          read: async (j) => {
            const bytes = new Uint8Array(j.rows * cols * eb);
            await plan.base.read(t, j.rowStart * cols * eb, bytes);
            return bytes;
          },
          run: (j, bytes, s) => backend.run(matmulKernel, { ...common, rowStart: j.rowStart, rows: j.rows, base: bytes, baseDtype, out }, s),
        },
        { inFlight: IN_FLIGHT, signal },
      );
    if (!magnitude) {
      let done = 0;
      for await (const r of results(outDtype)) {
        if (r.nonFinite > 0) throw nonFiniteError(plan, t, done + r.firstNonFinite);
        done += r.bytes.length / (outDtype === 'F32' ? 4 : 2);
        yield r.bytes;
      }
      return;
    }
    yield* doraData(results, magnitude, transpose, cols, outDtype, (index) => nonFiniteError(plan, t, index));
  };
}

/**
 * DoRA: W' = m ⊙ V / ‖V‖ with V = W + ΔW, the norm taken per output feature: along a stored
 * row for [out, in] (and conv) weights, down a stored column for transposed ones, which takes
 * a first pass over the tensor for the column norms.
 */
async function* doraData(
  results: (out: 'PAIR') => AsyncGenerator<MatmulResult>,
  magnitude: Float64Array,
  transpose: boolean,
  cols: number,
  outDtype: MatmulDType,
  nonFinite: (index: number) => FormatError,
): AsyncGenerator<Uint8Array> {
  let colNorm: Float64Array | undefined;
  if (transpose) {
    const sq = new Float64Array(cols);
    for await (const r of results('PAIR')) {
      const p = f32View(r.bytes);
      for (let i = 0; i < p.length / 2; i++) {
        const v = p[2 * i] + p[2 * i + 1];
        sq[i % cols] += v * v;
      }
    }
    colNorm = sq.map(Math.sqrt);
  }
  let done = 0;
  for await (const r of results('PAIR')) {
    const p = f32View(r.bytes);
    const n = p.length / 2;
    const v = new Float64Array(n);
    for (let i = 0; i < n; i++) v[i] = p[2 * i] + p[2 * i + 1];
    const rowsHere = n / cols;
    for (let rr = 0; rr < rowsHere; rr++) {
      let rowFactor = 0;
      if (!colNorm) {
        let s = 0;
        for (let c = 0; c < cols; c++) s += v[rr * cols + c] ** 2;
        rowFactor = magnitude[(done + rr * cols) / cols] / Math.sqrt(s);
      }
      for (let c = 0; c < cols; c++) {
        const f = colNorm ? magnitude[c] / colNorm[c] : rowFactor;
        v[rr * cols + c] *= f;
      }
    }
    const out = new Uint8Array(n * (outDtype === 'F32' ? 4 : 2));
    const bad = roundValues(v, outDtype, out);
    if (bad >= 0 || r.nonFinite > 0) throw nonFinite(done + (bad >= 0 ? bad : r.firstNonFinite));
    done += n;
    yield out;
  }
}

/** Streams a tensor through, cast to `to` when it differs, reading into the job's one pair of buffers. */
export function copiedData(model: Model, t: TensorInfo, to: DType, buffers: readonly [Uint8Array, Uint8Array], signal?: AbortSignal): () => AsyncIterable<Uint8Array> {
  return async function* () {
    // The writer is done with a chunk before it asks for the next, and streams one tensor at a time.
    for await (const chunk of model.chunks(t, { signal, chunkBytes: COPY_CHUNK_BYTES, buffers })) {
      if (to === t.dtype) yield chunk;
      else yield castBytes(chunk, t.dtype as CastDType, to as CastDType, { overflow: 0, underflow: 0 });
    }
  };
}

export function outDtypeOf(d: DType, override: MatmulDType | undefined): DType {
  return override && isCastDType(d) ? override : d;
}

/**
 * Overlaps compute with I/O: while the writer streams one tensor, the LoRA-updated
 * tensors after it are computed on the backend into memory, in order, as far ahead
 * as LOOKAHEAD_BYTES of results allow (always at least the next one, so the extra
 * memory is bounded by the larger of the budget and the largest tensor).
 */
export class MergedAhead {
  private results?: AsyncGenerator<{ i: number; parts: Uint8Array[] }>;
  private head?: Promise<IteratorResult<{ i: number; parts: Uint8Array[] }>>;
  private readonly order: number[] = [];
  private readonly streams = new Map<number, { data: (signal: AbortSignal) => AsyncIterable<Uint8Array>; bytes: number }>();
  constructor(private readonly signal: AbortSignal | undefined) {}

  /** Registers updated tensor `i` (in the writer's order) with its data (computed under `signal`) and output size. */
  set(i: number, data: (signal: AbortSignal) => AsyncIterable<Uint8Array>, bytes: number): void {
    this.order.push(i);
    this.streams.set(i, { data, bytes });
  }

  /** Starts computing (the writer has reached the model's tensors). */
  kick(): void {
    if (this.results) return;
    // The job's signal also stops a tensor being computed when the write fails or is cancelled.
    const collect = async (i: number, signal: AbortSignal): Promise<{ i: number; parts: Uint8Array[] }> => {
      const parts: Uint8Array[] = [];
      for await (const c of this.streams.get(i)!.data(signal)) parts.push(c);
      return { i, parts };
    };
    const budget = { cost: (i: number) => this.streams.get(i)!.bytes, limit: LOOKAHEAD_BYTES };
    this.results = streamJobs(this.order, { run: (i: number, _input: undefined, signal: AbortSignal) => collect(i, signal) }, { inFlight: Math.max(1, this.order.length), budget, signal: this.signal });
    this.pull();
  }

  private pull(): void {
    this.head = this.results!.next();
    // Seen when the writer reaches the tensor; until then a failure must not count as unhandled.
    this.head.catch(() => {});
  }

  /** The data of updated tensor `i`. */
  async *take(i: number): AsyncGenerator<Uint8Array> {
    this.kick();
    const r = await this.head!;
    if (r.done || r.value.i !== i) throw new Error(`merge: the writer asked for tensor ${i} out of order`);
    this.pull();
    yield* r.value.parts;
  }

  /** Stops what is still computing (after a failed or cancelled write). */
  async close(): Promise<void> {
    await this.results?.return(undefined);
  }
}
