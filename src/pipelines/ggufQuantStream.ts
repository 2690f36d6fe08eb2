import type { Backend } from '../compute/kernel';
import type { QuantInputDType } from '../compute/quant/common';
import { SCHEMES, type SchemeName } from '../compute/quant/schemes';
import { castBytes, type CastCounts, type DType } from '../format';
import { GGML_TYPE_BY_NAME, type GgmlTypeName } from '../format/gguf/types';
import type { ChosenType } from './llamaFtype';
import { blocksOf } from './ggufTensorStream';

/**
 * Whole rows of a tensor's byte stream through the quantizer twin of a ggml type, in
 * order, a few chunks in flight so that the CPU pool's workers all have one.
 */

// Rows are sent to the quantizer in chunks of about this many input bytes: milliseconds of work per chunk.
const CHUNK_BYTES = 1 << 20;
// Chunks awaiting their result at once: one per worker and one queued on a 2–16 core pool.
const IN_FLIGHT = 4;

/** Bytes of `numel` values of `type` (whole blocks along the rows). */
export function typeBytes(type: ChosenType, numel: number): number {
  const t = GGML_TYPE_BY_NAME.get(type as GgmlTypeName)!;
  return (numel / t.blockSize) * t.typeSize;
}

export function ggmlId(type: ChosenType): number {
  return GGML_TYPE_BY_NAME.get(type as GgmlTypeName)!.id;
}

export function schemeOf(type: ChosenType): SchemeName | undefined {
  const s = type.toLowerCase();
  return Object.prototype.hasOwnProperty.call(SCHEMES, s) && SCHEMES[s as SchemeName].kind === 'ggml' ? (s as SchemeName) : undefined;
}

/**
 * Quantizes a stream of `from` values, `cols` per row, to `type` on `backend`. F64 rows
 * are cast to F32 first (the twins read BF16, F16 and F32).
 */
export async function* quantizeRows(
  src: AsyncIterable<Uint8Array>,
  from: DType,
  type: ChosenType,
  cols: number,
  backend: Backend,
  counts: CastCounts,
  signal?: AbortSignal,
): AsyncIterable<Uint8Array> {
  const scheme = SCHEMES[schemeOf(type)!];
  const esize = from === 'F64' ? 8 : from === 'F32' ? 4 : 2;
  const rowBytes = cols * esize;
  const rowsPer = Math.max(1, Math.floor(CHUNK_BYTES / rowBytes));
  const pending: Array<Promise<Uint8Array>> = [];
  for await (const block of blocksOf(src, rowsPer * rowBytes, rowBytes)) {
    const dtype: QuantInputDType = from === 'F64' ? 'F32' : (from as QuantInputDType);
    const input = from === 'F64' ? castBytes(block, 'F64', 'F32', counts) : block;
    const rows = block.length / rowBytes;
    const job = backend.run(scheme.kernel, { src: input, dtype, rows, cols, stats: false, give: true }, signal).then((r) => r.data);
    // A failure surfaces where the job is awaited, in order; this keeps it from counting as unhandled meanwhile.
    job.catch(() => undefined);
    pending.push(job);
    if (pending.length >= IN_FLIGHT) yield await pending.shift()!;
  }
  while (pending.length) yield await pending.shift()!;
}
