import { decodeChunkF32, diffElementBytes, Scratch } from './decodeChunk';
import { histScale, type DiffReduceArgs, type DiffReduceResult } from './diffReduce';

const scratchA = new Scratch();
const scratchB = new Scratch();

// Elements decoded per block: two f32 blocks (128 KiB) stay in L2 while they are reduced.
const BLOCK = 16384;

export function diffReduceCpu(args: DiffReduceArgs): DiffReduceResult {
  const eb = diffElementBytes(args.dtype);
  const n = Math.floor(args.a.byteLength / eb);
  const fa = scratchA.get(BLOCK);
  const fb = scratchB.get(BLOCK);
  const ia = new Int32Array(fa.buffer, 0, BLOCK);
  const ib = new Int32Array(fb.buffer, 0, BLOCK);
  // Two accumulators per sum (even and odd elements) halve the dependency chains.
  let saa0 = 0, saa1 = 0, sbb0 = 0, sbb1 = 0, sab0 = 0, sab1 = 0, sdd0 = 0, sdd1 = 0, sad0 = 0, sad1 = 0;
  let maxAbs = 0;
  let maxIndex = -1;
  let nDiff = 0;
  const hist = args.hist ? new Uint32Array(args.hist.bins) : undefined;
  const lo = args.hist ? Math.fround(args.hist.lo) : 0;
  const scale = args.hist ? histScale(args.hist) : 0;
  for (let s = 0; s < n; s += BLOCK) {
    const m = Math.min(BLOCK, n - s);
    decodeChunkF32(args.dtype, args.a.subarray(s * eb, (s + m) * eb), m, fa);
    if (!args.b) {
      for (let i = 0; i < m; i++) {
        const x = fa[i];
        saa0 += x * x;
      }
      continue;
    }
    decodeChunkF32(args.dtype, args.b.subarray(s * eb, (s + m) * eb), m, fb);
    let i = 0;
    for (; i + 1 < m; i += 2) {
      const x0 = fa[i];
      const y0 = fb[i];
      const x1 = fa[i + 1];
      const y1 = fb[i + 1];
      const d0 = y0 - x0;
      const d1 = y1 - x1;
      saa0 += x0 * x0;
      saa1 += x1 * x1;
      sbb0 += y0 * y0;
      sbb1 += y1 * y1;
      sab0 += x0 * y0;
      sab1 += x1 * y1;
      sdd0 += d0 * d0;
      sdd1 += d1 * d1;
      const a0 = Math.abs(d0);
      const a1 = Math.abs(d1);
      sad0 += a0;
      sad1 += a1;
      // The GPU twin compares f32 magnitudes: compare the same rounding, so ties resolve alike.
      if (a0 > maxAbs || a1 > maxAbs) {
        const f0 = Math.fround(a0);
        const f1 = Math.fround(a1);
        if (f0 > maxAbs && f0 >= f1) {
          maxAbs = f0;
          maxIndex = s + i;
        } else if (f1 > maxAbs) {
          maxAbs = f1;
          maxIndex = s + i + 1;
        }
      }
      if (ia[i] !== ib[i]) nDiff++;
      if (ia[i + 1] !== ib[i + 1]) nDiff++;
    }
    for (; i < m; i++) {
      const x = fa[i];
      const y = fb[i];
      const d = y - x;
      saa0 += x * x;
      sbb0 += y * y;
      sab0 += x * y;
      sdd0 += d * d;
      const ad = Math.abs(d);
      sad0 += ad;
      if (ad > maxAbs) {
        const f = Math.fround(ad);
        if (f > maxAbs) {
          maxAbs = f;
          maxIndex = s + i;
        }
      }
      if (ia[i] !== ib[i]) nDiff++;
    }
    if (hist) {
      const bins = hist.length;
      for (let j = 0; j < m; j++) {
        if (ia[j] === ib[j]) continue;
        const t = Math.floor(Math.fround(Math.fround(Math.fround(fb[j] - fa[j]) - lo) * scale));
        hist[t < 0 ? 0 : t >= bins ? bins - 1 : t]++;
      }
    }
  }
  if (!args.b) {
    return { n, sumA2: saa0, sumB2: saa0, dot: saa0, sumD2: 0, sumAbsD: 0, maxAbs: 0, maxIndex: -1, nDiff: 0, hist, chunks: [args.a] };
  }
  return { n, sumA2: saa0 + saa1, sumB2: sbb0 + sbb1, dot: sab0 + sab1, sumD2: sdd0 + sdd1, sumAbsD: sad0 + sad1, maxAbs, maxIndex, nDiff, hist, chunks: [args.a, args.b] };
}
