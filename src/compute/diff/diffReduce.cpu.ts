import { decodeChunkF32, diffElementBytes, Scratch } from './decodeChunk';
import { histScale, type DiffReduceArgs, type DiffReduceResult } from './diffReduce';

const scratchA = new Scratch();
const scratchB = new Scratch();

export function diffReduceCpu(args: DiffReduceArgs): DiffReduceResult {
  const n = Math.floor(args.a.byteLength / diffElementBytes(args.dtype));
  const fa = scratchA.get(n);
  decodeChunkF32(args.dtype, args.a, n, fa);
  let fb = fa;
  if (args.b) {
    fb = scratchB.get(n);
    decodeChunkF32(args.dtype, args.b, n, fb);
  }
  const ia = new Int32Array(fa.buffer, 0, n);
  const ib = new Int32Array(fb.buffer, 0, n);
  let saa = 0;
  let sbb = 0;
  let sab = 0;
  let sdd = 0;
  let sad = 0;
  let maxAbs = 0;
  let maxIndex = -1;
  let nDiff = 0;
  if (fb === fa) {
    for (let i = 0; i < n; i++) {
      const x = fa[i];
      saa += x * x;
    }
    return { n, sumA2: saa, sumB2: saa, dot: saa, sumD2: 0, sumAbsD: 0, maxAbs: 0, maxIndex: -1, nDiff: 0, hist: args.hist ? new Uint32Array(args.hist.bins) : undefined };
  }
  for (let i = 0; i < n; i++) {
    const x = fa[i];
    const y = fb[i];
    const d = y - x;
    saa += x * x;
    sbb += y * y;
    sab += x * y;
    sdd += d * d;
    const ad = Math.abs(d);
    sad += ad;
    // The GPU twin compares f32 magnitudes: compare the same rounding, so ties resolve alike.
    if (ad > maxAbs) {
      const f = Math.fround(ad);
      if (f > maxAbs) {
        maxAbs = f;
        maxIndex = i;
      }
    }
    if (ia[i] !== ib[i]) nDiff++;
  }
  let hist: Uint32Array | undefined;
  if (args.hist) {
    const bins = args.hist.bins;
    hist = new Uint32Array(bins);
    const lo = Math.fround(args.hist.lo);
    const scale = histScale(args.hist);
    for (let i = 0; i < n; i++) {
      if (ia[i] === ib[i]) continue;
      const t = Math.floor(Math.fround(Math.fround(Math.fround(fb[i] - fa[i]) - lo) * scale));
      hist[t < 0 ? 0 : t >= bins ? bins - 1 : t]++;
    }
  }
  return { n, sumA2: saa, sumB2: sbb, dot: sab, sumD2: sdd, sumAbsD: sad, maxAbs, maxIndex, nDiff, hist };
}
