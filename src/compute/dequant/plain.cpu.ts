import { F16_TO_F32 } from './half';

/**
 * The plain number types as float32. ggml itself only converts F16 and BF16 (exactly); the
 * others are cast as C does: float64 and the integers round to nearest even. Little-endian
 * host assumed, as everywhere in the project.
 */

export function f32(src: Uint8Array, out: Float32Array, n: number): void {
  // A byte copy keeps NaN payloads, which a float round trip through JS may not.
  new Uint8Array(out.buffer, out.byteOffset, n * 4).set(src.subarray(0, n * 4));
}

export function f16(src: Uint8Array, out: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = F16_TO_F32[src[2 * i] | (src[2 * i + 1] << 8)];
}

export function bf16(src: Uint8Array, out: Float32Array, n: number): void {
  const bits = new Uint32Array(out.buffer, out.byteOffset, n);
  for (let i = 0; i < n; i++) bits[i] = ((src[2 * i] << 16) | (src[2 * i + 1] << 24)) >>> 0;
}

function view(src: Uint8Array): DataView {
  return new DataView(src.buffer, src.byteOffset, src.byteLength);
}

export function f64(src: Uint8Array, out: Float32Array, n: number): void {
  const v = view(src);
  for (let i = 0; i < n; i++) out[i] = v.getFloat64(8 * i, true);
}

export function i8(src: Uint8Array, out: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = (src[i] << 24) >> 24;
}

export function i16(src: Uint8Array, out: Float32Array, n: number): void {
  const v = view(src);
  for (let i = 0; i < n; i++) out[i] = v.getInt16(2 * i, true);
}

export function i32(src: Uint8Array, out: Float32Array, n: number): void {
  const v = view(src);
  for (let i = 0; i < n; i++) out[i] = v.getInt32(4 * i, true);
}

/** 2^53: integers below it are exact as doubles, so one rounding (to float32) is correct. */
const EXACT = 2 ** 53;

export function i64(src: Uint8Array, out: Float32Array, n: number): void {
  const v = view(src);
  for (let i = 0; i < n; i++) {
    const lo = v.getUint32(8 * i, true);
    const hi = v.getInt32(8 * i + 4, true);
    const x = hi * 4294967296 + lo;
    out[i] = Math.abs(x) < EXACT ? x : int64ToF32(v.getBigInt64(8 * i, true));
  }
}

/**
 * Correct rounding for |x| ≥ 2^53, where int64 → double → float32 would round twice: keep 30
 * high bits and fold the rest into a sticky low bit, which an exact double then rounds once.
 */
function int64ToF32(x: bigint): number {
  const neg = x < 0n;
  const a = neg ? -x : x;
  const shift = BigInt(a.toString(2).length - 30);
  let top = Number(a >> shift);
  if (a & ((1n << shift) - 1n)) top |= 1;
  const r = Math.fround(top * 2 ** Number(shift));
  return neg ? -r : r;
}
