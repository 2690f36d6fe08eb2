// Independent float64 oracles for the compute tests: written from the formats'
// definitions, without the library's tables or kernels.
import { writeFileSync } from 'node:fs';
import type { DType } from '../../src/format/dtypes';

const MINIFLOATS: Record<string, [number, number, number]> = {
  F16: [5, 10, 15], F8_E5M2: [5, 2, 15], F8_E4M3: [4, 3, 7], F8_E4M3FNUZ: [4, 3, 8], F8_E5M2FNUZ: [5, 2, 16],
  F6_E2M3: [2, 3, 1], F6_E3M2: [3, 2, 3], F4: [2, 1, 1],
};

/** Element widths in bits, from the safetensors dtype list. */
export const WIDTH: Record<DType, number> = {
  BOOL: 8, F4: 4, F6_E2M3: 6, F6_E3M2: 6, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8, F8_E4M3FNUZ: 8, F8_E5M2FNUZ: 8,
  I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32, F32: 32, C64: 64, F64: 64, I64: 64, U64: 64,
};

/** The value of bit pattern `p` (as an unsigned integer) of a dtype of 16 bits or fewer. */
export function refDecode(dtype: DType, p: number): number {
  if (dtype === 'BF16') {
    const dv = new DataView(new ArrayBuffer(4));
    dv.setUint32(0, p * 65536);
    return dv.getFloat32(0);
  }
  if (dtype === 'F8_E8M0') return p === 255 ? NaN : Math.pow(2, p - 127);
  if (dtype === 'U8' || dtype === 'U16' || dtype === 'BOOL') return p;
  if (dtype === 'I8') return p >= 128 ? p - 256 : p;
  if (dtype === 'I16') return p >= 32768 ? p - 65536 : p;
  const [eb, mb, bias] = MINIFLOATS[dtype];
  const s = Math.floor(p / 2 ** (eb + mb)) % 2 === 1 ? -1 : 1;
  const e = Math.floor(p / 2 ** mb) % 2 ** eb;
  const m = p % 2 ** mb;
  if (dtype.endsWith('FNUZ')) {
    if (p === 2 ** (eb + mb)) return NaN;
  } else if (dtype === 'F16' || dtype === 'F8_E5M2') {
    if (e === 2 ** eb - 1) return m === 0 ? s * Infinity : NaN;
  } else if (dtype === 'F8_E4M3') {
    if (e === 15 && m === 7) return NaN;
  }
  return e === 0 ? s * m * Math.pow(2, 1 - bias - mb) : s * (1 + m / 2 ** mb) * Math.pow(2, e - bias);
}

/** Packs patterns LSB-first into bytes, as safetensors stores sub-byte dtypes. */
export function pack(bits: number, pats: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(Math.ceil((pats.length * bits) / 8));
  for (let i = 0; i < pats.length; i++) {
    const p = pats[i];
    for (let b = 0; b < bits; b++) if (Math.floor(p / 2 ** b) % 2 === 1) out[(i * bits + b) >> 3] |= 1 << ((i * bits + b) & 7);
  }
  return out;
}

/** A deterministic pseudo-random stream (xorshift32). */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/** Writes a safetensors file by hand from the spec: u64 header length, JSON header, data. */
export function writeSafetensorsFile(path: string, tensors: { name: string; dtype: DType; shape: number[]; bytes: Uint8Array }[]): void {
  const header: Record<string, unknown> = {};
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes.length] };
    off += t.bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const out = new Uint8Array(8 + json.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(new TextEncoder().encode(json), 8);
  let p = 8 + json.length;
  for (const t of tensors) {
    out.set(t.bytes, p);
    p += t.bytes.length;
  }
  writeFileSync(path, out);
}
