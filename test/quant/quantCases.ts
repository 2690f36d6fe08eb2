/**
 * The shared case table for the quantizer tests: random and adversarial inputs,
 * each a list of float64 values (a whole number of 32-value blocks) or BF16 codes.
 * The CPU test and the backend twin test both run it.
 */
import { bf16Codes, encode, gaussian, rng } from './quantRef';

export type InDType = 'BF16' | 'F16' | 'F32';

export interface QuantCase {
  readonly name: string;
  readonly dtype: InDType;
  readonly bytes: Uint8Array;
  /** The values as the input dtype holds them. */
  readonly held: number[];
  /** Row length: a multiple of 32 (one row of blocks by default). */
  readonly cols: number;
}

function mk(name: string, dtype: InDType, values: number[], cols = 32): QuantCase {
  const { bytes, held } = encode(values, dtype);
  return { name: `${name} (${dtype})`, dtype, bytes, held, cols };
}

const nbox = new Float32Array(1);
const nbits = new Int32Array(nbox.buffer);
function f32n(v: number): number {
  nbox[0] = v;
  return nbox[0];
}
/** `v` moved by `ulps` f32 steps (same sign, nonzero v). */
function nudge(v: number, ulps: number): number {
  nbox[0] = v;
  nbits[0] += v < 0 ? -ulps : ulps;
  return nbox[0];
}

function block(fill: (j: number) => number): number[] {
  return Array.from({ length: 32 }, (_, j) => fill(j));
}

/** f16 midpoints: (1 + (2m+1)/2048)·2^e lie exactly between two f16 values. */
function f16Midpoints(r: () => number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => {
    const m = Math.floor(r() * 1024);
    const e = -20 + Math.floor(r() * 34) - (i % 3 === 0 ? 8 : 0); // spans f16 subnormals to 2^14
    return (1 + (2 * m + 1) / 2048) * Math.pow(2, e);
  });
}

export function quantCases(): QuantCase[] {
  const cases: QuantCase[] = [];
  const r = rng(1234);
  const dtypes: InDType[] = ['BF16', 'F16', 'F32'];
  for (const dt of dtypes) {
    // Random weights: gaussian, each block at its own scale.
    const vals: number[] = [];
    for (let b = 0; b < 96; b++) {
      const sc = Math.pow(10, -4 + r() * 5);
      vals.push(...block(() => gaussian(r) * sc));
    }
    cases.push(mk('gaussian', dt, vals, 256));

    // Ties for roundf: amax 127 makes d = 1, so x·id = x lands on .5 exactly.
    cases.push(mk('q8 ties', dt, [...block((j) => (j === 0 ? 127 : j === 1 ? -127 : (j % 2 ? -1 : 1) * (Math.floor(j / 2) + 0.5))),
      ...block((j) => (j === 31 ? -127 : (j - 15.5)))]));
    // Q4 boundaries: max = −8 gives d = 1, id = 1, so x + 8.5 hits integers and 16.5.
    cases.push(mk('q4 boundaries', dt, [...block((j) => (j === 0 ? -8 : j === 1 ? 8 : -8.5 + j / 2)),
      ...block((j) => (j === 5 ? 8 : j === 9 ? -8 : (j % 8) - 4 + 0.5))]));
    // The largest |x| twice with opposite signs: the first one sets the sign of d.
    cases.push(mk('amax both signs', dt, [...block((j) => (j === 3 ? 3 : j === 20 ? -3 : (j % 5) * 0.25)),
      ...block((j) => (j === 3 ? -3 : j === 20 ? 3 : -(j % 5) * 0.25)),
      ...block((j) => (j % 2 ? 2 : -2))]));
    // Zeros of both signs, and constant blocks.
    cases.push(mk('zeros', dt, [...block(() => 0), ...block(() => -0), ...block((j) => (j % 3 ? 0 : -0)), ...block((j) => (j % 2 ? -0 : 0)),
      ...block((j) => (j % 2 ? -0 : j === 6 ? 2 : 0)),
      ...block(() => 1.5), ...block(() => -0.25), ...block((j) => (j === 31 ? 1 : 0))]));
  }
  // Near ties: values a few f32 ulps around the points where x·id (+ 8.5 or + 0.5) rounds
  // across .5 or an integer, so that rounding each step to f32 decides the output.
  const near: number[] = [];
  for (let b = 0; b < 48; b++) {
    const d0 = f32n((1 + r()) * Math.pow(2, -8 + Math.floor(r() * 12)));
    const kind = b % 3;
    const x0 = kind === 0 ? 127 * d0 : kind === 1 ? -8 * d0 : -3 * d0;
    near.push(...block((j) => {
      if (j === 0) return x0;
      if (kind === 2 && j === 1) return x0 + 15 * d0;
      const k = kind === 0 ? Math.floor(r() * 253) - 126 + 0.5 : kind === 1 ? Math.floor(r() * 16) + 0.5 - 8 : Math.floor(r() * 15) + 0.5;
      const centre = kind === 2 ? f32n(x0 + k * d0) : f32n(k * d0);
      return nudge(centre, Math.floor(r() * 7) - 3);
    }));
  }
  cases.push(mk('near ties', 'F32', near));
  // f16 ties of d (exact only with F32 input): amax = 127·t, −8·t, 15·t.
  const mids = f16Midpoints(r, 24);
  const tieVals: number[] = [];
  for (const t of mids) {
    tieVals.push(...block((j) => (j === 7 ? 127 * t : ((j % 9) - 4) * t * 10)));
    tieVals.push(...block((j) => (j === 2 ? -8 * t : ((j % 7) - 3) * t)));
    tieVals.push(...block((j) => (j === 0 ? -7 * t : j === 1 ? 8 * t : ((j % 5) - 2) * t)));
  }
  cases.push(mk('f16 ties of d', 'F32', tieVals));
  // Values all over the f32 exponent range, one magnitude per block and mixed.
  const wide: number[] = [];
  for (let b = 0; b < 64; b++) {
    const e = -140 + Math.floor(r() * 266);
    wide.push(...block(() => (r() - 0.5) * Math.pow(2, b % 4 === 0 ? -140 + Math.floor(r() * 266) : e)));
  }
  cases.push(mk('wide exponents', 'F32', wide, 64));
  // BF16 bit patterns: subnormals, smallest normals, the largest finite values, random codes.
  const sub = bf16Codes([
    ...block((j) => j * 4 + 1), // subnormals
    ...block((j) => (j % 2 ? 0x8000 : 0) | (j + 1)),
    ...block((j) => (j === 0 ? 0x0080 : j + 1)), // smallest normal with subnormals
    ...block((j) => (j % 4 === 0 ? 0x0180 + j : j)), // 2^-124-ish with subnormals
    ...block((j) => (j === 5 ? 0x0b00 : j * 3)), // a tiny normal that makes 1/d finite
    ...block((j) => 0x7f7f - j), // the largest finite BF16 values
    ...block((j) => (j % 2 ? 0xff7f : 0x7f7f)),
    ...block((j) => (j === 0 ? 0x7f7f : j === 1 ? 0xff7f : 0x3f80 + j)), // huge next to ordinary
    ...block((j) => (j === 9 ? 0xff7f : 0x0001 + j)), // huge next to subnormal
  ]);
  cases.push({ name: 'bf16 extremes (BF16)', dtype: 'BF16', ...sub, cols: 32 });
  const codes: number[] = [];
  for (let i = 0; i < 32 * 64; i++) {
    let c = Math.floor(r() * 65536);
    if ((c & 0x7f80) === 0x7f80) c &= 0xff7f; // no inf/NaN
    codes.push(c);
  }
  cases.push({ name: 'random bf16 codes (BF16)', dtype: 'BF16', ...bf16Codes(codes), cols: 128 });
  // Random codes with exponents inside [2^-96, 2^126): every block stays on the GPU's exact path.
  const inRange = codes.map((c) => (c & 0x807f) | ((31 + (((c >> 7) & 0xff) % 222)) << 7));
  cases.push({ name: 'bf16 codes in range (BF16)', dtype: 'BF16', ...bf16Codes(inRange), cols: 128 });
  const f16codes: number[] = [];
  for (let i = 0; i < 32 * 32; i++) {
    let c = Math.floor(r() * 65536);
    if ((c & 0x7c00) === 0x7c00) c &= 0xfbff;
    f16codes.push(c);
  }
  const f16bytes = new Uint8Array(Uint16Array.from(f16codes).buffer);
  const f16held = f16codes.map((c) => {
    const e = (c >> 10) & 31;
    const m = c & 1023;
    const mag = e === 0 ? m / 16777216 : (1 + m / 1024) * Math.pow(2, e - 15);
    return c & 0x8000 ? -mag : mag;
  });
  cases.push({ name: 'random f16 codes (F16)', dtype: 'F16', bytes: f16bytes, held: f16held, cols: 64 });
  return cases;
}
