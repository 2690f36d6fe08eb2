import type { Backend } from '../compute/kernel';
import { addSums, type ErrorSums, type QuantInputDType, type QuantizeResult } from '../compute/quant/common';
import { SCHEMES, type SchemeName } from '../compute/quant/schemes';
import { castBytes, type CastCounts, type DType } from '../format';
import { GGML_TYPE_BY_NAME, type GgmlTypeName } from '../format/gguf/types';
import type { ChosenType } from './llamaFtype';
import { FormatError } from '../format/errors';
import type { Imatrix } from '../format/imatrix';
import { blocksOf } from './ggufTensorStream';
import { gguf, type GgufValue } from '../format/gguf/writer';

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

/** An importance matrix for one tensor: ne[0] weights per expert; each expert's rows use their own. */
export interface RowWeights {
  readonly imatrix: Float32Array;
  readonly rowsPerExpert: number;
}

/** The largest number of rows ≤ `want` that divides `n`: chunks then never straddle an expert. */
function divisorAtMost(n: number, want: number): number {
  for (let d = Math.min(n, want); d > 1; d--) if (n % d === 0) return d;
  return 1;
}

/**
 * Quantizes a stream of `from` values, `cols` per row, to `type` on `backend`. F64 rows
 * are cast to F32 first (the twins read BF16, F16 and F32). With `sums`, the quantization
 * error of every chunk is added to it (in chunk order, so the totals do not vary by run).
 */
export async function* quantizeRows(
  src: AsyncIterable<Uint8Array>,
  from: DType,
  type: ChosenType,
  cols: number,
  backend: Backend,
  counts: CastCounts,
  signal?: AbortSignal,
  weights?: RowWeights,
  sums?: ErrorSums,
): AsyncIterable<Uint8Array> {
  const scheme = SCHEMES[schemeOf(type)!];
  const esize = from === 'F64' ? 8 : from === 'F32' ? 4 : 2;
  const rowBytes = cols * esize;
  let rowsPer = Math.max(1, Math.floor(CHUNK_BYTES / rowBytes));
  const experts = weights ? weights.imatrix.length / cols : 1;
  if (weights && experts > 1) rowsPer = divisorAtMost(weights.rowsPerExpert, rowsPer);
  const pending: Array<Promise<QuantizeResult>> = [];
  const next = async (): Promise<Uint8Array> => {
    const r = await pending.shift()!;
    if (sums) addSums(sums, r.stats);
    return r.data;
  };
  let row = 0;
  for await (const block of blocksOf(src, rowsPer * rowBytes, rowBytes)) {
    const dtype: QuantInputDType = from === 'F64' ? 'F32' : (from as QuantInputDType);
    const input = from === 'F64' ? castBytes(block, 'F64', 'F32', counts) : block;
    const rows = block.length / rowBytes;
    const e = weights ? Math.floor(row / weights.rowsPerExpert) : 0;
    const imatrix = weights ? (experts > 1 ? weights.imatrix.slice(e * cols, (e + 1) * cols) : weights.imatrix) : undefined;
    row += rows;
    // The kernel's error sums cost a dequantize pass: only when a report asks for them.
    const job = backend.run(scheme.kernel, { src: input, dtype, rows, cols, stats: sums !== undefined, give: true, imatrix }, signal);
    // A failure surfaces where the job is awaited, in order; this keeps it from counting as unhandled meanwhile.
    job.catch(() => undefined);
    pending.push(job);
    if (pending.length >= IN_FLIGHT) yield await next();
  }
  while (pending.length) yield await next();
}

/**
 * The importance weights for one tensor, as llama_model_quantize looks them up: by llama.cpp
 * name; none when the imatrix lacks the tensor; a size other than ne[0] × experts is an error
 * (except for the token embedding, which llama.cpp then quantizes without).
 */
export function rowWeightsFor(im: Imatrix | undefined, name: string, ne: readonly number[], type: ChosenType, file: string): RowWeights | undefined {
  const w = im?.entries.get(name);
  if (!w) return undefined;
  const experts = ne[2] ?? 1;
  if (w.length !== ne[0] * experts) {
    if (name === 'token_embd.weight' || name === 'per_layer_token_embd.weight') return undefined;
    throw new FormatError('unsupported', `the imatrix has ${w.length} values for it, the tensor needs ${ne[0] * experts}`, file, name);
  }
  if (type === 'Q4_0' || type === 'Q4_1') throw new FormatError('unsupported', `${type} with an importance matrix is not supported yet (ggml's weighted ${type} search)`, file, name);
  return { imatrix: w, rowsPerExpert: ne[1] ?? 1 };
}

// llama-quantize copies the imatrix file name and first dataset into fixed 128-byte fields: 127 characters and a NUL.
const KV_STR_CHARS = 127;

/**
 * What llama-quantize records of the importance matrix it used (tools/quantize, through
 * kv_overrides written after general.file_type): the file as named on the command line,
 * the first dataset, the entry count and, when known, the chunk count, as i32.
 */
export function imatrixKeys(im: Imatrix, path: string): Array<[string, GgufValue]> {
  const cut = (s: string) => new TextDecoder().decode(new TextEncoder().encode(s).subarray(0, KV_STR_CHARS)).replace(/\uFFFD$/, '');
  const kv: Array<[string, GgufValue]> = [['quantize.imatrix.file', gguf.str(cut(path))]];
  if (im.datasets.length) kv.push(['quantize.imatrix.dataset', gguf.str(cut(im.datasets[0]))]);
  kv.push(['quantize.imatrix.entries_count', gguf.i32(im.entries.size)]);
  if (im.chunks > 0) kv.push(['quantize.imatrix.chunks_count', gguf.i32(im.chunks)]);
  return kv;
}

/**
 * llama-quantize's notes on an importance matrix that does not cover a tensor it quantizes
 * ("did not find weights for …", and a token embedding of another size): such tensors are
 * quantized without weights, there as here. One line per tensor.
 */
export function imatrixNotes(im: Imatrix | undefined, tensors: ReadonlyArray<{ readonly name: string; readonly ne: readonly number[]; readonly from: ChosenType; readonly type: ChosenType }>): string[] {
  if (!im) return [];
  const notes: string[] = [];
  for (const t of tensors) {
    if (t.type === t.from || t.type === 'F32' || t.type === 'F16' || t.type === 'BF16') continue;
    const w = im.entries.get(t.name);
    const need = t.ne[0] * (t.ne[2] ?? 1);
    if (!w) notes.push(`${t.name}: no importance weights in the imatrix; quantized without them`);
    else if (w.length !== need) notes.push(`${t.name}: the imatrix has ${w.length} values, the tensor ${need}; quantized without them`);
  }
  return notes;
}
