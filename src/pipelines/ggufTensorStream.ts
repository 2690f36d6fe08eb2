import { castToF16Simd } from '../compute/cast/f16Simd';
import { addSums, sumsFrom, type ErrorSums } from '../compute/quant/common';
import { dequantize } from '../compute/dequant/dequant.cpu';
import { castBytes, f16FromF32Bits, f32Bits, FormatError, isCastDType, type CastCounts, type DType } from '../format';

/**
 * Byte-stream stages for the GGUF converter: regrouping into fixed blocks, the rotary
 * Q/K row permutation, and encoding to the output type (F32/F16/BF16 by cast, Q8_0 by
 * ggml's reference quantizer). Each stage holds at most one block or one chunk.
 */

/** Re-chunks a stream into copies of `size` bytes; the last may be shorter only by a multiple of `tail` bytes. */
export async function* blocksOf(src: AsyncIterable<Uint8Array>, size: number, tail = size): AsyncIterable<Uint8Array> {
  let buf = new Uint8Array(size);
  let used = 0;
  for await (const chunk of src) {
    let at = 0;
    while (at < chunk.length) {
      const n = Math.min(size - used, chunk.length - at);
      buf.set(chunk.subarray(at, at + n), used);
      used += n;
      at += n;
      if (used === size) {
        yield buf;
        buf = new Uint8Array(size);
        used = 0;
      }
    }
  }
  if (used && used % tail === 0) yield buf.subarray(0, used);
  else if (used) throw new FormatError('size_mismatch', `stream ended ${used} bytes into a ${size}-byte block`);
}

/**
 * llama.cpp's rotary layout for Llama's q_proj/k_proj: within each head of `headRows` rows, row
 * (half i, j) moves to 2j + i, turning HF's rotate-half pairs into adjacent pairs. Heads are
 * contiguous, so the stream is permuted one head at a time.
 */
export async function* permuteHeads(src: AsyncIterable<Uint8Array>, headRows: number, rowBytes: number): AsyncIterable<Uint8Array> {
  const half = headRows / 2;
  for await (const head of blocksOf(src, headRows * rowBytes)) {
    const out = new Uint8Array(head.length);
    for (let i = 0; i < 2; i++) {
      for (let j = 0; j < half; j++) {
        const from = (i * half + j) * rowBytes;
        out.set(head.subarray(from, from + rowBytes), (2 * j + i) * rowBytes);
      }
    }
    yield out;
  }
}

export type GgufOutType = 'F32' | 'F16' | 'BF16' | 'Q8_0';

// Q8_0: 32 values per block, a float16 scale then 32 int8s (ggml's block_q8_0).
export const Q8_0_BLOCK = 32;
export const Q8_0_BLOCK_BYTES = 34;
// Blocks quantized per step: 128 KiB of F32 in, small enough to stay in cache.
const Q8_0_BATCH_BLOCKS = 1024;

/** ggml's `quantize_row_q8_0_ref` on whole blocks: amax/127 scale in float32, round half away from zero. */
export function quantizeQ8_0(x: Float32Array, out: Uint8Array): void {
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const blocks = x.length / Q8_0_BLOCK;
  for (let b = 0; b < blocks; b++) {
    const base = b * Q8_0_BLOCK;
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK; j++) amax = Math.max(amax, Math.abs(x[base + j]));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    const o = b * Q8_0_BLOCK_BYTES;
    view.setUint16(o, f16FromF32Bits(f32Bits(d)), true);
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      const v = Math.fround(x[base + j] * id);
      view.setInt8(o + 2 + j, Math.sign(v) * Math.round(Math.abs(v)));
    }
  }
}

export function outBytes(type: GgufOutType, numel: number): number {
  return type === 'Q8_0' ? (numel / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES : numel * (type === 'F32' ? 4 : 2);
}

/** Encodes a stream of `from` elements as `to`. */
export async function* encode(src: AsyncIterable<Uint8Array>, from: DType, to: GgufOutType, counts: CastCounts, sums?: ErrorSums): AsyncIterable<Uint8Array> {
  if (!isCastDType(from)) throw new FormatError('unsupported', `dtype ${from} is not a float type the converter reads`);
  if (to !== 'Q8_0') {
    // To F16 from BF16/F32 (the common conversions) in SIMD where WebAssembly has it: the same bytes and counts.
    const simd = to === 'F16' && (from === 'BF16' || from === 'F32');
    for await (const chunk of src) yield from === to ? chunk : ((simd && castToF16Simd(chunk, from, counts)) || castBytes(chunk, from, to, counts));
    return;
  }
  // Whole Q8_0 blocks, 1024 at a time: a chunk boundary may fall inside a block.
  const esize = from === 'F64' ? 8 : from === 'F32' ? 4 : 2;
  for await (const block of blocksOf(src, Q8_0_BLOCK * esize * Q8_0_BATCH_BLOCKS, Q8_0_BLOCK * esize)) yield q8(block, from, counts, sums);
}

function q8(block: Uint8Array, from: DType, counts: CastCounts, sums?: ErrorSums): Uint8Array {
  const f32 = from === 'F32' ? block : castBytes(block, from as 'F16', 'F32', counts);
  const x = new Float32Array(f32.buffer, f32.byteOffset, f32.byteLength / 4);
  const out = new Uint8Array(outBytes('Q8_0', x.length));
  quantizeQ8_0(x, out);
  if (sums) addErrors(sums, x, out);
  return out;
}

/** Adds the error of Q8_0 blocks `q` against their input `x` (the report's sums, as the twins keep them). */
function addErrors(sums: ErrorSums, x: Float32Array, q: Uint8Array): void {
  const y = new Float32Array(x.length);
  dequantize('Q8_0', q, y);
  let x2 = 0, xe = 0, e2 = 0, max = 0;
  for (let i = 0; i < x.length; i++) {
    const e = x[i] - y[i];
    x2 += x[i] * x[i];
    xe += x[i] * e;
    e2 += e * e;
    max = Math.max(max, Math.abs(e));
  }
  addSums(sums, sumsFrom(x.length, x2, xe, e2, max));
}
