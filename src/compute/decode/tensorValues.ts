import { throwIfCancelled } from '../../core/job';
import { decodeToF32 } from '../../format/decode';
import { isFloatDType } from '../../format/dtypes';
import type { Model, TensorInfo } from '../../format/model';
import { readUnitBytes, unitElementsOf, type UnitBytes } from '../../format/tensorUnits';
import type { Backend } from '../kernel';
import { decodeCpu } from './decode.cpu';
import { decodeKernel } from './decode';

/**
 * A logical tensor's values as float32, whatever its storage: plain float dtypes, ggml
 * block types and quantized schemes (an FP8 weight with its block scales, MXFP4, GPTQ …)
 * all come through here, so diff, convert and the viewer never ask which one they got.
 * Reads go through `readUnitBytes` (the model layer), decoding through the decode kernel
 * (bit-identical on both backends), or on the calling thread when no backend is given.
 */

/** Decoded values of `count` elements starting at element `first`. */
export interface ValueChunk {
  readonly first: number;
  readonly values: Float32Array;
}

export interface ValueChunkOptions {
  /**
   * Values per chunk, rounded down to whole units (at least one): a 128×128-block FP8
   * weight's unit is 128 whole rows, GPTQ's (whose act-order indexes all rows) the whole tensor.
   */
  readonly chunkValues?: number;
  /** Decodes in the backend's workers; absent, on this thread (small chunks, the viewer). */
  readonly backend?: Backend;
  readonly signal?: AbortSignal;
}

// 1 M values (4 MiB of float32) per chunk: reads stay large and a worker round trip is
// a small share of the work, while two chunks in flight stay a few MiB.
export const DEFAULT_CHUNK_VALUES = 1 << 20;

/** Elements per chunk: `want` rounded down to whole units of `t`, at least one unit. */
export function chunkValuesOf(t: TensorInfo, want: number): number {
  const per = unitElementsOf(t);
  return Math.max(1, Math.floor(want / per)) * per;
}

function decodeUnits(t: TensorInfo, u: UnitBytes, backend: Backend | undefined, signal?: AbortSignal): Promise<Float32Array> | Float32Array {
  // A scheme's short last unit (the last 128-row band of a ragged FP8 weight) decodes to `count` values.
  const args = { dtype: t.dtype, bytes: u.data, storage: t.storage, more: u.more, count: u.count };
  const plain = !t.storage || t.storage.kind === 'dtype';
  // Integer and BOOL tensors (which the decode kernel does not take) are widened here, as the viewer shows them.
  if (plain && (!backend || !isFloatDType(t.dtype))) {
    const out = new Float32Array(u.count);
    decodeToF32(t.dtype, u.data, out, u.count);
    return out;
  }
  return backend ? backend.run(decodeKernel, args, signal) : decodeCpu(args);
}

/** Values [e0, e1) of `t` as float32; both ends on whole units (or `e1` at the tensor's end). */
export async function decodeValues(model: Model, t: TensorInfo, e0: number, e1: number, backend?: Backend, signal?: AbortSignal): Promise<Float32Array> {
  return decodeUnits(t, await readUnitBytes(model, t, e0, e1, signal), backend, signal);
}

/**
 * Streams a tensor's values in order, in chunks of whole units. The next chunk's bytes are
 * read while the current one decodes, so at most two chunks (raw and decoded) are held.
 */
export async function* valueChunks(model: Model, t: TensorInfo, opts: ValueChunkOptions = {}): AsyncGenerator<ValueChunk> {
  const per = chunkValuesOf(t, opts.chunkValues ?? DEFAULT_CHUNK_VALUES);
  const read = (e0: number) => readUnitBytes(model, t, e0, Math.min(t.numel, e0 + per), opts.signal);
  let pending: Promise<UnitBytes> | undefined = t.numel > 0 ? read(0) : undefined;
  try {
    for (let e0 = 0; pending; e0 += per) {
      const u: UnitBytes = await pending;
      pending = e0 + per < t.numel ? read(e0 + per) : undefined;
      throwIfCancelled(opts.signal);
      yield { first: e0, values: await decodeUnits(t, u, opts.backend, opts.signal) };
    }
  } finally {
    // A caller that stops early must not leave a read behind that rejects unobserved.
    if (pending) await pending.catch(() => undefined);
  }
}
