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

// Per-element scratch (sums, each model's weighted Δ), kept between calls: a chunk is a million values.
const scratchPool: Float64Array[] = [];
function scratch(k: number, count: number): Float64Array {
  if (!scratchPool[k] || scratchPool[k].length < count) scratchPool[k] = new Float64Array(count);
  return scratchPool[k];
}

/**
 * Writes `count` merged values: Δⱼ = modelⱼ − base, sparsified (`keep[j]` flags from the rank
 * windows, or DARE's draws from `draws[j]` at `offset + i`), weighted, optionally sign-elected,
 * summed onto the base. Loops run model by model over the chunk (each a tight loop over
 * typed arrays); every element still sees the same float64 operations in the same order
 * (sums from +0, models in config order), so the values are those of an element-wise loop.
 */
export function gtaCombine(p: GtaParams, base: Vec, models: readonly Vec[], count: number, keep: readonly (Uint8Array | undefined)[], draws: readonly number[], offset: number, out: Float64Array): void {
  const n = models.length;
  const { weights: w, dens, sparsify, consensus, normalize, lambda: lam, rescale } = p;
  const sum = scratch(0, count);
  sum.fill(0, 0, count);
  for (let j = 0; j < n; j++) {
    const m = models[j];
    const wj = w[j];
    const wd = consensus ? scratch(1 + j, count) : undefined;
    const k = dens[j] < 1 && sparsify !== 'random' ? keep[j] : undefined;
    if (dens[j] < 1 && sparsify === 'random') {
      const dj = dens[j];
      for (let i = 0; i < count; i++) {
        const d = m[i] - base[i];
        const x = wj * (uniform(draws[j], offset + i) < dj ? (rescale ? d / dj : d) : 0);
        sum[i] += x;
        if (wd) wd[i] = x;
      }
    } else if (k) {
      for (let i = 0; i < count; i++) {
        const x = wj * (k[i] === 0 ? 0 : m[i] - base[i]);
        sum[i] += x;
        if (wd) wd[i] = x;
      }
    } else if (wd) {
      for (let i = 0; i < count; i++) {
        const x = wj * (m[i] - base[i]);
        sum[i] += x;
        wd[i] = x;
      }
    } else {
      for (let i = 0; i < count; i++) sum[i] += wj * (m[i] - base[i]);
    }
  }
  if (!consensus) {
    let divisor = 0;
    for (let j = 0; j < n; j++) divisor += w[j];
    if (Math.abs(divisor) < 1e-8) divisor = 1;
    for (let i = 0; i < count; i++) {
      let mixed = sum[i];
      if (normalize) mixed /= divisor;
      if (lam !== 1) mixed *= lam;
      out[i] = base[i] + mixed;
    }
    return;
  }
  // Sign election: the weighted Δs whose sign is the sum's (+ for a sum of 0), and their weights.
  const mixed = scratch(1 + n, count);
  const div = scratch(2 + n, count);
  mixed.fill(0, 0, count);
  div.fill(0, 0, count);
  for (let j = 0; j < n; j++) {
    const wd = scratch(1 + j, count);
    const wj = w[j];
    for (let i = 0; i < count; i++) {
      const x = wd[i];
      if (sum[i] >= 0 ? x > 0 : x < 0) {
        mixed[i] += x;
        div[i] += wj;
      }
    }
  }
  for (let i = 0; i < count; i++) {
    let v = mixed[i];
    if (normalize) v /= div[i] === 0 ? 1 : div[i];
    if (lam !== 1) v *= lam;
    out[i] = base[i] + v;
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
  // A signed view: loads stay small integers (an unsigned load above 2^31 becomes a double).
  const bits = new Int32Array(f32.buffer);
  const out = new Uint16Array(count);
  if (dtype === 'BF16') {
    for (let i = 0; i < count; i++) {
      const b = bits[i];
      if ((b & 0xffff) === 0x8000 && f32[i] !== values[i]) out[i] = bf16FromF64(values[i]);
      else if ((b & 0x7fffffff) > 0x7f800000) out[i] = bf16FromF32Bits(b >>> 0);
      // Round to nearest even on the dropped 16 bits (bf16FromF32Bits without its NaN case).
      else out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
    }
  } else {
    for (let i = 0; i < count; i++) {
      const b = bits[i] >>> 0;
      const exact = f32[i] === values[i];
      // Below 2^-14 (f32 exponent 113) F16 is subnormal; its halfway points sit at other bits.
      out[i] = exact || ((b & 0x1fff) !== 0x1000 && ((b >>> 23) & 0xff) >= 113) ? f16FromF32Bits(b) : f16FromF64(values[i]);
    }
  }
  return new Uint8Array(out.buffer);
}
