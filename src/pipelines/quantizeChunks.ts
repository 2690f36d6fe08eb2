import type { QuantInputDType, QuantizeResult } from '../compute/quant/common';
import type { Scheme } from '../compute/quant/schemes';
import type { Backend } from '../compute/kernel';
import { throwIfCancelled } from '../core/job';
import { BufferPool, streamJobs, type JobSteps } from '../core/stream';
import { decodeToF32 } from '../format/decode';
import { DTYPE_INFO, type DType } from '../format/dtypes';
import type { Model, TensorInfo } from '../format/model';
import type { TensorPlan } from './quantizeTypes';

// Input rows are read in chunks of about this size: a few ms of kernel work, enough to
// amortize a worker round trip (tens of µs), small enough that many fit in flight.
const CHUNK_BYTES = 1 << 20;
// On the GPU each chunk costs an upload, a dispatch and a read-back: bigger chunks amortize them.
const GPU_CHUNK_BYTES = 16 << 20;
// Enough to overlap one upload, one dispatch and one read-back.
const GPU_IN_FLIGHT = 3;
// Chunks dispatched ahead of the writer: several per worker, so that reads, kernels and
// writes overlap; at 1 MiB each this bounds the pipeline's buffers to a few tens of MB.
const IN_FLIGHT = 8;
// Reads at once: the page cache or the disk serves them one after another anyway.
const READ_AHEAD = 2;
// Kept tensors are copied through in chunks of this size (no kernel: fewer, larger reads).
export const COPY_CHUNK_BYTES = 4 << 20;

/** The rows of a 2-D tensor that one chunk covers, optionally permuted within groups of `groupRows`. */
interface RowChunk {
  readonly plan: TensorPlan;
  readonly t: TensorInfo;
  readonly r0: number;
  readonly rows: number;
  readonly rowBytes: number;
  readonly groupRows?: number;
  readonly perm?: Int32Array;
  /** An expert [in, out] of an MoE weight, read whole and transposed to `rows` = out rows of `in`. */
  readonly transpose?: boolean;
}

/** A chunk ready for a quantization kernel. */
export interface KernelInput {
  readonly src: Uint8Array;
  readonly dtype: QuantInputDType;
  readonly rows: number;
  readonly inBytes: number;
}

/** The kernel input for a chunk: BF16/F16/F32 go as they are, other floats are decoded to F32 first. */
export function kernelInput(dtype: DType, bytes: Uint8Array, count: number): { src: Uint8Array; dtype: QuantInputDType } {
  if (dtype === 'BF16' || dtype === 'F16' || dtype === 'F32') return { src: bytes, dtype };
  const f = new Float32Array(count);
  decodeToF32(dtype, bytes, f, count);
  return { src: new Uint8Array(f.buffer), dtype: 'F32' };
}

/**
 * Row order for llama.cpp's rotary layout: within each head, rows (i, j) with
 * i ∈ {0, 1} (the halves) and j < headDim/2 become rows (j, i). Returns the input

 * row of each output row of one head.
 */
export function ropePermutation(headDim: number): Int32Array {
  const half = headDim / 2;
  const perm = new Int32Array(headDim);
  for (let j = 0; j < half; j++) {
    for (let i = 0; i < 2; i++) perm[j * 2 + i] = i * half + j;
  }
  return perm;
}


/** Splits a tensor's rows into chunks of about `chunkBytes` (whole groups of `groupRows`). */
function rowChunksOf(model: Model, plan: TensorPlan, chunkBytes: number, groupRows?: number, perm?: Int32Array): RowChunk[] {
  const t = model.tensor(plan.name)!;
  const rowBytes = (plan.cols * DTYPE_INFO[t.dtype].bits) / 8;
  if (plan.experts) {
    // One expert per chunk: its rows of the transposed layout are columns of the stored one.
    const rows = plan.rows / plan.experts;
    return Array.from({ length: plan.experts }, (_, e) => ({ plan, t, r0: e * rows, rows, rowBytes, transpose: true }));
  }
  const unit = groupRows ?? 1;
  const rowsPer = Math.max(unit, Math.floor(chunkBytes / rowBytes / unit) * unit);
  const out: RowChunk[] = [];
  for (let r0 = 0; r0 < plan.rows; r0 += rowsPer) out.push({ plan, t, r0, rows: Math.min(rowsPer, plan.rows - r0), rowBytes, groupRows, perm });
  return out;
}

/** `src` as [rows, cols] elements of `width` bytes, written to `out` as [cols, rows]. */
function transposeElements(src: Uint8Array, out: Uint8Array, rows: number, cols: number, width: number): void {
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const from = (r * cols + c) * width;
      const to = (c * rows + r) * width;
      for (let k = 0; k < width; k++) out[to + k] = src[from + k];
    }
  }
}

/** Reads a chunk's rows (permuted within their groups when asked) as a kernel input. */
async function readRows(model: Model, c: RowChunk, pool?: BufferPool): Promise<KernelInput> {
  const { rows: n, rowBytes, groupRows, perm } = c;
  let buf = pool?.take(n * rowBytes) ?? new Uint8Array(n * rowBytes);
  await model.read(c.t, c.r0 * rowBytes, buf);
  if (c.transpose) {
    const out = pool?.take(buf.length) ?? new Uint8Array(buf.length);
    transposeElements(buf, out, c.plan.cols, n, rowBytes / c.plan.cols);
    pool?.give(buf);
    buf = out;
  }
  if (perm && groupRows) {
    const out = pool?.take(buf.length) ?? new Uint8Array(buf.length);
    for (let g = 0; g < n; g += groupRows) {
      for (let k = 0; k < groupRows; k++) out.set(buf.subarray((g + perm[k]) * rowBytes, (g + perm[k] + 1) * rowBytes), (g + k) * rowBytes);
    }
    pool?.give(buf);
    buf = out;
  }
  return { ...kernelInput(c.t.dtype, buf, n * c.plan.cols), rows: n, inBytes: buf.length };
}

/** Reads a 2-D tensor in whole-row chunks (no kernel: a kept weight that only needs its rows reordered). */
export async function* rowChunks(model: Model, plan: TensorPlan, signal: AbortSignal | undefined, groupRows?: number, perm?: Int32Array): AsyncGenerator<KernelInput> {
  for (const c of rowChunksOf(model, plan, CHUNK_BYTES, groupRows, perm)) {
    throwIfCancelled(signal);
    yield await readRows(model, c, undefined);
  }
}

/** Bytes of a chunk's quantized values (scales excluded). */
export function quantizedDataBytes(scheme: Scheme, rows: number, cols: number): number {
  if (scheme.name === 'mxfp4') return (rows * cols) / 2;
  return scheme.kind === 'ggml' ? ((rows * cols) / scheme.blockSize) * scheme.blockBytes : rows * cols;
}

interface ChunkResult {
  readonly chunk: RowChunk;
  readonly r: QuantizeResult;
  readonly inBytes: number;
}

/**
 * The quantized tensors' chunks as one stream, in the order the writer asks for
 * them: chunks run ahead of the writer across tensor boundaries (so the workers
 * never wait for a small tensor to drain), and each tensor's data is the next
 * run of results. Input and output buffers are recycled between chunks.
 */
export class QuantStream {
  private readonly chunks: RowChunk[] = [];
  private results?: AsyncGenerator<ChunkResult>;
  private readonly inputs = new BufferPool(IN_FLIGHT + 2);
  // Output buffers come back once the writer has taken their bytes.
  private readonly outputs = new BufferPool(IN_FLIGHT + 2);

  constructor(
    private readonly model: Model,
    private readonly scheme: Scheme,
    private readonly backend: Backend,
    private readonly signal: AbortSignal | undefined,
  ) {}

  /** Registers a tensor (in the writer's order) and returns the stream of its results. */
  add(plan: TensorPlan, onChunk: (r: QuantizeResult, inBytes: number) => void, groupRows?: number, perm?: Int32Array): () => AsyncGenerator<QuantizeResult> {
    const chunkBytes = this.backend.kind === 'webgpu' ? GPU_CHUNK_BYTES : CHUNK_BYTES;
    const mine = rowChunksOf(this.model, plan, chunkBytes, groupRows, perm);
    this.chunks.push(...mine);
    const self = this;
    return async function* () {
      for (let i = 0; i < mine.length; i++) {
        const next = await self.stream().next();
        if (next.done || next.value.chunk !== mine[i]) throw new Error(`quantize: the writer asked for ${plan.name} out of order`);
        const { r, inBytes } = next.value;
        onChunk(r, inBytes);
        yield r;
        // The writer has written or copied these bytes before asking for more.
        self.outputs.give(r.data);
      }
    };
  }

  private stream(): AsyncGenerator<ChunkResult> {
    if (this.results) return this.results;
    const steps: JobSteps<RowChunk, KernelInput, ChunkResult> = {
      read: (c) => readRows(this.model, c, this.inputs),
      run: async (chunk, input, signal) => {
        const out = this.outputs.take(quantizedDataBytes(this.scheme, input.rows, chunk.plan.cols));
        const r = await this.backend.run(this.scheme.kernel, { src: input.src, dtype: input.dtype, rows: input.rows, cols: chunk.plan.cols, give: true, out }, signal);
        this.inputs.give(r.src);
        return { chunk, r, inBytes: input.inBytes };
      },
    };
    // Bigger GPU chunks, fewer of them in flight: the same bound on memory.
    const inFlight = this.backend.kind === 'webgpu' ? GPU_IN_FLIGHT : IN_FLIGHT;
    this.results = streamJobs(this.chunks, steps, { inFlight, readAhead: READ_AHEAD, signal: this.signal });
    return this.results;
  }

  /** Stops the chunks still running (after a failed or cancelled write). */
  async close(): Promise<void> {
    await this.results?.return(undefined);
  }
}

export function keptStream(model: Model, t: TensorInfo, signal: AbortSignal | undefined, advance: (n: number, name: string) => void): () => AsyncIterable<Uint8Array> {
  return async function* () {
    for await (const c of model.chunks(t, { chunkBytes: COPY_CHUNK_BYTES, signal })) {
      yield c;
      advance(c.length, t.name);
    }
  };
}
