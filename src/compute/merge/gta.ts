/**
 * The arithmetic of the task-vector merges (task_arithmetic, ties, DARE, breadcrumbs),
 * one chunk at a time, shared by the pipeline's in-thread kernel and the CPU worker's
 * pooled kernel so that both produce the same float64 values bit for bit.
 */
import { bf16FromF32Bits, bf16FromF64, f16FromF32Bits, f16FromF64 } from '../../format/cast';
import type { DType } from '../../format/dtypes';

export type Vec = Float32Array | Float64Array;
export type Sparsify = 'magnitude' | 'random' | 'outliers' | undefined;

/** One tensor's parameters, resolved from the config (plain data: it crosses to workers). */
export interface GtaParams {
  readonly weights: readonly number[];
  readonly dens: readonly number[];
  readonly sparsify: Sparsify;
  readonly consensus: boolean;
  readonly normalize: boolean;
  readonly lambda: number;
  readonly rescale: boolean;
}

/** murmur3's finalizer: a bijection on 32 bits that mixes every input bit into every output bit. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** FNV-1a over UTF-16 code units: a tensor name to 32 bits. */
function hashName(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * The key of DARE's draws for one tensor of one model: from the seed, the tensor's name
 * and the model's position in `models`. Each element's draw depends only on this key and
 * its index, so chunking, order and threads never change the result.
 */
export function streamKey(seed: number, tensor: string, modelIndex: number): number {
  return fmix32(fmix32(hashName(tensor) ^ fmix32(seed >>> 0)) + Math.imul(modelIndex + 1, 0x9e3779b9));
}

/** Element `i`'s draw in [0, 1), 32 bits: two rounds of the finalizer over the index and the key. */
export function uniform(key: number, i: number): number {
  const hi = Math.floor(i / 0x100000000);
  return fmix32(fmix32((i >>> 0) ^ key) ^ Math.imul(hi + 1, 0x27d4eb2f) ^ key) / 0x100000000;
}

/** |modelⱼ − base| as float32 bits (the rank keys: non-negative floats order as their bits do). */
export function absDeltaKeys(model: Vec, base: Vec, count: number, scratch: Float32Array): Uint32Array {
  for (let i = 0; i < count; i++) scratch[i] = Math.abs(model[i] - base[i]);
  return new Uint32Array(scratch.buffer, 0, count);
}

/**
 * Writes `count` merged values: Δⱼ = modelⱼ − base, sparsified (`keep[j]` flags from the rank
 * windows, or DARE's draws from `draws[j]` at `offset + i`), weighted, optionally sign-elected,
 * summed onto the base. `wd` is scratch of one slot per model.
 */
export function gtaCombine(p: GtaParams, base: Vec, models: readonly Vec[], count: number, keep: readonly (Uint8Array | undefined)[], draws: readonly number[], offset: number, out: Float64Array, wd: Float64Array): void {
  const n = models.length;
  const { weights: w, dens, sparsify, consensus, normalize, lambda: lam, rescale } = p;
  for (let i = 0; i < count; i++) {
    let sum = 0;
    const bi = base[i];
    for (let j = 0; j < n; j++) {
      let d = models[j][i] - bi;
      if (dens[j] < 1) {
        if (sparsify === 'random') d = uniform(draws[j], offset + i) < dens[j] ? (rescale ? d / dens[j] : d) : 0;
        else if (keep[j] !== undefined && keep[j]![i] === 0) d = 0;
      }
      wd[j] = w[j] * d;
      sum += wd[j];
    }
    let mixed = 0;
    let divisor = 0;
    if (consensus) {
      const major = sum >= 0 ? 1 : -1;
      for (let j = 0; j < n; j++) {
        if (Math.sign(wd[j]) === major) {
          mixed += wd[j];
          divisor += w[j];
        }
      }
      if (divisor === 0) divisor = 1;
    } else {
      mixed = sum;
      for (let j = 0; j < n; j++) divisor += w[j];
      if (Math.abs(divisor) < 1e-8) divisor = 1;
    }
    if (normalize) mixed /= divisor;
    if (lam !== 1) mixed *= lam;
    out[i] = bi + mixed;
  }
}

/**
 * Rounds merged values to the output dtype's bytes, once. The fast path rounds through
 * f32: every BF16 and normal-F16 halfway point is an f32, so f32 rounding cannot carry
 * a value across one, only onto one; values that were inexact in f32 and landed on a
 * halfway point (or in F16's subnormal range) take the exact f64 rounding instead.
 */
export function encodeMerged(values: Float64Array, count: number, dtype: DType): Uint8Array {
  const f32 = new Float32Array(count);
  f32.set(values.subarray(0, count));
  if (dtype === 'F32') return new Uint8Array(f32.buffer);
  if (dtype === 'F64') return new Uint8Array(values.slice(0, count).buffer);
  const bits = new Uint32Array(f32.buffer);
  const out = new Uint16Array(count);
  if (dtype === 'BF16') {
    for (let i = 0; i < count; i++) {
      const b = bits[i];
      out[i] = (b & 0xffff) === 0x8000 && f32[i] !== values[i] ? bf16FromF64(values[i]) : bf16FromF32Bits(b);
    }
  } else {
    for (let i = 0; i < count; i++) {
      const b = bits[i];
      const exact = f32[i] === values[i];
      // Below 2^-14 (f32 exponent 113) F16 is subnormal; its halfway points sit at other bits.
      out[i] = exact || ((b & 0x1fff) !== 0x1000 && ((b >>> 23) & 0xff) >= 113) ? f16FromF32Bits(b) : f16FromF64(values[i]);
    }
  }
  return new Uint8Array(out.buffer);
}
