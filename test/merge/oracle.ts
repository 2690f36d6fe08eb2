/**
 * Independent float64 oracles for the merge tests: decoding of the three float
 * dtypes from their bit layouts, ulp sizes from the IEEE parameters, and a
 * random source. Nothing here calls the code under test.
 */

export type FloatDType = 'F32' | 'BF16' | 'F16';

const PARAMS: Record<FloatDType, { mant: number; emin: number; bytes: number }> = {
  F32: { mant: 23, emin: -126, bytes: 4 },
  BF16: { mant: 7, emin: -126, bytes: 2 },
  F16: { mant: 10, emin: -14, bytes: 2 },
};

export function bytesOf(d: FloatDType): number {
  return PARAMS[d].bytes;
}

/** The value of the bit pattern `h` of a 16-bit float with `e` exponent bits. */
function half(h: number, ebits: number, mbits: number): number {
  const bias = (1 << (ebits - 1)) - 1;
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> mbits) & ((1 << ebits) - 1);
  const m = h & ((1 << mbits) - 1);
  if (e === (1 << ebits) - 1) return m ? NaN : s * Infinity;
  if (e === 0) return s * m * 2 ** (1 - bias - mbits);
  return s * (1 + m / 2 ** mbits) * 2 ** (e - bias);
}

/** Decodes little-endian element bytes to float64 values. */
export function decode(d: FloatDType, bytes: Uint8Array): Float64Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.length / PARAMS[d].bytes;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    if (d === 'F32') out[i] = dv.getFloat32(4 * i, true);
    else if (d === 'BF16') out[i] = half(dv.getUint16(2 * i, true), 8, 7);
    else out[i] = half(dv.getUint16(2 * i, true), 5, 10);
  }
  return out;
}

/** The spacing of `d` values at |x|: 2^(max(exponent, emin) - mantissa bits). */
export function ulp(d: FloatDType, x: number): number {
  const { mant, emin } = PARAMS[d];
  const ax = Math.abs(x);
  let e = ax === 0 ? emin : Math.floor(Math.log2(ax));
  // log2 can be off by one next to powers of two.
  if (ax !== 0 && 2 ** e > ax) e--;
  if (ax !== 0 && 2 ** (e + 1) <= ax) e++;
  return 2 ** (Math.max(e, emin) - mant);
}

/** Distance of `got` from `want` in ulps of `d` at `want` (Infinity for a non-finite mismatch). */
export function ulpError(d: FloatDType, got: number, want: number): number {
  if (Number.isNaN(got) || !Number.isFinite(got) || !Number.isFinite(want)) return got === want ? 0 : Infinity;
  return Math.abs(got - want) / ulp(d, want);
}

/** Largest ulp error over all elements, with its index. */
export function maxUlpError(d: FloatDType, got: ArrayLike<number>, want: ArrayLike<number>): { max: number; at: number } {
  let max = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const e = ulpError(d, got[i], want[i]);
    if (e > max || Number.isNaN(e)) {
      max = e;
      at = i;
    }
  }
  return { max, at };
}

/** Deterministic uniform [0, 1) numbers (mulberry32). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples (Box–Muller). */
export function normal(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

/**
 * Encodes float64 values (which must be exact in `d`, e.g. produced by `quantize`)
 * as little-endian bytes of `d`.
 */
export function encodeExact(d: FloatDType, values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(values.length * PARAMS[d].bytes);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (d === 'F32') dv.setFloat32(4 * i, v, true);
    else {
      const h = d === 'BF16' ? bf16Exact(v) : f16Exact(v);
      dv.setUint16(2 * i, h, true);
    }
  }
  return out;
}

function bf16Exact(v: number): number {
  const dv = new DataView(new ArrayBuffer(4));
  dv.setFloat32(0, v);
  const u = dv.getUint32(0);
  if ((u & 0xffff) !== 0) throw new Error(`${v} is not a BF16 value`);
  return u >>> 16;
}

function f16Exact(v: number): number {
  if (v === 0) return Object.is(v, -0) ? 0x8000 : 0;
  const s = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  for (let e = 1; e < 31; e++) {
    const m = a / 2 ** (e - 15) - 1;
    if (m >= 0 && m < 1) {
      const q = m * 1024;
      if (!Number.isInteger(q)) throw new Error(`${v} is not an F16 value`);
      return s | (e << 10) | q;
    }
  }
  const q = a / 2 ** -24;
  if (!Number.isInteger(q) || q >= 1024) throw new Error(`${v} is not an F16 value`);
  return s | q;
}

/** `x` truncated to a value exactly representable in `d` (toward zero; the tests need exact inputs, not rounding). */
export function quantize(d: FloatDType, x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  const { mant, emin } = PARAMS[d];
  const ax = Math.abs(x);
  let e = Math.floor(Math.log2(ax));
  if (2 ** e > ax) e--;
  if (2 ** (e + 1) <= ax) e++;
  e = Math.max(e, emin);
  const step = 2 ** (e - mant);
  return Math.trunc(x / step) * step;
}
