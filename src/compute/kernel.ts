import type { BackendKind } from '../core/job';

export type { BackendChoice, BackendKind } from '../core/job';
/**
 * The contract every compute kernel follows. A kernel is three files side by side:
 *   name.wgsl     the WGSL source (tunables are `override` constants)
 *   name.gpu.ts   `export async function nameGpu(ctx: GpuContext, args: A): Promise<R>`
 *   name.cpu.ts   `export function nameCpu(args: A): R` (pure, runs inside a worker thread)
 * and one `KernelDef` that names the pair, registered in `src/compute/kernels.ts`
 * so that the CPU worker can find the CPU twin by name. A kernel for which the GPU would
 * not pay (its work is bound by reading a few bytes, or by the round trip) is `name.cpu.ts`
 * alone, with no `gpu`: every backend runs it on the CPU worker pool.
 *
 * Arguments and results must be structured-cloneable (typed arrays, plain objects);
 * `transfer` lists the ArrayBuffers to move rather than copy into the worker.
 */
export interface KernelDef<A, R> {
  readonly name: string;
  cpu(args: A): R | Promise<R>;
  /** Absent for a CPU-only kernel. */
  gpu?(ctx: GpuContext, args: A): Promise<R>;
  transfer?(args: A): ArrayBuffer[];
  /**
   * true: the worker copies the results' buffers back instead of moving them, for kernels whose
   * results are small. Moving detaches a buffer in the worker, and once any ArrayBuffer of an
   * isolate has been detached, V8 guards every typed-array access it compiles from then on: the
   * statistics scan took 15-20% more CPU in a worker that had moved back one small result.
   * Kernels whose outputs the caller recycles (quantized chunks) keep moving them: copies would
   * cost a fresh buffer per result on the caller's side.
   */
  readonly copyResults?: boolean;
}


/** What a GPU twin gets: one lazily created device and a pipeline cache. */
export interface GpuContext {
  readonly device: GPUDevice;
  /** Compiled pipelines are cached by `key` plus the override constants. */
  pipeline(key: string, code: string, entryPoint?: string, constants?: Record<string, number>): GPUComputePipeline;
  /** A STORAGE | COPY_SRC | COPY_DST buffer holding `data` (size rounded up to 4 bytes). */
  upload(data: ArrayBufferView, usage?: number): GPUBuffer;
  /** A zeroed STORAGE | COPY_SRC | COPY_DST buffer. */
  buffer(size: number, usage?: number): GPUBuffer;
  /** A UNIFORM buffer from 32-bit words. */
  uniform(words: ArrayBufferView): GPUBuffer;
  /**
   * Records and submits one compute pass: bindings in @binding order of @group(0);
   * `undefined` leaves a binding number out (an entry point that does not use it).
   */
  dispatch(pipeline: GPUComputePipeline, bindings: readonly (GPUBuffer | undefined)[], workgroups: readonly [number, number?, number?]): void;
  /** Copies a buffer back to the host. */
  read(buffer: GPUBuffer, size?: number, offset?: number): Promise<ArrayBuffer>;
  readonly limits: { maxStorageBufferBindingSize: number; maxComputeWorkgroupsPerDimension: number; maxBufferSize: number };
}

/** Runs kernels on one backend. Pipelines get one from `getBackend(choice)`. */
export interface Backend {
  readonly kind: BackendKind;
  /** Human-readable adapter/pool description ("SwiftShader", "cpu ×2"). */
  readonly description: string;
  run<A, R>(kernel: KernelDef<A, R>, args: A, signal?: AbortSignal): Promise<R>;
}

/**
 * Thrown by a GPU twin for an input it does not cover (a dtype WGSL cannot hold,
 * such as F64): the backend runs the CPU twin instead. Not a device failure, so
 * the user is not told and the device stays in use.
 */
export class GpuUnsupportedError extends Error {
  override readonly name = 'GpuUnsupportedError';
}
