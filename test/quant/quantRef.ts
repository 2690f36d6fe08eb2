/**
 * An independent reference for the quantizer tests: the rules of ggml's reference
 * quantizers, the int8 and E4M3 schemes, written with different means than the
 * kernels (rounding through a Float32Array store, f16 and E4M3 by nearest search
 * over every code, integer conversion spelled out), so that a shared mistake is unlikely.
 */

const box = new Float32Array(1);
/** Rounds a float64 to the nearest f32 by storing it. */
export function f32(v: number): number {
  box[0] = v;
  return box[0];
}

function f16Value(code: number): number {
  const e = (code >> 10) & 31;
  const m = code & 1023;
  const mag = e === 0 ? m / 16777216 : (1 + m / 1024) * Math.pow(2, e - 15);
  return code & 0x8000 ? -mag : mag;
}

// Non-negative finite f16 codes 0..0x7bff are increasing in value.
const F16_POS: number[] = Array.from({ length: 0x7c00 }, (_, c) => f16Value(c));

/** Nearest code in an increasing table, ties to the even code. */
function nearest(table: readonly number[], a: number): number {
  let lo = 0;
  let hi = table.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (table[mid] <= a) lo = mid;
    else hi = mid;
  }
  const dl = a - table[lo];
  const dh = table[hi] - a;
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return lo % 2 === 0 ? lo : hi;
}

export function refF16(v: number): number {
  const neg = v < 0 || Object.is(v, -0);
  const a = Math.abs(v);
  let code: number;
  if (a === Infinity) code = 0x7c00;
  else {
    // 65520 is the midpoint between 65504 and 2^16; ties go to the even (inf) side.
    if (a >= 65520) code = 0x7c00;
    else if (a >= 65504) code = 0x7bff;
    else code = nearest(F16_POS, a);
  }
  return (neg ? 0x8000 : 0) | code;
}

export function refF16Value(code: number): number {
  return f16Value(code);
}

/** C's float → int8_t conversion as x86 performs it: truncation, non-finite → 0. */
function toInt(v: number): number {
  if (!Number.isFinite(v)) return 0;
  return v < 0 ? Math.ceil(v) : Math.floor(v);
}

/** C's roundf: halves away from zero. */
function roundf(v: number): number {
  if (!Number.isFinite(v)) return v;
  const a = Math.abs(v);
  const fl = Math.floor(a);
  const r = a - fl >= 0.5 ? fl + 1 : fl;
  return v < 0 ? -r : r;
}

function putF16(out: number[], code: number): void {
  out.push(code & 255, code >> 8);
}

export function refQ8_0(x: ArrayLike<number>): Uint8Array {
  const out: number[] = [];
  for (let b = 0; b < x.length; b += 32) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b + j]));
    const d = f32(amax / 127);
    const id = d === 0 ? 0 : f32(1 / d);
    putF16(out, refF16(d));
    for (let j = 0; j < 32; j++) out.push(toInt(roundf(f32(x[b + j] * id))) & 255);
  }
  return Uint8Array.from(out);
}

export function refQ4_0(x: ArrayLike<number>): Uint8Array {
  const out: number[] = [];
  for (let b = 0; b < x.length; b += 32) {
    let best = -1;
    for (let j = 0; j < 32; j++) {
      if (best < 0 ? Math.abs(x[b + j]) > 0 : Math.abs(x[b + j]) > Math.abs(x[b + best])) best = j;
    }
    const max = best < 0 ? 0 : x[b + best];
    const d = f32(max / -8);
    const id = d === 0 ? 0 : f32(1 / d);
    putF16(out, refF16(d));
    const q = (v: number) => Math.min(15, toInt(f32(f32(v * id) + 8.5)));
    for (let j = 0; j < 16; j++) out.push(q(x[b + j]) | (q(x[b + j + 16]) << 4));
  }
  return Uint8Array.from(out);
}

export function refQ4_1(x: ArrayLike<number>): Uint8Array {
  const out: number[] = [];
  for (let b = 0; b < x.length; b += 32) {
    // The first occurrence of the extreme value wins (it matters only for the sign of a zero).
    let iMin = 0;
    let iMax = 0;
    for (let j = 1; j < 32; j++) {
      if (x[b + j] < x[b + iMin]) iMin = j;
      if (x[b + j] > x[b + iMax]) iMax = j;
    }
    const min = x[b + iMin];
    const max = x[b + iMax];
    const d = f32(f32(max - min) / 15);
    const id = d === 0 ? 0 : f32(1 / d);
    putF16(out, refF16(d));
    putF16(out, refF16(min));
    const q = (v: number) => Math.min(15, toInt(f32(f32(f32(v - min) * id) + 0.5)));
    for (let j = 0; j < 16; j++) out.push(q(x[b + j]) | (q(x[b + j + 16]) << 4));
  }
  return Uint8Array.from(out);
}

/** Round half to even on a float64. */
function roundEven(v: number): number {
  const lo = Math.floor(v);
  const diff = v - lo;
  if (diff < 0.5) return lo;
  if (diff > 0.5) return lo + 1;
  return lo % 2 === 0 ? lo : lo + 1;
}

export function refInt8Channel(x: ArrayLike<number>, rows: number, cols: number): { q: Int8Array; scales: Float32Array } {
  const q = new Int8Array(rows * cols);
  const scales = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let amax = 0;
    for (let j = 0; j < cols; j++) amax = Math.max(amax, Math.abs(x[r * cols + j]));
    const s = f32(amax / 127);
    scales[r] = s;
    for (let j = 0; j < cols; j++) {
      q[r * cols + j] = s === 0 ? 0 : Math.max(-127, Math.min(127, roundEven(f32(x[r * cols + j] / s))));
    }
  }
  return { q, scales };
}

function e4m3Value(c: number): number {
  const e = (c >> 3) & 15;
  const m = c & 7;
  const mag = e === 0 ? (m / 8) * Math.pow(2, -6) : (1 + m / 8) * Math.pow(2, e - 7);
  return c & 0x80 ? -mag : mag;
}

// Codes 0..0x7e are the non-negative finite E4M3 values, increasing.
const E4M3_POS: number[] = Array.from({ length: 0x7f }, (_, c) => e4m3Value(c));

export function refE4M3(v: number): number {
  const neg = v < 0 || Object.is(v, -0);
  const a = Math.min(Math.abs(v), 448);
  return (neg ? 0x80 : 0) | nearest(E4M3_POS, Number.isNaN(a) ? 448 : a);
}

export function refE4M3Value(c: number): number {
  return e4m3Value(c);
}

export function refFp8(x: ArrayLike<number>, rows: number, cols: number): { q: Uint8Array; scales: Float32Array } {
  const q = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let amax = 0;
    for (let j = 0; j < cols; j++) amax = Math.max(amax, Math.abs(x[r * cols + j]));
    const s = f32(amax / 448);
    scales[r] = s;
    for (let j = 0; j < cols; j++) {
      const v = x[r * cols + j];
      q[r * cols + j] = s === 0 ? (v < 0 || Object.is(v, -0) ? 0x80 : 0) : refE4M3(f32(v / s));
    }
  }
  return { q, scales };
}

/** Deterministic PRNG (mulberry32) so failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function gaussian(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

/** Float64 values → the bytes of `dtype`, plus the values as that dtype actually holds them. */
export function encode(values: readonly number[], dtype: 'BF16' | 'F16' | 'F32'): { bytes: Uint8Array; held: number[] } {
  if (dtype === 'F32') {
    const a = Float32Array.from(values);
    return { bytes: new Uint8Array(a.buffer), held: Array.from(a) };
  }
  if (dtype === 'F16') {
    const codes = Uint16Array.from(values, (v) => refF16(v));
    return { bytes: new Uint8Array(codes.buffer), held: Array.from(codes, refF16Value) };
  }
  // BF16: truncate the f32 bits after rounding to nearest even at bit 16.
  const f = Float32Array.from(values);
  const u = new Uint32Array(f.buffer);
  const codes = new Uint16Array(f.length);
  for (let i = 0; i < u.length; i++) {
    const w = u[i];
    codes[i] = (w + 0x7fff + ((w >>> 16) & 1)) >>> 16;
  }
  const back = new Uint32Array(codes.length);
  for (let i = 0; i < codes.length; i++) back[i] = codes[i] * 65536;
  return { bytes: new Uint8Array(codes.buffer), held: Array.from(new Float32Array(back.buffer)) };
}

/** BF16 codes given directly (for subnormals and the largest values), with their values. */
export function bf16Codes(codes: readonly number[]): { bytes: Uint8Array; held: number[] } {
  const c = Uint16Array.from(codes);
  const back = new Uint32Array(c.length);
  for (let i = 0; i < c.length; i++) back[i] = c[i] * 65536;
  return { bytes: new Uint8Array(c.buffer), held: Array.from(new Float32Array(back.buffer)) };
}
