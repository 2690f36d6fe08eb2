import { decodeChunkF32, diffElementBytes, Scratch } from './decodeChunk';
import { histScale, type DiffReduceArgs, type DiffReduceResult } from './diffReduce';

const scratchA = new Scratch();
const scratchB = new Scratch();

// Running totals shared by the block loop: sumA2, ⟨a,Δ⟩, sumD2, sumAbsD, maxAbs, maxIndex, nDiff.
const ACC = 7;

/**
 * The hot loop over one decoded block, kept small and monomorphic so that the JIT
 * optimises it once and keeps it (one large function mixing dtypes, the
 * histogram and the norms-only path kept falling back to slower code).
 * ‖b‖² and ⟨a,b⟩ are not summed here: ⟨a,b⟩ = ‖a‖² + ⟨a,Δ⟩ and
 * ‖b‖² = ‖a‖² + 2⟨a,Δ⟩ + ‖Δ‖² hold exactly, and in f64 neither sum cancels
 * (‖a‖² dominates, and ⟨a,Δ⟩ and ‖Δ‖² are accumulated directly).
 */
function reduceBlock(fa: Float32Array, fb: Float32Array, m: number, base: number, acc: Float64Array): void {
  // Two accumulators per sum (even and odd elements) halve the dependency chains.
  let saa0 = 0, saa1 = 0, sad0 = 0, sad1 = 0, sdd0 = 0, sdd1 = 0, sab0 = 0, sab1 = 0;
  let maxAbs = acc[4];
  let maxIndex = acc[5];
  let i = 0;
  for (; i + 1 < m; i += 2) {
    const x0 = fa[i];
    const x1 = fa[i + 1];
    const d0 = fb[i] - x0;
    const d1 = fb[i + 1] - x1;
    saa0 += x0 * x0;
    saa1 += x1 * x1;
    sad0 += x0 * d0;
    sad1 += x1 * d1;
    sdd0 += d0 * d0;
    sdd1 += d1 * d1;
    const a0 = Math.abs(d0);
    const a1 = Math.abs(d1);
    sab0 += a0;
    sab1 += a1;
    // The GPU twin compares f32 magnitudes: compare the same rounding, so ties resolve alike.
    if (a0 > maxAbs || a1 > maxAbs) {
      const f0 = Math.fround(a0);
      const f1 = Math.fround(a1);
      if (f0 > maxAbs && f0 >= f1) {
        maxAbs = f0;
        maxIndex = base + i;
      } else if (f1 > maxAbs) {
        maxAbs = f1;
        maxIndex = base + i + 1;
      }
    }
  }
  for (; i < m; i++) {
    const x = fa[i];
    const d = fb[i] - x;
    saa0 += x * x;
    sad0 += x * d;
    sdd0 += d * d;
    const ad = Math.abs(d);
    sab0 += ad;
    if (ad > maxAbs) {
      const f = Math.fround(ad);
      if (f > maxAbs) {
        maxAbs = f;
        maxIndex = base + i;
      }
    }
  }
  acc[0] += saa0 + saa1;
  acc[1] += sad0 + sad1;
  acc[2] += sdd0 + sdd1;
  acc[3] += sab0 + sab1;
  acc[4] = maxAbs;
  acc[5] = maxIndex;
}

/** Widens two BF16 blocks into f32 bits and returns how many elements differ. */
function widenBf16Both(wa: Uint32Array, wb: Uint32Array, oa: Int32Array, ob: Int32Array, pairs: number): number {
  let n = 0;
  for (let i = 0, j = 0; i < pairs; i++, j += 2) {
    const x = wa[i];
    const y = wb[i];
    oa[j] = x << 16;
    oa[j + 1] = x & 0xffff0000;
    ob[j] = y << 16;
    ob[j + 1] = y & 0xffff0000;
    const z = x ^ y;
    if (z !== 0) n += ((z & 0xffff) !== 0 ? 1 : 0) + ((z >>> 16) !== 0 ? 1 : 0);
  }
  return n;
}

/** Elements whose stored bits differ, read from the raw words (two 16-bit elements per word). */
function countDiff16(wa: Uint32Array, wb: Uint32Array, pairs: number): number {
  let n = 0;
  for (let i = 0; i < pairs; i++) {
    const x = wa[i] ^ wb[i];
    if (x !== 0) n += ((x & 0xffff) !== 0 ? 1 : 0) + ((x >>> 16) !== 0 ? 1 : 0);
  }
  return n;
}

/** 16-bit elements whose stored bytes differ, `m` of them from byte `at` of each side (any alignment). */
function countDiffBytes16(a: Uint8Array, b: Uint8Array, at: number, m: number): number {
  let n = 0;
  for (let i = 0, k = at; i < m; i++, k += 2) if ((a[k] ^ b[k]) | (a[k + 1] ^ b[k + 1])) n++;
  return n;
}

function countDiff32(wa: Int32Array, wb: Int32Array, m: number): number {
  let n = 0;
  for (let i = 0; i < m; i++) if (wa[i] !== wb[i]) n++;
  return n;
}

function sumSquares(fa: Float32Array, m: number): number {
  let s0 = 0;
  let s1 = 0;
  let i = 0;
  for (; i + 1 < m; i += 2) {
    s0 += fa[i] * fa[i];
    s1 += fa[i + 1] * fa[i + 1];
  }
  if (i < m) s0 += fa[i] * fa[i];
  return s0 + s1;
}

function histBlock(fa: Float32Array, fb: Float32Array, ia: Int32Array, ib: Int32Array, m: number, lo: number, scale: number, hist: Uint32Array): void {
  const bins = hist.length;
  for (let j = 0; j < m; j++) {
    if (ia[j] === ib[j]) continue;
    const t = Math.floor(Math.fround(Math.fround(Math.fround(fb[j] - fa[j]) - lo) * scale));
    hist[t < 0 ? 0 : t >= bins ? bins - 1 : t]++;
  }
}

// Elements decoded per block: two f32 blocks (128 KiB) stay in L2 while they are reduced.
const BLOCK = 16384;

export function diffReduceCpu(args: DiffReduceArgs): DiffReduceResult {
  const eb = diffElementBytes(args.dtype);
  const n = Math.floor(args.a.byteLength / eb);
  const fa = scratchA.get(BLOCK);
  const fb = scratchB.get(BLOCK);
  const ia = new Int32Array(fa.buffer, 0, BLOCK);
  const ib = new Int32Array(fb.buffer, 0, BLOCK);
  const acc = new Float64Array(ACC);
  acc[5] = -1;
  const aligned = args.a.byteOffset % 4 === 0 && (args.b?.byteOffset ?? 0) % 4 === 0;
  const hist = args.hist ? new Uint32Array(args.hist.bins) : undefined;
  const lo = args.hist ? Math.fround(args.hist.lo) : 0;
  const scale = args.hist ? histScale(args.hist) : 0;
  for (let s = 0; s < n; s += BLOCK) {
    const m = Math.min(BLOCK, n - s);
    if (args.b && args.dtype === 'BF16' && aligned && m % 2 === 0) {
      // The common case, in one pass over both inputs: widen, and count differing halves.
      const pairs = m >> 1;
      acc[6] += widenBf16Both(new Uint32Array(args.a.buffer, args.a.byteOffset + s * 2, pairs), new Uint32Array(args.b.buffer, args.b.byteOffset + s * 2, pairs), ia, ib, pairs);
      reduceBlock(fa, fb, m, s, acc);
      if (hist) histBlock(fa, fb, ia, ib, m, lo, scale, hist);
      continue;
    }
    decodeChunkF32(args.dtype, args.a.subarray(s * eb, (s + m) * eb), m, fa);
    if (!args.b) {
      acc[0] += sumSquares(fa, m);
      continue;
    }
    decodeChunkF32(args.dtype, args.b.subarray(s * eb, (s + m) * eb), m, fb);
    reduceBlock(fa, fb, m, s, acc);
    if (eb === 2 && aligned) {
      const pairs = m >> 1;
      acc[6] += countDiff16(new Uint32Array(args.a.buffer, args.a.byteOffset + s * 2, pairs), new Uint32Array(args.b.buffer, args.b.byteOffset + s * 2, pairs), pairs);
      if (m & 1) acc[6] += countDiffBytes16(args.a, args.b!, (s + m - 1) * 2, 1);
    } else if (eb === 2) {
      // Counted on the stored bytes: an F16 NaN decoded through a float register may or may not
      // keep its payload (V8 quiets it in some tiers), so decoded bits would not say it.
      acc[6] += countDiffBytes16(args.a, args.b, s * 2, m);
    } else {
      // F32 is copied byte for byte, so decoded bits differ exactly when stored bits do.
      acc[6] += countDiff32(ia, ib, m);
    }
    if (hist) histBlock(fa, fb, ia, ib, m, lo, scale, hist);
  }
  if (!args.b) {
    return { n, sumA2: acc[0], sumB2: acc[0], dot: acc[0], sumD2: 0, sumAbsD: 0, maxAbs: 0, maxIndex: -1, nDiff: 0, hist, chunks: [args.a] };
  }
  const [sumA2, aDelta, sumD2, sumAbsD, maxAbs, maxIndex, nDiff] = acc;
  return { n, sumA2, sumB2: sumA2 + 2 * aDelta + sumD2, dot: sumA2 + aDelta, sumD2, sumAbsD, maxAbs, maxIndex, nDiff, hist, chunks: [args.a, args.b] };
}
