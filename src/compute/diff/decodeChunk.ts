/**
 * Fast chunk decoding shared by the CPU twins of the diff kernels. Only the
 * dtypes that checkpoints are stored in reach the kernels (F32, F16, BF16); the
 * pipeline converts anything else to F32 bytes first.
 */
import { f16Table } from '../decode/f16';
export type DiffDType = 'F32' | 'F16' | 'BF16';

export const DIFF_DTYPES: readonly DiffDType[] = ['F32', 'F16', 'BF16'];

export function diffElementBytes(d: DiffDType): number {
  return d === 'F32' ? 4 : 2;
}


/**
 * Decodes `n` elements of `bytes` into `out[0..n)`. Decoding is bit-exact (BF16
 * and F16 widen without rounding), so two decoded elements have equal bits
 * exactly when their source bits are equal.
 */
export function decodeChunkF32(dtype: DiffDType, bytes: Uint8Array, n: number, out: Float32Array): void {
  const aligned = bytes.byteOffset % 4 === 0;
  if (dtype === 'F32') {
    if (aligned) out.set(new Float32Array(bytes.buffer, bytes.byteOffset, n));
    else new Uint8Array(out.buffer, out.byteOffset, n * 4).set(bytes.subarray(0, n * 4));
    return;
  }
  if (dtype === 'F16') {
    const table = f16Table();
    const h = bytes.byteOffset % 2 === 0 ? new Uint16Array(bytes.buffer, bytes.byteOffset, n) : new Uint16Array(bytes.slice(0, n * 2).buffer);
    for (let i = 0; i < n; i++) out[i] = table[h[i]];
    return;
  }
  // BF16 is the top half of an F32: two elements per 32-bit word, little-endian.
  const o = new Int32Array(out.buffer, out.byteOffset, n);
  const pairs = n >> 1;
  const w = aligned ? new Uint32Array(bytes.buffer, bytes.byteOffset, pairs) : new Uint32Array(bytes.slice(0, pairs * 4).buffer);
  widenBf16Pairs(w, o, pairs);
  if (n & 1) o[n - 1] = (bytes[2 * n - 2] | (bytes[2 * n - 1] << 8)) << 16;
}

/** Kept apart from the dispatcher so that the JIT compiles one tight loop for it. */
function widenBf16Pairs(w: Uint32Array, o: Int32Array, pairs: number): void {
  for (let i = 0, j = 0; i < pairs; i++, j += 2) {
    const x = w[i];
    o[j] = x << 16;
    o[j + 1] = x & 0xffff0000;
  }
}

/** A Float32Array of at least `n` elements, reused between calls of one worker. */
export class Scratch {
  private buf = new Float32Array(0);
  get(n: number): Float32Array {
    if (this.buf.length < n) this.buf = new Float32Array(Math.max(n, this.buf.length * 2));
    return this.buf;
  }
}
