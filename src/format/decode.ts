import { DTYPE_INFO, type DType } from './dtypes';

/*
 * Decoders from stored little-endian bytes to numbers, for every safetensors dtype.
 *
 * Small floats go through tables built once from the bit layout (sign, exponent,
 * mantissa placed into an f32's fields), so every 4-, 6- and 8-bit value and every F16
 * is one load. Sub-byte packing follows dtypes.ts (LSB-first), which is how PyTorch's
 * float4_e2m1fn_x2 and the OCP MX reference code lay elements out:
 *   F4:  two per byte, element 2i in the low nibble, 2i+1 in the high nibble;
 *   F6:  four per three bytes: read the bytes as a 24-bit little-endian word w, element
 *        4i+k is bits 6k..6k+5 of w (so element 4i sits in the low 6 bits of byte 0).
 * The safetensors spec itself only fixes the bit counts, so this choice is the project's.
 *
 * Format definitions:
 *   F8_E4M3      OCP E4M3FN: bias 7, no infinities, NaN = S.1111.111 (0x7F, 0xFF), max 448.
 *   F8_E5M2      OCP E5M2: bias 15, IEEE-like (infinities and NaNs at exponent 31).
 *   F8_E4M3FNUZ  bias 8, no infinities, no -0: 0x80 is the only NaN.
 *   F8_E5M2FNUZ  bias 16, no infinities, no -0: 0x80 is the only NaN.
 *   F8_E8M0      OCP MX scale: 2^(e-127), no sign, no zero, 0xFF = NaN.
 *   F6_E2M3      OCP MX FP6: bias 1, no infinities or NaN, max 7.5.
 *   F6_E3M2      OCP MX FP6: bias 3, no infinities or NaN, max 28.
 *   F4           OCP MX FP4 E2M1: bias 1, no infinities or NaN, max 6.
 */

type Specials = 'ieee' | 'fn' | 'fnuz' | 'none';

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** The f32 bit pattern of one small-float code, built field by field. */
function miniFloatBits(code: number, expBits: number, manBits: number, bias: number, specials: Specials): number {
  const total = 1 + expBits + manBits;
  const sign = (code >>> (total - 1)) & 1;
  const e = (code >>> manBits) & ((1 << expBits) - 1);
  let m = code & ((1 << manBits) - 1);
  const expMax = (1 << expBits) - 1;
  const s = sign << 31;
  const NAN = 0x7fc00000;
  if (specials === 'fnuz' && code === 1 << (total - 1)) return NAN;
  if (specials === 'ieee' && e === expMax) return m === 0 ? (s | 0x7f800000) >>> 0 : NAN;
  if (specials === 'fn' && e === expMax && m === (1 << manBits) - 1) return NAN;
  if (e === 0) {
    if (m === 0) return s >>> 0;
    // Subnormal: m·2^(1-bias-manBits). Shift the leading 1 up to the implicit position.
    let exp = 1 - bias;
    while ((m & (1 << manBits)) === 0) {
      m <<= 1;
      exp--;
    }
    m &= (1 << manBits) - 1;
    return (s | ((exp + 127) << 23) | (m << (23 - manBits))) >>> 0;
  }
  return (s | ((e - bias + 127) << 23) | (m << (23 - manBits))) >>> 0;
}

function buildTable(expBits: number, manBits: number, bias: number, specials: Specials): Float32Array {
  const n = 1 << (1 + expBits + manBits);
  const bits = new Uint32Array(n);
  for (let c = 0; c < n; c++) bits[c] = miniFloatBits(c, expBits, manBits, bias, specials);
  return new Float32Array(bits.buffer);
}

function buildE8M0(): Float32Array {
  const bits = new Uint32Array(256);
  // 2^(e-127): the f32 with biased exponent e; e = 0 is 2^-127, an f32 subnormal.
  for (let e = 1; e < 255; e++) bits[e] = e << 23;
  bits[0] = 1 << 22;
  bits[255] = 0x7fc00000;
  return new Float32Array(bits.buffer);
}

const TABLES: Partial<Record<DType, Float32Array>> = {
  F8_E4M3: buildTable(4, 3, 7, 'fn'),
  F8_E5M2: buildTable(5, 2, 15, 'ieee'),
  F8_E4M3FNUZ: buildTable(4, 3, 8, 'fnuz'),
  F8_E5M2FNUZ: buildTable(5, 2, 16, 'fnuz'),
  F8_E8M0: buildE8M0(),
  F6_E2M3: buildTable(2, 3, 1, 'none'),
  F6_E3M2: buildTable(3, 2, 3, 'none'),
  F4: buildTable(2, 1, 1, 'none'),
};

let f16Table: Float32Array | undefined;

/** All 65,536 F16 values (256 KiB), built on first use. */
function f16Lut(): Float32Array {
  f16Table ??= buildTable(5, 10, 15, 'ieee');
  return f16Table;
}

/**
 * The value table of a small float dtype (F4, F6_*, F8_*: 16, 64 or 256 entries) or of
 * F16 (65,536 entries), indexed by the raw code. Kernels may upload it as is.
 */
export function lutOf(dtype: DType): Float32Array | undefined {
  if (dtype === 'F16') return f16Lut();
  return TABLES[dtype];
}

export function f16ToF32(bits: number): number {
  return f16Lut()[bits & 0xffff];
}

export function bf16ToF32(bits: number): number {
  u32Scratch[0] = (bits & 0xffff) << 16;
  return f32Scratch[0];
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Bytes needed for `count` elements (sub-byte dtypes round up to whole bytes). */
export function bytesForCount(dtype: DType, count: number): number {
  return Math.ceil((count * DTYPE_INFO[dtype].bits) / 8);
}

/** Writable numeric array: both decoders share their loops between f32 and f64 output. */
type NumArray = Float32Array | Float64Array;

function checkArgs(dtype: DType, bytes: Uint8Array, out: NumArray, count: number, outOffset: number, perElement: number): void {
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`count ${count} is not a non-negative integer`);
  const need = bytesForCount(dtype, count);
  if (bytes.length < need) throw new RangeError(`${count} × ${dtype} needs ${need} bytes, got ${bytes.length}`);
  if (outOffset < 0 || outOffset + count * perElement > out.length) {
    throw new RangeError(`output holds ${out.length} values; ${count * perElement} from ${outOffset} do not fit`);
  }
}

function lutLoop(lut: Float32Array, bytes: Uint8Array, out: Float32Array, count: number, o: number): void {
  for (let i = 0; i < count; i++) out[o + i] = lut[bytes[i]];
}

function f4Loop(lut: Float32Array, bytes: Uint8Array, out: Float32Array, count: number, o: number): void {
  const pairs = count >>> 1;
  for (let i = 0; i < pairs; i++) {
    const b = bytes[i];
    out[o + 2 * i] = lut[b & 15];
    out[o + 2 * i + 1] = lut[b >>> 4];
  }
  if (count & 1) out[o + count - 1] = lut[bytes[pairs] & 15];
}

function f6Loop(lut: Float32Array, bytes: Uint8Array, out: Float32Array, count: number, o: number): void {
  const groups = count >>> 2;
  let j = 0;
  for (let g = 0; g < groups; g++, j += 3) {
    const w = bytes[j] | (bytes[j + 1] << 8) | (bytes[j + 2] << 16);
    const k = o + 4 * g;
    out[k] = lut[w & 63];
    out[k + 1] = lut[(w >>> 6) & 63];
    out[k + 2] = lut[(w >>> 12) & 63];
    out[k + 3] = lut[(w >>> 18) & 63];
  }
  const rest = count & 3;
  if (rest) {
    // The last group is partial: only the bytes that hold its elements exist.
    const w = bytes[j] | ((bytes[j + 1] ?? 0) << 8) | ((bytes[j + 2] ?? 0) << 16);
    for (let k = 0; k < rest; k++) out[o + 4 * groups + k] = lut[(w >>> (6 * k)) & 63];
  }
}

/** A typed view when the platform is little-endian and `bytes` is aligned for it. */
function view<T>(ctor: { new (b: ArrayBufferLike, off: number, len: number): T; BYTES_PER_ELEMENT: number }, bytes: Uint8Array, len: number): T | undefined {
  if (!LITTLE_ENDIAN || bytes.byteOffset % ctor.BYTES_PER_ELEMENT !== 0) return undefined;
  return new ctor(bytes.buffer, bytes.byteOffset, len);
}

function dv(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function f16Loop(bytes: Uint8Array, out: Float32Array, count: number, o: number): void {
  const lut = f16Lut();
  const u16 = view(Uint16Array, bytes, count);
  if (u16) for (let i = 0; i < count; i++) out[o + i] = lut[u16[i]];
  else for (let i = 0; i < count; i++) out[o + i] = lut[bytes[2 * i] | (bytes[2 * i + 1] << 8)];
}

function bf16ToF32Loop(bytes: Uint8Array, out: Float32Array, count: number, o: number): void {
  // Writing bit patterns through a u32 view of the output: BF16 is the top half of an f32.
  const dst = new Uint32Array(out.buffer, out.byteOffset + 4 * o, count);
  const u16 = view(Uint16Array, bytes, count);
  if (u16 && LITTLE_ENDIAN) for (let i = 0; i < count; i++) dst[i] = u16[i] << 16;
  else for (let i = 0; i < count; i++) dst[i] = ((bytes[2 * i] | (bytes[2 * i + 1] << 8)) << 16) >>> 0;
}

function intLoop(dtype: DType, bytes: Uint8Array, out: Float64Array, count: number, o: number): void {
  switch (dtype) {
    case 'BOOL':
      for (let i = 0; i < count; i++) out[o + i] = bytes[i] !== 0 ? 1 : 0;
      return;
    case 'U8':
      for (let i = 0; i < count; i++) out[o + i] = bytes[i];
      return;
    case 'I8':
      for (let i = 0; i < count; i++) out[o + i] = (bytes[i] << 24) >> 24;
      return;
  }
  const v = dv(bytes);
  switch (dtype) {
    case 'I16': {
      const a = view(Int16Array, bytes, count);
      if (a) for (let i = 0; i < count; i++) out[o + i] = a[i];
      else for (let i = 0; i < count; i++) out[o + i] = v.getInt16(2 * i, true);
      return;
    }
    case 'U16': {
      const a = view(Uint16Array, bytes, count);
      if (a) for (let i = 0; i < count; i++) out[o + i] = a[i];
      else for (let i = 0; i < count; i++) out[o + i] = v.getUint16(2 * i, true);
      return;
    }
    case 'I32': {
      const a = view(Int32Array, bytes, count);
      if (a) for (let i = 0; i < count; i++) out[o + i] = a[i];
      else for (let i = 0; i < count; i++) out[o + i] = v.getInt32(4 * i, true);
      return;
    }
    case 'U32': {
      const a = view(Uint32Array, bytes, count);
      if (a) for (let i = 0; i < count; i++) out[o + i] = a[i];
      else for (let i = 0; i < count; i++) out[o + i] = v.getUint32(4 * i, true);
      return;
    }
    case 'I64':
      // hi·2^32 is exact in a double, so the sum rounds once, to nearest.
      for (let i = 0; i < count; i++) out[o + i] = v.getInt32(8 * i + 4, true) * 4294967296 + v.getUint32(8 * i, true);
      return;
    case 'U64':
      for (let i = 0; i < count; i++) out[o + i] = v.getUint32(8 * i + 4, true) * 4294967296 + v.getUint32(8 * i, true);
      return;
  }
  throw new RangeError(`${dtype} is not an integer dtype`);
}

/**
 * Elements per block when one output type goes through the other. 16,384 f64 values are
 * 128 KiB: large enough to amortise the extra pass, small enough to stay in cache.
 */
const BLOCK = 16384;
let scratch32: Float32Array | undefined;
let scratch64: Float64Array | undefined;

/*
 * Each loop above sees one output type only (V8 compiles a loop fastest when its array
 * accesses are monomorphic): small floats write f32, integers write f64, and each public
 * function passes through a scratch block for the kinds the other one owns.
 */
function decodeInto32(dtype: DType, bytes: Uint8Array, out: Float32Array, count: number, o: number): void {
  switch (dtype) {
    case 'F16':
      return f16Loop(bytes, out, count, o);
    case 'BF16':
      return bf16ToF32Loop(bytes, out, count, o);
    case 'F4':
      return f4Loop(TABLES.F4!, bytes, out, count, o);
    case 'F6_E2M3':
    case 'F6_E3M2':
      return f6Loop(TABLES[dtype]!, bytes, out, count, o);
    case 'F8_E4M3':
    case 'F8_E5M2':
    case 'F8_E4M3FNUZ':
    case 'F8_E5M2FNUZ':
    case 'F8_E8M0':
      return lutLoop(TABLES[dtype]!, bytes, out, count, o);
    case 'F32':
    case 'C64': {
      const n = dtype === 'C64' ? 2 * count : count;
      if (LITTLE_ENDIAN) {
        // Same representation: a byte copy, whatever the alignment of `bytes`.
        new Uint8Array(out.buffer, out.byteOffset + 4 * o, 4 * n).set(bytes.subarray(0, 4 * n));
      } else {
        const v = dv(bytes);
        for (let i = 0; i < n; i++) out[o + i] = v.getFloat32(4 * i, true);
      }
      return;
    }
    case 'F64': {
      const a = view(Float64Array, bytes, count);
      if (a) for (let i = 0; i < count; i++) out[o + i] = a[i];
      else {
        const v = dv(bytes);
        for (let i = 0; i < count; i++) out[o + i] = v.getFloat64(8 * i, true);
      }
      return;
    }
  }
  // Integers: through f64 (exact), then one rounding to f32, as a direct store would round.
  const w = DTYPE_INFO[dtype].bits / 8;
  scratch64 ??= new Float64Array(BLOCK);
  for (let start = 0; start < count; start += BLOCK) {
    const k = Math.min(BLOCK, count - start);
    intLoop(dtype, bytes.subarray(start * w), scratch64, k, 0);
    out.set(scratch64.subarray(0, k), o + start);
  }
}

function decodeInto64(dtype: DType, bytes: Uint8Array, out: Float64Array, count: number, o: number): void {
  switch (dtype) {
    case 'F64': {
      const a = view(Float64Array, bytes, count);
      if (a) out.set(a, o);
      else {
        const v = dv(bytes);
        for (let i = 0; i < count; i++) out[o + i] = v.getFloat64(8 * i, true);
      }
      return;
    }
    case 'F32':
    case 'C64': {
      const n = dtype === 'C64' ? 2 * count : count;
      const a = view(Float32Array, bytes, n);
      if (a) out.set(a, o);
      else {
        const v = dv(bytes);
        for (let i = 0; i < n; i++) out[o + i] = v.getFloat32(4 * i, true);
      }
      return;
    }
  }
  if (DTYPE_INFO[dtype].kind !== 'float') return intLoop(dtype, bytes, out, count, o);
  // Small floats are exact in f32: decode blocks there, then widen. BLOCK is a multiple of
  // 4, so every block starts on a byte (F4) or 3-byte (F6) group.
  const bits = DTYPE_INFO[dtype].bits;
  scratch32 ??= new Float32Array(BLOCK);
  for (let start = 0; start < count; start += BLOCK) {
    const k = Math.min(BLOCK, count - start);
    decodeInto32(dtype, bytes.subarray((start * bits) / 8), scratch32, k, 0);
    out.set(scratch32.subarray(0, k), o + start);
  }
}

/** Values per element in the decoded output: 2 for C64 (real, imaginary), else 1. */
export function valuesPerElement(dtype: DType): number {
  return dtype === 'C64' ? 2 : 1;
}

/**
 * Decodes `count` elements from the start of `bytes` into `out` from `outOffset`, as f32.
 * Works for every dtype: floats exactly (F64 rounds to f32), integers as their nearest f32,
 * BOOL as 0/1, C64 as interleaved (real, imaginary) pairs. `bytes` must start on an element
 * boundary; sub-byte dtypes start on a byte (F4) or 3-byte (F6) group. Allocates nothing
 * per element, so CPU kernels can call it chunk by chunk.
 */
export function decodeToF32(dtype: DType, bytes: Uint8Array, out: Float32Array, count: number, outOffset = 0): void {
  checkArgs(dtype, bytes, out, count, outOffset, valuesPerElement(dtype));
  if (count > 0) decodeInto32(dtype, bytes, out, count, outOffset);
}

/** As decodeToF32, into f64: exact for F64, I32/U32 and 64-bit integers up to 2^53. */
export function decodeToF64(dtype: DType, bytes: Uint8Array, out: Float64Array, count: number, outOffset = 0): void {
  checkArgs(dtype, bytes, out, count, outOffset, valuesPerElement(dtype));
  if (count > 0) decodeInto64(dtype, bytes, out, count, outOffset);
}

/** One element's value (the real part for C64), for small reads such as a viewer's cell. */
export function decodeValue(dtype: DType, bytes: Uint8Array, index: number): number {
  const bits = DTYPE_INFO[dtype].bits;
  const out = new Float64Array(2);
  if (bits >= 8) {
    const w = bits / 8;
    decodeToF64(dtype, bytes.subarray(index * w, (index + 1) * w), out, 1);
    return out[0];
  }
  const per = bits === 4 ? 2 : 4;
  const group = Math.floor(index / per);
  const gBytes = (bits * per) / 8;
  const sub = bytes.subarray(group * gBytes, (group + 1) * gBytes);
  const tmp = new Float64Array(per);
  decodeToF64(dtype, sub, tmp, Math.min(per, Math.floor((sub.length * 8) / bits)));
  return tmp[index % per];
}
